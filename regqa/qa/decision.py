"""Decide what the analyst is shown for a model's reply: the answer, quoted passage sentences,
or a decline, from the verification of its sentences and the model's yes/no probability.

It reads the reply and the passages and sets the answer's outcome fields; it runs no model and
sends nothing (answer.py and escalate.py call it for the local and the large model alike).
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from regqa.documents import embed

from . import decision_model
from . import quality as quality_check
from .citations import cited_numbers, strip_citations
from .decision_model import DecisionModel
from .llm import model_name
from .models import Answer
from .verify import content_terms, verify_answer

# An answer that says the passages lack the answer.
REFUSAL = re.compile(
    r"\b(do(?:es)? not (?:state|say|mention|specify|contain|provide|include|address)|no (?:information|mention)|"
    r"not (?:stated|mentioned|specified|provided|covered)|cannot be (?:determined|answered))\b",
    re.I,
)
NOT_COVERED_MESSAGE = "The documents in the library do not cover this question, so RegQA will not guess an answer."
QUOTE_MIN_SIMILARITY = 0.4  # a second quoted sentence must be at least this close

# P(yes) thresholds measured on the FinTextQA tune half (bench/answerability.py, docs/benchmarks.md):
# (when retrieval strength is 5 of 5, when it is lower). Lower ones (bench/answer_thresholds.py) only
# let through questions whose passages lack the gold page. The 0.5B's probability does not separate
# answerable from unanswerable questions: it is not asked.
ANSWERABLE_THRESHOLDS = {"qwen2.5-coder-1.5b-instruct-q4_k_m.gguf": (0.5, 0.6)}

Passage = dict[str, Any]


def answerable_threshold(passages: list[Passage]) -> float:
    """The probability of "yes" below which RegQA declines (0: do not ask): REGQA_ANSWERABLE_THRESHOLD
    (and _WEAK), or the values measured for the model in use. Weaker retrieval asks for more."""
    strong, weak = ANSWERABLE_THRESHOLDS.get(model_name(), (0.0, 0.0))
    if settings.ANSWERABLE_THRESHOLD is not None:
        strong = weak = settings.ANSWERABLE_THRESHOLD
    if settings.ANSWERABLE_THRESHOLD_WEAK is not None:
        weak = settings.ANSWERABLE_THRESHOLD_WEAK
    if not strong:
        return 0.0
    return strong if quality_check.retrieval_strength(passages)["score"] >= 5 else max(strong, weak)


def quote_passages(question: str, draft: str, passages: list[Passage], limit: int = 2) -> str:
    """The passage sentences closest in meaning to the question and a draft answer, each followed
    by its citation: what RegQA shows when the model's own wording cannot be verified. Sentences
    from the passages the draft cites come first; headings and instructions to an AI model are
    never quoted."""
    cited = set(cited_numbers(draft)) & {p["n"] for p in passages}
    pool = [p for p in passages if p["n"] in cited] or passages
    candidates = decision_model.quotable(pool)
    if not candidates:
        return ""
    asked = f"{question} {strip_citations(draft)}".strip()  # with no draft: the question, as the decision embeds it
    candidates = decision_model.most_overlapping(candidates, content_terms(asked))
    vectors = embed.embed_sentences([asked] + [c[1] for c in candidates])
    similarity = vectors[1:] @ vectors[0]
    best = sorted(range(len(candidates)), key=lambda i: -similarity[i])
    chosen = [best[0]] + [i for i in best[1:limit] if similarity[i] >= QUOTE_MIN_SIMILARITY]
    return " ".join(f"{candidates[i][1]} [{candidates[i][0]}]" for i in chosen)


def decline_message(passages: list[Passage], searched: str = "") -> str:
    """What a decline says: "not covered" only when no passage is relevant; otherwise that the
    passages found (shown under it) do not state an answer. Both say what was searched."""
    where = f" ({searched})" if searched else ""
    if any((p.get("score") or 0.0) >= settings.MIN_RELEVANCE for p in passages):
        return (
            f"The passages RegQA found{where} do not state an answer to this question, so it does not give one. "
            "The closest passages are shown below."
        )
    return f"{NOT_COVERED_MESSAGE[:-1]}{where}." if where else NOT_COVERED_MESSAGE


def learned_probability(question: str, passages: list[Passage]) -> tuple[DecisionModel, float, dict[str, float]] | None:
    """The trained decision model's probability that the passages state an answer (None: no model)."""
    model = decision_model.active()
    if model is None or not passages:
        return None
    values = decision_model.signals(question, passages, sentences=model.reads_sentences())
    if not model.applies_to(values):  # a bundle's model, on passages its reranker did not rank
        model = decision_model.trained()
        if model is not None and model.reads_sentences() and not set(decision_model.SENTENCE_SIGNALS) <= set(values):
            values = decision_model.signals(question, passages)
        if model is None or not model.applies_to(values):
            return None
    return model, model.probability(values), values


def _first_unsupported(verification: dict[str, Any]) -> str:
    for i, sentence in enumerate(verification.get("sentences") or [], start=1):
        if not sentence["supported"]:
            ordinal = {1: "first", 2: "second", 3: "third"}.get(i, f"{i}th")
            return f"the draft's {ordinal} sentence is not supported ({sentence['reason']})"
    return "no sentence of the draft is supported by the passage it cites"


