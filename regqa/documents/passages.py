"""Import structured passages (JSON Lines) as documents and chunks.

Regulators publish rulebooks as structured text, and evaluation sets come as passages:
one record per line, `{"id", "doc_id", "passage_id", "text"}`. Records are grouped into one
document per `doc_id`; each non-empty record becomes a chunk whose external id is the record's
`id`, so answers and evaluations can refer to it. Rulebooks number their rules
("3.2.1.(1)") and put headings in short records of their own ("Jurisdiction"), so every chunk
gets the rule number and the headings above it as its section.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from regqa.audit.log import record_document
from regqa.audit.models import EventKind

from .checks import IngestError
from .chunking import ChunkDraft
from .embed import embed_chunks
from .ingest import store_chunks
from .models import Document


@dataclass
class PassageRecord:
    id: str
    passage_id: str
    text: str


@dataclass
class PassageGroup:
    doc_id: str
    records: list[PassageRecord] = field(default_factory=list)

    def sha256(self) -> str:
        digest = hashlib.sha256(f"passages:{self.doc_id}".encode())
        for r in self.records:
            digest.update(json.dumps([r.id, r.passage_id, r.text]).encode())
        return digest.hexdigest()


def read_passages(path: Path) -> list[PassageGroup]:
    groups: dict[str, PassageGroup] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                record = PassageRecord(str(data["id"]), str(data.get("passage_id", "")), str(data.get("text") or ""))
                doc_id = str(data["doc_id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise IngestError(f"{path.name}, line {number}: not a passage record ({exc})") from exc
            groups.setdefault(doc_id, PassageGroup(doc_id)).records.append(record)
    return list(groups.values())


def _parent_ids(passage_id: str) -> list[str]:
    """'1.1.1.(1)' -> ['1', '1.1', '1.1.1'] (keys normalised without trailing dots)."""
    parts = [p for p in passage_id.split(".") if p]
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _is_heading(text: str) -> bool:
    words = text.split()
    return 0 < len(words) <= 12 and not text.rstrip().endswith((".", ":", ";"))


def sections_for(records: list[PassageRecord]) -> list[str]:
    """Each record's rule number followed by the headings of the rules that contain it."""
    headings: dict[str, str] = {}
    sections = []
    for r in records:
        key = ".".join(p for p in r.passage_id.split(".") if p)
        trail = [headings[p] for p in _parent_ids(r.passage_id) if p in headings]
        sections.append(" ".join([r.passage_id, " > ".join(trail)]).strip()[:300])
        if _is_heading(r.text):
            headings[key] = " ".join(r.text.split())
    return sections


def import_group(
    group: PassageGroup, title: str, user=None, progress: Callable[[int], None] | None = None
) -> tuple[Document, bool]:
    """Create (or find) the document for one doc_id. Returns (document, created)."""
    sha256 = group.sha256()
    existing = Document.objects.filter(sha256=sha256).first()
    if existing and existing.status == Document.Status.READY:
        return existing, False
    started = time.perf_counter()
    sections = sections_for(group.records)
    kept = [(r, section) for r, section in zip(group.records, sections, strict=True) if r.text.strip()]
    drafts = [
        ChunkDraft(ordinal=i, text=r.text, section=section, external_id=r.id) for i, (r, section) in enumerate(kept)
    ]
    document = existing or Document.objects.create(
        title=title, sha256=sha256, original_name=f"doc_id {group.doc_id}", uploaded_by=user
    )
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PROCESSING, status_detail="Embedding")
    reported = 0

    def embedded(done: int) -> None:
        nonlocal reported
        if progress:
            progress(done - reported)
        reported = done

    try:
        chunked = time.perf_counter()
        vectors, windows = embed_chunks([(title, d.section, d.text) for d in drafts], embedded)
        embedded_at = time.perf_counter()
        store_chunks(document, drafts, vectors, windows=windows)
        timings = {
            "chunk": round(chunked - started, 3),
            "embed": round(embedded_at - chunked, 3),
            "index": round(time.perf_counter() - embedded_at, 3),
        }
        Document.objects.filter(pk=document.pk).update(timings=timings)
    except Exception as exc:
        Document.objects.filter(pk=document.pk).update(
            status=Document.Status.FAILED, status_detail=f"Import failed: {exc}"
        )
        raise
    document.refresh_from_db()
    record_document(EventKind.DOCUMENT_UPLOADED, document, user=user, actor="manage.py import_passages")
    return document, True


def import_passages(
    path: Path, document_name: str, titles: dict[str, str] | None = None, user=None, progress=None
) -> Iterable[tuple[Document, bool]]:
    groups = read_passages(path)
    for group in groups:
        if titles and group.doc_id in titles:
            title = titles[group.doc_id]
        elif len(groups) == 1:
            title = document_name
        else:
            title = f"{document_name} {group.doc_id}"
        yield import_group(group, title, user=user, progress=progress)
