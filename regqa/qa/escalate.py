"""Escalation to the large model: the policy in force, today's usage, the OpenAI-compatible
client, and the flow that streams the large model's answer into the answer the analyst sees.

The decision itself is `routing.route` (pure); this module feeds it from the database and
carries it out. If the large model is down, slow or fails, the analyst keeps the local answer
with a notice, and the failure is logged and audited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from datetime import time as day_start

import openai
from django.conf import settings
from django.db import models
from django.utils import timezone

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind
from regqa.documents.models import Document

from .citations import cited_numbers
from .decision import settle
from .models import Answer, Escalation, EscalationPolicy, EscalationState
from .redact import restore
from .routing import Decision, Usage, route
from .schemas import Routing, RoutingAction

log = logging.getLogger("regqa.escalate")

NOT_COVERED = "NOT COVERED"


class LargeModelError(Exception):
    """The large model could not be reached or failed; the message says how, for the analyst."""


def current_policy() -> EscalationPolicy:
    """The newest policy version; before any is saved, escalation is off (version 0)."""
    return EscalationPolicy.objects.order_by("-pk").first() or EscalationPolicy(mode=EscalationPolicy.Mode.OFF)


def usage_today(user, excluding: int | None = None) -> Usage:
    """Escalations sent today, and those decided but not sent yet (pending: their streams are
    not open), so opening many tabs cannot pass a daily limit. `excluding`: the answer being
    decided, which must not count against itself."""
    since = timezone.make_aware(datetime.combine(timezone.localdate(), day_start.min))
    today = Escalation.objects.filter(created_at__gte=since)
    mine = today.filter(user=user)
    total = models.Sum("tokens_sent")
    pending = list(
        Answer.objects.filter(escalation_state=EscalationState.PENDING, created_at__gte=since)
        .exclude(pk=excluding or 0)
        .values_list("user_id", "routing")
    )
    mine_pending = [routing for user_id, routing in pending if user_id == user.pk]
    return Usage(
        user_escalations=mine.count() + len(mine_pending),
        user_tokens=(mine.aggregate(t=total)["t"] or 0) + sum(r.get("estimated_tokens") or 0 for r in mine_pending),
        global_escalations=today.count() + len(pending),
        global_tokens=(today.aggregate(t=total)["t"] or 0) + sum(r.get("estimated_tokens") or 0 for _, r in pending),
    )


def endpoint_label() -> str:
    return f"{settings.LARGE_LLM_MODEL} at {settings.LARGE_LLM_BASE_URL}" if settings.LARGE_LLM_BASE_URL else ""


def passages_now(answer: Answer) -> list[dict]:
    """The passages the local model had, with each document's classification as it is now
    (an admin may have reclassified it since the question). A document deleted or superseded
    since, or no longer ready, counts as restricted: it is not current text, and is never sent."""
    sent = [p for p in answer.passages if p.get("sent_to_model")]
    current = dict(
        Document.objects.filter(pk__in={p["document_id"] for p in sent}, status=Document.Status.READY).values_list(
            "pk", "sensitivity"
        )
    )
    return [p | {"sensitivity": current.get(p["document_id"], "restricted")} for p in sent]


def decision_now(answer: Answer, *, requested: bool = False) -> tuple[Decision, str]:
    """The routing decision for a finished local answer under everything as it is now: the
    policy in force, the documents' classifications and status, today's usage. With the mode."""
    policy = current_policy()
    groups = set(answer.user.groups.values_list("name", flat=True))
    if answer.user.is_superuser:
        groups.add("superuser")
    decision = route(
        answer.question,
        passages_now(answer),
        answer.status,
        answer.quality,
        groups,
        policy,
        usage_today(answer.user, excluding=answer.pk),
        requested=requested,
        endpoint=settings.LARGE_LLM_BASE_URL,
    )
    return decision, policy.mode


def decide(answer: Answer, *, requested: bool = False) -> Decision:
    """Route a finished local answer under the policy in force and store the decision on it."""
    decision, mode = decision_now(answer, requested=requested)
    apply(answer, decision, mode)
    return decision


def apply(answer: Answer, decision: Decision, mode: str = "", *, sending: bool = False) -> None:
    """Store a routing decision on the answer; an escalation then waits for stream_escalation
    (`sending`: the stream that claimed it is about to send it, so it stays claimed)."""
    stored = decision.model_copy(update={"decided_at": timezone.now().isoformat(), "mode": mode})
    stored.local = answer.routing.get("local")  # the local answer an earlier escalation replaced
    answer.routing = stored.dump()
    if sending:
        answer.escalation_state = EscalationState.STREAMING
    elif decision.action == RoutingAction.ESCALATE:
        answer.escalation_state = EscalationState.PENDING
    elif decision.action == RoutingAction.REFUSE:
        answer.escalation_state = EscalationState.REFUSED
    else:
        answer.escalation_state = EscalationState.NONE
    answer.save(update_fields=["routing", "escalation_state"])


def may_request(answer: Answer, user) -> bool:
    """Whether to offer the analyst the "ask the large model" button on this answer."""
    if answer.user_id != user.pk or not answer.is_final or answer.answered_by == "large":
        return False
    if answer.escalation_state in (EscalationState.PENDING, EscalationState.STREAMING):
        return False
    policy = current_policy()
    groups = set(user.groups.values_list("name", flat=True)) | ({"superuser"} if user.is_superuser else set())
    return policy.mode != "off" and bool(set(policy.allowed_groups) & groups) and bool(settings.LARGE_LLM_BASE_URL)


# ---------------------------------------------------------------------------------------------
# The client


def client():
    return openai.OpenAI(
        base_url=settings.LARGE_LLM_BASE_URL,
        api_key=settings.LARGE_LLM_API_KEY or "not-needed",  # local servers take any key
        timeout=settings.LARGE_LLM_TIMEOUT,
        max_retries=settings.LARGE_LLM_RETRIES,  # the openai client backs off exponentially
    )


def stream_chat(messages: Sequence[Mapping[str, object]], usage: dict | None = None) -> Iterator[str]:
    """Yield the large model's reply as it is written. Fills `usage` (prompt/completion tokens)
    when the server reports them. Raises LargeModelError with a reason an analyst can read."""
    try:
        stream = client().chat.completions.create(
            model=settings.LARGE_LLM_MODEL,
            messages=messages,
            temperature=0.0,
            max_tokens=settings.LARGE_LLM_MAX_TOKENS,
            stream=True,
        )
        for chunk in stream:
            if getattr(chunk, "usage", None) and usage is not None:
                usage["prompt_tokens"] = chunk.usage.prompt_tokens or 0
                usage["completion_tokens"] = chunk.usage.completion_tokens or 0
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content
    except openai.APITimeoutError as exc:
        raise LargeModelError(f"the large model did not answer within {settings.LARGE_LLM_TIMEOUT:g} s") from exc
    except openai.APIConnectionError as exc:
        raise LargeModelError(f"the large model at {settings.LARGE_LLM_BASE_URL} cannot be reached") from exc
    except openai.APIStatusError as exc:
        raise LargeModelError(f"the large model returned an error (HTTP {exc.status_code})") from exc
    except openai.OpenAIError as exc:
        raise LargeModelError(f"the large model failed: {exc}") from exc


def parse_reply(text: str) -> tuple[str, list[int], bool]:
    """(answer, cited passage numbers, found) from the large model's plain-text reply."""
    text = text.strip()
    if not text or text.upper().startswith(NOT_COVERED):
        return "", [], False
    return text, cited_numbers(text), True


