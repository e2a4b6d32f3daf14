"""The typed records of the JSON columns (schemas.py), the closed list of audit event kinds, and
`index rechunk`."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.urls import reverse
from pydantic import ValidationError

from regqa.audit import log
from regqa.audit.models import AuditEvent, EventKind
from regqa.documents import index
from regqa.documents.ingest import ingest_document
from regqa.documents.models import Chunk, Document
from regqa.qa.models import Answer
from regqa.qa.retrieve import retrieve
from regqa.qa.schemas import PassageSnapshot, Routing, RoutingAction, Verification, VerificationStatus, load_quality

from .conftest import make_pdf
from .factories import UserFactory

# Exactly what the code before schemas.py wrote into Answer rows (copied from a stored answer).
OLD_PASSAGE = {
    "chunk_id": 12, "document_id": 3, "document_title": "12cfr215", "section": "§ 215.2 Definitions.",
    "page_start": 2, "page_end": 3, "text": "Company means any corporation [...]", "score": 0.71,
    "external_id": "", "document_sha256": "ab" * 32, "document_version": 1, "sensitivity": "public",
    "n": 1, "sent_to_model": True,
}  # fmt: skip
OLD_VERIFICATION = {
    "status": "partial", "supported": 1, "total": 2,
    "sentences": [
        {"text": "Company means any corporation [1].", "citations": [1], "supported": True,
         "reason": "its words appear together in passage [1]",
         "checks": [{"n": 1, "supported": True, "lexical": 1.0, "semantic": 0.8, "span": [0, 30], "reason": "ok"}],
         "passage": 1, "span": [0, 30]},
        {"text": "It also means a trust.", "citations": [], "supported": False, "reason": "no passage supports it",
         "checks": [], "passage": None, "span": None},
    ],
    "model_says_passages_answer": True, "answerability": 0.83, "answerability_threshold": 0.5,
}  # fmt: skip
OLD_ROUTING = {
    "action": "refuse", "reasons": ["the analyst asked for the large model", "no large model is configured"],
    "policy_version": 2, "requested": True, "triggers": [], "messages": [], "placeholders": {}, "redactions": {},
    "sent_passages": [], "withheld_passages": [], "estimated_tokens": 0,
    "decided_at": "2026-11-25T10:00:00+00:00", "mode": "on_request",
}  # fmt: skip
OLD_QUALITY = {"groundedness": {"score": 3, "explanation": "1 of 2 sentences are supported."}}


def test_records_written_by_the_earlier_code_load_and_round_trip_unchanged():
    assert PassageSnapshot.load(OLD_PASSAGE).dump() == OLD_PASSAGE
    assert Verification.load(OLD_VERIFICATION).dump() == OLD_VERIFICATION
    assert Routing.load(OLD_ROUTING).dump() == OLD_ROUTING
    checked = Verification.load(OLD_VERIFICATION)
    assert checked.status is VerificationStatus.PARTIAL and checked.sentences[0].checks[0].span == (0, 30)
    assert Routing.load(OLD_ROUTING).action is RoutingAction.REFUSE
    assert load_quality(OLD_QUALITY)["groundedness"].score == 3


def test_an_unknown_key_is_kept_and_a_wrong_type_fails_loudly():
    assert (
        Verification.load(OLD_VERIFICATION | {"written_by_a_newer_version": 1}).dump()["written_by_a_newer_version"]
        == 1
    )
    with pytest.raises(ValidationError):
        Verification.load({"status": "probably"})
    with pytest.raises(ValidationError):
        load_quality({"groundedness": {"score": 9, "explanation": "out of range"}})
    with pytest.raises(ValidationError):
        Routing.load({"action": "local", "estimated_tokens": "many"})


@pytest.mark.django_db
def test_an_answer_row_stored_by_the_earlier_code_reads_as_typed_records():
    answer = Answer.objects.create(
        user=UserFactory(), question="What is a company?", status=Answer.Status.ANSWERED, passages=[OLD_PASSAGE],
        verification=OLD_VERIFICATION, quality=OLD_QUALITY, routing=OLD_ROUTING,
    )  # fmt: skip
    answer.refresh_from_db()
    assert answer.snapshot[0].document_title == "12cfr215" and answer.snapshot[0].sent_to_model
    assert answer.checked.supported == 1 and answer.verification_status == "partial"
    assert answer.route is not None and answer.route.policy_version == 2
    assert answer.scores["groundedness"].explanation.startswith("1 of 2")
    assert Answer(user=answer.user, question="new").route is None


@pytest.mark.django_db
def test_only_listed_audit_kinds_can_be_recorded():
    with pytest.raises(ValueError, match="not a valid EventKind"):
        log.record("made.up", "a kind nobody listed")
    assert not AuditEvent.objects.exists()
    assert log.record(EventKind.LOGIN, "listed").kind == "login"


def test_the_trail_kind_filter_lists_every_kind_from_the_enum(client_for):
    log.record(EventKind.LOGIN, "one login")  # only one kind has events; every kind is offered
    page = client_for("auditor").get(reverse("audit_trail")).content.decode()
    for value, label in EventKind.choices:
        assert f'<option value="{value}"' in page and label in page
    filtered = client_for("auditor").get(reverse("audit_trail"), {"kind": "login"}).content.decode()
    assert "one login" in filtered


LONG_PAGE = "§ 208.3 Application and conditions for membership.\n" + " ".join(
    f"A state bank applying for membership must meet condition number {n} of the Board." for n in range(40)
)


@pytest.mark.django_db
def test_rechunk_cuts_documents_again_keeps_old_passages_for_old_answers(fake_embedder, settings):
    document = Document.objects.create(title="Regulation H", sha256="c" * 64)
    document.file.save("reg-h.pdf", ContentFile(make_pdf([LONG_PAGE, LONG_PAGE.replace("208.3", "208.4")])))
    ingest_document(document.pk)
    old_ids = set(Chunk.live.filter(document=document).values_list("pk", flat=True))
    cited = retrieve("conditions for membership of a state bank")[0]  # what an old answer cited
    assert cited.chunk_id in old_ids

    settings.CHUNK_WORDS, settings.CHUNK_OVERLAP_WORDS = 60, 10
    call_command("index", "rechunk")
    document.refresh_from_db()
    new = list(Chunk.live.filter(document=document))
    assert len(new) > len(old_ids) and document.chunk_count == len(new)
    assert all(len(c.text.split()) <= 60 for c in new)
    assert all(c.windows for c in new)  # the new passages are embedded in windows too
    assert index.get_index().ids() == {c.pk for c in new}  # the index agrees with the live passages
    call_command("index", "check")
    assert {p.chunk_id for p in retrieve("conditions for membership of a state bank", k=10)} <= {c.pk for c in new}
    # the old passage is retired, not deleted: the answer that cited it still opens it on its page
    old = Chunk.objects.get(pk=cited.chunk_id)
    assert old.retired_at is not None and old.text == cited.text
    page = client_for_admin().get(f"/documents/{document.pk}/pages/{old.page_start}/?chunk={old.pk}")
    assert page.status_code == 200 and old.text[:40] in page.content.decode()
    assert AuditEvent.objects.filter(kind=EventKind.DOCUMENT_RECHUNKED).count() == 1

    call_command("index", "rechunk")  # the same settings again: nothing changes
    assert set(Chunk.live.filter(document=document).values_list("pk", flat=True)) == {c.pk for c in new}
    assert AuditEvent.objects.filter(kind=EventKind.DOCUMENT_RECHUNKED).count() == 1


def client_for_admin():
    from django.test import Client

    from regqa import roles

    roles.ensure_roles()
    client = Client()
    client.force_login(UserFactory(username="rechunk-admin", role=roles.ADMINS))
    return client
