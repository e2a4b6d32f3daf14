"""Escalation through the app: the policy page, the decision stored on an answer, the request
button, the large model's streamed answer, and every way the large model can fail.

The large model here is a loopback stand-in (tests/large_server.py); test_escalation_real.py
runs the same flows against llama-cpp-python's real OpenAI-compatible server.
"""

from __future__ import annotations

import pytest

from regqa import roles
from regqa.audit.models import AuditEvent
from regqa.qa import escalate
from regqa.qa.llama_server import free_port
from regqa.qa.models import Answer, Escalation, EscalationPolicy, EscalationState

from .factories import AnswerFactory, DocumentFactory
from .large_server import start_recorder

pytestmark = pytest.mark.django_db

SUPPORTED = "Loans to executive officers must not exceed the lending limit [1]."


def make_policy(admin, **overrides) -> EscalationPolicy:
    values = {
        "mode": "on_request",
        "allowed_groups": [roles.ANALYSTS],
        "max_sensitivity": "internal",
        "redact_patterns": ["email", "account"],
        "redact_terms": "Acme Holdings",
    }
    return EscalationPolicy.objects.create(created_by=admin, **(values | overrides))


def make_answer(user, *sensitivities: str, status=Answer.Status.ANSWERED, quality=None) -> Answer:
    passages = []
    for n, sensitivity in enumerate(sensitivities or ("public",), start=1):
        document = DocumentFactory(sensitivity=sensitivity, title=f"Rulebook {sensitivity} {n}")
        passages.append(
            {
                "n": n,
                "chunk_id": 1000 + n,
                "document_id": document.pk,
                "document_title": document.title,
                "section": "",
                "page_start": n,
                "page_end": n,
                "score": 0.7,
                "sent_to_model": True,
                "sensitivity": sensitivity,
                "text": f"Passage {n} ({sensitivity}): loans to executive officers must not exceed the lending "
                "limit. Contact compliance@acme.com about Acme Holdings account 123456789012.",
            }
        )
    return AnswerFactory(
        user=user,
        question="What limits apply to loans to executive officers of Acme Holdings?",
        passages=passages,
        status=status,
        answer_text="A local answer [1].",
        quality=quality if quality is not None else {"retrieval_strength": {"score": 4, "explanation": "x"}},
    )


@pytest.fixture
def large(settings):
    server = start_recorder("reply", reply=SUPPORTED)
    settings.LARGE_LLM_BASE_URL = server.url
    settings.LARGE_LLM_RETRIES = 0
    yield server
    server.stop()


def run_stream(answer: Answer) -> list[tuple[str, str]]:
    return list(escalate.stream_escalation(answer))


# --- the policy page --------------------------------------------------------------------------


def test_admin_saves_policy_versions_and_each_change_is_kept_and_audited(client_for, users):
    client = client_for("admin")
    assert client.get("/policy/").status_code == 200
    form = {
        "mode": "automatic",
        "allowed_groups": [roles.ANALYSTS],
        "max_sensitivity": "internal",
        "redact_patterns": ["email", "iban"],
        "redact_terms": "Acme Holdings\nGlobex",
        "user_daily_escalations": 10,
        "global_daily_escalations": 100,
        "user_daily_tokens": 20000,
        "global_daily_tokens": 200000,
        "min_retrieval_score": 3,
        "min_groundedness": 3,
        "min_citation_accuracy": 2,
        "escalate_on_decline": "on",
        "note": "pilot",
    }
    assert client.post("/policy/", form).status_code == 302
    assert client.post("/policy/", form | {"mode": "off", "note": "paused"}).status_code == 302
    versions = list(EscalationPolicy.objects.order_by("pk"))
    assert [(v.mode, v.note, v.created_by.username) for v in versions] == [
        ("automatic", "pilot", "admin"),
        ("off", "paused", "admin"),
    ]
    assert escalate.current_policy().pk == versions[-1].pk
    assert versions[0].terms == ["Acme Holdings", "Globex"] and versions[0].escalate_complex is False
    events = list(AuditEvent.objects.filter(kind="policy.changed").order_by("seq"))
    assert [e.data["version"] for e in events] == [versions[0].pk, versions[1].pk]
    assert events[0].data["redact_patterns"] == ["email", "iban"] and events[0].actor == "admin"
    page = client.get("/policy/").content.decode()
    assert f"v{versions[0].pk}" in page and "pilot" in page and "paused" in page


def test_policy_versions_cannot_be_edited_or_deleted(users):
    policy = make_policy(users["admin"])
    policy.mode = "automatic"
    with pytest.raises(ValueError):
        policy.save()
    with pytest.raises(ValueError):
        policy.delete()


