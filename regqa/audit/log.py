"""Write and verify the audit trail (a SHA-256 hash chain over AuditEvent rows, each entry sealed
with the audit key and the chain head checkpointed outside the database: anchor.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from regqa.roles import role_of

from . import anchor
from .models import AuditEvent, EventKind

GENESIS = "0" * 64
CHAIN_LOCK = 0x52_45_47_51_41  # "REGQA": the advisory lock that serialises appends on PostgreSQL


def entry_fields(event: AuditEvent) -> dict:
    """Every field of an entry but its hash: what the hash covers, and what exports contain."""
    return {
        "seq": event.seq,
        "created_at": event.created_at.isoformat(),
        "kind": event.kind,
        "actor": event.actor,
        "role": event.role,
        "summary": event.summary,
        "data": event.data,
        "prev_hash": event.prev_hash,
    }


def canonical(event: AuditEvent) -> bytes:
    """The bytes an entry's hash covers: its fields, keys sorted, compact JSON, UTF-8."""
    return json.dumps(entry_fields(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def record(kind: EventKind, summary: str, *, user=None, actor: str = "", data: dict | None = None) -> AuditEvent:
    """Append one event. Writers are serialised, so the chain never forks or loses an entry: on
    PostgreSQL by a transaction-scoped advisory lock taken before the last entry is read (a row
    lock alone is not enough: a writer that waited on it would still read the entry it waited
    for, not the one written meanwhile); SQLite allows one writing transaction at a time anyway."""
    kind = EventKind(kind)  # a kind that is not listed is a programming error: fail loudly
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK])
        last = AuditEvent.objects.order_by("-seq").only("seq", "hash").first()
        event = AuditEvent(
            seq=(last.seq + 1) if last else 1,
            created_at=timezone.now(),
            kind=kind.value,
            actor=(user.get_username() if user is not None and user.is_authenticated else actor)[:150],
            role=role_of(user)[:100] if user is not None else "",
            summary=summary[:500],
            data=json.loads(json.dumps(data or {}, default=str)),  # exactly what the database returns
            prev_hash=last.hash if last else GENESIS,
        )
        event.hash = compute_hash(event)
        event.key_id, event.mac = anchor.seal_entry(event.seq, event.hash)
        event.save()
        if event.seq % settings.AUDIT_CHECKPOINT_EVERY == 0:
            transaction.on_commit(lambda: anchor.write_checkpoint(event.seq, event.hash))
    return event


@dataclass
class Verification:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str = ""
    last_hash: str = GENESIS
    checkpoints: int = 0  # genuine checkpoints the chain was held against


def verify() -> Verification:
    """Walk the chain in order and report the first entry that is missing, altered, re-linked or
    not sealed with the audit key; then hold the chain against every genuine checkpoint (anchor.py):
    a checkpointed entry whose hash changed, or entries deleted after a checkpoint."""
    previous_hash, expected_seq, checked = GENESIS, 1, 0
    points, problems = anchor.checkpoints()
    if problems:
        return Verification(False, 0, None, problems[0])
    wanted = {int(p["seq"]): p for p in points}
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return Verification(False, checked, expected_seq, f"entry #{expected_seq} is missing", previous_hash)
        if event.prev_hash != previous_hash:
            return Verification(False, checked, event.seq, f"entry #{event.seq} does not link to the entry before it")
        if compute_hash(event) != event.hash:
            return Verification(False, checked, event.seq, f"entry #{event.seq} was changed after it was written")
        problem = anchor.entry_problem(event.seq, event.hash, event.key_id, event.mac)
        if problem:
            return Verification(False, checked, event.seq, problem)
        point = wanted.get(event.seq)
        if point is not None and point["hash"] != event.hash:
            return Verification(
                False, checked, event.seq, f"entry #{event.seq} no longer matches the checkpoint of {point['at']}"
            )
        previous_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    beyond = [p for p in points if int(p["seq"]) >= expected_seq]
    if beyond:
        point = max(beyond, key=lambda p: int(p["seq"]))
        return Verification(
            False,
            checked,
            expected_seq,
            f"entries after #{expected_seq - 1} are missing: the checkpoint of {point['at']} recorded the chain "
            f"up to entry #{point['seq']}",
            previous_hash,
        )
    return Verification(True, checked, last_hash=previous_hash, checkpoints=len(points))


