"""Feedback on answers: given by the asker (helpful or not, wrong passages, a comment), audited,
shown and filtered for auditors, exported as training pairs for retrieval."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from regqa.audit.models import AuditEvent, EventKind
from regqa.documents.models import Document
from regqa.qa.evaluate import hits_per_rank, read_questions
from regqa.qa.models import Answer, Feedback
from regqa.qa.schemas import PassageSnapshot

from .factories import AnswerFactory, ChunkFactory, DocumentFactory


def passage(n: int, chunk, **extra) -> dict:
    return {
        "n": n,
        "chunk_id": chunk.pk,
        "document_id": chunk.document_id,
        "document_title": chunk.document.title,
        "page_start": chunk.page_start,
        "page_end": chunk.page_end,
        "text": chunk.text,
        "score": 0.8,
        "external_id": chunk.external_id,
        "sent_to_model": True,
        **extra,
    }


@pytest.fixture
def answered(users):
    """An analyst's answer citing [1] (an imported passage) and [2] (a PDF page), not [3]."""
    imported = ChunkFactory(external_id="GEN-3.2.1", document=DocumentFactory(original_name=""))
    pdf = ChunkFactory(document=DocumentFactory(original_name="12cfr215.pdf"), page_start=2, page_end=2)
    other = ChunkFactory(document=pdf.document, page_start=5, page_end=5)
    return AnswerFactory(
        user=users["analyst"],
        question="What counts as a company?",
        answer_text="A company is a corporation [1]. Also a partnership [2].",
        citations=[{"n": 1, "valid": True}, {"n": 2, "valid": True}],
        passages=[passage(1, imported), passage(2, pdf), passage(3, other)],
    )


def post(client, answer, **data):
    return client.post(reverse("answer_feedback", args=[answer.pk]), data, headers={"HX-Request": "true"})


def test_the_asker_gives_feedback_once_and_can_change_it_audited(client_for, answered):
    client = client_for("analyst")
    page = client.get(reverse("answer_detail", args=[answered.pk])).content.decode()
    assert f'id="feedback-{answered.pk}"' in page and 'name="wrong_passages" value="2"' in page
    assert 'name="wrong_passages" value="3"' not in page  # only cited passages can be "wrong"

    response = post(client, answered, verdict="not_helpful", wrong_passages=["2"], comment="Page 2 is about loans")
    assert response.status_code == 200 and "Your feedback: not helpful" in response.content.decode()
    row = Feedback.objects.get()
    assert (row.verdict, row.wrong_passages, row.comment) == ("not_helpful", [2], "Page 2 is about loans")
    answered.refresh_from_db()
    assert answered.feedback_verdict == "not_helpful"
    event = AuditEvent.objects.get(kind=EventKind.ANSWER_FEEDBACK)
    assert event.actor == "analyst" and event.data["verdict"] == "not_helpful"
    assert event.data["wrong_passages"][0]["page_start"] == 2 and event.data["comment"] == "Page 2 is about loans"

    post(client, answered, verdict="helpful")
    answered.refresh_from_db()
    assert answered.feedback_verdict == "helpful" and Feedback.objects.count() == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Choose helpful or not helpful."),
        ({"verdict": "great"}, "Select a valid choice. great is not one of the available choices."),
        ({"verdict": "helpful", "wrong_passages": ["3"]}, "Select a valid choice. 3 is not one of the available"),
        ({"verdict": "helpful", "comment": "x" * 2001}, "Ensure this value has at most 2000 characters (it has 2001)."),
    ],
)
def test_bad_feedback_is_refused_with_a_message(client_for, answered, data, message):
    response = post(client_for("analyst"), answered, **data)
    assert response.status_code == 422 and message in response.content.decode()
    assert not Feedback.objects.exists() and not AuditEvent.objects.filter(kind=EventKind.ANSWER_FEEDBACK).exists()


def test_only_the_asker_gives_feedback_on_a_finished_answer(client_for, answered, users):
    assert post(client_for("admin"), answered, verdict="helpful").status_code == 404  # someone else's
    assert post(client_for("auditor"), answered, verdict="helpful").status_code == 403
    pending = AnswerFactory(user=users["analyst"], status=Answer.Status.PENDING)
    assert post(client_for("analyst"), pending, verdict="helpful").status_code == 409
    assert not Feedback.objects.exists()


