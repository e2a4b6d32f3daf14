"""The document library: batch upload with metadata, versions, filters, hostile files, recovery."""

import io
import zlib
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from regqa.audit.models import AuditEvent
from regqa.documents import index
from regqa.documents.ingest import ingest_document
from regqa.documents.models import Chunk, Document
from regqa.qa import answer as answering
from regqa.qa.models import Answer
from regqa.qa.retrieve import retrieve

from .conftest import make_pdf
from .fakes import reply

RULE_V1 = "§ 4.1 Record keeping.\nA licensed firm must keep records of client transactions for six years."
RULE_V2 = "§ 4.1 Record keeping.\nA licensed firm must keep records of client transactions for ten years."
OTHER = "§ 9.2 Complaints.\nA licensed firm must answer a client complaint within eight weeks."


def stored(title: str, pages: list[str] | bytes, **fields) -> Document:
    content = pages if isinstance(pages, bytes) else make_pdf(pages)
    document = Document.objects.create(title=title, sha256=f"{abs(hash((title, content))):064d}"[:64], **fields)
    document.file.save(f"{title}.pdf", ContentFile(content))
    return document


def worker():
    call_command("db_worker", "--batch", "--no-startup-delay", verbosity=0)


# -- upload ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_batch_upload_keeps_the_good_files_names_the_bad_one_and_applies_metadata(
    client_for, fake_embedder, django_capture_on_commit_callbacks
):
    admin = client_for("admin")
    files = [
        SimpleUploadedFile("conduct.pdf", make_pdf([RULE_V1])),
        SimpleUploadedFile("complaints.pdf", make_pdf([OTHER])),
        SimpleUploadedFile("notes.pdf", b"just some text, not a PDF"),
    ]
    metadata = {
        "issuer": "FSRA",
        "jurisdiction": "ADGM",
        "doc_type": "Rulebook",
        "effective_date": "2024-01-01",
        "sensitivity": "confidential",
        "tags": "conduct, records",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(reverse("upload"), {"files": files, **metadata}, follow=True)
    page = response.content.decode()
    assert "notes.pdf: This is not a PDF file" in page
    assert Document.objects.count() == 2
    worker()
    for document in Document.objects.all():
        assert document.status == Document.Status.READY, document.status_detail
        assert (document.issuer, document.jurisdiction, document.doc_type) == ("FSRA", "ADGM", "Rulebook")
        assert document.sensitivity == "confidential" and document.tag_list == ["conduct", "records"]
        assert str(document.effective_date) == "2024-01-01"
    # no title given: taken from the first heading of each PDF
    assert set(Document.objects.values_list("title", flat=True)) == {"§ 4.1 Record keeping.", "§ 9.2 Complaints."}
    library = admin.get(reverse("library")).content.decode()
    assert "FSRA · ADGM · Rulebook" in library and "Confidential" in library
    assert AuditEvent.objects.filter(kind="document.uploaded", data__sensitivity="confidential").count() == 2


@pytest.mark.django_db
def test_the_title_comes_from_the_pdf_metadata_when_it_has_one(fake_embedder):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([RULE_V1]))))
    writer.add_metadata({"/Title": "Conduct of Business Rulebook"})
    buffer = io.BytesIO()
    writer.write(buffer)
    document = stored("conduct", buffer.getvalue(), title_from_file=True)
    assert ingest_document(document.pk).title == "Conduct of Business Rulebook"


@pytest.mark.django_db
def test_metadata_can_be_edited_and_the_edit_is_audited(client_for, fake_embedder):
    document = stored("conduct", [RULE_V1])
    ingest_document(document.pk)
    admin = client_for("admin")
    response = admin.post(
        reverse("document_edit", args=[document.pk]),
        {"title": "COBS", "issuer": "FSRA", "sensitivity": "restricted", "jurisdiction": "", "doc_type": ""},
    )
    assert response.status_code == 302
    document.refresh_from_db()
    assert (document.title, document.sensitivity) == ("COBS", "restricted")
    assert AuditEvent.objects.get(kind="document.edited").data["sensitivity"] == "restricted"
    analyst = client_for("analyst")
    assert analyst.get(reverse("document_edit", args=[document.pk])).status_code == 403


