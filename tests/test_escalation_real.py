"""Escalation against a real large-model server: llama-cpp-python's OpenAI-compatible server
on 127.0.0.1 serving a packaged GGUF model, behind a proxy that records what it received."""

from __future__ import annotations

import pytest

from regqa.qa import escalate
from regqa.qa.models import Answer, Escalation, EscalationState

from .test_escalation import make_answer, make_policy

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_real_server_gets_only_allowed_redacted_text_and_its_answer_is_checked(users, large_model):
    make_policy(users["admin"], max_sensitivity="internal")
    answer = make_answer(users["analyst"], "internal", "restricted", "public")
    decision = escalate.decide(answer, requested=True)
    assert decision.action == "escalate" and decision.withheld_passages == [2]
    events = list(escalate.stream_escalation(answer))
    assert any(kind == "token" for kind, _ in events)

    answer.refresh_from_db()
    escalation = Escalation.objects.get(answer=answer)
    assert escalation.status == Escalation.Status.ANSWERED, escalation.error
    assert answer.answered_by == "large" and answer.escalation_state == EscalationState.DONE
    assert answer.status in (Answer.Status.ANSWERED, Answer.Status.NOT_COVERED)
    assert escalation.received.strip()

    # what the real server received, as recorded by the proxy
    assert len(large_model.requests) == 1
    request = large_model.requests[0]
    assert request["model"] == "large" and request["stream"] is True
    assert request["messages"] == escalation.sent
    received = large_model.sent_text()
    assert "(restricted)" not in received
    assert "Passage 1 (internal)" in received and "Passage 3 (public)" in received
    for identifier in ("compliance@acme.com", "Acme Holdings", "123456789012"):
        assert identifier not in received
    assert "[EMAIL_1]" in received and "[TERM_1]" in received and "[ACCOUNT_1]" in received


def test_real_server_down_mid_session_keeps_the_local_answer(users, large_model, settings):
    make_policy(users["admin"])
    answer = make_answer(users["analyst"])
    escalate.decide(answer, requested=True)
    large_model.stop()  # the endpoint goes away after the decision
    list(escalate.stream_escalation(answer))
    answer.refresh_from_db()
    assert answer.escalation_state == EscalationState.FAILED and answer.answered_by == "local"
    assert "cannot be reached" in answer.routing["notice"]
