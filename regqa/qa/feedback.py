"""Analysts' feedback on answers, and the training pairs it yields.

`give` stores what the asker said (helpful or not, the cited passages that were the wrong ones,
a comment) with its audit record. `pairs` turns the answers their askers found helpful into
{"qid", "question", "gold"} pairs in the evaluate format (gold: the passages the answer cited
and nobody marked wrong), so `train_retrieval --feedback` (alone or with `--pairs`) can learn
from the institution's use.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind

from .evaluate import Question, read_questions_text
from .models import Answer, Feedback


def cited_numbers(answer: Answer) -> list[int]:
    """The passage numbers the answer cites (valid citations only), in order."""
    return sorted({int(c["n"]) for c in answer.citations if c.get("valid")})


def give(answer: Answer, user, verdict: str, wrong_passages: list[int], comment: str) -> Feedback:
    wrong = sorted(set(wrong_passages))
    if not set(wrong) <= set(cited_numbers(answer)):
        raise ValueError("Only a passage the answer cites can be marked as the wrong passage.")
    by_n = {p["n"]: p for p in answer.passages}
    with transaction.atomic():
        row = Feedback.objects.create(
            answer=answer, user=user, verdict=verdict, wrong_passages=wrong, comment=comment.strip()
        )
        Answer.objects.filter(pk=answer.pk).update(feedback_verdict=verdict)
        answer.feedback_verdict = verdict
        audit_log.record(
            EventKind.ANSWER_FEEDBACK,
            f"{row.get_verdict_display()}{' (wrong passage)' if wrong else ''}: {answer.question[:200]}",
            user=user,
            data={
                "answer_id": answer.pk,
                "verdict": verdict,
                "wrong_passages": [
                    {k: by_n[n].get(k) for k in ("n", "chunk_id", "document_id", "document_title", "page_start")}
                    for n in wrong
                ],
                "comment": row.comment,
            },
        )
    return row


def latest(answer: Answer) -> Feedback | None:
    """The asker's own latest feedback on the answer (read from prefetched feedback when there is)."""
    return next((f for f in answer.feedback.all() if f.user_id == answer.user_id), None)


def _gold(passage: dict[str, Any], file_name: str) -> dict[str, Any] | None:
    if passage.get("external_id"):
        return {"passage_id": passage["external_id"]}
    if file_name and passage.get("page_start"):
        return {"document": file_name, "page": passage["page_start"]}
    return None


def same_question(text: str) -> str:
    """A question as compared for duplicates: case and spacing ignored."""
    return " ".join(text.casefold().split())


def pairs() -> list[dict[str, Any]]:
    """The training pairs analysts' feedback gives: the answers whose asker's latest feedback is
    "helpful", with as gold the passages they cite that nobody marked wrong; oldest first. A question
    asked more than once is one pair (its gold: every such passage), so cross-validation by question
    never trains on a question it evaluates."""
    from regqa.documents.models import Document

    names = dict(Document.objects.values_list("pk", "original_name"))
    answers = (
        Answer.objects.filter(
            feedback_verdict=Feedback.Verdict.HELPFUL, status__in=[Answer.Status.ANSWERED, Answer.Status.QUOTED]
        )
        .order_by("pk")
        .prefetch_related("feedback")
    )  # newest first (Feedback.Meta.ordering): two queries in all
    merged: dict[str, dict[str, Any]] = {}
    for answer in answers.iterator(chunk_size=500):
        mine = latest(answer)
        if mine is None or mine.verdict != Feedback.Verdict.HELPFUL:
            continue
        wrong = set(mine.wrong_passages)
        by_n = {p["n"]: p for p in answer.passages}
        gold = []
        for n in cited_numbers(answer):
            item = _gold(by_n[n], names.get(by_n[n].get("document_id"), "")) if n in by_n and n not in wrong else None
            if item and item not in gold:
                gold.append(item)
        if not gold:
            continue
        pair = merged.setdefault(
            same_question(answer.question),
            {"qid": f"feedback-{answer.pk}", "question": answer.question, "gold": [], "answer": answer.answer_text},
        )
        pair["gold"] += [item for item in gold if item not in pair["gold"]]
    return list(merged.values())


class NoFeedback(ValueError):
    """Analysts' feedback is all there is to train on, and no answer has been marked helpful."""


def training_set(
    content: bytes, name: str, include_feedback: bool, other_sources: bool = False
) -> tuple[bytes, list[Question], int | None]:
    """What a retrieval bundle trains on: the questions of a pairs file (`content`, JSON Lines, possibly
    empty; UnicodeDecodeError, or ValueError naming `name` and the line that is not a question record)
    then, with `include_feedback`, the feedback pairs whose question the file does not hold. Returns
    the JSON Lines holding them all (kept with the bundle), the questions, and how many came from
    feedback (None: not asked for). NoFeedback when feedback was asked for, there is none, and
    nothing else (no question in the file, no `other_sources` such as written questions) remains.
    Used by `train_retrieval --feedback` and by the box on the Retrieval models page alike."""
    questions = read_questions_text(content.decode("utf-8"), name)
    if not include_feedback:
        return content, questions, None
    held = {same_question(q.question) for q in questions}
    added = [p for p in pairs() if same_question(p["question"]) not in held]
    if not added and not questions and not other_sources:
        raise NoFeedback("No answer has been marked helpful with a cited passage yet: nothing to train on.")
    if content.strip() and not content.endswith(b"\n"):
        content += b"\n"
    lines = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in added)
    questions += [Question(p["qid"], p["question"], p["gold"], p["answer"]) for p in added]
    return content + lines.encode("utf-8"), questions, len(added)