def test_auditors_see_filter_and_export_feedback(client_for, answered, users):
    post(client_for("analyst"), answered, verdict="not_helpful", wrong_passages=["1"], comment="wrong rule")
    AnswerFactory(user=users["analyst"], question="Unrated question?")
    auditor = client_for("auditor")
    assert "wrong rule" in auditor.get(reverse("log_entry", args=[answered.pk])).content.decode()
    for value, expected in (("not_helpful", 1), ("wrong_passage", 1), ("helpful", 0), ("none", 1)):
        assert len(auditor.get(reverse("answer_log"), {"feedback": value}).context["page"].object_list) == expected
    body = b"".join(auditor.get(reverse("answer_log_csv")).streaming_content).decode()
    rows = {r["question"]: r for r in csv.DictReader(io.StringIO(body))}
    assert rows["What counts as a company?"]["feedback"] == "not_helpful"
    assert rows["What counts as a company?"]["feedback_wrong_passages"] == "[1]"
    assert rows["What counts as a company?"]["feedback_comment"] == "wrong rule"
    assert rows["Unrated question?"]["feedback"] == ""


def test_export_feedback_writes_helpful_answers_cited_passages_as_training_pairs(client_for, answered, users, tmp_path):
    post(client_for("analyst"), answered, verdict="helpful", wrong_passages=["1"])  # [1] marked wrong anyway
    unhelpful = AnswerFactory(user=users["analyst"], citations=[{"n": 1, "valid": True}], passages=answered.passages)
    post(client_for("analyst"), unhelpful, verdict="not_helpful")
    changed_mind = AnswerFactory(user=users["analyst"], citations=[{"n": 2, "valid": True}], passages=answered.passages)
    post(client_for("analyst"), changed_mind, verdict="helpful")
    post(client_for("analyst"), changed_mind, verdict="not_helpful")

    out = tmp_path / "pairs.jsonl"
    call_command("export_feedback", "--pairs", str(out))
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert pairs == [
        {
            "qid": f"feedback-{answered.pk}",
            "question": "What counts as a company?",
            "gold": [{"document": "12cfr215.pdf", "page": 2}],
            "answer": answered.answer_text,
        }
    ]
    # the evaluate format: the gold item finds the cited passage again
    question = read_questions(out)[0]
    cited = PassageSnapshot.load(answered.passages[1])
    names = dict(Document.objects.values_list("pk", "original_name"))
    assert hits_per_rank([cited], question.gold, names) == [{0}]


def test_export_feedback_uses_the_passage_id_of_imported_passages(client_for, answered, tmp_path):
    post(client_for("analyst"), answered, verdict="helpful")
    out = tmp_path / "pairs.jsonl"
    call_command("export_feedback", "--pairs", str(out))
    gold = json.loads(out.read_text())["gold"]
    assert gold == [{"passage_id": "GEN-3.2.1"}, {"document": "12cfr215.pdf", "page": 2}]


def test_the_csv_export_reads_feedback_without_a_query_per_answer(
    client_for, answered, users, django_assert_max_num_queries
):
    post(client_for("analyst"), answered, verdict="not_helpful", comment="first thought")
    post(client_for("analyst"), answered, verdict="helpful", comment="on reflection")  # the latest counts
    for n in range(30):
        rated = AnswerFactory(user=users["analyst"], question=f"Question {n}?")
        post(client_for("analyst"), rated, verdict="helpful", comment=f"comment {n}")
    auditor = client_for("auditor")
    with django_assert_max_num_queries(12):  # session, user, answers, their feedback, the audit record
        body = b"".join(auditor.get(reverse("answer_log_csv")).streaming_content).decode()
    rows = {r["question"]: r for r in csv.DictReader(io.StringIO(body))}
    assert len(rows) == 31
    assert (rows["What counts as a company?"]["feedback"], rows["What counts as a company?"]["feedback_comment"]) == (
        "helpful",
        "on reflection",
    )
    assert rows["Question 29?"]["feedback_comment"] == "comment 29"