# -- versions ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_new_version_supersedes_the_old_one_and_old_answers_keep_their_passages(
    client_for, users, fake_embedder, fake_llm, django_capture_on_commit_callbacks
):
    admin = client_for("admin")
    with django_capture_on_commit_callbacks(execute=True):
        admin.post(reverse("upload"), {"files": SimpleUploadedFile("cobs-2023.pdf", make_pdf([RULE_V1]))})
    worker()
    v1 = Document.objects.get()
    fake_llm.reply = reply("A licensed firm must keep records of client transactions for six years [1].", [1])
    old_answer = answering.answer_question(users["analyst"], "How long must records be kept?")
    assert old_answer.passages[0]["document_id"] == v1.pk and old_answer.passages[0]["document_version"] == 1

    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            reverse("upload"),
            {"files": SimpleUploadedFile("cobs-2024.pdf", make_pdf([RULE_V2])), "supersedes": v1.pk},
        )
    assert response.status_code == 302, response.content.decode()[-3000:]
    v2 = Document.objects.get(supersedes=v1)
    assert v2.version == 2 and v2.title == v1.title
    worker()
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert v1.status == Document.Status.SUPERSEDED and v2.status == Document.Status.READY
    assert index.get_index().ids() == set(v2.chunks.values_list("pk", flat=True))
    assert v1.chunks.count() == 1  # kept for the answers that cited it
    replaced = AuditEvent.objects.get(kind="document.superseded")
    assert replaced.data["document_id"] == v1.pk and "v2" in replaced.actor
    assert index.check_against_database() == (set(), set())

    passages = retrieve("How long must records of client transactions be kept?")
    assert {p.document_id for p in passages} == {v2.pk} and passages[0].document_version == 2
    # the old answer still opens the page and passage it was based on
    old = old_answer.passages[0]
    analyst = client_for("analyst")
    page = analyst.get(reverse("document_page", args=[v1.pk, 1]) + f"?chunk={old['chunk_id']}").content.decode()
    assert "six years" in page
    assert "v2" in client_for("admin").get(reverse("library")).content.decode()


@pytest.mark.django_db
def test_deleting_a_document_removes_it_from_the_index_and_keeps_its_audit_record(client_for, fake_embedder):
    document = stored("conduct", [RULE_V1])
    ingest_document(document.pk)
    admin = client_for("admin")
    admin.post(reverse("document_delete", args=[document.pk]))
    assert not Document.objects.exists() and not Chunk.objects.exists()
    assert index.get_index().ids() == set()
    assert AuditEvent.objects.get(kind="document.deleted").data["title"] == "conduct"


# -- filters --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ask_filters_restrict_retrieval_to_the_selected_documents(client_for, fake_embedder, fake_llm):
    adgm = stored("adgm", [RULE_V1], issuer="FSRA", jurisdiction="ADGM", doc_type="Rulebook")
    us = stored("us", [RULE_V2.replace("ten", "five")], issuer="FRB", jurisdiction="US", doc_type="Regulation")
    for document in (adgm, us):
        ingest_document(document.pk)
    Document.objects.filter(pk=us.pk).update(effective_date="2020-06-30")
    analyst = client_for("analyst")
    question = "How long must a licensed firm keep records of client transactions?"
    for filters, expected in [
        ({"jurisdiction": "US"}, {us.pk}),
        ({"issuer": "FSRA"}, {adgm.pk}),
        ({"doc_type": "Regulation"}, {us.pk}),
        ({"effective_until": "2021-01-01"}, {us.pk}),
        ({}, {adgm.pk, us.pk}),
    ]:
        analyst.post(reverse("ask"), {"question": question, **filters}, headers={"HX-Request": "true"})
        answer = Answer.objects.latest("pk")
        assert {p["document_id"] for p in answer.passages} == expected, filters
        assert answer.filters == filters
    page = analyst.get(reverse("ask")).content.decode()
    assert '<option value="FSRA">' in page and '<option value="Regulation">' in page


# -- hostile files ------------------------------------------------------------------------------


