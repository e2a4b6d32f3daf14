"""The answer memo (PDF) for the compliance file: what it holds, who may make it, and that it is
audited."""

from __future__ import annotations

import io
import types

import pytest
from django.urls import reverse
from pypdf import PdfReader

from regqa.audit import log as audit_log
from regqa.audit.models import AuditEvent, EventKind
from regqa.qa import memo
from regqa.qa.memo import memo_pdf
from regqa.qa.models import Answer

from .factories import AnswerFactory


@pytest.fixture
def answer(users):
    a = AnswerFactory(
        user=users["analyst"],
        question="What counts as a company under Regulation O?",
        answer_text="A company is any corporation or partnership [1].",
        citations=[{"n": 1, "valid": True}],
        model_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        passages=[
            {"n": 1, "chunk_id": 7, "document_id": 3, "document_title": "12 CFR 215 (Regulation O)",
             "document_version": 2, "document_sha256": "ab" * 32, "page_start": 2, "page_end": 3,
             "text": "Company means any corporation, partnership, trust or association.", "score": 0.71,
             "sent_to_model": True},
            {"n": 2, "chunk_id": 8, "document_id": 3, "document_title": "12 CFR 215 (Regulation O)",
             "page_start": 9, "text": "An uncited passage about reports.", "score": 0.4, "sent_to_model": True},
        ],
        verification={"status": "verified", "supported": 1, "total": 1, "sentences": [
            {"text": "A company is any corporation or partnership [1].", "citations": [1], "supported": True,
             "reason": "its words appear together in passage [1]", "checks": []}]},
        quality={"groundedness": {"score": 5, "explanation": "every sentence is supported"},
                 "relevance": {"score": 4, "explanation": "the answer addresses the question’s terms"}},
        routing={"action": "local", "reasons": ["retrieval strength 4 of 5"], "policy_version": 3},
    )  # fmt: skip
    audit_log.record_answer(a)
    return a


def text_of(pdf: bytes) -> str:
    return " ".join((page.extract_text() or "") for page in PdfReader(io.BytesIO(pdf)).pages)


def test_the_memo_holds_everything_the_compliance_file_needs(answer):
    text = " ".join(text_of(memo_pdf(answer)).split())
    event = AuditEvent.objects.get(kind=EventKind.ANSWER)
    for expected in [
        "What counts as a company under Regulation O?",
        "A company is any corporation or partnership [1].",
        "analyst",
        "1 of 1 sentences supported (verified)",
        "Groundedness", "5/5", "Relevance", "4/5", "question’s terms",
        "local (policy version 3): retrieval strength 4 of 5",
        "[1] 12 CFR 215 (Regulation O), version 2, p. 2-3",
        "Company means any corporation, partnership, trust or association.",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        f"#{event.seq}, hash {event.hash}",
    ]:  # fmt: skip
        assert expected in text, expected
    assert "An uncited passage" not in text  # only cited passages


def test_the_asker_and_auditors_download_it_audited_others_cannot(answer, client_for, users):
    response = client_for("analyst").get(reverse("answer_memo", args=[answer.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF") and f"regqa-answer-{answer.pk}.pdf" in response["Content-Disposition"]
    assert client_for("auditor").get(reverse("answer_memo", args=[answer.pk])).status_code == 200
    assert client_for("admin").get(reverse("answer_memo", args=[answer.pk])).status_code == 403
    exported = AuditEvent.objects.filter(kind=EventKind.LOG_EXPORTED, data__format="memo.pdf")
    assert sorted(e.actor for e in exported) == ["analyst", "auditor"]


def test_no_memo_for_an_answer_still_being_written(users, client_for):
    pending = AnswerFactory(user=users["analyst"], status=Answer.Status.PENDING)
    assert client_for("analyst").get(reverse("answer_memo", args=[pending.pk])).status_code == 409


def test_the_answer_page_links_the_memo(answer, client_for):
    page = client_for("analyst").get(reverse("answer_detail", args=[answer.pk])).content.decode()
    assert reverse("answer_memo", args=[answer.pk]) in page


@pytest.mark.parametrize("digest", ["0" * 64, "4" * 64, "ab" * 32, "c" * 64, "f" * 64])
def test_the_audit_hash_is_printed_whole_whatever_its_digits(answer, digest, monkeypatch):
    """64 hex digits in the body font could overflow the column and be split mid-hash (which digits
    are wide decided it: the memo test failed now and then)."""
    monkeypatch.setattr(memo, "audit_entry", lambda a: types.SimpleNamespace(seq=123456, hash=digest))
    assert f"#123456, hash {digest}" in " ".join(text_of(memo_pdf(answer)).split())
