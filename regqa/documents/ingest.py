"""PDF ingestion: text per page -> chunks that keep document, page and section -> embeddings -> index.

The pure parts (reading, cleaning, chunking) take plain values so they can be tested without a
database; `ingest_document` ties them to the models and the index.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from regqa.audit import log as audit_log

from . import embed, index
from .models import Chunk, Document, Page

log = logging.getLogger("regqa.ingest")

PDF_MAGIC = b"%PDF-"


class IngestError(Exception):
    """A problem with the input that the uploader can understand and fix."""

    def __init__(self, message: str, needs_ocr: bool = False) -> None:
        super().__init__(message)
        self.needs_ocr = needs_ocr


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


def accept_upload(upload, metadata: dict, user) -> Document:
    """Check an uploaded file and store it as a queued document (ingestion is enqueued when the
    transaction commits). Raises IngestError for a file that cannot be accepted."""
    from . import tasks

    sha256 = check_upload(upload, upload.size)
    existing = Document.objects.filter(sha256=sha256).first()
    if existing:
        raise IngestError(f"This file is already in the library as “{existing.title}”.")
    old = metadata.get("supersedes")
    with transaction.atomic():
        document = Document.objects.create(
            title=metadata.get("title") or (old.title if old else Path(upload.name).stem),
            title_from_file=not metadata.get("title") and not old,
            issuer=metadata.get("issuer") or (old.issuer if old else ""),
            jurisdiction=metadata.get("jurisdiction") or (old.jurisdiction if old else ""),
            doc_type=metadata.get("doc_type") or (old.doc_type if old else ""),
            effective_date=metadata.get("effective_date"),
            sensitivity=metadata.get("sensitivity") or settings.DEFAULT_SENSITIVITY,
            tags=metadata.get("tags", ""),
            supersedes=old,
            version=old.version + 1 if old else 1,
            original_name=upload.name,
            file=upload,
            sha256=sha256,
            size_bytes=upload.size,
            uploaded_by=user,
        )
        transaction.on_commit(lambda: tasks.ingest_document.enqueue(document.pk))
        audit_log.record_document("document.uploaded", document, user=user)
    return document


MIN_TEXT_CHARS = 20
MIN_READABLE_SHARE = 0.5


def read_pdf_pages(path: Path, title_out: list[str] | None = None) -> list[PageText]:
    """Extract the text of every page (in a child process with limits: extract.py), OCR-ing a
    scan when ocrmypdf is installed. Failures become IngestErrors with a clear reason."""
    with open(path, "rb") as fh:
        if not looks_like_pdf(fh.read(1024)):
            raise IngestError("This is not a PDF file (it does not start with a PDF header).")
    result = _extract(path)
    texts = result["pages"]
    problem = _text_problem(texts)
    if problem and settings.OCR == "auto" and shutil.which("ocrmypdf"):
        result = _extract(ocr(path))
        texts = result["pages"]
        problem = _text_problem(texts)
        if problem:
            raise IngestError(f"{problem}, even after OCR.", needs_ocr=True)
    elif problem:
        raise IngestError(f"{problem}: it needs OCR (install ocrmypdf and tesseract-ocr, then retry).", needs_ocr=True)
    if title_out is not None:
        title_out.append(result.get("title", ""))
    if result.get("failed_pages"):
        log.warning("%s: text extraction failed on %s pages", path.name, result["failed_pages"])
    return [PageText(number, text) for number, text in enumerate(texts, start=1)]


def _extract(path: Path) -> dict:
    from . import extract

    result = extract.run(
        str(path), settings.MAX_PDF_PAGES, settings.MAX_EXTRACT_SECONDS, settings.MAX_EXTRACT_MEMORY_MB
    )
    if "error" in result:
        raise IngestError(result["message"])
    return result


def _text_problem(texts: list[str]) -> str:
    from .extract import readable_share

    joined = "\n".join(texts)
    if len(joined.strip()) < MIN_TEXT_CHARS:
        return "No text could be extracted from this PDF: it is probably a scan without a text layer"
    if readable_share(joined) < MIN_READABLE_SHARE:
        return "The text layer of this PDF is unreadable (the extracted characters are not words)"
    return ""


def ocr(path: Path) -> Path:
    """An OCR-ed copy of the PDF next to it (ocrmypdf with tesseract), within the time limit."""
    out = path.with_name(path.stem + ".ocr.pdf")
    try:
        done = subprocess.run(
            ["ocrmypdf", "--force-ocr", "--jobs", "1", "--output-type", "pdf", "--quiet", str(path), str(out)],
            capture_output=True,
            timeout=settings.MAX_EXTRACT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise IngestError(f"OCR took longer than {settings.MAX_EXTRACT_SECONDS} s; it was stopped.", True) from exc
    if done.returncode != 0 or not out.exists():
        message = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise IngestError(f"OCR failed: {message[0][:300]}", needs_ocr=True)
    return out


def first_heading(pages: list[PageText]) -> str:
    """A title from the first page: its first line that reads like a heading."""
    for line in (pages[0].text if pages else "").splitlines()[:15]:
        line = " ".join(line.split())
        if 8 <= len(line) <= 150 and sum(c.isalpha() for c in line) > len(line) / 2 and not line[0].isdigit():
            return line
    return ""


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
    Document.objects.filter(pk=document_id).update(progress=progress, status_detail=detail, heartbeat_at=timezone.now())


def ingest_document(document_id: int) -> Document:
    """Ingest one uploaded PDF. Input problems end as status FAILED (or NEEDS_OCR) with a reason,
    never a crash. Running it again (a retry after a failure or a killed worker) starts over:
    `store_chunks` replaces whatever an earlier attempt left."""
    document = Document.objects.get(pk=document_id)
    retried = document.heartbeat_at is not None  # an earlier attempt ran (and failed or died)
    Document.objects.filter(pk=document_id).update(
        status=Document.Status.PROCESSING, progress=1, status_detail="Reading PDF text", heartbeat_at=timezone.now()
    )
    if retried:
        # A killed worker may have written index entries whose rows it never committed. Only on a
        # retry: with several workers, another one's ingestion is briefly in that state too.
        added, removed = index.repair()
        if added or removed:
            log.warning("index repaired before document %s: %s added, %s removed", document_id, added, removed)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = round(now - clock, 3)
        clock = now

    try:
        titles: list[str] = []
        pages = read_pdf_pages(Path(document.file.path), titles)
        if document.title_from_file:
            from_metadata = titles[0] if titles and len(titles[0]) > 3 else ""
            document.title = from_metadata or first_heading(pages) or document.title
            Document.objects.filter(pk=document_id).update(title=document.title)
        lap("extract")
        _set_progress(document_id, 10, f"Parsed {len(pages)} pages; cutting passages")
        drafts = chunk_pages(pages)
        lap("chunk")

        def embedded(done: int) -> None:
            share = 10 + int(85 * done / max(len(drafts), 1))
            _set_progress(document_id, share, f"Parsed {len(pages)} pages; embedded {done} of {len(drafts)} passages")

        vectors = embed_texts([embedding_text(d.section, d.text, document.title) for d in drafts], embedded)
        lap("embed")
        _set_progress(document_id, 96, f"Indexing {len(drafts)} passages")
        store_chunks(document, drafts, vectors, pages)
        lap("index")
        Document.objects.filter(pk=document_id).update(timings=timings)
    except IngestError as exc:
        log.info("document %s rejected: %s", document_id, exc)
        status = Document.Status.NEEDS_OCR if exc.needs_ocr else Document.Status.FAILED
        Document.objects.filter(pk=document_id).update(status=status, progress=0, status_detail=str(exc))
    except Exception as exc:
        log.exception("document %s: ingestion failed", document_id)
        Document.objects.filter(pk=document_id).update(
            status=Document.Status.FAILED, progress=0, status_detail=f"Internal error during ingestion: {exc}"
        )
        raise
    return Document.objects.get(pk=document_id)


def embed_texts(texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Embed in batches, calling progress(number done) after each batch.

    Texts are embedded shortest first, as one sentence-transformers call over everything would:
    batches of similar length need little padding (measured: 72% -> see docs/benchmarks.md of
    the raw throughput on ObliQA passages without it, whose lengths vary a lot)."""
    if not texts:
        return np.zeros((0, embed.DIMENSIONS), dtype="float32")
    order = np.argsort([len(t) for t in texts], kind="stable")
    parts = []
    step = settings.EMBEDDING_BATCH_SIZE * 4
    for start in range(0, len(texts), step):
        parts.append(embed.embed_passages([texts[i] for i in order[start : start + step]]))
        if progress:
            progress(min(start + step, len(texts)))
    vectors = np.empty((len(texts), embed.DIMENSIONS), dtype="float32")
    vectors[order] = np.vstack(parts)
    return vectors


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
        if document.supersedes_id:
            supersede(document.supersedes)
            audit_log.record_document(
                "document.superseded", document.supersedes, actor=f"ingestion of {document.title} v{document.version}"
            )
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


def supersede(old: Document) -> None:
    """Take an older version out of the live index. Its pages and passages stay in the database,
    so answers that cited them still open the text they were based on."""
    ids = list(old.chunks.values_list("pk", flat=True))
    if ids:
        index.get_index().remove(ids)
    Document.objects.filter(pk=old.pk).update(status=Document.Status.SUPERSEDED, status_detail="")


def delete_document(document: Document) -> None:
    with transaction.atomic():
        _remove_chunks(document)
        stored = document.file.name
        document.delete()
    if stored:
        document.file.storage.delete(stored)
