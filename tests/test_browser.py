"""A real analyst session in headless Chromium (Debian's), driven by Playwright."""

import os
import shutil

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
        page = browser.new_page()
        yield page
        browser.close()


def test_analyst_logs_in_asks_and_sees_a_cited_answer(live_server, users, browser_page, tmp_path):
    document = Document.objects.create(title="12 CFR 215 (Regulation O)", sha256="2" * 64)
    document.file.save("12cfr215.pdf", ContentFile((PDFS / "12cfr215.pdf").read_bytes()))
    assert ingest_document(document.pk).status == Document.Status.READY

    page = browser_page
    page.goto(f"{live_server.url}/ask/")
    assert "/login/" in page.url
    page.fill("#id_username", "analyst")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/ask/")

    # a blank question gets a message in place, and nothing is stored
    page.fill("#id_question", "   ")
    page.click("#ask-form button")
    page.wait_for_selector("#ask-form .error")
    assert "Please type a question" in page.inner_text("#ask-form .error")

    page.fill("#id_question", "Under Regulation O, what kinds of business entity count as a company?")
    page.click("#ask-form button")
    page.wait_for_selector("ol.passages li", timeout=30_000)  # passages appear before the answer
    page.wait_for_selector(".answer[data-status]", timeout=120_000)
    page.screenshot(path=str(tmp_path / "answer.png"), full_page=True)
    status = page.get_attribute(".answer[data-status]", "data-status")
    assert status == "answered", page.inner_text(".answer")
    citation = page.locator("a.cite").first
    assert citation.count() == 1
    href = citation.get_attribute("href")
    assert f"/documents/{document.pk}/pages/" in href

    # the citation opens the cited page with the passage highlighted
    page.goto(live_server.url + href)
    assert page.locator("mark").count() == 1
