"""Ingestion of one stored document, in order: read the PDF's text per page (OCR when needed) ->
cut it into passages (chunking.py) -> embed them -> store pages and passages and index them, in one
transaction: the document is ready. Then, in a task of lower priority, embed its passages' windows
(`embed_windows`: the search finds a passage by its own vector until they are stored). Also the
other steps that change a document's passages: supersede, delete, rechunk.
Upload checks are checks.py and upload.py; this module never decides whether a file is accepted.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind

from . import extract, index
from .checks import IngestError, looks_like_pdf
from .chunking import ChunkDraft, PageText, chunk_pages, first_heading
from .embed import chunk_texts, embed_chunks, embed_texts
from .models import Chunk, Document, Page

log = logging.getLogger("regqa.ingest")

# Sent when a new version has replaced an old one and its passages are committed (old_id, new_id):
# documents does not know who cited what; qa listens (qa/amended.py flags the answers).
superseded = Signal()


MIN_TEXT_CHARS = 20
MIN_READABLE_SHARE = 0.5


def read_pdf_pages(path: Path, title_out: list[str] | None = None, notes: list[str] | None = None) -> list[PageText]:
    """Extract the text of every page (in a child process with limits: extract.py), OCR-ing a
    scan when ocrmypdf is installed, and only the pages whose extraction failed when the others
    read well. Failures become IngestErrors with a clear reason; what the admin should know of a
    document that was read (pages that failed, pages cut) is appended to `notes`."""
    with open(path, "rb") as fh:
        if not looks_like_pdf(fh.read(1024)):
            raise IngestError("This is not a PDF file (it does not start with a PDF header).")
    result = _extract(path)
    texts = result["pages"]
    problem = _text_problem(texts)
    can_ocr = ocr_available()
    failed: list[int] = list(result.get("failed_pages") or [])
    scanned: list[int] = list(result.get("scanned_pages") or [])
    if problem and can_ocr:
        result = _extract(ocr(path))
        texts = result["pages"]
        failed, scanned = list(result.get("failed_pages") or []), []
        problem = _text_problem(texts)
        if problem:
            raise IngestError(f"{problem}, even after OCR.", needs_ocr=True)
    elif problem:
        raise IngestError(f"{problem}: it needs OCR (install ocrmypdf and tesseract-ocr, then retry).", needs_ocr=True)
    elif (failed or scanned) and can_ocr:
        wanted = sorted(failed + scanned)
        try:
            redone = _extract(ocr(path, pages=wanted))["pages"]
        except IngestError as exc:  # the other pages are fine: keep them, say what OCR did
            log.warning("%s: OCR of pages %s failed: %s", path.name, wanted, exc)
        else:
            for number in wanted:
                if number <= len(redone) and len(redone[number - 1].strip()) >= MIN_TEXT_CHARS:
                    texts[number - 1] = redone[number - 1]
                    failed = [n for n in failed if n != number]
                    scanned = [n for n in scanned if n != number]
    if title_out is not None:
        title_out.append(result.get("title", ""))
    if failed:
        log.warning("%s: text extraction failed on pages %s", path.name, failed)
        if notes is not None:
            notes.append(f"Text extraction failed on {_pages(failed)}; the other pages were read.")
    if scanned and notes is not None:
        them = "it" if len(scanned) == 1 else "them"
        where = f"OCR found no text on {them}" if can_ocr else f"install ocrmypdf and tesseract-ocr to read {them}"
        notes.append(f"{_pages(scanned).capitalize()} {'is an image' if len(scanned) == 1 else 'are images'} "
                     f"without a text layer ({where}).")  # fmt: skip
    if result.get("cut_pages") and notes is not None:
        notes.append(
            f"The text of {_pages(result['cut_pages'])} was cut at {settings.MAX_PAGE_CHARS:,} characters "
            "(REGQA_MAX_PAGE_CHARS)."
        )
    return [PageText(number, text) for number, text in enumerate(texts, start=1)]


def ocr_available() -> bool:
    return settings.OCR == "auto" and shutil.which("ocrmypdf") is not None


def _pages(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:20]) + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")
    return f"page {shown}" if len(numbers) == 1 else f"pages {shown}"


def _extract(path: Path) -> dict:
    result = extract.run(
        str(path),
        settings.MAX_PDF_PAGES,
        settings.MAX_EXTRACT_SECONDS,
        settings.MAX_EXTRACT_MEMORY_MB,
        settings.MAX_STREAM_MB,
        settings.MAX_PAGE_CHARS,
    )
    if "error" in result:
        raise IngestError(result["message"])
    return result


def _text_problem(texts: list[str]) -> str:
    joined = "\n".join(texts)
    if len(joined.strip()) < MIN_TEXT_CHARS:
        return "No text could be extracted from this PDF: it is probably a scan without a text layer"
    if extract.readable_share(joined) < MIN_READABLE_SHARE:
        return "The text layer of this PDF is unreadable (the extracted characters are not words)"
    return ""


def ocr(path: Path, pages: list[int] | None = None) -> Path:
    """An OCR-ed copy of the PDF next to it (ocrmypdf with tesseract; only `pages` if given),
    under the same time and memory limits as extraction."""
    out = path.with_name(path.stem + ".ocr.pdf")
    only = ["--pages", ",".join(str(n) for n in pages)] if pages else []
    try:
        done = subprocess.run(
            ["ocrmypdf", "--force-ocr", "--jobs", "1", "--output-type", "pdf", "--quiet", *only, str(path), str(out)],
            capture_output=True,
            timeout=settings.MAX_EXTRACT_SECONDS,
            preexec_fn=extract.memory_limit(settings.MAX_EXTRACT_MEMORY_MB),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise IngestError(f"OCR took longer than {settings.MAX_EXTRACT_SECONDS} s; it was stopped.", True) from exc
    if done.returncode != 0 or not out.exists():
        message = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise IngestError(f"OCR failed: {message[0][:300]}", needs_ocr=True)
    return out


# ---------------------------------------------------------------------------------------------
# The whole pipeline for one stored document


def _set_progress(document_id: int, progress: int, detail: str) -> None:
    Document.objects.filter(pk=document_id).update(progress=progress, status_detail=detail, heartbeat_at=timezone.now())


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def ingest_document(document_id: int, windows_now: bool = False) -> Document:
    """Ingest one uploaded PDF; its passages' windows are queued (`windows_now`: embedded before
    returning). Input problems end as status FAILED (or NEEDS_OCR) with a reason, never a crash.
    Running it again (a retry after a failure or a killed worker) starts over: `store_chunks`
    replaces whatever an earlier attempt left. A document another worker is ingesting
    (processing, with a recent heartbeat) is left to it: never ingested twice at once."""
    document = Document.objects.get(pk=document_id)
    retried = document.heartbeat_at is not None  # an earlier attempt ran (and failed or died)
    recent = timezone.now() - timedelta(seconds=settings.INGEST_STALLED_SECONDS)
    claimed = (
        Document.objects.filter(pk=document_id)
        .exclude(status=Document.Status.PROCESSING, heartbeat_at__gte=recent)
        .update(
            status=Document.Status.PROCESSING,
            progress=1,
            status_detail="Reading PDF text",
            heartbeat_at=timezone.now(),
            ingest_worker=worker_name(),
        )
    )
    if not claimed:
        log.info("document %s is being ingested by %s: not started again", document_id, document.ingest_worker)
        return document
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
        notes: list[str] = []
        pages = read_pdf_pages(Path(document.file.path), titles, notes)
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

        texts, _ = chunk_texts([(document.title, d.section, d.text) for d in drafts])
        vectors = embed_texts(texts, embedded)
        lap("embed")
        _set_progress(document_id, 96, f"Indexing {len(drafts)} passages")
        store_chunks(document, drafts, vectors, pages, note=" ".join(notes))
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
    else:  # ready: its windows follow, and a failure there is theirs, not the document's
        if windows_now:
            embed_windows(document_id)
        else:
            queue_windows(document_id)
    return Document.objects.get(pk=document_id)


WINDOWS_PRIORITY = -10  # after every queued ingestion: documents become ready first


def queue_windows(document_id: int) -> None:
    """Embed the document's passage windows in the background, after the ingestions waiting in the
    queue (about as long as its passages took). Nothing with REGQA_WINDOW_WORDS=0."""
    from . import tasks  # tasks imports this module

    if settings.WINDOW_WORDS:
        task = tasks.embed_windows.using(priority=WINDOWS_PRIORITY)
        transaction.on_commit(partial(task.enqueue, document_id), robust=True)


def embed_windows(document_id: int) -> int:
    """Store the windows of the document's live passages that have none; returns how many. A
    passage replaced or deleted meanwhile is skipped; running it twice does the work once."""
    from .tune import embed_library_windows

    if not settings.WINDOW_WORDS:
        return 0
    return embed_library_windows(document_id=document_id)


def resume_windows() -> list[int]:
    """Queue the window embedding of every ready document with passages still without windows (a
    worker stopped before it ran, or a library stored before windows). Called when a worker starts."""
    if not settings.WINDOW_WORDS:
        return []
    missing = Chunk.live.without_windows().filter(document__status=Document.Status.READY)
    documents = list(missing.order_by("document_id").values_list("document_id", flat=True).distinct())
    for document_id in documents:
        queue_windows(document_id)
    return documents


def resume_interrupted(actor: str = "worker start") -> list[int]:
    """Queue again the documents whose ingestion was cut off: processing, but their worker is gone
    (on this machine: its process no longer runs; elsewhere: no heartbeat for
    REGQA_INGEST_STALLED_SECONDS), and queued ones no task will ever run. Called when a worker
    starts (`manage.py worker`), so a restart resumes by itself. Each is audited; with several
    workers starting at once, each document is queued by one of them. Returns their ids."""
    from . import tasks  # tasks imports this module

    host = socket.gethostname()
    stale = timezone.now() - timedelta(seconds=settings.INGEST_STALLED_SECONDS)
    resumed = []
    pending = Document.objects.filter(status__in=[Document.Status.PROCESSING, Document.Status.QUEUED])
    for document in pending.exclude(file=""):  # imported passages have no PDF to ingest again
        if document.status == Document.Status.QUEUED:
            if not document.never_scheduled:
                continue
        elif not _worker_gone(document.ingest_worker, host) and (document.heartbeat_at or stale) > stale:
            continue
        with transaction.atomic():
            taken = Document.objects.filter(
                pk=document.pk, status=document.status, ingest_worker=document.ingest_worker
            ).update(
                status=Document.Status.QUEUED,
                progress=0,
                status_detail="Resumed: its ingestion was interrupted",
                queued_at=timezone.now(),
                ingest_worker="",
            )
            if not taken:
                continue  # another worker resumed it first
            audit_log.record_document(EventKind.DOCUMENT_RETRIED, document, actor=actor)
            transaction.on_commit(partial(tasks.ingest_document.enqueue, document.pk), robust=True)
        resumed.append(document.pk)
    return resumed


def _worker_gone(worker: str, host: str) -> bool:
    """Whether the worker "host:pid" has certainly stopped: it ran on this machine and no process
    has its pid, or it is this very process (restarted under the same pid, as in a container)."""
    name, _, pid = worker.rpartition(":")
    if name != host or not pid.isdigit():
        return False  # another machine's, or unknown: only its heartbeat can tell
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a process of another user has that pid now
    return False


def store_chunks(
    document: Document,
    drafts: list[ChunkDraft],
    vectors: np.ndarray,
    pages: list[PageText] | None = None,
    note: str = "",
    windows: list[bytes] | None = None,
) -> int:
    """Replace a document's pages and chunks in one transaction and mark it ready; the index is
    written once that transaction has committed (IndexChanges), so a failure part-way leaves the
    document retryable, the index as it was, and no passage missing from it."""
    pages = pages or []
    changes = IndexChanges()
    with transaction.atomic():
        _remove_chunks(document, changes)
        Page.objects.bulk_create(Page(document=document, number=p.number, text=p.text) for p in pages)
        chunks = _add_chunks(document, drafts, vectors, changes, windows)
        if document.supersedes is not None:
            old = document.supersedes
            supersede(old, changes)
            audit_log.record_document(
                EventKind.DOCUMENT_SUPERSEDED, old, actor=f"ingestion of {document.title} v{document.version}"
            )
            # qa flags the answers that cited text this version changed (qa/amended.py)
            transaction.on_commit(lambda: superseded.send(sender=Document, old_id=old.pk, new_id=document.pk))
        Document.objects.filter(pk=document.pk).update(
            status=Document.Status.READY,
            progress=100,
            status_detail=note,  # what the admin should know of a document that was read
            page_count=len(pages),
            chunk_count=len(chunks),
            ingested_at=timezone.now(),
        )
        changes.apply(committed=False)
    changes.apply(committed=True)
    return len(chunks)


class IndexChanges:
    """Index writes collected inside a transaction, applied by the code that owns it, which calls
    `apply` twice: at the end of its block (`committed=False`) and after it has exited without an
    error (`committed=True`). A transactional index (pgvector: columns of the same rows) takes
    them the first time, so they commit or roll back with the passages. FAISS takes them the
    second: a rolled-back transaction never leaves it missing passages, nor holding ones the
    database does not have. (A process killed between the commit and that second call leaves the
    FAISS file behind the database: `index repair`, run by `make run` before the worker starts and
    before every retried ingestion, mends it.)"""

    def __init__(self) -> None:
        self.removed: list[int] = []
        self.added: list[tuple[list[int], np.ndarray]] = []

    def apply(self, *, committed: bool) -> None:
        if index.get_index().transactional == committed:
            return  # the other call is this index's
        if self.removed:
            index.get_index().remove(self.removed)
        for ids, vectors in self.added:
            index.get_index().add(ids, vectors)


def _add_chunks(
    document: Document,
    drafts: list[ChunkDraft],
    vectors: np.ndarray,
    changes: IndexChanges,
    windows: list[bytes] | None = None,
) -> list[Chunk]:
    """Store a document's new passages (inside the caller's transaction) with their vectors and
    their windows' (embed.embed_chunks); `changes` adds them to the index after it."""
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
            windows=windows[i] if windows else b"",
        )
        for i, d in enumerate(drafts)
    )
    changes.added.append(([c.pk for c in chunks], vectors))
    return chunks


