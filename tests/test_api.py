"""The REST API with personal tokens: the token life cycle, every endpoint for every role, the
ask flow (JSON and server-sent events), uploads and audit exports, errors in one JSON shape.
Fake embedder and model (fast); tests/test_api_live.py runs schemathesis and the real model."""

from __future__ import annotations

import datetime
import json

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from regqa import roles
from regqa.api import tokens
from regqa.api.models import ApiToken
from regqa.audit.models import AuditEvent, EventKind
from regqa.documents.ingest import ingest_document
from regqa.documents.models import Document
from regqa.qa.models import Answer

from .conftest import make_pdf
from .factories import AnswerFactory, UserFactory

PAGE = (
    "§ 215.2 Definitions.\n(b) Company means any corporation, partnership, trust, association, joint venture,\n"
    "pool syndicate, sole proprietorship or unincorporated organization."
)
QUESTION = "What does company mean in the definitions?"


@pytest.fixture
def rulebook(db, fake_embedder):
    document = Document.objects.create(title="Regulation O", sha256="a" * 64)
    document.file.save("reg-o.pdf", ContentFile(make_pdf(["§ 215.1 Authority and scope.", PAGE])))
    return ingest_document(document.pk)


@pytest.fixture
def bearer(users):
    """Authorization headers for a role's user (or for a user with no role: 'norole')."""

    def make(name: str) -> dict[str, str]:
        user = users[name] if name in users else UserFactory(username=name)
        _, token = tokens.issue(user, f"{name} token", 30)
        return {"Authorization": f"Bearer {token}"}

    return make


def sse(response) -> list[tuple[str, dict]]:
    body = b"".join(response.streaming_content).decode()
    events = []
    for block in body.strip().split("\n\n"):
        kind, data = block.split("\n", 1)
        events.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


# --- tokens ---------------------------------------------------------------------------------


def test_a_token_is_shown_once_stored_hashed_audited_and_works_until_revoked(client_for, client):
    page = client_for("analyst").post(reverse("api_tokens"), {"name": "GRC tool", "days": 30})
    assert page.status_code == 201
    shown = page.context["shown"]
    assert shown.startswith("rqa_") and shown in page.content.decode()
    row = ApiToken.objects.get()
    assert row.name == "GRC tool" and shown not in (row.digest, row.prefix) and len(row.digest) == 64
    assert shown not in client.get(reverse("api_tokens")).content.decode()  # never shown again
    assert abs(row.expires_at - (timezone.now() + datetime.timedelta(days=30))) < datetime.timedelta(minutes=1)
    created = AuditEvent.objects.get(kind=EventKind.API_TOKEN_CREATED)
    assert created.actor == "analyst" and shown not in json.dumps(created.data)

    auth = {"Authorization": f"Bearer {shown}"}
    me = client.get("/api/me", headers=auth)
    assert me.status_code == 200 and me.json()["username"] == "analyst" and me.json()["roles"] == ["Analysts"]
    assert "qa.ask_question" in me.json()["permissions"]

    client.post(reverse("api_token_revoke", args=[row.pk]))
    assert AuditEvent.objects.filter(kind=EventKind.API_TOKEN_REVOKED).count() == 1
    refused = client.get("/api/me", headers=auth)
    assert refused.status_code == 401
    assert refused.json() == {"code": "not_authenticated", "message": "This API token has been revoked.", "fields": {}}


def test_expired_wrong_and_missing_tokens_are_refused_with_a_reason(users, client, bearer):
    auth = bearer("analyst")
    ApiToken.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert client.get("/api/me", headers=auth).json()["message"] == "This API token has expired."
    wrong = auth["Authorization"][:-4] + "AAAA"
    assert client.get("/api/me", headers={"Authorization": wrong}).json()["message"] == "This API token is not valid."
    missing = client.get("/api/me")
    assert missing.status_code == 401 and missing.json()["code"] == "not_authenticated"
    assert "Authorization: Bearer" in missing.json()["message"]


def test_a_token_of_a_disabled_account_stops_working(users, client, bearer):
    auth = bearer("analyst")
    users["analyst"].is_active = False
    users["analyst"].save()
    assert client.get("/api/me", headers=auth).json()["message"].startswith("The account this API token belongs to")


def test_token_lifetime_is_bounded_by_the_setting(client_for, settings):
    settings.API_TOKEN_MAX_DAYS = 10
    page = client_for("analyst").post(reverse("api_tokens"), {"name": "long", "days": 11})
    assert page.status_code == 422 and not ApiToken.objects.exists()
    with pytest.raises(ValueError):
        tokens.issue(UserFactory(), "x", 11)


