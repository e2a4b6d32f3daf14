"""PDF ingestion: text per page -> chunks that keep document, page and section -> embeddings -> index.

The pure parts (reading, cleaning, chunking) take plain values so they can be tested without a
database; `ingest_document` ties them to the models and the index.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import embed, index
from .models import Chunk, Document, Page

log = logging.getLogger("regqa.ingest")

PDF_MAGIC = b"%PDF-"


class IngestError(Exception):
    """A problem with the input that the uploader can understand and fix."""


@dataclass
class PageText:
    number: int  # 1-based
    text: str


@dataclass
class ChunkDraft:
    ordinal: int
    text: str
    section: str
    page_start: int | None = None
    page_end: int | None = None
    external_id: str = ""  # the source's own id, for imported passages


# ---------------------------------------------------------------------------------------------
# Checking and reading files


def looks_like_pdf(head: bytes) -> bool:
    """PDF files start with %PDF- (some tools put junk first; the spec allows 1024 bytes)."""
    return PDF_MAGIC in head[:1024]


def check_upload(fh: BinaryIO, size: int) -> str:
    """Cheap checks done before accepting an upload. Returns the file's SHA-256."""
    max_bytes = settings.MAX_UPLOAD_MB * 1024 * 1024
    if size == 0:
        raise IngestError("The file is empty.")
    if size > max_bytes:
        raise IngestError(f"The file is {size / 1e6:.1f} MB; the limit is {settings.MAX_UPLOAD_MB} MB.")
    fh.seek(0)
    head = fh.read(1024)
    if not looks_like_pdf(head):
        raise IngestError("This is not a PDF file (it does not start with a PDF header), whatever its name says.")
    fh.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
    fh.seek(0)
    return digest.hexdigest()


