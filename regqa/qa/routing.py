"""Decide who answers: the local model, or the large one, under the escalation policy.

`route` is a pure function of its inputs (question, passages, the local answer and its quality
check, the user's groups, the policy, today's usage): no database, no network, so every rule can
be tested from a table. It returns one of three decisions, each with human-readable reasons:

- "local": the local answer stands (nothing triggered, or escalation is off);
- "escalate": send `messages` (already redacted: the exact payload that will leave) to the large model;
- "refuse": escalation was wanted but the policy does not allow it (role, sensitivity, budget...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from regqa.documents.models import Document

from .prompts import large_prompt
from .redact import Redactor
from .schemas import Routing, RoutingAction

SENSITIVITY_ORDER = list(Document.Sensitivity.values)  # least to most sensitive

# Questions that compare documents or need several steps of reasoning: small models do them badly.
COMPLEX = re.compile(
    r"\b(?:compare|comparison|contrast|differen(?:ce|t|ces)|differ|versus|vs\.?|both|whereas|"
    r"how (?:does|do) .{3,80} relate|in (?:each|all) of|calculate|compute|step by step|"
    r"what happens if|and (?:then|also) (?:what|how|when|which|who))\b",
    re.I,
)


@dataclass
class Usage:
    """Escalations and tokens sent today, by this user and in all."""

    user_escalations: int = 0
    user_tokens: int = 0
    global_escalations: int = 0
    global_tokens: int = 0


Decision = Routing  # what `route` returns is what the answer stores (schemas.Routing)


def estimate_tokens(messages: list[dict]) -> int:
    """About four characters per token, plus a few per message (English text, BPE tokenisers)."""
    return sum(len(m["content"]) // 4 + 4 for m in messages)


def triggers(question: str, local_status: str, quality: dict, policy) -> list[str]:
    """The automatic triggers the local answer sets off, as reasons."""
    found = []

    def score(key: str) -> int | None:
        return (quality.get(key) or {}).get("score")

    if policy.escalate_on_decline and local_status == "not_covered":
        found.append("the local model declined to answer")
    if policy.escalate_on_decline and local_status == "quoted":
        found.append("the local model's answer could not be verified (the passages were quoted instead)")
    if policy.escalate_on_decline and local_status == "failed":
        found.append("the local model failed")
    checks = [
        ("retrieval_strength", "retrieval strength", policy.min_retrieval_score),
        ("groundedness", "groundedness", policy.min_groundedness),
        ("citation_accuracy", "citation accuracy", policy.min_citation_accuracy),
    ]
    for key, name, threshold in checks:
        value = score(key)
        if threshold and value is not None and value < threshold:
            found.append(f"{name} scored {value}/5, below the policy's {threshold}")
    if policy.escalate_complex and COMPLEX.search(question):
        found.append("the question compares or needs several steps of reasoning")
    return found


def route(
    question: str,
    passages: list[dict],
    local_status: str,
    quality: dict,
    user_groups: set[str],
    policy,
    usage: Usage,
    *,
    requested: bool = False,
    endpoint: str = "",
) -> Decision:
    """The routing decision. `passages` are the passages the local model had (dicts with n, text,
    document_title, page_start, section, sensitivity); `policy` an EscalationPolicy (saved or not)."""
    version = policy.version

    def decide(action: RoutingAction, *reasons: str, **extra: Any) -> Decision:
        return Decision(action=action, reasons=list(reasons), policy_version=version, requested=requested, **extra)

    if policy.mode == "off":
        if requested:
            return decide(RoutingAction.REFUSE, "escalation is switched off by the policy")
        return decide(RoutingAction.LOCAL, "escalation is switched off by the policy")
    fired = [] if requested else triggers(question, local_status, quality, policy)
    if not requested:
        if policy.mode != "automatic":
            return decide(RoutingAction.LOCAL, "escalation happens only on request")
        if (quality.get("retrieval_strength") or {}).get("score") == 1:
            return decide(
                RoutingAction.LOCAL,
                "no passage is relevant to the question, so the large model would have nothing to answer from",
            )
        if not fired:
            return decide(RoutingAction.LOCAL, "the local answer passed every check the policy sets")
    why = ["the analyst asked for the large model"] if requested else fired
    if not set(policy.allowed_groups) & set(user_groups):
        roles = ", ".join(policy.allowed_groups) or "no role"
        return decide(RoutingAction.REFUSE, *why, f"your role may not escalate (allowed: {roles})", triggers=fired)
    if not endpoint:
        return decide(RoutingAction.REFUSE, *why, "no large model is configured", triggers=fired)
    if not passages:
        return decide(RoutingAction.REFUSE, *why, "there are no passages to send", triggers=fired)
    limit = SENSITIVITY_ORDER.index(policy.max_sensitivity)
    allowed = [p for p in passages if SENSITIVITY_ORDER.index(p.get("sensitivity") or "restricted") <= limit]
    withheld = [p["n"] for p in passages if p not in allowed]
    if not allowed:
        return decide(
            RoutingAction.REFUSE,
            *why,
            f"every passage is classified above {policy.max_sensitivity}, the highest the policy lets leave",
            triggers=fired,
            withheld_passages=withheld,
        )
    if usage.user_escalations >= policy.user_daily_escalations:
        return decide(
            RoutingAction.REFUSE, *why, f"your daily limit of {policy.user_daily_escalations} escalations is used up"
        )
    if usage.global_escalations >= policy.global_daily_escalations:
        return decide(
            RoutingAction.REFUSE,
            *why,
            f"today's limit of {policy.global_daily_escalations} escalations for everyone is used up",
        )
    redactor = Redactor(patterns=list(policy.redact_patterns), terms=policy.terms)
    messages = large_prompt(question, allowed, redactor.redact)
    tokens = estimate_tokens(messages)
    if usage.user_tokens + tokens > policy.user_daily_tokens:
        return decide(
            RoutingAction.REFUSE,
            *why,
            f"sending about {tokens} tokens would pass your daily limit of {policy.user_daily_tokens} "
            f"({usage.user_tokens} used)",
        )
    if usage.global_tokens + tokens > policy.global_daily_tokens:
        return decide(
            RoutingAction.REFUSE,
            *why,
            f"sending about {tokens} tokens would pass today's limit of {policy.global_daily_tokens} for everyone",
        )
    reasons = [*why]
    if withheld:
        reasons.append(
            f"passages {', '.join(map(str, withheld))} are classified above {policy.max_sensitivity} and are not sent"
        )
    counts = redactor.counts()
    if counts:
        reasons.append("redacted before sending: " + ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())))
    return decide(
        RoutingAction.ESCALATE,
        *reasons,
        triggers=fired,
        messages=messages,
        placeholders=redactor.placeholders,
        redactions=counts,
        sent_passages=[p["n"] for p in allowed],
        withheld_passages=withheld,
        estimated_tokens=tokens,
    )
