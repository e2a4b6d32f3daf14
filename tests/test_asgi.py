"""Answer streams under the ASGI server `make run` uses (uvicorn, real, on 127.0.0.1): answers
waiting for the model hold no server thread, so pages load while many wait; each is told its
place; a browser that goes away stops its answer (writing) or leaves the queue (waiting)."""

from __future__ import annotations

import socket
import threading
import time

import httpx2 as httpx
import pytest
from django.core.files.base import ContentFile

from regqa.documents.ingest import ingest_document
from regqa.documents.models import Document
from regqa.qa import llm
from regqa.qa.answer import start_answer
from regqa.qa.models import Answer

from .conftest import make_pdf, session_cookie
from .fakes import reply

pytestmark = pytest.mark.django_db(transaction=True)

STREAMS = 12  # more than the 8 threads of the WSGI server `make run` used before


@pytest.fixture
def rulebook(transactional_db, fake_embedder):
    document = Document.objects.create(title="Records rule", sha256="b" * 64)
    document.file.save("records.pdf", ContentFile(make_pdf(["Records are kept for six years by the bank."])))
    return ingest_document(document.pk)


class EventStream:
    """One browser's GET of an answer stream on a raw socket, read in a thread; `close` is the
    browser going away."""

    def __init__(self, base: str, path: str, cookies: dict[str, str]) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode())
        self.received = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while data := self.sock.recv(65536):
                self.received += data
        except OSError:
            pass

    @property
    def text(self) -> str:
        return self.received.decode(errors="replace")

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_waiting_answers_hold_no_thread_pages_load_and_a_gone_browser_stops_its_answer(
    asgi_server, rulebook, fake_llm, users, client, monkeypatch
):
    monkeypatch.setattr(llm, "slots", llm.Slots(1))
    fake_llm.reply = reply("Records are kept for six years by the bank [1].", [1])
    fake_llm.delay = 0.15  # about 5 s of writing an answer
    cookies = session_cookie(client, users["analyst"])
    answers = [start_answer(users["analyst"], f"How long are records kept by the bank? ({n})") for n in range(STREAMS)]
    assert all(a.status == Answer.Status.PENDING for a in answers)

    streams = []
    for n, answer in enumerate(answers):  # one after another, so the queue's order is known
        streams.append(EventStream(asgi_server, f"/answers/{answer.pk}/stream/", cookies))
        assert until(lambda n=n: llm.slots.busy + len(llm.slots.queue) == n + 1), "the stream did not join the queue"
    assert llm.slots.busy == 1 and len(llm.slots.queue) == STREAMS - 1
    assert until(lambda: "number 11 in the queue" in streams[-1].text)
    assert "yours is the next answer" in streams[1].text
    assert until(lambda: "event: token" in streams[0].text)

    # while one answer is written and eleven wait, pages load at once
    with httpx.Client(base_url=asgi_server, cookies=session_cookie(client, users["admin"]), timeout=10) as library:
        for _ in range(5):
            started = time.monotonic()
            page = library.get("/documents/")
            assert page.status_code == 200 and "Records rule" in page.text
            assert time.monotonic() - started < 1.0

    # the writing answer's browser goes away: the model stops, the next answer gets the slot
    streams[0].close()
    assert until(lambda: Answer.objects.get(pk=answers[0].pk).status == Answer.Status.FAILED)
    assert "browser disconnected" in Answer.objects.get(pk=answers[0].pk).error
    assert until(lambda: Answer.objects.get(pk=answers[1].pk).status == Answer.Status.STREAMING)

    # ten waiting browsers go away: they leave the queue, their questions stay to be streamed later
    for stream in streams[2:]:
        stream.close()
    assert until(lambda: llm.slots.queue == [])
    assert all(a.status == Answer.Status.PENDING for a in Answer.objects.filter(pk__in=[a.pk for a in answers[2:]]))

    # the answer that stayed is written to the end
    assert until(lambda: "event: done" in streams[1].text, 20)
    finished = Answer.objects.get(pk=answers[1].pk)
    assert finished.is_final and finished.status != Answer.Status.FAILED
    assert until(lambda: llm.slots.busy == 0) and fake_llm.max_active == 1
    streams[1].close()


def test_an_export_streams_under_asgi_with_its_manifest(asgi_server, users, client):
    with httpx.Client(base_url=asgi_server, cookies=session_cookie(client, users["auditor"]), timeout=10) as auditor:
        response = auditor.get("/audit/trail/export.jsonl")
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert '"manifest"' in lines[0] and len(lines) >= 2


def test_files_stream_whole_under_asgi(asgi_server, rulebook, users, client):
    from django.conf import settings

    with httpx.Client(base_url=asgi_server, cookies=session_cookie(client, users["admin"]), timeout=10) as admin:
        pdf = admin.get(f"/documents/{rulebook.pk}/file/")
        css = admin.get("/static/css/regqa.css")
    with rulebook.file.open("rb") as stored:
        assert pdf.status_code == 200 and pdf.content == stored.read()
    assert css.status_code == 200 and css.content == (settings.BASE_DIR / "static/css/regqa.css").read_bytes()


def test_the_api_stream_queues_for_the_model_under_asgi(asgi_server, rulebook, fake_llm, users, monkeypatch):
    from regqa.api import tokens

    monkeypatch.setattr(llm, "slots", llm.Slots(1))
    fake_llm.reply = reply("Records are kept for six years by the bank [1].", [1])
    _, token = tokens.issue(users["analyst"], "load", 1)
    ticket = llm.slots.join()  # another answer is being written
    assert ticket.place() == 0
    threading.Timer(1.5, ticket.release).start()
    headers = {"Authorization": f"Bearer {token}"}
    body = {"question": "How long are records kept by the bank?"}
    with httpx.Client(base_url=asgi_server, timeout=30) as api:
        events = api.post("/api/answers/stream", json=body, headers=headers).text
    kinds = [line.removeprefix("event: ") for line in events.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "answer" and kinds[-1] == "done" and "token" in kinds
    assert "yours is the next answer" in events  # it waited for the slot, and was told
    assert '"status": "answered"' in events.split("event: done")[1] and llm.slots.busy == 0
