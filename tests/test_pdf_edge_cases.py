"""PDF edge cases: AES encryption, decompression bombs, pages whose extraction fails, pages of
one endless line. Each PDF is generated here; the database and index stay consistent."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from pypdf import PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject

from regqa.documents import extract, index, ingest
from regqa.documents.models import Chunk, Document

from .conftest import make_pdf

GOOD = "§ 1.1 Scope.\nThis rule applies to every member bank that extends credit to insiders of the bank."


def ingest_bytes(content: bytes, name: str = "edge.pdf") -> Document:
    document = Document.objects.create(title=name, sha256=hashlib.sha256(name.encode() + content).hexdigest())
    document.file.save(name, ContentFile(content))
    return ingest.ingest_document(document.pk)


def index_consistent() -> bool:
    return index.get_index().ids() == set(Chunk.live.values_list("pk", flat=True))


@pytest.mark.django_db
@pytest.mark.parametrize("algorithm", ["AES-128", "AES-256"])
def test_aes_encrypted_pdfs_open_with_an_empty_password_and_refuse_a_real_one(fake_embedder, algorithm):
    opened = ingest_bytes(make_pdf([GOOD], password="", algorithm=algorithm), f"open-{algorithm}.pdf")
    assert opened.status == Document.Status.READY, opened.status_detail
    assert "member bank" in opened.chunks.get().text
    locked = ingest_bytes(make_pdf([GOOD], password="secret", algorithm=algorithm), f"locked-{algorithm}.pdf")
    assert locked.status == Document.Status.FAILED
    assert "encrypted with a password" in locked.status_detail and "cryptography" not in locked.status_detail
    assert locked.chunks.count() == 0 and index_consistent()


def bomb_pdf(inflated_mb: int) -> bytes:
    """One page whose content stream is `inflated_mb` MB of blanks, compressed to a few KB."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    stream = DecodedStreamObject()
    stream.set_data(b"BT (tiny) Tj ET\n" + b" " * (inflated_mb * 1_000_000))
    page[NameObject("/Contents")] = writer._add_object(stream.flate_encode())
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.mark.django_db
def test_a_decompression_bomb_is_refused_as_one_and_never_sent_to_ocr(fake_embedder, settings, monkeypatch):
    settings.MAX_STREAM_MB = 5
    ocr_runs = []
    monkeypatch.setattr(ingest, "ocr_available", lambda: True)
    monkeypatch.setattr(ingest, "ocr", lambda path, pages=None: ocr_runs.append(path) or path)
    content = bomb_pdf(20)
    assert len(content) < 100_000  # 20 MB of blanks, compressed
    document = ingest_bytes(content, "bomb.pdf")
    assert document.status == Document.Status.FAILED
    assert "decompression bomb" in document.status_detail and "5 MB" in document.status_detail
    assert ocr_runs == [] and document.chunks.count() == 0 and index_consistent()
    settings.MAX_STREAM_MB = 75  # under the limit, the same file is only a blank page with a word
    assert "bomb" not in ingest_bytes(content, "not-a-bomb.pdf").status_detail


def self_drawing_form_page(writer: PdfWriter) -> None:
    page = writer.add_blank_page(width=612, height=792)
    form = DecodedStreamObject()
    form.set_data(b"/Fm1 Do")
    form.update({NameObject("/Type"): NameObject("/XObject"), NameObject("/Subtype"): NameObject("/Form"),
                 NameObject("/BBox"): ArrayObject([NumberObject(0)] * 4)})  # fmt: skip
    ref = writer._add_object(form)
    resources = DictionaryObject({NameObject("/XObject"): DictionaryObject({NameObject("/Fm1"): ref})})
    form[NameObject("/Resources")] = resources
    page[NameObject("/Resources")] = resources
    contents = DecodedStreamObject()
    contents.set_data(b"/Fm1 Do")
    page[NameObject("/Contents")] = writer._add_object(contents)


@pytest.mark.django_db
def test_a_form_that_draws_itself_costs_only_its_own_page(fake_embedder, settings):
    from pypdf import PdfReader

    settings.OCR = "off"
    good = PdfReader(io.BytesIO(make_pdf([GOOD, GOOD.replace("1.1", "1.2")])))
    writer = PdfWriter()
    writer.add_page(good.pages[0])
    self_drawing_form_page(writer)
    writer.add_page(good.pages[1])
    buffer = io.BytesIO()
    writer.write(buffer)
    document = ingest_bytes(buffer.getvalue(), "recursive.pdf")
    assert document.status == Document.Status.READY, document.status_detail
    assert document.page_count == 3 and {c.page_start for c in document.chunks.all()} == {1, 3}
    assert index_consistent()