def _asked(answer) -> dict:
    """What was asked and shown: the part of an answer known before any model runs."""
    return {
        "answer_id": answer.pk,
        "question": answer.question,
        "filters": answer.filters,
        "passages": answer.passages,
        "retrieval_bundle": answer.retrieval_bundle,
        "retrieval_ms": answer.retrieval_ms,
    } | ({"follow_up": answer.follow_up} if answer.follow_up else {})  # the thread and the rewrite


def record_question(answer) -> AuditEvent:
    """A question as it was asked, with the passages shown, before any model runs (so a question
    whose answer is never opened still leaves its trace)."""
    return record(EventKind.QUESTION_ASKED, f"Asked: {answer.question[:200]}", user=answer.user, data=_asked(answer))


def record_answer(answer, prompt: list[dict] | None = None, model_sha256: str = "") -> AuditEvent:
    """The full record of one answer: question, passages as they were, prompt, result."""
    return record(
        EventKind.ANSWER,
        f"{answer.get_status_display()}: {answer.question[:200]}",
        user=answer.user,
        data=_asked(answer)
        | {
            "status": answer.status,
            "answer": answer.answer_text,
            "citations": answer.citations,
            "verification": answer.verification,
            "quality": answer.quality,
            "model": answer.model_name,
            "model_sha256": model_sha256,
            "prompt": prompt,
            "first_token_ms": answer.first_token_ms,
            "total_ms": answer.total_ms,
            "check_ms": answer.check_ms,
            "error": answer.error,
            "routing": routing_record(answer.routing),
        },
    )


def routing_record(routing: dict) -> dict:
    """The routing decision as audited: reasons, policy version, and the exact redacted payload;
    not the placeholder map (it holds the identifiers that redaction kept in)."""
    return {k: v for k, v in routing.items() if k != "placeholders"}


def record_escalation(answer, escalation) -> AuditEvent:
    """What left the building for the large model, what came back, and what the analyst got."""
    return record(
        EventKind.ANSWER_ESCALATED,
        f"Escalation {escalation.get_status_display().lower()}: {answer.question[:200]}",
        user=answer.user,
        data={
            "answer_id": answer.pk,
            "escalation_id": escalation.pk,
            "status": escalation.status,
            "requested": escalation.requested,
            "policy_version": escalation.policy_version,
            "reasons": answer.routing.get("reasons", []),
            "withheld_passages": answer.routing.get("withheld_passages", []),
            "endpoint": escalation.base_url,
            "model": escalation.model,
            "sent": escalation.sent,
            "redactions": escalation.redactions,
            "received": escalation.received,
            "tokens_sent": escalation.tokens_sent,
            "tokens_received": escalation.tokens_received,
            "first_token_ms": escalation.first_token_ms,
            "total_ms": escalation.total_ms,
            "error": escalation.error,
            "answer_status": answer.status,
            "answer": answer.answer_text,
            "citations": answer.citations,
            "verification": answer.verification,
            "quality": answer.quality,
        },
    )


def record_policy(policy, user, actor: str = "") -> AuditEvent:
    fields = [f.name for f in policy._meta.fields if f.name not in ("id", "created_by", "created_at")]
    return record(
        EventKind.POLICY_CHANGED,
        f"Escalation policy v{policy.version}: {policy.get_mode_display()}",
        user=user,
        actor=actor,
        data={"version": policy.version, **{name: getattr(policy, name) for name in fields}},
    )


def record_document(kind: EventKind, document, user=None, actor: str = "") -> AuditEvent:
    kind = EventKind(kind)
    return record(
        kind,
        f"{kind.value.split('.')[-1].capitalize()}: {document.title}",
        user=user,
        actor=actor,
        data={
            "document_id": document.pk,
            "title": document.title,
            "file": document.original_name,
            "sha256": document.sha256,
            "size_bytes": document.size_bytes,
            "chunks": document.chunk_count,
            "version": document.version,
            "supersedes": document.supersedes_id,
            "sensitivity": document.sensitivity,
            "issuer": document.issuer,
            "jurisdiction": document.jurisdiction,
            "doc_type": document.doc_type,
            "effective_date": document.effective_date.isoformat() if document.effective_date else None,
            "tags": document.tags,
        },
    )