def raw_pdf(objects: list[bytes]) -> bytes:
    """A minimal PDF from numbered object bodies (1: catalog, 2: pages, ...), with a valid xref."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer << /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def page_with_content(content: bytes, extra_resources: bytes = b"") -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> " + extra_resources + b">> >>",
        content,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]


def decompression_bomb() -> bytes:
    data = zlib.compress(b"0" * (400 * 1024 * 1024), 9)  # 400 MB of content in about 400 KB
    return raw_pdf(
        page_with_content(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream")
    )


def deep_nesting() -> bytes:
    nested = b"[" * 200_000 + b"]" * 200_000
    objects = page_with_content(b"<< /Length 0 >>\nstream\n\nendstream")
    objects[2] = objects[2].replace(b"/MediaBox", b"/Junk " + nested + b" /MediaBox")
    return raw_pdf(objects)


def huge_image_with_text() -> bytes:
    pixels = zlib.compress(bytes(4000 * 4000 * 3), 9)  # a 48 MB raw image, small on disk
    text = b"BT /F1 11 Tf 50 740 Td (Rule 7.1 Capital. A firm must hold capital of at least ten million.) Tj ET"
    content = b"q 500 0 0 500 50 100 cm /Im1 Do Q " + text
    objects = page_with_content(
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream", b"/XObject << /Im1 6 0 R >> "
    )
    objects.append(
        b"<< /Type /XObject /Subtype /Image /Width 4000 /Height 4000 /ColorSpace /DeviceRGB /BitsPerComponent 8 "
        b"/Filter /FlateDecode /Length %d >>\nstream\n" % len(pixels) + pixels + b"\nendstream"
    )
    return raw_pdf(objects)


@pytest.mark.django_db
def test_a_huge_embedded_image_does_not_stop_the_text_from_being_read(fake_embedder):
    document = stored("image", huge_image_with_text())
    document = ingest_document(document.pk)
    assert document.status == Document.Status.READY, document.status_detail
    assert "ten million" in document.chunks.get().text


@pytest.mark.parametrize("content", [decompression_bomb, deep_nesting], ids=["decompression-bomb", "deep-nesting"])
@pytest.mark.django_db
def test_pdf_bombs_end_with_a_reason_within_the_limits(fake_embedder, settings, content):
    settings.MAX_EXTRACT_MEMORY_MB = 300
    settings.MAX_EXTRACT_SECONDS = 60
    settings.OCR = "off"
    good = stored("good", [RULE_V1])
    ingest_document(good.pk)
    started = timezone.now()
    document = ingest_document(stored("bomb", content()).pk)
    assert (timezone.now() - started).total_seconds() < 60
    assert document.status in (Document.Status.FAILED, Document.Status.NEEDS_OCR)
    assert document.status_detail and document.chunks.count() == 0
    assert index.get_index().ids() == set(good.chunks.values_list("pk", flat=True))


@pytest.mark.django_db
def test_limits_on_pages_and_extraction_time_are_settings(fake_embedder, settings):
    settings.MAX_PDF_PAGES = 3
    document = ingest_document(stored("long", [RULE_V1] * 5).pk)
    assert document.status == Document.Status.FAILED and "5 pages; the limit is 3" in document.status_detail
    settings.MAX_EXTRACT_SECONDS = 1
    # one page of 150,000 text operations: about 4 s of pypdf extraction on these machines
    ops = b"BT /F1 11 Tf 50 740 Td " + b"(word) Tj 1 0 Td " * 150_000 + b"ET"
    slow = raw_pdf(page_with_content(b"<< /Length %d >>\nstream\n" % len(ops) + ops + b"\nendstream"))
    document = ingest_document(stored("slow", slow).pk)
    assert document.status == Document.Status.FAILED and "longer than 1 s" in document.status_detail


# -- a worker that dies ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_document_whose_worker_died_is_shown_as_interrupted_and_can_be_retried(client_for, fake_embedder, settings):
    document = stored("conduct", [RULE_V1])
    # the state a killed worker leaves: processing, and index entries whose rows were rolled back
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.PROCESSING, progress=40, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    index.get_index().add([9999], np.ones((1, 384), dtype="float32") / np.sqrt(384))
    admin = client_for("admin")
    page = admin.get(reverse("library")).content.decode()
    assert "Interrupted" in page and "the worker stopped" in page
    admin.post(reverse("document_retry", args=[document.pk]))
    document.refresh_from_db()
    assert document.status == Document.Status.QUEUED
    document = ingest_document(document.pk)
    assert document.status == Document.Status.READY
    assert index.check_against_database() == (set(), set())  # the orphan 9999 is gone


@pytest.mark.django_db
def test_a_document_still_making_progress_cannot_be_retried(client_for, fake_embedder):
    document = stored("conduct", [RULE_V1])
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PROCESSING, heartbeat_at=timezone.now())
    client_for("admin").post(reverse("document_retry", args=[document.pk]))
    document.refresh_from_db()
    assert document.status == Document.Status.PROCESSING


def scanned_pdf(tmp_path) -> bytes:
    """A page that is only an image of text, as a scanner makes it (Ghostscript, which OCR
    needs anyway, renders a text PDF to an image-only one)."""
    import subprocess

    text = tmp_path / "text.pdf"
    text.write_bytes(make_pdf(["Rule 5.3 Liquidity.\nA bank must hold liquid assets sufficient for thirty days."]))
    scan = tmp_path / "scan.pdf"
    subprocess.run(["gs", "-q", "-sDEVICE=pdfimage8", "-r200", "-o", str(scan), str(text)], check=True)
    return scan.read_bytes()


@pytest.mark.slow
@pytest.mark.django_db
def test_a_scan_is_ocred_when_ocr_is_installed_and_marked_needs_ocr_when_not(fake_embedder, settings, tmp_path):
    import shutil

    assert shutil.which("ocrmypdf"), "OCR is not installed: run scripts/ocr-deps.sh"
    settings.OCR = "off"
    document = ingest_document(stored("scan-off", scanned_pdf(tmp_path)).pk)
    assert document.status == Document.Status.NEEDS_OCR and "needs OCR" in document.status_detail
    settings.OCR = "auto"
    document = ingest_document(stored("scan", scanned_pdf(tmp_path)).pk)
    assert document.status == Document.Status.READY, document.status_detail
    assert "liquid assets" in document.chunks.get().text.lower()


def test_embedding_shortest_first_returns_vectors_in_the_callers_order(fake_embedder, settings):
    from regqa.documents.embed import embed_texts

    from .fakes import hashed_embedding

    settings.EMBEDDING_BATCH_SIZE = 1  # several batches
    texts = [f"{'long ' * (i % 7)}passage number {i} about capital" for i in range(23)]
    done = []
    vectors = embed_texts(texts, done.append)
    assert np.array_equal(vectors, hashed_embedding(texts))
    assert done[-1] == len(texts)


@pytest.mark.slow
def test_a_worker_killed_mid_ingest_leaves_a_consistent_retryable_document(tmp_path):
    """A real process, killed with SIGKILL while it embeds a 62-page PDF; then a retry."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    from .conftest import PDFS

    env = os.environ | {
        "REGQA_DATA_DIR": str(tmp_path),
        "REGQA_SECRET_KEY": "test",
        "DJANGO_SETTINGS_MODULE": "regqa.settings",
        "REGQA_INGEST_STALLED_SECONDS": "10",
        "REGQA_WINDOW_WORDS": "0",  # about killing and retrying, not windows (tests/test_windows.py): half the time
    }
    env.pop("DATABASE_URL", None)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    worker = subprocess.Popen([*manage, "ingest_pdfs", str(PDFS / "12cfr208.pdf"), "--now"], env=env)
    db = tmp_path / "db.sqlite3"
    deadline = time.monotonic() + 120
    progress = 0
    while time.monotonic() < deadline and progress < 30:
        time.sleep(0.2)
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT status, progress FROM documents_document").fetchone()
        progress = row[1] if row and row[0] == "processing" else 0
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert progress >= 30, "the worker never reached the embedding step"

    script = (
        "import time; from regqa.documents.models import Document; from regqa.documents import index;"
        "from regqa.documents.ingest import ingest_document;"
        "d = Document.objects.get(); assert d.status == 'processing' and d.chunks.count() == 0, d.status;"
        "assert not d.can_retry; time.sleep(11); d.refresh_from_db(); assert d.can_retry and d.is_stalled;"
        "d = ingest_document(d.pk); assert d.status == 'ready', d.status_detail;"
        "print('ready', d.chunk_count)"
    )
    done = subprocess.run([*manage, "shell", "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "ready" in done.stdout, done.stderr[-2000:]
    check = subprocess.run([*manage, "index", "check"], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# -- the index follows the database's commits; a lost enqueue can be retried -----------------------


@pytest.mark.django_db
def test_a_rolled_back_transaction_never_leaves_the_index_missing_passages(fake_embedder, monkeypatch):
    from regqa.documents import ingest
    from regqa.documents.models import Page

    document = stored("Conduct rules", [RULE_V1, OTHER])
    ingest_document(document.pk)
    live = set(Chunk.live.values_list("pk", flat=True))
    assert live and index.get_index().ids() == live

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(Page.objects, "bulk_create", disk_full)  # fails after the old chunks were deleted
    document.refresh_from_db()
    drafts = [ingest.ChunkDraft(ordinal=0, text="new text", section="", page_start=1, page_end=1)]
    with pytest.raises(OSError):
        ingest.store_chunks(document, drafts, np.ones((1, 384), dtype="float32"), [ingest.PageText(1, "new text")])
    assert set(Chunk.live.values_list("pk", flat=True)) == live  # rolled back...
    assert index.get_index().ids() == live  # ...and the index still holds every live passage

    monkeypatch.undo()
    with pytest.raises(OSError), monkeypatch.context() as m:  # deleting fails when the row goes
        m.setattr(Document, "delete", disk_full)
        ingest.delete_document(document)
    assert index.get_index().ids() == live and index.check_against_database() == (set(), set())


@pytest.mark.django_db
def test_a_document_whose_ingestion_was_never_scheduled_can_be_retried(
    client_for, monkeypatch, django_capture_on_commit_callbacks
):
    from types import SimpleNamespace

    from django_tasks_db.models import DBTaskResult

    from regqa.documents import tasks

    def queue_down(*args, **kwargs):
        raise RuntimeError("the task table cannot be reached")

    admin = client_for("admin")
    with monkeypatch.context() as m, django_capture_on_commit_callbacks(execute=True):
        m.setattr(tasks, "ingest_document", SimpleNamespace(enqueue=queue_down))
        response = admin.post(reverse("upload"), {"files": SimpleUploadedFile("a.pdf", make_pdf([RULE_V1]))})
    assert response.status_code == 302  # stored, not an error page
    document = Document.objects.get()
    assert document.status == Document.Status.QUEUED and not document.is_stalled  # just queued
    Document.objects.filter(pk=document.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    document.refresh_from_db()
    assert document.never_scheduled and document.can_retry
    page = admin.get(reverse("library")).content.decode()
    assert "Not scheduled" in page and "never scheduled" in page and "Retry" in page

    with django_capture_on_commit_callbacks(execute=True):
        admin.post(reverse("document_retry", args=[document.pk]))
    document.refresh_from_db()
    assert document.status == Document.Status.QUEUED and not document.never_scheduled
    assert DBTaskResult.objects.filter(args_kwargs__args__0=document.pk, status="READY").exists()
    Document.objects.filter(pk=document.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    document.refresh_from_db()
    assert not document.never_scheduled  # a task waits for it: merely a busy queue


def test_the_page_text_view_drops_running_headers_and_offers_the_pdf_page(client_for, db):
    from regqa.documents.models import Page

    document = Document.objects.create(title="Rulebook", sha256="e" * 64, status=Document.Status.READY, page_count=4)
    header = "VerDate Sep<11>2014 17:08 Jun 13, 2022 Jkt 256036 PO 00000 Frm 0039"
    for n in range(1, 5):
        body = "\n".join(f"Line {i} of rule {n}, different on every page {'x' * n}." for i in range(6))
        Page.objects.create(document=document, number=n, text=f"{header}\n{body}\n{n}")
    page = client_for("analyst").get(reverse("document_page", args=[document.pk, 2])).content.decode()
    assert "Line 3 of rule 2, different on every page xx." in page and "VerDate" not in page
    assert 'id="pdf-page"' not in page  # no stored PDF: the text view only

    # ingested again with another running header: the page view finds the new one, not the old
    for n in range(1, 5):
        Page.objects.filter(document=document, number=n).update(
            text=f"Federal Register Vol. 87\nSection {'y' * n} applies.\nMore {'w' * n}.\n{n}"
        )
    Document.objects.filter(pk=document.pk).update(ingested_at=timezone.now())
    page = client_for("analyst").get(reverse("document_page", args=[document.pk, 3])).content.decode()
    assert "Section yyy applies." in page and "Federal Register Vol. 87" not in page