def test_only_the_owner_revokes_a_token(client_for, users):
    row, _ = tokens.issue(users["admin"], "admin's", 5)
    assert client_for("analyst").post(reverse("api_token_revoke", args=[row.pk])).status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None


def test_the_browser_session_does_not_authenticate_api_calls(client_for, rulebook, fake_llm):
    client = client_for("analyst")  # logged in, with a session cookie
    response = client.post("/api/answers", {"question": QUESTION}, content_type="application/json")
    assert response.status_code == 401 and not Answer.objects.exists()


# --- the role matrix ----------------------------------------------------------------------


def _calls(answer_id: int, document_id: int) -> dict[str, tuple[str, str, dict]]:
    question = {"data": {"question": QUESTION}, "content_type": "application/json"}
    return {
        "me": ("get", "/api/me", {}),
        "ask": ("post", "/api/answers", question),
        "ask_stream": ("post", "/api/answers/stream", question),
        "list_answers": ("get", "/api/answers", {}),
        "read_answer": ("get", f"/api/answers/{answer_id}", {}),
        "answer_memo": ("get", f"/api/answers/{answer_id}/memo", {}),
        "upload": ("post", "/api/documents", {"data": {"file": ContentFile(b"%PDF-1.4 not really", name="x.pdf")}}),
        "list_documents": ("get", "/api/documents", {}),
        "read_document": ("get", f"/api/documents/{document_id}", {}),
        "audit_export": ("get", "/api/audit/export?format=jsonl", {}),
        "audit_manifest": ("get", "/api/audit/manifest", {}),
    }  # fmt: skip


ALLOWED = {  # which roles each call is for (a refused call is 403 with the JSON error)
    "me": {"analyst", "admin", "auditor", "norole"},
    "ask": {"analyst", "admin"},
    "ask_stream": {"analyst", "admin"},
    "list_answers": {"analyst", "admin", "auditor"},
    "read_answer": {"auditor"},  # someone else's answer: only auditors read it
    "answer_memo": {"auditor"},
    "upload": {"admin"},
    "list_documents": {"admin"},
    "read_document": {"admin"},
    "audit_export": {"auditor"},
    "audit_manifest": {"auditor"},
}


@pytest.mark.parametrize("role", ["analyst", "admin", "auditor", "norole"])
def test_every_endpoint_allows_exactly_the_roles_permissions(role, users, client, bearer, rulebook, fake_llm):
    other = AnswerFactory(user=UserFactory(username="someone-else", role=roles.ANALYSTS))
    auth = bearer(role)
    for name, (method, url, kwargs) in _calls(other.pk, rulebook.pk).items():
        response = getattr(client, method)(url, headers=auth, **kwargs)
        if role in ALLOWED[name]:
            assert response.status_code in (200, 201, 422), (name, role, response.status_code)  # 422: the fake PDF
        else:
            assert response.status_code == 403, (name, role, response.status_code)
            assert response.json()["code"] == "forbidden" and response.json()["message"].startswith(
                ("You are not allowed", "This answer belongs to another user")
            )


# --- asking -------------------------------------------------------------------------------


def test_ask_returns_the_finished_answer_with_passages_citations_checks_and_scores(
    users, client, bearer, rulebook, fake_llm
):
    response = client.post(
        "/api/answers", {"question": QUESTION}, content_type="application/json", headers=bearer("analyst")
    )
    assert response.status_code == 201
    body = response.json()
    answer = Answer.objects.get()
    assert body["id"] == answer.pk and body["status"] == "answered" and body["asked_by"] == "analyst"
    assert body["answer"] == "Company means any corporation [1]."
    assert body["citations"] == [{"n": 1, "valid": True}]
    top = body["passages"][0]
    assert top["n"] == 1 and top["page_start"] == 2 and "Company means any corporation" in top["text"]
    assert top["url"].endswith(reverse("document_page", args=[rulebook.pk, 2]) + f"?chunk={top['chunk_id']}")
    assert body["verification"]["sentences"][0]["supported"] is True
    assert set(body["quality"]) == set(answer.quality) and body["quality_min"] == answer.quality_min
    assert body["routing"]["action"] == "local" and body["model"] == "fake-model.gguf"
    assert body["timings"]["total_ms"] >= body["timings"]["retrieval_ms"]
    assert client.get(f"/api/answers/{answer.pk}", headers=bearer("analyst")).json() == body