def explain(
    outcome: str, verification: dict[str, Any], learned: tuple | None, answerable: float | None, reason: str = ""
) -> dict:
    """One sentence saying why the answer came out as it did, with the probability behind it."""
    if learned is not None:
        model, p, values = learned
        why = f"{p:.0%} that the passages state an answer ({'; '.join(model.drivers(values))})"
        by = f"decision model of {model.source}" if model.source else "decision model"
        record = {"by": by, "probability": round(p, 3), "threshold": round(model.threshold, 3)}
    elif answerable is not None:
        why = f"the local model put the chance that the passages state the answer at {answerable:.0%}"
        record = {"by": "local model", "probability": round(answerable, 3)}
    else:
        why, record = "", {"by": "verification"}
    if outcome == "answered":
        head = (
            "Answered: every sentence is supported by the passage it cites"
            if verification.get("status") == "verified"
            else "Answered in part: " + _first_unsupported(verification)
        )
    elif outcome == "quoted":
        head = "Quoted, not answered: " + _first_unsupported(verification.get("draft_check") or {})
    elif outcome == "early":
        head = "Declined before the model ran"
    else:
        head = f"Declined: {reason}" if reason else "Declined"
    return record | {"outcome": outcome, "explanation": f"{head}; {why}." if why else f"{head}."}


def settle(
    answer: Answer,
    text: str,
    cited: list[int],
    found: bool,
    passages: list[Passage],
    answerable: float | None = None,
    searched: str = "",
    judge: bool = True,
) -> None:
    """Check a model's answer against the passages it was given and set the answer's outcome:
    answered (verified sentences with citations), quoted (the passages state an answer, but the
    model's wording could not be verified: the passage sentences closest to the question, checked
    and cited, with the draft kept) or declined.

    Whether the passages state an answer is decided by the trained decision model when there is
    one (`manage.py train_decision`), else by the local model's probability of "yes" against
    REGQA_ANSWERABLE_THRESHOLD (`judge=False`: not the decision model, for the large model's reply,
    which the policy sent because the local decision was in doubt). Below it the draft is kept as
    `withheld_draft`, never shown as the answer. An answer none of whose sentences the check
    supports is never shown as the answer. Without either signal (a model not asked the question:
    the 0.5B, the large model) a draft the check cannot support is declined, as is a partly
    supported one the model itself doubts: quoting without the question left the 0.5B declining 1
    of 32 unanswerable questions (docs/benchmarks.md).
    """
    numbers = {p["n"] for p in passages}
    learned = learned_probability(answer.question, passages) if judge else None
    threshold = answerable_threshold(passages)
    gate: dict[str, Any] = (
        {} if answerable is None else {"answerability": round(answerable, 3), "answerability_threshold": threshold}
    )
    if learned is not None:
        stated: bool | None = learned[1] >= learned[0].threshold
    else:
        stated = None if answerable is None else answerable >= threshold
    verification: dict[str, Any]
    if stated is False:
        verification = gate | ({"withheld_draft": text} if text else {})
        text = ""  # written first, to stream sooner; withheld: the passages do not state an answer
    elif text:
        verification = verify_answer(text, passages, answer.question) | {"model_says_passages_answer": found} | gate
    else:
        verification = gate
    outcome = "answered"
    if text and stated and verification["status"] == "unverified" and not REFUSAL.search(text):
        quote = quote_passages(answer.question, text, passages)
        checked = verify_answer(quote, passages, answer.question) if quote else {"status": "unverified"}
        if checked["status"] != "unverified":
            draft_check = {k: verification[k] for k in ("status", "sentences") if k in verification}
            verification = checked | {"quoted": True, "draft_text": text, "draft_check": draft_check} | gate
            text, cited, outcome = quote, cited_numbers(quote), "quoted"
    # without either signal, a partly supported answer the model doubts is declined
    doubted = stated is None and not found and verification.get("status") == "partial"
    if not text or verification["status"] == "unverified" or REFUSAL.search(text) or doubted:
        if stated is False:
            reason = "the passages do not state an answer"
        elif not text:
            reason = "the model wrote no answer"
        elif REFUSAL.search(text):
            reason = "the model's answer says the passages lack it"
        elif doubted:
            reason = "the draft is only partly supported and the model doubts the passages state it"
        else:
            reason = "no sentence of the draft is supported by the passages"
        answer.status = Answer.Status.NOT_COVERED
        answer.answer_text = decline_message(passages, searched)
        answer.citations = []
        answer.verification = verification | ({"declined_text": text} if text else {})
        answer.verification["decision"] = explain("declined", verification, learned, answerable, reason)
        answer.quality = {"retrieval_strength": quality_check.retrieval_strength(passages)}
    else:
        answer.status = Answer.Status.QUOTED if outcome == "quoted" else Answer.Status.ANSWERED
        answer.answer_text = text
        answer.citations = [{"n": n, "valid": n in numbers} for n in cited]
        answer.verification = verification | {"decision": explain(outcome, verification, learned, answerable)}
        answer.quality = quality_check.check_quality(answer.question, text, verification, passages)
    answer.quality_min = quality_check.lowest_score(answer.quality)