def read_pdf_pages(path: Path) -> list[PageText]:
    """Extract the text of every page with pypdf, turning its failures into clear reasons."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    with open(path, "rb") as fh:
        if not looks_like_pdf(fh.read(1024)):
            raise IngestError("This is not a PDF file (it does not start with a PDF header).")
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            # Many "protected" PDFs only restrict printing and open with an empty password.
            try:
                if not reader.decrypt(""):
                    raise IngestError("The PDF is encrypted with a password. Upload an unprotected copy.")
            except (FileNotDecryptedError, NotImplementedError) as exc:
                raise IngestError(f"The PDF is encrypted and cannot be opened: {exc}") from exc
        count = len(reader.pages)
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(f"The PDF is damaged and cannot be read: {exc}") from exc
    if count == 0:
        raise IngestError("The PDF has no pages.")
    if count > settings.MAX_PDF_PAGES:
        raise IngestError(f"The PDF has {count} pages; the limit is {settings.MAX_PDF_PAGES}.")
    pages = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # pypdf raises many types on broken content streams
            log.warning("page %s: text extraction failed: %s", number, exc)
            text = ""
        pages.append(PageText(number, text))
    if sum(len(p.text.strip()) for p in pages) < 20:
        raise IngestError(
            "No text could be extracted from this PDF: it is probably a scan without a text layer (needs OCR)."
        )
    return pages


# ---------------------------------------------------------------------------------------------
# Cleaning and chunking

HEADING_PATTERNS = [
    re.compile(r"^§\s*\d+[\w.-]*\s+[A-Z(].{0,150}$"),  # § 208.1 Authority, purpose, and scope.
    re.compile(r"^(PART|Part)\s+\d+\s*[—–-].{0,150}$"),  # PART 208—MEMBERSHIP OF ...
    re.compile(r"^Subpart\s+[A-Z]{1,3}\s*[—–-].{0,150}$"),  # Subpart A—General ...
    re.compile(r"^(Rule|Article|Section|Chapter|CHAPTER|ARTICLE|SECTION)\s+[\dIVXLC]+(\.\d+)*[.:]?\s+\S.{0,120}$"),
    re.compile(r"^\d+(\.\d+){1,4}\.?\s+[A-Z][^.;:]{2,100}$"),  # 3.2.1 Capital requirements
    re.compile(r"^Appendix\s+[A-Z0-9]+\b.{0,150}$"),
]
_WS = re.compile(r"[ \t\u00a0]+")
_DIGITS = re.compile(r"\d+")


def is_heading(line: str) -> bool:
    line = line.strip()
    if not 3 <= len(line) <= 160:
        return False
    if any(p.match(line) for p in HEADING_PATTERNS):
        return True
    letters = [c for c in line if c.isalpha()]
    # Short ALL-CAPS lines ("STATEMENT ON LONGER-RUN GOALS") are headings in most rulebooks.
    return len(letters) >= 6 and all(c.isupper() for c in letters) and len(line.split()) <= 14


def strip_running_lines(pages: list[PageText]) -> list[list[str]]:
    """Split pages into lines and drop running headers/footers and bare page numbers.

    A line near the top or bottom of a page that recurs (digits ignored) on at least a third of
    the pages is a running header or footer, not content.
    """
    split = [[_WS.sub(" ", line).strip() for line in p.text.splitlines()] for p in pages]
    split = [[line for line in lines if line] for lines in split]
    edge_counts: Counter[str] = Counter()
    for lines in split:
        edges = set(lines[:2] + lines[-2:])
        edge_counts.update(_DIGITS.sub("#", e) for e in edges)
    threshold = max(3, len(pages) // 3)
    running = {k for k, n in edge_counts.items() if n >= threshold}
    cleaned = []
    for lines in split:
        keep = []
        for i, line in enumerate(lines):
            at_edge = i < 2 or i >= len(lines) - 2
            if at_edge and (_DIGITS.sub("#", line) in running or line.isdigit()):
                continue
            keep.append(line)
        cleaned.append(keep)
    return cleaned


def chunk_pages(pages: list[PageText], words: int | None = None, overlap: int | None = None) -> list[ChunkDraft]:
    """Cut page text into overlapping windows of about `words` words.

    Every word remembers its page and the section heading in force, so each chunk knows the
    page(s) it spans and its section. A new section always starts a new chunk, so a passage
    never mixes two rules. Words hyphenated across lines are joined again.
    """
    words = words or settings.CHUNK_WORDS
    overlap = settings.CHUNK_OVERLAP_WORDS if overlap is None else overlap
    step = max(1, words - overlap)

    # (word, page, section) stream, grouped into runs that share a section.
    runs: list[tuple[str, list[tuple[str, int]]]] = []
    section = ""
    carry = ""  # first half of a word hyphenated at a line end
    heading_continues = False  # "§ 208.6 Establishment and mainte-" / "nance of branches."
    for page, lines in zip(pages, strip_running_lines(pages), strict=True):
        for line in lines:
            if heading_continues and len(line) <= 80 and not is_heading(line):
                section = (section[:-1] + line)[:300]
                runs[-1] = (section, runs[-1][1])
            heading_continues = False
            if is_heading(line):
                section = line[:300]
                runs.append((section, []))
                heading_continues = line.endswith("-")
            if not runs:
                runs.append((section, []))
            tokens = line.split()
            if carry and tokens:
                tokens[0] = carry + tokens[0]
                carry = ""
            if tokens and tokens[-1].endswith("-") and len(tokens[-1]) > 2 and tokens[-1][-2].isalpha():
                carry = tokens.pop()[:-1]
            runs[-1][1].extend((t, page.number) for t in tokens)
    if carry and runs:
        runs[-1][1].append((carry, pages[-1].number))

    drafts: list[ChunkDraft] = []
    for section, stream in runs:
        if not stream:
            continue
        start = 0
        while True:
            window = stream[start : start + words]
            drafts.append(
                ChunkDraft(
                    ordinal=len(drafts),
                    text=" ".join(w for w, _ in window),
                    section=section,
                    page_start=window[0][1],
                    page_end=window[-1][1],
                )
            )
            if start + words >= len(stream):
                break
            start += step
    return drafts


def embedding_text(section: str, text: str, title: str = "") -> str:
    """What gets embedded: the document title and heading give a passage the context its words
    lack ("Regulation O", "§ 215.2 Definitions")."""
    context = [part for part in (title, section) if part and not text.startswith(part)]
    return "\n".join([*context, text])


# ---------------------------------------------------------------------------------------------
# The whole pipeline for one stored document


def _set_progress(document_id: int, progress: int, detail: str) -> None:
    Document.objects.filter(pk=document_id).update(progress=progress, status_detail=detail)


def ingest_document(document_id: int) -> Document:
    """Ingest one uploaded PDF. Input problems end as status FAILED with a reason, never a crash."""
    document = Document.objects.get(pk=document_id)
    Document.objects.filter(pk=document_id).update(
        status=Document.Status.PROCESSING, progress=1, status_detail="Reading PDF text"
    )
    try:
        pages = read_pdf_pages(Path(document.file.path))
        _set_progress(document_id, 10, f"Read {len(pages)} pages; cutting passages")
        drafts = chunk_pages(pages)

        def embedded(done: int) -> None:
            share = 10 + int(85 * done / max(len(drafts), 1))
            _set_progress(document_id, share, f"Embedded {done} of {len(drafts)} passages")

        vectors = embed_texts([embedding_text(d.section, d.text, document.title) for d in drafts], embedded)
        store_chunks(document, drafts, vectors, pages)
    except IngestError as exc:
        log.info("document %s rejected: %s", document_id, exc)
        Document.objects.filter(pk=document_id).update(
            status=Document.Status.FAILED, progress=0, status_detail=str(exc)
        )
    except Exception as exc:
        log.exception("document %s: ingestion failed", document_id)
        Document.objects.filter(pk=document_id).update(
            status=Document.Status.FAILED, progress=0, status_detail=f"Internal error during ingestion: {exc}"
        )
        raise
    return Document.objects.get(pk=document_id)


def embed_texts(texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Embed in batches, calling progress(number done) after each batch."""
    parts = []
    step = settings.EMBEDDING_BATCH_SIZE * 4
    for start in range(0, len(texts), step):
        parts.append(embed.embed_passages(texts[start : start + step]))
        if progress:
            progress(min(start + step, len(texts)))
    return np.vstack(parts) if parts else np.zeros((0, embed.DIMENSIONS), dtype="float32")