def test_policy_form_rejects_bad_values_and_saves_nothing(client_for):
    client = client_for("admin")
    response = client.post("/policy/", {"mode": "automatic", "max_sensitivity": "internal", "min_groundedness": 9})
    assert response.status_code == 422
    assert "Choose at least one role" in response.content.decode()
    assert not EscalationPolicy.objects.exists()


@pytest.mark.parametrize("name", ["analyst", "auditor"])
def test_only_admins_see_the_policy(client_for, name):
    assert client_for(name).get("/policy/").status_code == 403


def test_without_a_policy_escalation_is_off(users):
    answer = make_answer(users["analyst"], status=Answer.Status.NOT_COVERED)
    decision = escalate.decide(answer)
    assert decision.action == "local" and decision.policy_version == 0
    assert escalate.decide(answer, requested=True).action == "refuse"


# --- escalation on request --------------------------------------------------------------------


def test_analyst_asks_for_the_large_model_and_gets_its_checked_answer(client_for, users, large):
    make_policy(users["admin"])
    answer = make_answer(users["analyst"], "public", "restricted")
    client = client_for("analyst")
    page = client.get(f"/answers/{answer.pk}/").content.decode()
    assert "Ask the large model" in page

    response = client.post(f"/answers/{answer.pk}/escalate/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    answer.refresh_from_db()
    assert answer.escalation_state == EscalationState.PENDING
    assert answer.routing["action"] == "escalate" and answer.routing["withheld_passages"] == [2]
    body = response.content.decode()
    assert f"/answers/{answer.pk}/escalate/stream/" in body and "What was sent" in body

    stream = client.get(f"/answers/{answer.pk}/escalate/stream/")
    events = b"".join(stream.streaming_content).decode()
    assert "event: token" in events and "Answered by the large model" in events

    answer.refresh_from_db()
    assert answer.answered_by == "large" and answer.escalation_state == EscalationState.DONE
    assert answer.status == Answer.Status.ANSWERED and answer.answer_text == SUPPORTED
    assert answer.verification["status"] == "verified" and answer.quality["groundedness"]["score"] >= 4
    assert answer.routing["local"]["answer_text"] == "A local answer [1]."
    # what the server received: the public passage only, redacted
    assert len(large.requests) == 1
    sent = large.sent_text()
    assert "Passage 1 (public)" in sent and "(restricted)" not in sent
    assert "compliance@acme.com" not in sent and "Acme Holdings" not in sent and "123456789012" not in sent
    escalation = Escalation.objects.get(answer=answer)
    assert escalation.sent == large.requests[0]["messages"]  # the record is exactly what left
    assert escalation.status == Escalation.Status.ANSWERED and escalation.requested
    event = AuditEvent.objects.get(kind="answer.escalated")
    assert event.data["sent"] == large.requests[0]["messages"] and event.data["received"] == SUPPORTED
    assert event.data["policy_version"] == answer.routing["policy_version"]
    # a second stream for the same escalation sends nothing more
    assert run_stream(answer) == [] and len(large.requests) == 1


def test_placeholders_in_the_large_answer_are_restored(users, large):
    make_policy(users["admin"])
    large.reply = "[TERM_1] must keep loans to executive officers within the lending limit [1]."
    answer = make_answer(users["analyst"])
    escalate.decide(answer, requested=True)
    run_stream(answer)
    answer.refresh_from_db()
    assert answer.answer_text.startswith("Acme Holdings must keep loans")
    assert Escalation.objects.get().received.startswith("[TERM_1]")


def test_refused_request_says_why_and_sends_nothing(client_for, users, large):
    make_policy(users["admin"], max_sensitivity="public")
    answer = make_answer(users["analyst"], "confidential")
    response = client_for("analyst").post(f"/answers/{answer.pk}/escalate/", HTTP_HX_REQUEST="true")
    assert "escalation refused" in response.content.decode()
    assert "classified above public" in response.content.decode()
    answer.refresh_from_db()
    assert answer.escalation_state == EscalationState.REFUSED and answer.answered_by == "local"
    assert large.requests == [] and not Escalation.objects.exists()
    assert AuditEvent.objects.filter(kind="answer.escalation_refused").exists()


def test_role_not_allowed_gets_no_button_and_is_refused(client_for, users, large):
    make_policy(users["admin"], allowed_groups=[roles.ADMINS])
    answer = make_answer(users["analyst"])
    client = client_for("analyst")
    assert "Ask the large model" not in client.get(f"/answers/{answer.pk}/").content.decode()
    client.post(f"/answers/{answer.pk}/escalate/")
    answer.refresh_from_db()
    assert answer.routing["action"] == "refuse" and any("your role may not" in r for r in answer.routing["reasons"])


def test_another_users_answer_cannot_be_escalated(client_for, users, large):
    make_policy(users["admin"], allowed_groups=[roles.ANALYSTS, roles.ADMINS])
    answer = make_answer(users["admin"])
    assert client_for("analyst").post(f"/answers/{answer.pk}/escalate/").status_code == 404
    assert large.requests == []


def test_daily_budget_is_enforced(users, large):
    make_policy(users["admin"], user_daily_escalations=2)
    for _ in range(2):
        answer = make_answer(users["analyst"])
        assert escalate.decide(answer, requested=True).action == "escalate"
        run_stream(answer)
    third = make_answer(users["analyst"])
    decision = escalate.decide(third, requested=True)
    assert decision.action == "refuse" and "daily limit of 2 escalations" in decision.reasons[-1]
    assert len(large.requests) == 2
    usage = escalate.usage_today(users["analyst"])
    assert usage.user_escalations == 2 and usage.user_tokens > 0


def test_token_budget_counts_what_was_sent(users, large):
    make_policy(users["admin"], user_daily_tokens=300)
    first = make_answer(users["analyst"])
    assert escalate.decide(first, requested=True).action == "escalate"
    run_stream(first)
    decision = escalate.decide(make_answer(users["analyst"]), requested=True)
    assert decision.action == "refuse" and "daily limit of 300" in decision.reasons[-1]


# --- automatic escalation ---------------------------------------------------------------------


def test_automatic_mode_escalates_a_declined_answer(users, large):
    make_policy(users["admin"], mode="automatic")
    answer = make_answer(
        users["analyst"], status=Answer.Status.NOT_COVERED, quality={"retrieval_strength": {"score": 3}}
    )
    decision = escalate.decide(answer)
    assert decision.action == "escalate" and decision.reasons[0] == "the local model declined to answer"
    run_stream(answer)
    answer.refresh_from_db()
    assert answer.answered_by == "large" and answer.status == Answer.Status.ANSWERED


# --- the large model fails: the analyst keeps the local answer ----------------------------------


def _escalate_and_expect_failure(users, expected: str) -> Answer:
    make_policy(users["admin"])
    answer = make_answer(users["analyst"])
    escalate.decide(answer, requested=True)
    events = run_stream(answer)
    answer.refresh_from_db()
    assert answer.escalation_state == EscalationState.FAILED
    assert answer.answered_by == "local" and answer.answer_text == "A local answer [1]."
    assert expected in answer.routing["notice"] and "This is the local model's answer" in answer.routing["notice"]
    escalation = Escalation.objects.get(answer=answer)
    assert escalation.status == Escalation.Status.FAILED and expected in escalation.error
    assert AuditEvent.objects.get(kind="answer.escalated").data["error"] == escalation.error
    assert events[0][0] == "status"
    return answer


def test_endpoint_down(users, settings):
    settings.LARGE_LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    settings.LARGE_LLM_RETRIES = 0
    _escalate_and_expect_failure(users, "cannot be reached")


def test_endpoint_times_out(users, settings):
    server = start_recorder("hang", hang_seconds=5)
    settings.LARGE_LLM_BASE_URL = server.url
    settings.LARGE_LLM_TIMEOUT = 0.5
    settings.LARGE_LLM_RETRIES = 0
    try:
        _escalate_and_expect_failure(users, "did not answer within 0.5 s")
    finally:
        server.stop()


def test_endpoint_error_is_retried_then_reported(users, settings):
    server = start_recorder("error")
    settings.LARGE_LLM_BASE_URL = server.url
    settings.LARGE_LLM_RETRIES = 2
    try:
        _escalate_and_expect_failure(users, "HTTP 500")
        assert len(server.requests) == 3  # the first try and two retries, with backoff
    finally:
        server.stop()


def test_failed_escalation_shows_a_notice_in_the_answer(client_for, users, settings):
    settings.LARGE_LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    settings.LARGE_LLM_RETRIES = 0
    answer = _escalate_and_expect_failure(users, "cannot be reached")
    page = client_for("analyst").get(f"/answers/{answer.pk}/").content.decode()
    assert "could not answer" in page and "A local answer" in page


# --- the auditor's view -----------------------------------------------------------------------


def test_answer_log_filters_escalated_answers_and_shows_what_was_sent(client_for, users, large):
    make_policy(users["admin"])
    sent = make_answer(users["analyst"])
    escalate.decide(sent, requested=True)
    run_stream(sent)
    local = make_answer(users["analyst"])
    client = client_for("auditor")
    listing = client.get("/audit/?escalated=yes").content.decode()
    assert f"/audit/answers/{sent.pk}/" in listing and f"/audit/answers/{local.pk}/" not in listing
    listing = client.get("/audit/?escalated=no").content.decode()
    assert f"/audit/answers/{local.pk}/" in listing and f"/audit/answers/{sent.pk}/" not in listing
    entry = client.get(f"/audit/answers/{sent.pk}/").content.decode()
    assert "Exactly what was sent" in entry and "[EMAIL_1]" in entry and "What came back" in entry
    csv = b"".join(client.get("/audit/export.csv?escalated=yes").streaming_content).decode()
    assert "answered_by" in csv.splitlines()[0] and ",large," in csv


def test_uncited_supported_sentences_of_the_large_model_get_the_passage_the_check_found(client_for, users, large):
    make_policy(users["admin"])
    large.reply = "Loans to executive officers must not exceed the lending limit."
    answer = make_answer(users["analyst"])
    escalate.decide(answer, requested=True)
    run_stream(answer)
    answer.refresh_from_db()
    assert answer.status == Answer.Status.ANSWERED
    assert answer.answer_text == "Loans to executive officers must not exceed the lending limit [1]."
    assert answer.citations == [{"n": 1, "valid": True}]
    assert answer.verification["citations_added_by_check"] == [1]
    page = client_for("analyst").get(f"/answers/{answer.pk}/").content.decode()
    assert "left 1 sentence uncited" in page


# --- decided again when it is sent ------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("policy off", "escalation is switched off by the policy"),
        ("reclassified", "every passage is classified above internal"),
        ("deleted", "every passage is classified above internal"),
        ("superseded", "every passage is classified above internal"),
        ("budget used", "your daily limit of 1 escalations is used up"),
    ],
)
def test_an_escalation_is_decided_again_when_it_is_sent(users, large, change, reason):
    """What changed between the decision and the stream (opened later, or never) applies: the
    analyst keeps the local answer with a notice, nothing leaves, and the refusal is audited."""
    from regqa.documents.models import Document

    make_policy(users["admin"], user_daily_escalations=1)
    answer = make_answer(users["analyst"], "internal")
    assert escalate.decide(answer, requested=True).action == "escalate"
    document = Document.objects.get(pk=answer.passages[0]["document_id"])
    if change == "policy off":
        make_policy(users["admin"], mode="off")
    elif change == "reclassified":
        Document.objects.filter(pk=document.pk).update(sensitivity="confidential")
    elif change == "deleted":
        document.delete()
    elif change == "superseded":
        Document.objects.filter(pk=document.pk).update(status=Document.Status.SUPERSEDED)
    else:  # another escalation of the same analyst was sent first
        other = make_answer(users["analyst"])
        Escalation.objects.create(answer=other, user=users["analyst"], policy_version=1, tokens_sent=10)
    events = run_stream(answer)
    answer.refresh_from_db()
    assert large.requests == [] and answer.escalation_state == EscalationState.REFUSED
    assert answer.answered_by == "local" and answer.answer_text == "A local answer [1]."
    assert reason in answer.routing["notice"] and events[-1][1] == answer.routing["notice"]
    refused = AuditEvent.objects.filter(kind="answer.escalation_refused").get()
    assert refused.data["answer_id"] == answer.pk and refused.data["decided_before"]["reasons"]


