"""Follow-up questions: the rewrite into a standalone question, confirmed or edited by the
analyst, asked in a thread, and recorded with the thread and the rewrite in the audit trail."""

from __future__ import annotations

import pytest
from django.urls import reverse

from regqa.audit.models import AuditEvent, EventKind
from regqa.qa import followup
from regqa.qa.models import Answer

from .factories import AnswerFactory
from .test_ask_flow import rulebook  # noqa: F401  # a fixture

FIRST = "What counts as a company under Regulation O?"


@pytest.mark.parametrize(
    ("follow_up", "expected"),
    [
        ("and for foreign banks?", "What counts as a company under Regulation O, and for foreign banks?"),
        ("What about trusts?", "What counts as a company under Regulation O, what about trusts?"),
        ("Does it include trusts?", "What counts as a company under Regulation O, and does it include trusts?"),
        # a question that stands on its own is kept as typed
        ("Which reports must an executive officer file with the board of directors?",
         "Which reports must an executive officer file with the board of directors?"),
    ],
)  # fmt: skip
def test_a_follow_up_that_leans_on_the_thread_is_rewritten_to_stand_alone(follow_up, expected):
    assert followup.rewrite(FIRST, follow_up) == expected


def test_the_thread_is_the_chain_of_answers_oldest_first(users):
    first = AnswerFactory(user=users["analyst"], question=FIRST)
    second = AnswerFactory(user=users["analyst"], parent=first)
    third = AnswerFactory(user=users["analyst"], parent=second)
    assert followup.thread(third) == [first, second] and followup.thread(first) == []


def test_follow_up_flow_proposes_the_rewrite_then_asks_it_in_the_thread(client_for, rulebook, fake_llm):  # noqa: F811
    client = client_for("analyst")
    client.post(reverse("ask"), {"question": FIRST})
    first = Answer.objects.get()
    b"".join(client.get(reverse("answer_stream", args=[first.pk])).streaming_content)  # the model answers
    page = client.get(reverse("answer_detail", args=[first.pk])).content.decode()
    assert reverse("follow_up", args=[first.pk]) in page

    proposed = client.post(
        reverse("follow_up", args=[first.pk]), {"text": "and for trusts?"}, headers={"HX-Request": "true"}
    )
    assert proposed.status_code == 200
    html = proposed.content.decode()
    assert "What counts as a company under Regulation O, and for trusts?" in html and 'name="follows"' in html

    # the analyst edits the proposal before it runs
    edited = "What counts as a company under Regulation O, and does that include a trust?"
    response = client.post(reverse("ask"), {"question": edited, "follows": first.pk, "asked": "and for trusts?"})
    second = Answer.objects.exclude(pk=first.pk).get()
    assert response.status_code == 302 and response.url == reverse("answer_detail", args=[second.pk])
    assert second.parent == first and second.question == edited
    assert second.follow_up["thread"] == [first.pk] and second.follow_up["asked"] == "and for trusts?"
    assert second.follow_up["rewritten"] == "What counts as a company under Regulation O, and for trusts?"
    assert second.follow_up["edited"] is True and second.follow_up["rewrite_ms"] < 1000
    asked = AuditEvent.objects.filter(kind__in=[EventKind.QUESTION_ASKED, EventKind.ANSWER], data__answer_id=second.pk)
    assert asked and all(e.data["follow_up"]["thread"] == [first.pk] for e in asked)

    thread_page = client.get(reverse("answer_detail", args=[second.pk])).content.decode()
    assert "Follow-up in a thread" in thread_page and FIRST in thread_page and "as you edited it" in thread_page


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "Please type a follow-up question."), ("  ?", "Please type a follow-up question in words.")],
)
def test_an_empty_follow_up_is_refused_with_a_message(client_for, users, text, message):
    first = AnswerFactory(user=users["analyst"], question=FIRST)
    response = client_for("analyst").post(
        reverse("follow_up", args=[first.pk]), {"text": text}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422 and message in response.content.decode()


def test_a_follow_up_continues_only_ones_own_answers(client_for, users, rulebook, fake_llm):  # noqa: F811
    theirs = AnswerFactory(user=users["admin"], question=FIRST)
    client = client_for("analyst")
    assert client.post(reverse("follow_up", args=[theirs.pk]), {"text": "and trusts?"}).status_code == 404
    response = client.post(reverse("ask"), {"question": "and trusts?", "follows": theirs.pk, "asked": "and trusts?"})
    assert response.status_code == 404 and Answer.objects.count() == 1
