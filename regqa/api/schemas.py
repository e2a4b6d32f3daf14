"""What the REST API reads and returns (django-ninja schemas, so the OpenAPI document states them)."""

from __future__ import annotations

import datetime
from typing import Any

from ninja import Schema
from pydantic import Field


class Error(Schema):
    """Every error: a stable code, the message the web page would show, and field messages."""

    code: str = Field(description="not_authenticated, forbidden, not_found, invalid, too_large, conflict")
    message: str
    fields: dict[str, list[str]] = Field(default_factory=dict)


class Me(Schema):
    username: str
    roles: list[str]
    permissions: list[str]


class AskIn(Schema):
    question: str = Field("", description="The question, in words (at most REGQA_MAX_QUESTION_CHARS characters).")
    issuer: str = Field("", description="Only documents of this regulator / issuer.")
    jurisdiction: str = ""
    doc_type: str = ""
    effective_from: str = Field("", description="Only documents in effect from this date (YYYY-MM-DD).")
    effective_until: str = Field("", description="Only documents in effect until this date (YYYY-MM-DD).")


class PassageOut(Schema):
    n: int = Field(description="The passage's number, as citations [n] name it.")
    chunk_id: int
    document_id: int
    document_title: str
    document_version: int = 1
    section: str = ""
    page_start: int | None = None
    page_end: int | None = None
    text: str
    score: float
    sent_to_model: bool
    url: str = Field(description="The cited page in the web app, with the passage highlighted.")


class Timings(Schema):
    retrieval_ms: float | None
    first_token_ms: float | None
    total_ms: float | None
    check_ms: float | None


class AnswerOut(Schema):
    id: int
    url: str
    question: str
    asked_by: str
    created_at: datetime.datetime
    status: str = Field(description="pending, streaming, answered, quoted, not_covered, failed, abandoned")
    status_label: str
    answer: str
    citations: list[dict[str, Any]]
    passages: list[PassageOut]
    verification: dict[str, Any] = Field(description="Each sentence checked against the passage it cites.")
    quality: dict[str, Any] = Field(description="The five quality scores (1-5) with their explanations.")
    quality_min: int | None
    routing: dict[str, Any] = Field(description="The escalation policy's decision, with its reasons and version.")
    escalation_state: str
    answered_by: str
    model: str
    retrieval_bundle: str
    filters: dict[str, str]
    error: str
    feedback: str = Field(description="The asker's latest feedback: helpful, not_helpful or empty.")
    source_amended: bool = Field(description="A newer version of a cited document changed or removed the cited text.")
    amendments: list[dict[str, Any]] = Field(description="Each cited passage amended: old and new text, versions.")
    timings: Timings


class AnswerList(Schema):
    count: int
    items: list[AnswerOut]


class DocumentOut(Schema):
    id: int
    title: str
    status: str = Field(description="queued, processing, ready, failed, interrupted, superseded, ...")
    status_label: str
    status_detail: str
    progress: int
    page_count: int
    passage_count: int
    version: int
    supersedes: int | None
    issuer: str
    jurisdiction: str
    doc_type: str
    effective_date: datetime.date | None
    sensitivity: str
    tags: str
    original_name: str
    sha256: str
    size_bytes: int
    uploaded_by: str
    created_at: datetime.datetime
    ingested_at: datetime.datetime | None


class DocumentList(Schema):
    count: int
    items: list[DocumentOut]


class ChainPoint(Schema):
    seq: int
    hash: str


class Manifest(Schema):
    """Ties an export to the hash chain (README, "Audit trail"): count, first and last entries."""

    format: str
    filter: dict[str, Any]
    count: int
    exported_at: str
    exported_by: str
    first: ChainPoint | None
    last: ChainPoint | None
    checkpoint: Any
    verify: str
