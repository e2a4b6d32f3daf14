"""A real analyst session in headless Chromium (Debian's), driven by Playwright."""

import os
import shutil
import time

import pytest
from django.core.files.base import ContentFile

from regqa.documents.ingest import ingest_document
from regqa.documents.models import Document

from .conftest import PDFS
from .factories import PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("REGQA_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def browser_page():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: run scripts/test-deps.sh (make test does).")
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_context().new_page()  # a context, so a test can open a second tab
        yield page
        browser.close()


def ask(page, question: str) -> None:
    page.fill("#id_question", question)
    page.click("#ask-form button")


def log_in(page, username: str, lands_on: str) -> None:
    """Fill the login form the app redirected to, and wait for the page it returns to."""
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lands_on)


def wait_for_answer(page, timeout_ms: int) -> str:
    """Wait for the finished answer (the streamed one swapped for the stored one) and return its
    status. On a timeout, fail with what the page shows and what the server was doing: the answers'
    statuses, the model's slots, the busiest processes and every thread's stack."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(".answer[data-status]", timeout=timeout_ms)
    except PlaywrightTimeout:
        import faulthandler
        import subprocess
        import tempfile

        from regqa.qa import llm
        from regqa.qa.models import Answer

        shown = page.locator(".answer").first.inner_text() if page.locator(".answer").count() else page.content()
        answers = list(Answer.objects.order_by("pk").values_list("pk", "status", "first_token_ms"))
        busiest = subprocess.run(
            ["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True
        ).stdout.splitlines()[:8]
        with tempfile.TemporaryFile("w+") as out:
            faulthandler.dump_traceback(out, all_threads=True)
            out.seek(0)
            stacks = out.read()
        pytest.fail(
            f"No finished answer after {timeout_ms / 1000:.0f} s.\nThe page shows: {shown[:1500]}\n"
            f"Answers (pk, status, first token ms): {answers}\n"
            f"Model slots: {llm.slots.busy} busy, {len(llm.slots.queue)} waiting\n"
            "Busiest processes:\n" + "\n".join(busiest) + f"\nThreads:\n{stacks}"
        )
    return page.get_attribute(".answer[data-status]", "data-status")


def test_analyst_logs_in_asks_and_sees_a_cited_answer(live_server, users, browser_page, tmp_path):
    document = Document.objects.create(title="12 CFR 215 (Regulation O)", sha256="2" * 64)
    document.file.save("12cfr215.pdf", ContentFile((PDFS / "12cfr215.pdf").read_bytes()))
    assert ingest_document(document.pk).status == Document.Status.READY

    page = browser_page
    page.goto(f"{live_server.url}/ask/")
    assert "/login/" in page.url
    log_in(page, "analyst", f"{live_server.url}/ask/")

    # a blank question gets a message in place, and nothing is stored
    ask(page, "   ")
    page.wait_for_selector("#ask-form .error")
    assert "Please type a question" in page.inner_text("#ask-form .error")

    ask(page, "Under Regulation O, what kinds of business entity count as a company?")
    page.wait_for_selector("ol.passages li", timeout=30_000)  # passages appear before the answer
    status = wait_for_answer(page, 180_000)
    page.screenshot(path=str(tmp_path / "answer.png"), full_page=True)
    assert status == "answered", page.inner_text(".answer")
    citation = page.locator("a.cite").first
    assert citation.count() == 1
    href = citation.get_attribute("href")
    assert f"/documents/{document.pk}/pages/" in href

    # the citation opens the cited page with the passage highlighted
    page.goto(live_server.url + href)
    assert page.locator("mark").count() == 1


def test_admin_uploads_two_pdfs_and_watches_them_become_ready(live_server, users, browser_page, fresh_vectors):
    import threading
    import time

    from django.db import connection
    from django_tasks_db.management.commands.db_worker import Worker

    page = browser_page
    page.goto(f"{live_server.url}/documents/")
    log_in(page, "admin", f"{live_server.url}/documents/")

    page.set_input_files("#id_files", [str(PDFS / "12cfr212.pdf"), str(PDFS / "12cfr215.pdf")])
    assert page.locator("#chosen-files li").count() == 2  # the chosen files are listed
    page.fill("#id_issuer", "Federal Reserve Board")
    page.select_option("#id_sensitivity", "public")
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#documents tr[data-status]")
    rows = page.locator("#documents tbody tr[data-status]")
    assert rows.count() == 2
    assert {rows.nth(i).get_attribute("data-status") for i in range(2)} <= {"queued", "processing"}
    page.evaluate("window.notReloaded = true")

    stop = threading.Event()

    def work() -> None:  # django-tasks-db's worker, as `manage.py db_worker` runs it (minus signals)
        options = {"queue_names": ["default"], "interval": 0.5, "batch": True, "backend_name": "default"}
        options |= {"startup_delay": False, "max_tasks": None, "worker_id": "test", "excluded_queue_names": []}
        try:
            while not stop.is_set():
                Worker(**options).run()
                time.sleep(0.5)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        # progress shows while they are ingested, without reloading the page
        page.wait_for_selector("#documents progress", timeout=60_000)
        # a locator assertion, not wait_for_function: the page's Content-Security-Policy forbids eval
        from playwright.sync_api import expect

        expect(page.locator("#documents tr[data-status=ready]")).to_have_count(2, timeout=180_000)
    finally:
        stop.set()
        worker.join()
    assert page.evaluate("window.notReloaded") is True
    text = page.inner_text("#documents")
    assert text.count("Ready") == 2 and "Federal Reserve Board" in text and "Public" in text
    assert Document.objects.filter(status=Document.Status.READY, sensitivity="public").count() == 2


def test_analyst_asks_for_the_large_model_and_watches_its_answer_stream_in(
    live_server, users, browser_page, large_model, tmp_path
):
    """The whole escalation in a browser: the real local model answers, the analyst asks for the
    large model (a real llama_cpp.server), its answer streams into the same view."""
    from regqa.qa.models import EscalationPolicy

    document = Document.objects.create(title="12 CFR 215 (Regulation O)", sha256="3" * 64, sensitivity="public")
    document.file.save("12cfr215.pdf", ContentFile((PDFS / "12cfr215.pdf").read_bytes()))
    assert ingest_document(document.pk).status == Document.Status.READY
    EscalationPolicy.objects.create(mode="on_request", allowed_groups=["Analysts"], max_sensitivity="internal")

    page = browser_page
    page.goto(f"{live_server.url}/ask/")
    log_in(page, "analyst", f"{live_server.url}/ask/")
    ask(page, "What is the lending limit for loans to executive officers?")
    wait_for_answer(page, 180_000)
    assert "Answered locally" in page.inner_text(".routing")

    page.click("form.escalate button")
    page.wait_for_selector(".routing[data-escalation=done]", timeout=180_000)
    page.screenshot(path=str(tmp_path / "escalated.png"), full_page=True)
    routing = page.inner_text(".routing")
    assert "Answered by the large model" in routing and "the analyst asked for the large model" in routing
    assert "The local model's answer" in routing
    assert "large (large model)" in page.inner_text(".answer .meta")
    assert len(large_model.requests) == 1


def test_the_api_docs_render_and_call_the_api_with_a_token(live_server, users, browser_page):
    """Swagger UI, served by the app under its Content-Security-Policy, lists every operation and
    calls GET /api/me with a token given to its Authorize dialog."""
    from regqa.api import tokens

    _, token = tokens.issue(users["auditor"], "docs", 1)
    page = browser_page
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(f"{live_server.url}/api/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() >= 9
    page.click("button.authorize")
    page.fill(".auth-container input", token)
    page.click(".auth-btn-wrapper button.authorize")
    page.click(".btn-done")
    page.click("#operations-account-regqa_api_api_me")
    page.click("button.try-out__btn")
    page.click("button.execute")
    status = page.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=20_000)
    assert status.inner_text().strip() == "200"
    assert '"username": "auditor"' in page.locator(".live-responses-table .microlight").first.inner_text()
    assert not [p for p in problems if "Content Security Policy" in p], problems


def test_a_citation_opens_the_pdf_page_itself_with_the_sentence_marked(live_server, users, browser_page):
    """PDF.js (served from the app's static files) draws the cited page; the supporting sentence
    is marked in its text layer. A page that cannot be drawn falls back to the text, with a notice."""
    from regqa.documents.models import Chunk

    document = Document.objects.create(title="12 CFR 215 (Regulation O)", sha256="3" * 64)
    document.file.save("12cfr215.pdf", ContentFile((PDFS / "12cfr215.pdf").read_bytes()))
    assert ingest_document(document.pk).status == Document.Status.READY
    chunk = next(c for c in Chunk.objects.filter(document=document) if "Company means" in c.text)
    start = chunk.text.index("Company means")
    end = chunk.text.index(".", start) + 1

    page = browser_page
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(f"{live_server.url}/login/")
    log_in(page, "analyst", f"{live_server.url}/ask/")
    url = f"{live_server.url}/documents/{document.pk}/pages/{chunk.page_start}/?chunk={chunk.pk}&span={start}-{end}"
    page.goto(url)
    page.wait_for_selector("#pdf-page[data-rendered=true]", timeout=30_000)
    marked = " ".join(page.locator(".textLayer .highlight").all_inner_texts())
    assert "Company" in marked and "corporation" in marked, marked
    assert page.locator("#pdf-page canvas").bounding_box()["height"] > 300  # the page was drawn
    assert page.locator("#page-text-view").is_hidden()
    # the marks sit on the sentence drawn on the canvas (the text layer is laid over it, not in flow)
    canvas = page.locator("#pdf-page canvas").bounding_box()
    first = page.locator(".textLayer .highlight").first.bounding_box()
    assert canvas["x"] + 0.2 * canvas["width"] < first["x"] < canvas["x"] + 0.8 * canvas["width"]
    assert canvas["y"] + 0.2 * canvas["height"] < first["y"] < canvas["y"] + 0.8 * canvas["height"]
    assert not [p for p in problems if "Content Security Policy" in p], problems

    # the stored file is damaged: the page's text is shown instead, with a notice
    document.file.open("wb").write(b"%PDF-1.4 this is not a PDF any more")
    page.goto(url)
    page.wait_for_selector("#pdf-page.failed", timeout=30_000)
    assert "could not be shown" in page.inner_text("#pdf-page .pdf-status")
    assert page.locator("#page-text-view").is_visible() and "Company means" in page.inner_text(".page-text")


def test_instant_quote_feedback_follow_up_and_an_amended_source(live_server, users, browser_page):
    """An analyst's session with the real models: the quote from the documents appears before the
    model's first word; feedback; a follow-up in a thread; then a new version of the document
    changes the cited definition and the answer is flagged, with the old and new text."""
    from .conftest import make_pdf

    definition = (
        "§ 5.2 Definitions.\n(b) Company means any corporation, partnership, trust, association, joint venture,\n"
        "pool syndicate, sole proprietorship or unincorporated organization."
    )
    scope = "§ 5.1 Scope.\nThis rulebook applies to every member bank and to its executive officers."
    v1 = Document.objects.create(title="Member Bank Rulebook", sha256="4" * 64)
    v1.file.save("rulebook-v1.pdf", ContentFile(make_pdf([scope, definition])))
    assert ingest_document(v1.pk).status == Document.Status.READY

    page = browser_page
    page.goto(f"{live_server.url}/ask/")
    log_in(page, "analyst", f"{live_server.url}/ask/")
    ask(page, "What kinds of business entity count as a company under the rulebook?")
    page.wait_for_selector(".instant", timeout=30_000)
    assert page.locator(".answer.streaming .text.draft").inner_text() == ""  # before the model's first word
    assert "From the documents, at once" in page.inner_text(".instant")
    assert page.locator(".instant a.cite").count() >= 1
    status = wait_for_answer(page, 180_000)
    assert status in ("answered", "quoted"), page.inner_text(".answer")

    # feedback: helpful, and recorded
    page.check("form.feedback input[value=helpful]")
    page.fill("form.feedback textarea", "Clear and cited.")
    page.click("form.feedback button")
    page.wait_for_selector("form.feedback .saved-feedback")
    assert "Your feedback: helpful" in page.inner_text("form.feedback")

    # a follow-up: RegQA proposes a standalone question, the analyst asks it, the thread shows
    page.fill("form.follow-up input[name=text]", "and does that include a trust?")
    page.click("form.follow-up button")
    page.wait_for_selector("form.follow-up.confirm textarea", timeout=10_000)
    proposed = page.input_value("form.follow-up.confirm textarea")
    assert proposed.startswith("What kinds of business entity count as a company") and "trust" in proposed
    page.click("form.follow-up.confirm button[type=submit]")
    page.wait_for_selector(".thread", timeout=30_000)
    assert "What kinds of business entity count as a company under the rulebook?" in page.inner_text(".thread")
    wait_for_answer(page, 180_000)

    # a new version changes the definition the first answer cited: the answer is flagged
    v2 = Document.objects.create(title="Member Bank Rulebook", sha256="5" * 64, supersedes=v1, version=2)
    amended = definition.replace("trust, association", "trust, limited liability company, association")
    v2.file.save("rulebook-v2.pdf", ContentFile(make_pdf([scope, amended])))
    assert ingest_document(v2.pk).status == Document.Status.READY
    page.goto(f"{live_server.url}/answers/")
    assert "source amended" in page.inner_text("table")
    from regqa.qa.models import Answer

    page.goto(f"{live_server.url}/answers/{Answer.objects.order_by('pk').first().pk}/")
    page.wait_for_selector(".amended")
    assert "limited liability company" in page.inner_text(".amended ins")
    assert "Cited: version 1" in page.inner_text(".amended")


def test_the_library_page_loads_while_answers_stream(asgi_server, users, browser_page, client):
    """Served as `make run` serves it (uvicorn, ASGI), with the real model: nine answer streams
    (more than the eight threads of the WSGI server used before) and the analyst's own answer
    waiting in the queue; the library page loads at once for an admin; when the nine browsers
    go away the model stops and the analyst's answer is written."""
    from playwright.sync_api import expect

    from regqa.qa import llm
    from regqa.qa.answer import start_answer
    from regqa.qa.models import Answer

    from .conftest import session_cookie
    from .test_asgi import EventStream, until

    document = Document.objects.create(title="12 CFR 215 (Regulation O)", sha256="2" * 64)
    document.file.save("12cfr215.pdf", ContentFile((PDFS / "12cfr215.pdf").read_bytes()))
    assert ingest_document(document.pk).status == Document.Status.READY
    llm.get_model()  # loaded before the clock starts
    cookies = session_cookie(client, users["analyst"])
    others = [start_answer(users["analyst"], f"Who is an insider under Regulation O? ({n})") for n in range(9)]
    streams = []
    for n, answer in enumerate(others):  # one after another (the in-memory test database locks whole tables)
        streams.append(EventStream(asgi_server, f"/answers/{answer.pk}/stream/", cookies))
        assert until(lambda n=n: llm.slots.busy + len(llm.slots.queue) == n + 1, 30)

    page = browser_page
    page.goto(f"{asgi_server}/ask/")
    log_in(page, "analyst", f"{asgi_server}/ask/")
    ask(page, "Under Regulation O, what kinds of business entity count as a company?")
    page.wait_for_selector("ol.passages li", timeout=30_000)
    expect(page.locator(".answer .status")).to_contain_text("number 9 in the queue", timeout=30_000)

    library = page.context.browser.new_context().new_page()  # an admin, in another window
    library.goto(f"{asgi_server}/documents/")
    log_in(library, "admin", f"{asgi_server}/documents/")
    started = time.monotonic()
    library.goto(f"{asgi_server}/documents/")
    assert "12 CFR 215 (Regulation O)" in library.inner_text("body"), library.inner_text("body")[:500]
    assert time.monotonic() - started < 3.0  # the page, its styles and scripts, with the model writing
    library.close()

    writing = Answer.objects.get(status=Answer.Status.STREAMING)
    for stream in streams:
        stream.close()
    # the model notices the closed streams only once it has read the prompt: up to about 40 s on an
    # AVX2-only CPU (first token p95 37 s, docs/benchmarks.md), not interruptible before
    assert until(lambda: Answer.objects.get(pk=writing.pk).status == Answer.Status.FAILED, 90)
    assert wait_for_answer(page, 180_000) in ("answered", "quoted")  # the analyst's turn came
    assert Answer.objects.filter(pk__in=[a.pk for a in others], status=Answer.Status.PENDING).count() == 8