# ---------------------------------------------------------------------------------------------
# The flow


def add_found_citations(answer: Answer) -> list[int]:
    """Cite the passage the check found for each supported sentence the model left uncited.

    Large models answering in plain text often leave sentences uncited; the check has already
    found the passage that supports each one. The citation is added to the text (so it links to
    the passage) and listed in `verification["citations_added_by_check"]`, which the answer shows.
    """
    if answer.status != Answer.Status.ANSWERED:
        return []
    text, added = answer.answer_text, []
    for sentence in answer.verification.get("sentences", []):
        n = sentence.get("passage")
        body = sentence["text"].rstrip()
        if sentence["supported"] and not sentence["citations"] and n and body in text:
            stop = body[-1] if body[-1] in ".;:!?" else ""
            text = text.replace(body, f"{body[: len(body) - len(stop)]} [{n}]{stop}", 1)
            added.append(n)
    if added:
        answer.answer_text = text
        known = {c["n"] for c in answer.citations}
        answer.citations += [{"n": n, "valid": True} for n in dict.fromkeys(added) if n not in known]
        answer.verification["citations_added_by_check"] = added
    return added


LOCAL_FIELDS = ["model_name", "status", "answer_text", "citations", "verification", "quality", "quality_min"]
# what an escalation writes: never the whole row, so what others store meanwhile (the asker's
# feedback, an instant quote, a "source amended" flag) is not overwritten with the values read
# when the escalation started
ESCALATION_WRITES = [*LOCAL_FIELDS, "routing", "answered_by", "escalation_state"]