def test_ask_stream_sends_the_pages_events_as_json(users, client, bearer, rulebook, fake_llm):
    response = client.post(
        "/api/answers/stream", {"question": QUESTION}, content_type="application/json", headers=bearer("analyst")
    )
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    events = sse(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "answer" and kinds[-1] == "done" and "status" in kinds
    assert events[0][1]["status"] == "pending" and events[0][1]["passages"]  # passages at once
    assert "".join(d["text"] for k, d in events if k == "token") == "Company means any corporation [1]."
    assert events[-1][1]["status"] == "answered" and events[-1][1]["id"] == events[0][1]["id"]


@pytest.mark.parametrize(
    ("question", "message"),
    [("", "Please type a question."), ("   ", "Please type a question."), ("?!", "Please type a question in words.")],
)
def test_a_bad_question_gets_the_pages_message(users, client, bearer, rulebook, question, message):
    response = client.post(
        "/api/answers", {"question": question}, content_type="application/json", headers=bearer("analyst")
    )
    assert response.status_code == 422
    assert response.json() == {"code": "invalid", "message": message, "fields": {"question": [message]}}
    assert not Answer.objects.exists()


def test_a_question_over_the_limit_and_a_body_that_is_not_json(users, client, bearer, settings):
    limit = settings.MAX_QUESTION_CHARS
    long = client.post(
        "/api/answers", {"question": "x" * (limit + 1)}, content_type="application/json", headers=bearer("analyst")
    )
    assert long.status_code == 422 and f"at most {limit} characters" in long.json()["message"]
    broken = client.post("/api/answers", "{not json", content_type="application/json", headers=bearer("analyst"))
    assert broken.status_code == 400 and broken.json()["code"] == "bad_request"


def test_list_answers_own_for_analysts_everyones_for_auditors_with_the_logs_filters(users, client, bearer):
    AnswerFactory(user=users["analyst"], question="Mine about capital", status=Answer.Status.ANSWERED)
    AnswerFactory(user=users["analyst"], question="Mine declined", status=Answer.Status.NOT_COVERED)
    AnswerFactory(user=UserFactory(username="other", role=roles.ANALYSTS), question="Theirs about capital")
    mine = client.get("/api/answers", headers=bearer("analyst")).json()
    assert mine["count"] == 2 and {a["asked_by"] for a in mine["items"]} == {"analyst"}
    auditor = bearer("auditor")
    assert client.get("/api/answers", headers=auditor).json()["count"] == 3
    assert client.get("/api/answers?q=capital&actor=other", headers=auditor).json()["count"] == 1
    assert (
        client.get("/api/answers?status=not_covered", headers=auditor).json()["items"][0]["question"] == "Mine declined"
    )
    page = client.get("/api/answers?limit=1&offset=1", headers=auditor).json()
    assert page["count"] == 3 and len(page["items"]) == 1
    bad = client.get("/api/answers?since=yesterday", headers=auditor)
    assert bad.status_code == 422 and "is not a date" in bad.json()["message"]
    assert client.get("/api/answers/999999", headers=auditor).json()["code"] == "not_found"


# --- documents ----------------------------------------------------------------------------


def test_upload_queues_a_pdf_and_reports_its_status(
    users, client, bearer, django_capture_on_commit_callbacks, fake_embedder
):
    admin = bearer("admin")
    pdf = ContentFile(make_pdf([PAGE]), name="reg-o.pdf")
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/api/documents", {"file": pdf, "issuer": "FRB", "sensitivity": "public"}, headers=admin)
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued" and body["issuer"] == "FRB" and body["uploaded_by"] == "admin"
    ingest_document(body["id"])
    status = client.get(f"/api/documents/{body['id']}", headers=admin).json()
    assert status["status"] == "ready" and status["passage_count"] >= 1 and status["page_count"] == 1
    assert AuditEvent.objects.filter(kind=EventKind.DOCUMENT_UPLOADED, actor="admin").count() == 1
    assert client.get("/api/documents", headers=admin).json()["count"] == 1


def test_upload_refusals_carry_the_pages_messages(users, client, bearer, settings):
    admin = bearer("admin")
    not_pdf = client.post("/api/documents", {"file": ContentFile(b"hello", name="notes.pdf")}, headers=admin)
    assert not_pdf.status_code == 422 and not_pdf.json()["message"].startswith("notes.pdf: ")
    assert "PDF" in not_pdf.json()["message"]
    none = client.post("/api/documents", {"title": "no file"}, headers=admin)
    assert none.status_code == 422 and none.json()["message"] == "Choose one or more PDF files to upload."
    settings.MAX_UPLOAD_MB = 1
    big = client.post(
        "/api/documents", {"file": ContentFile(b"%PDF" + b"0" * 1_100_000, name="big.pdf")}, headers=admin
    )
    assert big.status_code == 413 and big.json()["code"] == "too_large"
    assert "larger than the 1 MB limit" in big.json()["message"]
    assert not Document.objects.exists()


# --- audit --------------------------------------------------------------------------------


def test_audit_export_streams_the_manifest_first_and_is_itself_audited(users, client, bearer):
    auditor = bearer("auditor")
    response = client.get("/api/audit/export?format=jsonl&kind=api_token.created", headers=auditor)
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    head = lines[0]["manifest"]
    assert head["count"] == len(lines) - 1 == 1 and head["exported_by"] == "auditor"
    assert lines[1]["kind"] == "api_token.created" and head["last"]["hash"] == lines[1]["hash"]
    assert AuditEvent.objects.filter(kind=EventKind.LOG_EXPORTED, actor="auditor").count() == 1
    csv = client.get("/api/audit/export?format=csv", headers=auditor)
    assert b"".join(csv.streaming_content).decode().startswith("seq,created_at,kind")
    manifest = client.get("/api/audit/manifest?until=2999-01-01", headers=auditor).json()
    assert manifest["count"] >= 3 and manifest["filter"]["until"].startswith("2999-01-01")
    assert client.get("/api/audit/export?format=xml", headers=auditor).json()["fields"] == {
        "format": ["Choose jsonl or csv."]
    }


def test_openapi_schema_and_docs_are_served_without_a_token(client, db):
    schema = client.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.") and "/api/answers/stream" in schema["paths"]
    assert schema["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and b"swagger-ui-bundle.js" in docs.content and b"cdn" not in docs.content.lower()


@pytest.mark.parametrize(
    "url",
    ["/api/answers?q=%00", "/api/answers?status=a%00", "/api/audit/manifest?actor=%00", "/api/audit/export?kind=%00"],
)
def test_a_null_character_in_a_filter_is_refused_not_a_server_error(users, client, bearer, url):
    """PostgreSQL refuses NUL in a query (schemathesis found it there as a 500)."""
    response = client.get(url, headers=bearer("auditor"))
    assert response.status_code == 422 and "null character" in response.json()["message"]
    assert not AuditEvent.objects.filter(kind=EventKind.LOG_EXPORTED).exists()


@pytest.mark.parametrize("url", ["/audit/?q=%00", "/audit/trail/?actor=%00", "/audit/trail/export.jsonl?kind=%00"])
def test_the_log_pages_refuse_a_null_character_too(client_for, url):
    assert client_for("auditor").get(url).status_code == 400


@pytest.mark.parametrize(
    "url",
    ["/api/answers?offset=325851485165771030528", "/api/answers?limit=0", "/api/answers?limit=201",
     "/api/answers/325851485165771030528", "/api/documents/0"],
)  # fmt: skip
def test_numbers_out_of_range_are_refused_not_sent_to_the_database(users, client, bearer, url):
    """schemathesis found a huge offset as a 500 (SQLite cannot hold the integer)."""
    response = client.get(url, headers=bearer("admin" if "documents" in url else "auditor"))
    assert response.status_code == 422 and response.json()["code"] == "invalid"


def test_the_memo_over_the_api_is_a_pdf_for_the_asker_and_auditors_audited(users, client, bearer):
    mine = AnswerFactory(user=users["analyst"], question="What is a company?")
    response = client.get(f"/api/answers/{mine.pk}/memo", headers=bearer("analyst"))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF") and f"regqa-answer-{mine.pk}.pdf" in response["Content-Disposition"]
    assert client.get(f"/api/answers/{mine.pk}/memo", headers=bearer("auditor")).status_code == 200
    exported = AuditEvent.objects.filter(kind=EventKind.LOG_EXPORTED, data__format="memo.pdf")
    assert sorted(e.actor for e in exported) == ["analyst", "auditor"]
    pending = AnswerFactory(user=users["analyst"], status=Answer.Status.PENDING)
    refused = client.get(f"/api/answers/{pending.pk}/memo", headers=bearer("analyst"))
    assert refused.status_code == 409 and refused.json()["code"] == "conflict"