def _remove_chunks(document: Document, changes: IndexChanges) -> None:
    """Drop a document's chunks and pages from the database (for re-ingestion or deletion);
    `changes` drops them from the index after the transaction."""
    changes.removed += document.chunks.values_list("pk", flat=True)
    document.chunks.all().delete()
    document.pages.all().delete()


def supersede(old: Document, changes: IndexChanges) -> None:
    """Take an older version out of the live index. Its pages and passages stay in the database,
    so answers that cited them still open the text they were based on."""
    changes.removed += old.chunks.values_list("pk", flat=True)
    Document.objects.filter(pk=old.pk).update(status=Document.Status.SUPERSEDED, status_detail="")


def delete_document(document: Document) -> None:
    changes = IndexChanges()
    with transaction.atomic():
        _remove_chunks(document, changes)
        stored = document.file.name
        changes.apply(committed=False)
        document.delete()
    changes.apply(committed=True)
    if stored:
        document.file.storage.delete(stored)
        ocr_copy = str(Path(stored).with_name(Path(stored).stem + ".ocr.pdf"))  # ocr() writes it beside the file
        if document.file.storage.exists(ocr_copy):
            document.file.storage.delete(ocr_copy)


def rechunk_document(document: Document, words: int | None = None, overlap: int | None = None) -> tuple[int, int]:
    """Cut a ready document's stored pages into passages again with the current chunking
    (REGQA_CHUNK_WORDS / _OVERLAP unless given) and index the new passages instead of the old.

    The old passages are retired, not deleted: they leave the index and search, and answers that
    cited them still open exactly what they cited. Returns (retired, created); (0, 0) when the
    new cut is the same as the live one, or the document has no stored pages (imported passages
    are not cut by RegQA: re-import them instead).
    """
    pages = [PageText(p.number, p.text) for p in document.pages.order_by("number")]
    if document.status != Document.Status.READY or not pages:
        return 0, 0
    drafts = chunk_pages(pages, words, overlap)
    old = list(Chunk.live.filter(document=document).order_by("ordinal"))
    same = [(c.text, c.section, c.page_start, c.page_end) for c in old]
    if same == [(d.text, d.section, d.page_start, d.page_end) for d in drafts]:
        return 0, 0
    vectors, windows = embed_chunks([(document.title, d.section, d.text) for d in drafts])
    changes = IndexChanges()
    with transaction.atomic():
        Chunk.objects.filter(pk__in=[c.pk for c in old]).update(retired_at=timezone.now())
        changes.removed += [c.pk for c in old]
        chunks = _add_chunks(document, drafts, vectors, changes, windows)
        Document.objects.filter(pk=document.pk).update(chunk_count=len(chunks))
        document.chunk_count = len(chunks)
        audit_log.record_document(EventKind.DOCUMENT_RECHUNKED, document, actor="manage.py index rechunk")
        changes.apply(committed=False)
    changes.apply(committed=True)
    return len(old), len(chunks)
