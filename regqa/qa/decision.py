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

from . import quality as quality_check
from .citations import cited_numbers, strip_citations
from .llm import model_name
from .models import Answer
from .prompts import INJECTION
from .verify import passage_spans, verify_answer

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


def _clean(text: str) -> str:
    return " ".join(text.split())


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
    from the passages the draft cites come first; instructions to an AI model are never quoted."""
    cited = set(cited_numbers(draft)) & {p["n"] for p in passages}
    pool = [p for p in passages if p["n"] in cited] or passages
    candidates = []
    for p in pool:
        for a, b in passage_spans(p["text"]):
            sentence = _clean(p["text"][a:b])
            if 4 <= len(sentence.split()) <= 80 and not INJECTION.search(sentence):
                candidates.append((p["n"], sentence if sentence[-1] in ".:;!?" else f"{sentence}."))
    if not candidates:
        return ""
    vectors = embed.embed_passages([f"{question} {strip_citations(draft)}"] + [c[1] for c in candidates])
    similarity = vectors[1:] @ vectors[0]
    best = sorted(range(len(candidates)), key=lambda i: -similarity[i])
    chosen = [best[0]] + [i for i in best[1:limit] if similarity[i] >= QUOTE_MIN_SIMILARITY]
    return " ".join(f"{candidates[i][1]} [{candidates[i][0]}]" for i in chosen)


def settle(
    answer: Answer, text: str, cited: list[int], found: bool, passages: list[Passage], answerable: float | None = None
) -> None:
    """Check a model's answer against the passages it was given and set the answer's status,
    text, citations, verification and quality check from the result.

    Declined: no answer, an answer that says the passages lack it, or (local model) a probability
    below REGQA_ANSWERABLE_THRESHOLD that the passages state the answer (the draft is then kept as
    `withheld_draft` in the verification, shown folded, never as the answer). An answer none of whose
    sentences the check can support is never shown as the answer. If the model said the passages
    state it (`answerable` at or above the threshold), RegQA quotes the passage sentences closest
    to it instead, keeping the draft; otherwise (no such question asked: the 0.5B, the large
    model) it declines: quoting without the question left the 0.5B declining 1 of 32 unanswerable
    questions (docs/benchmarks.md).
    The model's written verdict (`found`) is recorded; it decides only for models not asked the
    question (a partly supported answer it doubts is declined): the default model's verdict said
    "stated" for 41 of 41 tune questions, answerable or not (docs/benchmarks.md).
    """
    numbers = {p["n"] for p in passages}
    threshold = answerable_threshold(passages)
    gate: dict[str, Any] = (
        {} if answerable is None else {"answerability": round(answerable, 3), "answerability_threshold": threshold}
    )
    verification: dict[str, Any]
    if answerable is not None and answerable < threshold:
        verification = gate | ({"withheld_draft": text} if text else {})
        text = ""  # written first, to stream sooner; withheld: the model doubts the passages state it
    elif text:
        verification = verify_answer(text, passages, answer.question) | {"model_says_passages_answer": found} | gate
    else:
        verification = gate
    if text and answerable is not None and verification["status"] == "unverified" and not REFUSAL.search(text):
        quote = quote_passages(answer.question, text, passages)
        checked = verify_answer(quote, passages, answer.question) if quote else {"status": "unverified"}
        if checked["status"] != "unverified":
            verification = checked | {"quoted": True, "draft_text": text} | gate
            text, cited = quote, cited_numbers(quote)
    # without the answerability question, a partly supported answer the model doubts is declined
    doubted = answerable is None and not found and verification.get("status") == "partial"
    if not text or verification["status"] == "unverified" or REFUSAL.search(text) or doubted:
        answer.status = Answer.Status.NOT_COVERED
        answer.answer_text = NOT_COVERED_MESSAGE
        answer.citations = []
        answer.verification = verification | ({"declined_text": text} if text else {})
        answer.quality = {"retrieval_strength": quality_check.retrieval_strength(passages)}
    else:
        answer.status = Answer.Status.ANSWERED
        answer.answer_text = text
        answer.citations = [{"n": n, "valid": n in numbers} for n in cited]
        answer.verification = verification
        answer.quality = quality_check.check_quality(answer.question, text, verification, passages)
    answer.quality_min = quality_check.lowest_score(answer.quality)
