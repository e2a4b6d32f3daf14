"""Answers flagged "source amended" when a new version of a cited document changes or drops the
cited text; the word-level diff; what analysts and auditors see."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from regqa.audit.models import AuditEvent, EventKind
from regqa.documents.ingest import ingest_document
from regqa.documents.models import Chunk, Document
from regqa.qa.amended import closest, word_diff
from regqa.qa.models import Answer

from .conftest import make_pdf
from .factories import AnswerFactory

SCOPE = "§ 215.1 Authority, purpose, and scope.\nThis part implements sections of the Federal Reserve Act."
DEFINITION = (
    "§ 215.2 Definitions.\n(b) Company means any corporation, partnership, trust, association, joint venture,\n"
    "pool syndicate, sole proprietorship or unincorporated organization."
)
AMENDED = DEFINITION.replace("trust, association", "trust, limited liability company, association")
REPORTS = "§ 215.9 Reports by executive officers.\nEach executive officer shall report every loan within ten days."


def test_word_diff_marks_removed_and_added_words_and_escapes_text():
    old, new = word_diff("a loan to <b>a</b> director", "a credit to <b>a</b> director today")
    assert str(old) == "a <del>loan</del> to &lt;b&gt;a&lt;/b&gt; director"
    assert str(new) == "a <ins>credit</ins> to &lt;b&gt;a&lt;/b&gt; director <ins>today</ins>"


def _citing(user, chunk: Chunk, n: int = 1) -> Answer:
    passage = {
        "n": n, "chunk_id": chunk.pk, "document_id": chunk.document_id, "document_title": chunk.document.title,
        "page_start": chunk.page_start, "page_end": chunk.page_end, "text": chunk.text, "score": 0.7,
        "sent_to_model": True,
    }  # fmt: skip
    answer = AnswerFactory(user=user, citations=[{"n": n, "valid": True}], passages=[passage])
    answer.documents.set([chunk.document_id])
    return answer


@pytest.fixture
def versions(db, fake_embedder, users, django_capture_on_commit_callbacks):
    v1 = Document.objects.create(title="Regulation O", sha256="1" * 64)
    v1.file.save("reg-o-2021.pdf", ContentFile(make_pdf([SCOPE, DEFINITION, REPORTS])))
    ingest_document(v1.pk)
    by_page = {c.page_start: c for c in Chunk.objects.filter(document=v1)}
    analyst = users["analyst"]
    answers = {
        "changed": _citing(analyst, by_page[2]),
        "unchanged": _citing(analyst, by_page[1]),
        "removed": _citing(analyst, by_page[3]),
    }
    v2 = Document.objects.create(title="Regulation O", sha256="2" * 64, supersedes=v1, version=2)
    v2.file.save("reg-o-2022.pdf", ContentFile(make_pdf([SCOPE, AMENDED])))
    with django_capture_on_commit_callbacks(execute=True):
        ingest_document(v2.pk)
    for answer in answers.values():
        answer.refresh_from_db()
    return v1, v2, answers


def test_a_new_version_flags_the_answers_whose_cited_text_it_changed_or_dropped(versions):
    v1, v2, answers = versions
    assert Document.objects.get(pk=v1.pk).status == Document.Status.SUPERSEDED
    assert not answers["unchanged"].source_amended and answers["unchanged"].amendments == []

    changed = answers["changed"]
    assert changed.source_amended
    [change] = changed.amendments
    assert change["status"] == "changed" and change["old_version"] == 1 and change["new_version"] == 2
    new_chunk = Chunk.objects.get(pk=change["new_chunk_id"])
    assert new_chunk.document_id == v2.pk and "limited liability company" in new_chunk.text
    assert change["new_page"] == 2 and 0.5 <= change["similarity"] < 1

    [gone] = answers["removed"].amendments
    assert gone["status"] == "removed" and gone["new_chunk_id"] is None and "ten days" in gone["old_text"]

    event = AuditEvent.objects.get(kind=EventKind.ANSWERS_SOURCE_AMENDED)
    assert sorted(event.data["answer_ids"]) == sorted([changed.pk, answers["removed"].pk])
    assert event.data["new_document_id"] == v2.pk


def test_the_analyst_sees_old_and_new_text_side_by_side(versions, client_for):
    _, _, answers = versions
    client = client_for("analyst")
    page = client.get(reverse("answer_detail", args=[answers["changed"].pk])).content.decode()
    assert "Source amended" in page and "<ins>limited liability company,</ins>" in page
    assert "Cited: version 1" in page and "Now: version 2" in page
    removed = client.get(reverse("answer_detail", args=[answers["removed"].pk])).content.decode()
    assert "No passage of the new version is close to it." in removed
    history = client.get(reverse("history")).content.decode()
    assert history.count("source amended") == 2


def test_auditors_list_and_export_the_affected_answers(versions, client_for):
    _, _, answers = versions
    auditor = client_for("auditor")
    listed = auditor.get(reverse("answer_log"), {"amended": "yes"}).context["page"].object_list
    assert sorted(a.pk for a in listed) == sorted([answers["changed"].pk, answers["removed"].pk])
    body = b"".join(auditor.get(reverse("answer_log_csv"), {"amended": "yes"}).streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 2 and {r["source_amended"] for r in rows} == {"True"}
    assert {'"status": "removed"' in r["amended_passages"] for r in rows} == {True, False}


def test_closest_prefers_the_most_similar_passage(db):
    chunks = [Chunk(text="Reports are due within ten days."), Chunk(text="A company means any corporation or trust.")]
    match, ratio = closest("Company means any corporation, partnership or trust.", chunks)
    assert match is chunks[1] and 0.4 < ratio < 1


def test_many_answers_citing_one_passage_compare_it_once(versions, users, monkeypatch):
    from regqa.qa import amended

    v1, v2, _ = versions
    changed_passage = Chunk.objects.get(document=v1, page_start=2)
    more = [_citing(users["analyst"], changed_passage) for _ in range(20)]
    compared = []
    real = amended.closest
    monkeypatch.setattr(amended, "closest", lambda text, candidates: compared.append(text) or real(text, candidates))
    flagged = amended.flag_answers(v1.pk, v2.pk)
    assert {a.pk for a in more} <= set(flagged)
    assert len(compared) == len(set(compared)) == 2  # the changed passage and the removed one, once each
    for answer in more:
        answer.refresh_from_db()
        assert answer.source_amended and answer.amendments[0]["status"] == "changed"
