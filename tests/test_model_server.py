"""The local model from a model server (REGQA_LLM_BASE_URL): the answer's slots and queue, the
start-up check, and the whole answer flow against a real llama_cpp.server on 127.0.0.1, with its
P(yes) compared to the in-process model's on the same GGUF file."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from regqa.qa import llm
from regqa.qa.answer import answer_question, start_answer, stream_answer
from regqa.qa.models import Answer

from .conftest import make_pdf
from .large_server import start_recorder
from .processes import manage


@pytest.fixture
def rulebook(db, fake_embedder):
    from django.core.files.base import ContentFile

    from regqa.documents.ingest import ingest_document
    from regqa.documents.models import Document

    document = Document.objects.create(title="Records rule", sha256="b" * 64)
    document.file.save("records.pdf", ContentFile(make_pdf(["Records are kept for six years by the bank."])))
    return ingest_document(document.pk)


# --- slots: several writers at once, the rest queue in order --------------------------------


def test_slots_let_size_writers_in_and_queue_the_rest_in_order():
    slots = llm.Slots(2)
    slots.acquire()
    slots.acquire()
    order: list[str] = []
    places: dict[str, list[int]] = {"a": [], "b": []}

    def writer(name: str) -> None:
        for place in slots.wait(poll=0.05):
            places[name].append(place)
        order.append(name)

    first = threading.Thread(target=writer, args=("a",))
    first.start()
    time.sleep(0.1)
    second = threading.Thread(target=writer, args=("b",))
    second.start()
    time.sleep(0.2)
    assert order == [] and places["a"][0] == 1 and places["b"][0] == 2  # both wait, b behind a
    slots.release()
    first.join(2)
    assert order == ["a"]
    time.sleep(0.1)
    assert places["b"][-1] == 1  # b moved up to next
    slots.release()
    second.join(2)
    assert order == ["a", "b"] and slots.busy == 2


def test_a_writer_that_leaves_the_queue_does_not_hold_up_the_next():
    slots = llm.Slots(1)
    slots.acquire()
    leaving = slots.wait(poll=0.05)
    assert next(leaving) == 1
    staying = slots.wait(poll=0.05)
    assert next(staying) == 2
    leaving.close()  # the browser went away while waiting
    assert next(staying) == 1
    slots.release()
    assert list(staying) == [] and slots.busy == 1 and slots.queue == []


def test_a_queued_answer_tells_the_analyst_its_place_and_then_streams(rulebook, fake_llm, users, monkeypatch):
    fake_llm.reply = '{"answer": "Six years [1].", "cited_passages": [1], "passages_state_answer": true}'
    monkeypatch.setattr(llm, "slots", llm.Slots(1))
    answer = start_answer(users["analyst"], "How long are records kept by the bank?")
    assert answer.status == Answer.Status.PENDING
    llm.slots.acquire()  # another answer is being written
    events = stream_answer(answer)
    kind, text = next(events)
    assert kind == "status" and "yours is the next answer" in text
    threading.Timer(0.3, llm.slots.release).start()
    rest = list(events)
    assert any(kind == "token" for kind, _ in rest)
    answer.refresh_from_db()
    assert answer.status == Answer.Status.ANSWERED and llm.slots.busy == 0


# --- the server model's requests, against a loopback stand-in --------------------------------


def test_server_model_asks_for_the_schema_and_streams_the_reply(settings):
    reply = '{"answer": "Six years [1].", "cited_passages": [1], "passages_state_answer": true}'
    server = start_recorder(reply=reply)
    try:
        model = llm.ServerModel(server.url, "local")
        text = "".join(model.stream_json([{"role": "user", "content": "How long?"}]))
        settings.LLM_JSON_FORMAT = "json_object"
        "".join(model.stream_json([{"role": "user", "content": "How long?"}]))
    finally:
        server.stop()
    assert text == reply
    first, second = server.requests
    assert first["model"] == "local" and first["stream"] is True and first["temperature"] == 0.0
    assert first["response_format"]["json_schema"]["schema"]["required"] == [
        "answer",
        "cited_passages",
        "passages_state_answer",
    ]
    assert (
        second["response_format"]["type"] == "json_object"
        and "answer" in second["response_format"]["schema"]["properties"]
    )


def test_a_server_that_is_down_or_failing_is_a_clear_model_unavailable_error():
    port = _closed_port()
    with pytest.raises(llm.ModelUnavailable, match=rf"127.0.0.1:{port}/v1 cannot be reached"):
        list(llm.ServerModel(f"http://127.0.0.1:{port}/v1", "local").stream_json([]))
    failing = start_recorder("error")
    try:
        with pytest.raises(llm.ModelUnavailable, match="refused the request \\(HTTP 500"):
            llm.ServerModel(failing.url, "local").yes_probability([{"role": "user", "content": "?"}])
        with pytest.raises(llm.ModelUnavailable, match="serves large, not 'local'"):
            llm.ServerModel(failing.url, "local").check()  # GET /models lists "large"
    finally:
        failing.stop()


def test_an_answer_whose_server_is_down_fails_with_that_message_and_is_audited(rulebook, users, settings, monkeypatch):
    from regqa.audit.models import AuditEvent, EventKind

    settings.LLM_BASE_URL = f"http://127.0.0.1:{_closed_port()}/v1"
    monkeypatch.setattr(llm, "_model", None)
    answer = answer_question(users["analyst"], "How long are records kept by the bank?", route=False)
    assert answer.status == Answer.Status.FAILED and "cannot be reached" in answer.error
    event = AuditEvent.objects.filter(kind=EventKind.ANSWER).order_by("seq").last()
    assert event is not None and event.data["answer_id"] == answer.pk
    monkeypatch.setattr(llm, "_model", None)


def test_start_up_with_the_model_server_down_is_one_clear_error(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    result = manage(tmp_path, "check", REGQA_LLM_BASE_URL=url)
    assert result.returncode == 1
    assert f"(regqa.E001) The model server at {url} cannot be reached." in result.stderr
    assert "Traceback" not in result.stderr
    bad = manage(tmp_path, "check", REGQA_LLM_BASE_URL="localhost:8080")
    assert bad.returncode == 1 and "REGQA_LLM_BASE_URL must start with http:// or https://" in bad.stderr
    fine = manage(tmp_path, "check")  # no server configured: the in-process model
    assert fine.returncode == 0, fine.stderr


def _closed_port() -> int:
    from regqa.qa.llama_server import free_port

    return free_port()  # bound and released: nothing listens there


# --- against a real llama_cpp.server ----------------------------------------------------------


@pytest.fixture
def served(llama_server, settings, monkeypatch):
    """Answers from the real llama_cpp.server of the session (model alias "large")."""
    settings.LLM_BASE_URL = llama_server
    settings.LLM_SERVER_MODEL = "large"
    settings.LLM_JSON_FORMAT = "json_object"  # llama-cpp-python's server form
    monkeypatch.setattr(llm, "_model", None)
    yield llama_server
    monkeypatch.setattr(llm, "_model", None)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_server_answers_with_cited_json_and_the_same_yes_probability_as_in_process(served, users):
    from django.core.files.base import ContentFile

    from regqa.documents.ingest import ingest_document
    from regqa.documents.models import Document
    from regqa.qa import answer as answering

    from .conftest import PDFS

    document = Document.objects.create(title="12cfr215", sha256="4" * 64)
    document.file.save("12cfr215.pdf", ContentFile((PDFS / "12cfr215.pdf").read_bytes()))
    ingest_document(document.pk)
    question = "Under Regulation O, what kinds of business entity count as a company?"
    answer = start_answer(users["analyst"], question, route=False)
    events = list(stream_answer(answer, route=False))
    answer.refresh_from_db()
    tokens = "".join(text for kind, text in events if kind == "token")
    assert answer.status in (Answer.Status.ANSWERED, Answer.Status.QUOTED), (answer.error, answer.answer_text)
    assert answer.model_name == "large" and tokens.strip() and answer.citations
    assert answer.verification["status"] in ("verified", "partial")
    assert isinstance(llm.get_model(), llm.ServerModel)

    passages = [p for p in answer.passages if p["sent_to_model"]]
    stated = answering.answerability(question, passages)  # through the server's log-probabilities
    assert stated is not None and stated >= 0.5


@pytest.mark.slow
def test_the_servers_yes_probability_equals_the_in_process_one_on_the_same_gguf(settings):
    """Both fresh, asked the same prompts in the same order: llama.cpp's value depends on which
    prompt prefix is cached (the in-process model itself moves by a few hundredths after another
    prompt), so the comparison holds the history equal."""
    from regqa.qa import prompts
    from regqa.qa.llama_server import serve

    gguf = Path(os.environ.get("REGQA_TEST_LARGE_MODEL", str(settings.LLM_MODEL_PATH)))
    passages = [
        {"n": 1, "document": "12cfr215", "page": 2, "heading": "§ 215.2 Definitions", "text": COMPANY},
        {"n": 2, "document": "12cfr215", "page": 1, "heading": "§ 215.1 Authority", "text": AUTHORITY},
    ]
    asked = [
        prompts.answerability_messages(
            "Under Regulation O, what kinds of business entity count as a company?", passages
        ),
        prompts.answerability_messages("In which year did the Kansas City Fed open its Denver branch?", passages),
    ]
    local = llm.LlamaCppModel(gguf)
    try:
        in_process = [local.yes_probability(messages) for messages in asked]
    finally:
        local.close()
    with serve(gguf, flash_attention=settings.LLM_FLASH_ATTENTION) as url:
        through_server = [llm.ServerModel(url, "large").yes_probability(messages) for messages in asked]
    for served, local_value in zip(through_server, in_process, strict=True):
        assert served is not None and local_value is not None
        assert abs(served - local_value) < 1e-4, (through_server, in_process)
    assert in_process[1] < 0.5 < in_process[0]  # and it tells the two questions apart


COMPANY = (
    "(b) Company means any corporation, partnership, trust (business or otherwise), association, joint venture, "
    "pool syndicate, sole proprietorship, unincorporated organization, or any other form of business entity."
)
AUTHORITY = "This part is issued pursuant to sections 11(i), 22, and 23A of the Federal Reserve Act."
