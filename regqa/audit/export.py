"""Export the audit trail, streamed, with a manifest that ties the export to the hash chain.

An export covers the events matching a filter up to a fixed `until` (the export's start time by
default). The trail is append-only, so that set can never change: the manifest's count and the
hashes of its first and last entries stay checkable against `manage.py audit verify` forever.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import AuditEvent

CSV_COLUMNS = ["seq", "created_at", "kind", "actor", "role", "summary", "data", "prev_hash", "hash"]


def filtered(
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str = "",
    kind: str = "",
    text: str = "",
) -> tuple[QuerySet[AuditEvent], dict]:
    until = until or timezone.now()
    qs = AuditEvent.objects.filter(created_at__lte=until)
    if since:
        qs = qs.filter(created_at__gte=since)
    if actor:
        qs = qs.filter(actor=actor)
    if kind:
        qs = qs.filter(kind=kind)
    if text:
        qs = qs.filter(Q(summary__icontains=text) | Q(data__question__icontains=text))
    filters = {
        "since": since.isoformat() if since else None,
        "until": until.isoformat(),
        "actor": actor or None,
        "kind": kind or None,
        "text": text or None,
    }
    return qs.order_by("seq"), filters


def manifest(qs: QuerySet[AuditEvent], filters: dict, exported_by: str, fmt: str) -> dict:
    first = qs.only("seq", "hash").first()
    last = qs.only("seq", "hash").last()
    return {
        "format": fmt,
        "filter": filters,
        "count": qs.count(),
        "exported_at": timezone.now().isoformat(),
        "exported_by": exported_by,
        "first": {"seq": first.seq, "hash": first.hash} if first else None,
        "last": {"seq": last.seq, "hash": last.hash} if last else None,
        "verify": "manage.py audit verify; each entry's hash is SHA-256 of its canonical JSON (regqa/audit/log.py)",
    }


def as_dict(event: AuditEvent) -> dict:
    return {
        "seq": event.seq,
        "created_at": event.created_at.isoformat(),
        "kind": event.kind,
        "actor": event.actor,
        "role": event.role,
        "summary": event.summary,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def jsonl(qs: QuerySet[AuditEvent], head: dict) -> Iterator[str]:
    """First line: {"manifest": ...}; then one event per line. Memory stays flat."""
    yield json.dumps({"manifest": head}, ensure_ascii=False) + "\n"
    for event in qs.iterator(chunk_size=1000):
        yield json.dumps(as_dict(event), ensure_ascii=False) + "\n"


def csv_rows(qs: QuerySet[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return value

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for event in qs.iterator(chunk_size=1000):
        row = as_dict(event)
        row["data"] = json.dumps(row["data"], ensure_ascii=False, sort_keys=True)
        writer.writerow([row[c] for c in CSV_COLUMNS])
        yield flush()