def store_chunks(
    document: Document, drafts: list[ChunkDraft], vectors: np.ndarray, pages: list[PageText] | None = None
) -> int:
    """Replace a document's pages and chunks and index them, all in one transaction; mark it ready.

    The rows and the index change together: a failure part-way leaves the document retryable
    with nothing half-indexed.
    """
    pages = pages or []
    with transaction.atomic():
        _remove_chunks(document)
        Page.objects.bulk_create(Page(document=document, number=p.number, text=p.text) for p in pages)
        chunks = Chunk.objects.bulk_create(
            Chunk(
                document=document,
                ordinal=d.ordinal,
                text=d.text,
                section=d.section,
                page_start=d.page_start,
                page_end=d.page_end,
                external_id=d.external_id,
                embedding=vectors[i].tobytes(),
            )
            for i, d in enumerate(drafts)
        )
        index.get_index().add([c.pk for c in chunks], vectors)
        Document.objects.filter(pk=document.pk).update(
            status=Document.Status.READY,
            progress=100,
            status_detail="",
            page_count=len(pages),
            chunk_count=len(chunks),
            ingested_at=timezone.now(),
        )
    return len(chunks)


def _remove_chunks(document: Document) -> None:
    """Drop a document's chunks from the index and the database (for re-ingestion or deletion)."""
    ids = list(document.chunks.values_list("pk", flat=True))
    if ids:
        index.get_index().remove(ids)
    document.chunks.all().delete()
    document.pages.all().delete()


def delete_document(document: Document) -> None:
    with transaction.atomic():
        _remove_chunks(document)
        stored = document.file.name
        document.delete()
    if stored:
        document.file.storage.delete(stored)
