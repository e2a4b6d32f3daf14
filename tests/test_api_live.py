"""The REST API against a live server on 127.0.0.1: schemathesis generates requests from the live
OpenAPI schema (no 500s, every response documented and matching its schema), and one question is
asked over the API end to end with the real embedder and the real GGUF model."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from regqa import roles
from regqa.api import tokens
from regqa.documents.ingest import ingest_document
from regqa.documents.models import Document

from .conftest import PDFS, make_pdf
from .factories import UserFactory
from .test_api import PAGE

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api_token(transactional_db, fake_embedder, fake_llm):
    """A user with every role (so every operation is reachable) and a document to ask about."""
    roles.ensure_roles()
    user = UserFactory(username="everyone")
    user.groups.set(Group.objects.all())
    document = Document.objects.create(title="Regulation O", sha256="b" * 64)
    document.file.save("reg-o.pdf", ContentFile(make_pdf(["§ 215.1 Authority and scope.", PAGE])))
    ingest_document(document.pk)
    return tokens.issue(user, "schemathesis", 1)[1]


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def test_every_operation_conforms_to_the_live_schema(live_server, api_token):
    """Each operation of the schema the server publishes, with generated requests (bounded)."""
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/openapi.json")
    headers = {"Authorization": f"Bearer {api_token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
        )
        def conforms(case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

        conforms()


@pytest.mark.slow
def test_ask_over_the_api_with_the_real_model(live_server, transactional_db):
    roles.ensure_roles()
    analyst = UserFactory(username="grc-tool", role=roles.ANALYSTS)
    document = Document.objects.create(title="Regulation O", sha256="c" * 64)
    document.file.save("12cfr215.pdf", ContentFile((PDFS / "12cfr215.pdf").read_bytes()))
    ingest_document(document.pk)
    token = tokens.issue(analyst, "GRC tool", 1)[1]
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {token}"
        response = http.post(
            f"{live_server.url}/api/answers",
            json={"question": "Under Regulation O, what kinds of business entity count as a company?"},
            timeout=600,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "answered", (body["error"], body["answer"])
        assert body["model"] == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
        cited = {c["n"] for c in body["citations"] if c["valid"]}
        pages = {p["page_start"] for p in body["passages"] if p["n"] in cited}
        assert 2 in pages, (body["answer"], body["passages"])  # § 215.2(b) is on page 2
        assert body["verification"]["sentences"] and body["quality"]
        assert http.get(f"{live_server.url}/api/answers/{body['id']}", timeout=30).json()["answer"] == body["answer"]