def test_pending_escalations_count_against_the_daily_budget(users, large):
    """Many tabs: each decision counts the escalations decided before it and not yet sent."""
    make_policy(users["admin"], user_daily_escalations=2)
    first, second, third = (make_answer(users["analyst"]) for _ in range(3))
    assert escalate.decide(first, requested=True).action == "escalate"
    assert escalate.decide(second, requested=True).action == "escalate"
    decision = escalate.decide(third, requested=True)  # two pending: the limit is reached
    assert decision.action == "refuse" and "daily limit of 2 escalations" in decision.reasons[-1]
    run_stream(first)
    run_stream(second)
    assert len(large.requests) == 2  # each, decided again when sent, still fits (it does not count itself)


def test_what_is_stored_while_the_large_model_writes_is_kept(users, large):
    """The asker's feedback, an instant quote and a "source amended" flag stored while the large model
    answers stay: the escalation writes only its own fields, not the row it read when it started."""
    from regqa.qa import feedback

    make_policy(users["admin"])
    answer = make_answer(users["analyst"])
    escalate.decide(answer, requested=True)
    stream = escalate.stream_escalation(answer)
    kind, text = next(stream)
    assert kind == "status" and "Asking the large model" in text  # the answer was read; nothing received yet
    feedback.give(Answer.objects.get(pk=answer.pk), users["analyst"], "helpful", [], "")
    Answer.objects.filter(pk=answer.pk).update(instant={"text": "Quoted [1].", "ms": 5.0}, source_amended=True)
    list(stream)

    stored = Answer.objects.get(pk=answer.pk)
    assert stored.answered_by == "large" and stored.escalation_state == EscalationState.DONE
    assert stored.answer_text == SUPPORTED
    assert (stored.feedback_verdict, stored.instant["text"], stored.source_amended) == ("helpful", "Quoted [1].", True)