def resend_decision(answer: Answer) -> Decision | None:
    """Decide again, at the moment of sending, whether and what to send: the policy may have been
    changed or switched off, a document reclassified, deleted or superseded, or the budget used
    by other escalations since the decision was stored. The decision now applies (its payload is
    built anew); None when it no longer escalates: the answer then keeps the local answer with a
    notice saying why, nothing is sent, and the refusal is audited."""
    stored = Routing.load(answer.routing)
    decision, mode = decision_now(answer, requested=stored.requested)
    if decision.action == RoutingAction.ESCALATE:
        apply(answer, decision, mode, sending=True)
        return decision
    apply(answer, decision, mode)
    answer.escalation_state = EscalationState.REFUSED
    answer.routing["notice"] = (
        "Not sent to the large model: " + "; ".join(decision.reasons[-1:]) + " (decided again when it was to be sent). "
        "This is the local model's answer."
    )
    answer.save(update_fields=["routing", "escalation_state"])
    audit_log.record(
        EventKind.ANSWER_ESCALATION_REFUSED,
        f"Escalation refused when it was to be sent: {answer.question[:200]}",
        user=answer.user,
        data={"answer_id": answer.pk, "policy_version": decision.policy_version, "reasons": decision.reasons,
              "decided_before": {"policy_version": stored.policy_version, "reasons": stored.reasons}},
    )  # fmt: skip
    return None


def stream_escalation(answer: Answer, *, decide_again: bool = True) -> Iterator[tuple[str, str]]:
    """Send the decision's payload to the large model and stream its answer, yielding
    ("status"|"token", text). Only one stream may run an escalation (like stream_answer). The
    decision is made again first, under everything as it is now (resend_decision);
    `decide_again=False` only for `evaluate routing`, whose decision under the policy it measures
    was made a moment before and is not the one in force."""
    claimed = Answer.objects.filter(pk=answer.pk, escalation_state=EscalationState.PENDING).update(
        escalation_state=EscalationState.STREAMING
    )
    if not claimed:
        return
    answer.refresh_from_db()
    decision = resend_decision(answer) if decide_again else Routing.load(answer.routing)
    if decision is None:
        yield "status", answer.routing["notice"]
        return
    escalation = Escalation.objects.create(
        answer=answer,
        user=answer.user,
        policy_version=decision.policy_version or 0,
        requested=decision.requested,
        base_url=settings.LARGE_LLM_BASE_URL,
        model=settings.LARGE_LLM_MODEL,
        sent=decision.messages,
        redactions=decision.redactions,
        tokens_sent=decision.estimated_tokens,
    )
    yield "status", f"Asking the large model ({settings.LARGE_LLM_MODEL}): {'; '.join(decision.reasons)}."
    started = time.perf_counter()
    pieces: list[str] = []
    usage: dict = {}
    try:
        for piece in stream_chat(decision.messages, usage):
            if not pieces:
                escalation.first_token_ms = round((time.perf_counter() - started) * 1000, 1)
            pieces.append(piece)
            yield "token", piece
        escalation.received = "".join(pieces)
        text, cited, found = parse_reply(restore(escalation.received, decision.placeholders))
        local = {f: getattr(answer, f) for f in LOCAL_FIELDS}
        sent = [p for p in answer.passages if p["n"] in set(decision.sent_passages)]
        yield "status", "Checking the large model's citations..."
        settle(answer, text, cited, found, sent, judge=False)
        add_found_citations(answer)
        answer.routing["local"] = local
        answer.answered_by = "large"
        answer.model_name = f"{settings.LARGE_LLM_MODEL} (large model)"
        answer.escalation_state = EscalationState.DONE
        escalation.status = Escalation.Status.ANSWERED
    except LargeModelError as exc:
        log.warning("answer %s: escalation failed: %s", answer.pk, exc)
        escalation.received = "".join(pieces)
        escalation.status = Escalation.Status.FAILED
        escalation.error = str(exc)
        answer.escalation_state = EscalationState.FAILED
        answer.routing["notice"] = f"The large model could not answer ({exc}). This is the local model's answer."
    except GeneratorExit:
        escalation.status = Escalation.Status.FAILED
        escalation.error = "Stopped: the browser disconnected before the large model finished."
        answer.escalation_state = EscalationState.FAILED
        answer.routing["notice"] = "The large model's answer was interrupted. This is the local model's answer."
        raise
    finally:
        escalation.total_ms = round((time.perf_counter() - started) * 1000, 1)
        answer.routing["large_ms"] = {"first_token": escalation.first_token_ms, "total": escalation.total_ms}
        if usage.get("prompt_tokens"):
            escalation.tokens_sent = usage["prompt_tokens"]
        escalation.tokens_received = usage.get("completion_tokens") or sum(len(p) for p in pieces) // 4
        escalation.save()
        answer.save(update_fields=ESCALATION_WRITES)
        audit_log.record_escalation(answer, escalation)
