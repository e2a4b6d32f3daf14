"""The quality check every answer gets: five named criteria, each a score from 1 to 5 with a
one-sentence explanation, in the manner of small judge models.

All five are deterministic. A local-model judge was considered for relevance and completeness;
on 2 cores a judge call on the default 1.5B model costs 2-3 s (about 150 prompt tokens at
100 tokens/s plus 20 generated at 15 tokens/s), which alone would use the 30% budget the check
is allowed on a 10 s answer. The checks below cost tens of milliseconds.
"""

from __future__ import annotations

import re

from django.conf import settings

from regqa.documents import embed

from .schemas import Score
from .verify import content_terms

CRITERIA = {
    "groundedness": "Groundedness",
    "citation_accuracy": "Citation accuracy",
    "relevance": "Relevance",
    "completeness": "Completeness",
    "retrieval_strength": "Retrieval strength",
}
# Words that frame a question rather than say what it is about.
QUESTION_WORDS = content_terms(
    "what which who whom whose when where why how does do is are can could should would explain describe "
    "list give tell define mean means meaning purpose example examples difference between required requirement "
    "regulation rule rules section part"
)
PART_SPLIT = re.compile(r"\?\s+|;\s+|\s+and\s+(?=(?:what|which|who|when|where|why|how|does|do|is|are|can)\b)", re.I)


def _score(share: float) -> int:
    """A share in [0, 1] as a 1-5 score."""
    if share >= 0.95:
        return 5
    if share >= 0.75:
        return 4
    if share >= 0.5:
        return 3
    if share > 0:
        return 2
    return 1


def _item(score: int, explanation: str) -> dict:
    return Score(score=max(1, min(5, int(score))), explanation=explanation).dump()


def retrieval_strength(passages: list[dict]) -> dict:
    if not passages:
        return _item(1, "No passage was found for the question.")
    best = max(p.get("score", 0.0) for p in passages)
    strong = sum(p.get("score", 0.0) >= settings.MIN_RELEVANCE for p in passages)
    floor = settings.MIN_RELEVANCE
    # The relevance threshold maps to 2; each further 0.1 of cosine similarity adds a point.
    score = 1 if best < floor else 2 + int((best - floor) / 0.1)
    return _item(
        score,
        f"The best passage has similarity {best:.2f} to the question; "
        f"{strong} of {len(passages)} pass the relevance threshold ({floor:.2f}).",
    )


def question_parts(question: str) -> list[str]:
    parts = [p.strip(" ?") for p in PART_SPLIT.split(question) if p and p.strip(" ?")]
    return [p for p in parts if content_terms(p) - QUESTION_WORDS] or [question]


def check_quality(question: str, answer_text: str, verification: dict, passages: list[dict]) -> dict:
    """Scores for an answer (answer_text non-empty) given its verification and passages."""
    sentences = verification.get("sentences", [])
    total, supported = len(sentences), verification.get("supported", 0)
    grounded = supported / total if total else 0.0
    result = {
        "groundedness": _item(
            _score(grounded), f"{supported} of {total} sentences are supported by the passages they rely on."
        )
    }

    cited = [(s, n) for s in sentences for n in s["citations"]]
    good = sum(any(c["n"] == n and c["supported"] for c in s["checks"]) for s, n in cited)
    if not cited:
        result["citation_accuracy"] = _item(1, "The answer cites no passage.")
    else:
        result["citation_accuracy"] = _item(
            _score(good / len(cited)),
            f"{good} of {len(cited)} citations point to a passage that supports the sentence.",
        )

    q_terms = content_terms(question) - QUESTION_WORDS
    a_terms = content_terms(answer_text)
    overlap = len(q_terms & a_terms) / len(q_terms) if q_terms else 1.0
    vectors = embed.embed_passages([question, answer_text])
    similarity = float(vectors[0] @ vectors[1])
    # Similarity of a relevant answer to its question runs 0.5-0.9 with MiniLM; unrelated text < 0.3.
    relevance = max(overlap, min(1.0, max(0.0, (similarity - 0.2) / 0.5)))
    result["relevance"] = _item(
        _score(relevance),
        f"The answer uses {overlap:.0%} of the question's key terms; semantic similarity {similarity:.2f}.",
    )

    parts = question_parts(question)
    addressed, missing = 0, []
    for part in parts:
        terms = content_terms(part) - QUESTION_WORDS
        covered = len(terms & a_terms) / len(terms) if terms else 1.0
        if covered >= 0.5:
            addressed += 1
        else:
            missing.append(part)
    if len(parts) == 1:
        explanation = f"Single question; the answer covers {overlap:.0%} of its key terms."
        completeness = _score(min(1.0, overlap / 0.6)) if supported else min(2, _score(overlap))
    else:
        explanation = f"The question has {len(parts)} parts; the answer addresses {addressed}."
        if missing:
            explanation += f" Not addressed: \u201c{missing[0][:80]}\u201d."
        completeness = _score(addressed / len(parts))
    result["completeness"] = _item(completeness, explanation)
    result["retrieval_strength"] = retrieval_strength(passages)
    return result


def validate(quality: dict) -> dict:
    """Raise ValueError unless `quality` holds every criterion with an int score 1-5 and a
    one-sentence explanation (the stored schema the UI, router and audit log rely on)."""
    for key in CRITERIA:
        item = quality.get(key)
        if not isinstance(item, dict) or set(item) != {"score", "explanation"}:
            raise ValueError(f"{key}: expected {{score, explanation}}, got {item!r}")
        if not isinstance(item["score"], int) or not 1 <= item["score"] <= 5:
            raise ValueError(f"{key}: score {item['score']!r} is not an integer from 1 to 5")
        if not isinstance(item["explanation"], str) or not item["explanation"].strip():
            raise ValueError(f"{key}: the explanation is empty")
    return quality


def lowest_score(quality: dict) -> int | None:
    """The lowest of the scores (what the auditors' "quality at most" filter looks at)."""
    scores = [v["score"] for k, v in quality.items() if k in CRITERIA]
    return min(scores) if scores else None