def test_a_page_that_fails_to_extract_is_named_and_the_others_kept(tmp_path, monkeypatch):
    """In the child's own code (run in-process here, so pypdf can be made to fail on page 2)."""
    from pypdf import PageObject

    path = tmp_path / "three.pdf"
    path.write_bytes(make_pdf([GOOD, "Page two text that will fail.", GOOD.replace("1.1", "1.3")]))
    original = PageObject.extract_text

    def failing(self, *args, **kwargs):
        if "two" in original(self):
            raise RecursionError("maximum recursion depth exceeded")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", failing)
    result = extract._extract(str(path), 100)
    assert result["failed_pages"] == [2] and result["pages"][1] == "" and "1.3" in result["pages"][2]


@pytest.mark.django_db
def test_only_the_failed_pages_are_ocred_and_the_status_names_what_stays_missing(
    fake_embedder, settings, monkeypatch, tmp_path
):  # noqa: E501
    pages = [GOOD, "", GOOD.replace("1.1", "1.3"), ""]
    monkeypatch.setattr(
        ingest, "_extract",
        lambda path: {"pages": list(pages), "title": "", "failed_pages": [2, 4], "cut_pages": []}
        if not str(path).endswith(".ocr.pdf")
        else {"pages": ["x", "§ 1.2 Recovered by OCR from the scanned page two.", "y", ""], "title": ""},
    )  # fmt: skip
    asked = []
    monkeypatch.setattr(ingest, "ocr_available", lambda: True)
    monkeypatch.setattr(ingest, "ocr", lambda path, pages=None: asked.append(pages) or path.with_name("x.ocr.pdf"))
    document = ingest_bytes(make_pdf([GOOD]), "partial.pdf")
    assert asked == [[2, 4]]  # only the pages that failed
    assert document.status == Document.Status.READY
    assert document.status_detail == "Text extraction failed on page 4; the other pages were read."
    texts = {p.number: p.text for p in document.pages.all()}
    assert "Recovered by OCR" in texts[2] and texts[1] == GOOD  # the text layer kept where it read


@pytest.mark.django_db
def test_a_page_of_one_endless_line_is_cut_and_the_cut_recorded(fake_embedder, settings):
    settings.MAX_PAGE_CHARS = 20_000
    vocabulary = "member bank credit insider loan capital rule limit director officer".split()
    line = " ".join(vocabulary[i % 10] + vocabulary[(i // 10) % 10] for i in range(25_000))  # 300 KB, one line
    document = ingest_bytes(make_pdf([GOOD, line]), "long-line.pdf")
    assert document.status == Document.Status.READY, document.status_detail
    assert "page 2 was cut at 20,000 characters" in document.status_detail
    assert len(document.pages.get(number=2).text) == 20_000
    assert index_consistent()
    call_command("index", "check", verbosity=0)


@pytest.mark.slow
@pytest.mark.django_db
def test_a_scanned_page_inside_a_text_pdf_is_ocred_alone(fake_embedder, settings, tmp_path):
    """Real OCR (ocrmypdf --pages) of page 2 only; page 1 keeps its own text layer."""
    import shutil

    from pypdf import PdfReader

    from .test_library import scanned_pdf

    assert shutil.which("ocrmypdf"), "OCR is not installed: run scripts/ocr-deps.sh"
    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO(make_pdf([GOOD]))).pages[0])
    writer.add_page(PdfReader(io.BytesIO(scanned_pdf(tmp_path))).pages[0])
    buffer = io.BytesIO()
    writer.write(buffer)
    settings.OCR = "off"
    unread = ingest_bytes(buffer.getvalue(), "mixed-off.pdf")
    assert unread.status == Document.Status.READY
    assert unread.status_detail == (
        "Page 2 is an image without a text layer (install ocrmypdf and tesseract-ocr to read it)."
    )
    settings.OCR = "auto"
    document = ingest_bytes(buffer.getvalue(), "mixed.pdf")
    assert document.status == Document.Status.READY and document.status_detail == ""
    texts = {p.number: p.text for p in document.pages.all()}
    assert texts[1] == PdfReader(io.BytesIO(make_pdf([GOOD]))).pages[0].extract_text()  # its own text layer
    assert "liquid assets" in texts[2].lower()
    assert index_consistent()
