"""Export the audit trail, streamed, with a manifest that ties the export to the hash chain.

An export covers the events matching a filter up to a fixed `until` (the export's start time by
default). The trail is append-only, so that set can never change: the manifest's count and the
hashes of its first and last entries stay checkable against `manage.py audit verify` forever.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from django.db.models import Q, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from regqa import streaming
from regqa.qa.models import Answer, Feedback

from . import anchor
from .log import entry_fields, record
from .models import AuditEvent, EventKind

CSV_COLUMNS = ["seq", "created_at", "kind", "actor", "role", "summary", "data", "prev_hash", "hash", "key_id", "mac"]


def parse_when(value: str | None) -> datetime | None:
    """A date (YYYY-MM-DD, midnight) or date and time; naive values are in the site time zone."""
    if not value:
        return None
    parsed = parse_datetime(value)
    if parsed is None and (day := parse_date(value)):
        parsed = datetime.combine(day, datetime.min.time())
    if parsed is None:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or a date and time")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


def refuse_null_characters(values: Mapping[str, object]) -> None:
    """A filter holding NUL cannot be a user, kind or text (and PostgreSQL refuses it): ValueError."""
    for name, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"The filter {name!r} contains a null character.")


def filtered(
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str = "",
    kind: str = "",
    text: str = "",
    model: str = "",
) -> tuple[QuerySet[AuditEvent], dict]:
    refuse_null_characters({"actor": actor, "kind": kind, "q": text, "model": model})
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
    if model:
        qs = qs.filter(data__model=model)
    filters = {
        "since": since.isoformat() if since else None,
        "until": until.isoformat(),
        "actor": actor or None,
        "kind": kind or None,
        "text": text or None,
        "model": model or None,
    }
    return qs.order_by("seq"), filters


def answers(params: Mapping[str, str]) -> QuerySet[Answer]:
    """The answers the answer log's filters select (the log page, its CSV and the API share them):
    since, until, actor, model, status, q (question text), document, quality (lowest score at most),
    verification, feedback (helpful, not_helpful, wrong_passage, none), amended (yes), escalated (yes, no, refused).
    A bad date or a null character raises ValueError."""
    refuse_null_characters(params)
    since, until = parse_when(params.get("since")), parse_when(params.get("until"))
    qs = Answer.objects.select_related("user")
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lte=until)
    if actor := params.get("actor"):
        qs = qs.filter(user__username=actor)
    if model := params.get("model"):
        qs = qs.filter(model_name=model)
    if status := params.get("status"):
        qs = qs.filter(status=status)
    if text := params.get("q"):
        qs = qs.filter(question__icontains=text)
    if (document := params.get("document") or "").isdigit():
        qs = qs.filter(documents=int(document))
    if (quality := params.get("quality") or "").isdigit():
        qs = qs.filter(quality_min__lte=int(quality))
    if verification := params.get("verification"):
        qs = qs.filter(verification__status=verification)
    if params.get("amended") == "yes":
        qs = qs.filter(source_amended=True)
    given = params.get("feedback")
    if given in ("helpful", "not_helpful"):
        qs = qs.filter(feedback_verdict=given)
    elif given == "none":
        qs = qs.filter(feedback_verdict="")
    elif given == "wrong_passage":
        qs = qs.filter(pk__in=Feedback.objects.exclude(wrong_passages=[]).values("answer_id"))
    escalated = params.get("escalated")
    if escalated == "yes":  # sent to the large model (answered or failed)
        qs = qs.filter(escalation_state__in=["done", "failed"])
    elif escalated == "no":
        qs = qs.exclude(escalation_state__in=["done", "failed"])
    elif escalated == "refused":
        qs = qs.filter(escalation_state="refused")
    return qs


def begin(user, fmt: str, **filters) -> tuple[QuerySet[AuditEvent], dict]:
    """The events an export of `filters` covers and its manifest, the export itself audited."""
    qs, chosen = filtered(**filters)
    head = manifest(qs, chosen, user.get_username(), fmt)
    record(EventKind.LOG_EXPORTED, f"Audit trail exported as {fmt} ({head['count']} entries)", user=user,
           data={"manifest": head})  # fmt: skip
    return qs, head


def streamed(request: HttpRequest, qs: QuerySet[AuditEvent], head: dict, fmt: str) -> StreamingHttpResponse:
    """The export as a download: JSON Lines (the manifest first) or CSV, streamed."""
    if fmt == "jsonl":
        response = streaming.response(request, jsonl(qs, head), "application/x-ndjson")
    else:
        response = streaming.response(request, csv_rows(qs), "text/csv")
    response["Content-Disposition"] = f'attachment; filename="regqa-audit.{fmt}"'
    return response


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
        # the chain head now, sealed and appended to the checkpoint file outside the database
        "checkpoint": anchor.checkpoint_head(),
        "verify": "manage.py audit verify; each entry's hash is SHA-256 of its canonical JSON (regqa/audit/log.py), "
        "its mac an HMAC-SHA256 of 'entry:SEQ:HASH' under the audit key named by key_id (regqa/audit/anchor.py)",
    }


def as_dict(event: AuditEvent) -> dict:
    return {**entry_fields(event), "hash": event.hash, "key_id": event.key_id, "mac": event.mac}


def jsonl(qs: QuerySet[AuditEvent], head: dict) -> Iterator[str]:
    """First line: {"manifest": ...}; then one event per line. Memory stays flat."""
    yield json.dumps({"manifest": head}, ensure_ascii=False) + "\n"
    for event in qs.iterator(chunk_size=1000):
        yield json.dumps(as_dict(event), ensure_ascii=False) + "\n"


class _Echo:
    """A file that hands back what is written, so csv.writer can feed a streamed response."""

    def write(self, value: str) -> str:
        return value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (=, +, -, @, tab, carriage return first)
    gets a leading apostrophe, so it shows as text; numbers and other text are left as they are.
    Questions and document text are untrusted: "=HYPERLINK(...)" must not become a link."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(header: list[str], rows: Iterable[list]) -> Iterator[str]:
    """CSV text, one line at a time (memory stays flat however many rows), every cell
    spreadsheet-safe (the JSON Lines export stays exact)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([spreadsheet_safe(cell) for cell in row])


def csv_rows(qs: QuerySet[AuditEvent]) -> Iterator[str]:
    def rows() -> Iterator[list]:
        for event in qs.iterator(chunk_size=1000):
            row = as_dict(event)
            row["data"] = json.dumps(row["data"], ensure_ascii=False, sort_keys=True)
            yield [row[c] for c in CSV_COLUMNS]

    return csv_lines(CSV_COLUMNS, rows())
