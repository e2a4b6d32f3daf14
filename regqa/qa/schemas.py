"""The typed records stored in the JSON columns of answers and escalations.

One place says what each JSON column holds: `Answer.passages` (PassageSnapshot), `.verification`
(Verification), `.quality` (Score per criterion), `.routing` (Routing) and the payload of an
`Escalation` (ChatMessage). Writers build these records and store `.dump()`; readers use
`Record.load(row_value)`. Pydantic, because it validates what is read back (a row written by an
older RegQA loads, and a wrong type fails loudly) and dumps to exactly the JSON we store. Unknown
keys are kept, not dropped, so a record round-trips whatever version wrote it.
No database access here: this module only describes data.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self, TypedDict

from pydantic import BaseModel, ConfigDict, Field


class VerificationStatus(StrEnum):
    VERIFIED = "verified"  # every sentence supported
    PARTIAL = "partial"
    UNVERIFIED = "unverified"  # no sentence supported


class RoutingAction(StrEnum):
    LOCAL = "local"  # the local answer stands
    ESCALATE = "escalate"  # send the redacted payload to the large model
    REFUSE = "refuse"  # escalation wanted but not allowed by the policy


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> Self:
        return cls.model_validate(data or {})

    def dump(self) -> dict[str, Any]:
        """The JSON stored: the fields that were set (a record written without a field stays so)."""
        return self.model_dump(mode="json", exclude_unset=True)


class Passage(Record):
    """A retrieved passage, as retrieval returns it."""

    chunk_id: int
    document_id: int
    document_title: str
    section: str = ""
    page_start: int | None = None
    page_end: int | None = None
    text: str
    score: float  # cosine similarity to the question (what "covered" and the UI use)
    external_id: str = ""
    document_sha256: str = ""  # which version of the document the passage came from
    document_version: int = 1
    sensitivity: str = "internal"  # the document's classification, which governs escalation
    bundle: str = ""  # the retrieval bundle that ranked it ("": the untrained ranking)
    rerank: float | None = None  # that bundle's ranker score (a signal of the answer decision)
    also_in: list[dict[str, Any]] = Field(default_factory=list)  # the same text in other documents

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PassageSnapshot(Passage):
    """A passage as stored with an answer: numbered as the model saw it."""

    n: int
    sent_to_model: bool = False


class SpanCheck(Record):
    """One answer sentence checked against one passage."""

    n: int  # passage number
    supported: bool
    lexical: float
    semantic: float
    span: tuple[int, int] | None  # supporting span in the passage text
    reason: str


class SentenceCheck(Record):
    text: str
    citations: list[int]
    supported: bool
    reason: str
    checks: list[SpanCheck] = Field(default_factory=list)
    passage: int | None = None  # the passage that supports it (or came closest)
    span: tuple[int, int] | None = None


class Verification(Record):
    """The sentence-by-sentence check of an answer, and what the decision added to it."""

    status: VerificationStatus | None = None
    supported: int = 0
    total: int = 0
    sentences: list[SentenceCheck] = Field(default_factory=list)
    model_says_passages_answer: bool | None = None  # the model's written verdict
    answerability: float | None = None  # the model's P(yes) that the passages state the answer
    answerability_threshold: float | None = None
    withheld_draft: str | None = None  # below the threshold: written, never shown as the answer
    quoted: bool | None = None  # the answer is passage sentences, the draft is `draft_text`
    draft_text: str | None = None
    declined_text: str | None = None  # a written reply that was declined
    citations_added_by_check: list[int] | None = None  # large model: sentences the check cited
    draft_check: dict[str, Any] | None = None  # quoted: the verification of the draft it replaced
    decision: dict[str, Any] | None = None  # outcome, what decided it, its probability, one-sentence why


class Score(Record):
    """One quality criterion."""

    score: int = Field(ge=1, le=5)
    explanation: str


def load_quality(data: dict[str, Any] | None) -> dict[str, Score]:
    return {key: Score.load(value) for key, value in (data or {}).items()}


class ChatMessage(TypedDict):
    """One chat message as sent to a model (a plain dict, as the OpenAI client takes it)."""

    role: str
    content: str


class Routing(Record):
    """Who answers: the routing decision with its reasons and policy version (routing.route),
    and what the escalation added (the local answer it replaced, notices, timings)."""

    action: RoutingAction
    reasons: list[str] = Field(default_factory=list)
    policy_version: int | None = None
    requested: bool = False
    triggers: list[str] = Field(default_factory=list)
    messages: list[ChatMessage] = Field(default_factory=list)  # the redacted payload (escalate only)
    placeholders: dict[str, str] = Field(default_factory=dict)  # to restore the answer; never sent
    redactions: dict[str, int] = Field(default_factory=dict)
    sent_passages: list[int] = Field(default_factory=list)  # passage numbers sent
    withheld_passages: list[int] = Field(default_factory=list)  # above the allowed classification
    estimated_tokens: int = 0
    decided_at: str | None = None
    mode: str | None = None  # the policy's mode when decided
    local: dict[str, Any] | None = None  # the local answer's fields, when the large model replaced it
    notice: str | None = None
    large_ms: dict[str, float | None] | None = None  # the large model's first token and total

    def dump(self) -> dict[str, Any]:
        """Every decision field (an empty list says "none"); the escalation's fields once set."""
        return self.model_dump(mode="json", exclude_none=True)
