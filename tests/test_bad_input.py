"""Bad input gets a clear message and leaves the database and the index consistent."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from regqa.documents import index
from regqa.documents.ingest import ingest_document
from regqa.documents.models import Chunk, Document
from regqa.qa.models import Answer

from .conftest import make_pdf

GOOD_TEXT = "§ 1.1 Scope.\nThis rule applies to every member bank that extends credit to insiders."


def upload(client, name: str, content: bytes, **extra):
    return client.post(reverse("upload"), {"files": SimpleUploadedFile(name, content), **extra})


def run_ingestion(django_capture_on_commit_callbacks, client, name, content):
    """Upload through the view, then run the queued task the way the worker would."""
    from django.core.management import call_command

    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, name, content)
    assert response.status_code == 302, response.content
    call_command("db_worker", "--batch", "--no-startup-delay", verbosity=0)
    return Document.objects.get(original_name=name)


@pytest.mark.django_db
def test_not_a_pdf_is_refused_whatever_its_name(client_for):
    client = client_for("admin")
    response = upload(client, "rules.pdf", b"PK\x03\x04 this is a zip file really")
    assert response.status_code == 422
    assert "not a PDF" in response.content.decode()
    assert Document.objects.count() == 0


@pytest.mark.django_db
def test_empty_and_oversized_files_are_refused(client_for, settings):
    client = client_for("admin")
    assert "empty" in upload(client, "empty.pdf", b"").content.decode().lower()
    settings.MAX_UPLOAD_MB = 1
    response = upload(client, "big.pdf", b"%PDF-1.7\n" + b"0" * (1024 * 1024 + 10))
    assert response.status_code == 422
    assert "larger than the 1 MB limit; it was not read" in response.content.decode()  # stopped while reading
    assert Document.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_same_file_twice_is_not_ingested_twice(client_for, fake_embedder, django_capture_on_commit_callbacks):
    client = client_for("admin")
    content = make_pdf([GOOD_TEXT])
    document = run_ingestion(django_capture_on_commit_callbacks, client, "rule.pdf", content)
    assert document.status == Document.Status.READY
    response = upload(client, "copy-of-rule.pdf", content)
    assert response.status_code == 422
    assert "already in the library" in response.content.decode()
    assert Document.objects.count() == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (lambda: make_pdf([GOOD_TEXT], password="s3cret"), "encrypted with a password"),
        (lambda: b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage garbage\n%%EOF", "damaged"),
        (lambda: make_pdf([GOOD_TEXT])[:300], "damaged"),
        (lambda: make_pdf(blank_pages=2), "No text could be extracted"),
        (lambda: make_pdf(), "no pages"),
        (lambda: make_pdf(["\u00a4\u00b6 #@ }{ ~~ \u00d7\u00f7 |\\ ^^ \u00bf\u00a1 %% ++ == <> " * 20]), "unreadable"),
    ],
    ids=["encrypted", "corrupted", "truncated", "no-text", "zero-pages", "garbage-text"],
)
@pytest.mark.django_db(transaction=True)
def test_unreadable_pdfs_fail_with_a_reason_and_index_nothing(
    client_for, fake_embedder, django_capture_on_commit_callbacks, content, reason, settings
):
    client = client_for("admin")
    good = run_ingestion(django_capture_on_commit_callbacks, client, "good.pdf", make_pdf([GOOD_TEXT]))
    indexed_before = index.get_index().ids()
    settings.OCR = "off"  # the OCR path has its own test
    document = run_ingestion(django_capture_on_commit_callbacks, client, "bad.pdf", content())
    needs_ocr = reason in ("No text could be extracted", "unreadable")
    assert document.status == (Document.Status.NEEDS_OCR if needs_ocr else Document.Status.FAILED)
    assert reason in document.status_detail
    assert document.chunks.count() == 0
    assert index.get_index().ids() == indexed_before == set(good.chunks.values_list("pk", flat=True))
    page = client.get(reverse("library")).content.decode()
    assert reason in page


@pytest.mark.django_db
def test_pdf_with_an_empty_user_password_is_read(fake_embedder, tmp_path, settings):
    from django.core.files.base import ContentFile

    document = Document.objects.create(title="open", sha256="e" * 64)
    document.file.save("open.pdf", ContentFile(make_pdf([GOOD_TEXT], password="")))
    assert ingest_document(document.pk).status == Document.Status.READY
    assert Chunk.objects.filter(document=document).count() == 1


@pytest.mark.django_db
def test_failed_document_can_be_retried_after_the_cause_is_fixed(fake_embedder, monkeypatch):
    from django.core.files.base import ContentFile

    from regqa.documents import embed

    document = Document.objects.create(title="flaky", sha256="f" * 64)
    document.file.save("flaky.pdf", ContentFile(make_pdf([GOOD_TEXT])))
    engine = type(index.get_index())  # FAISS, or pgvector when the suite runs on PostgreSQL
    monkeypatch.setattr(engine, "add", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        ingest_document(document.pk)
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED and "disk full" in document.status_detail
    # FAISS is written after the passages' transaction commits, pgvector inside it: either way its
    # failure leaves the document failed (never searched: retrieval serves ready documents only)
    # and the index without them
    assert not index.get_index().ids() & set(document.chunks.values_list("pk", flat=True))
    monkeypatch.undo()
    monkeypatch.setattr(embed, "embed_passages", __import__("tests.fakes").fakes.hashed_embedding)
    assert ingest_document(document.pk).status == Document.Status.READY
    assert index.get_index().ids() == set(document.chunks.values_list("pk", flat=True))


@pytest.mark.parametrize("question", ["", "   ", "?!"])
@pytest.mark.django_db
def test_empty_question_gets_a_message_and_stores_nothing(client_for, question):
    client = client_for("analyst")
    response = client.post(reverse("ask"), {"question": question}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "Please type a question" in body
    assert response["HX-Retarget"] == "#ask-form" and response["HX-Reswap"] == "outerHTML"
    assert Answer.objects.count() == 0
