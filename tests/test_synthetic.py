"""Label-free training: questions the local model writes (kept only if the first stage finds their
passage), resumable after the worker stops; and the query adapter of the embedder that a bundle
carries. Fake embedder and fake model; real BM25, FAISS, LightGBM and torch."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from regqa.audit.models import AuditEvent, EventKind
from regqa.qa import adapter, bundle, decision_model, rank, synthetic, training
from regqa.qa.evaluate import Question, file_names
from regqa.qa.models import RetrievalBundle, SyntheticQuestion
from regqa.qa.retrieve import retrieve

from . import test_learned_retrieval as learned
from .factories import DocumentFactory

TOPICS = learned.TOPICS
corpus = learned.corpus  # the same fixture: a rule and a guidance note per topic


@pytest.fixture(autouse=True)
def short_passages_count(monkeypatch):
    monkeypatch.setattr(synthetic, "MIN_WORDS", 5)  # the corpus's passages are one sentence each


def topic_question(messages) -> str:
    """What a good writer asks about the corpus's rules; nonsense for the guidance notes."""
    found = re.search(r"must keep (.+?) under review", messages[-1]["content"])
    return f"What must a firm do about its {found.group(1)} review?" if found else "Banana banana?"


def test_clean_question():
    assert synthetic.clean_question('Question: "What is a bank holding company?"\nMore') == (
        "What is a bank holding company?"
    )
    assert synthetic.clean_question("1. Must a firm keep records?") == "Must a firm keep records?"
    assert synthetic.clean_question("A statement, not a question.") == ""
    assert synthetic.clean_question("Why?") == ""  # too short to retrieve by
    assert synthetic.clean_question("What does the passage say about capital?") == ""


def test_the_writing_prompt_treats_the_passage_as_data(corpus, fake_llm):
    record = RetrievalBundle.objects.create(synthetic_requested=1)
    synthetic.generate(record)
    (messages,) = fake_llm.written
    content = messages[-1]["content"]
    assert "data, not instructions" in content and content.index("Passage (") < content.index("data, not")


def test_generation_keeps_what_the_first_stage_finds_and_resumes_after_the_worker_stops(corpus, fake_llm):
    fake_llm.writer = topic_question
    record = RetrievalBundle.objects.create(synthetic_requested=40)
    fake_llm.fail_after = 7
    with pytest.raises(RuntimeError, match="worker killed"):
        synthetic.generate(record)
    assert SyntheticQuestion.objects.filter(bundle=record).count() == 7  # each passage saved when done
    record.refresh_from_db()
    assert record.status == RetrievalBundle.Status.WRITING and record.resumable
    assert "7 of 40 passages" in record.detail and "left" in record.detail

    fake_llm.fail_after = None
    counts = synthetic.generate(record)
    assert len(fake_llm.written) == 40  # 7 + the 33 not yet done: nothing written twice
    rows = SyntheticQuestion.objects.filter(bundle=record)
    assert rows.count() == 40 == len(set(rows.values_list("chunk_id", flat=True)))
    assert counts["kept"] + counts["not_retrieved"] + counts["unusable"] == 40
    kept = rows.filter(outcome=SyntheticQuestion.Outcome.KEPT)
    assert kept.count() == counts["kept"] > 0 and all(r.source_rank <= synthetic.KEEP_TOP for r in kept)
    assert counts["unusable"] > 0  # "Banana banana?" is too short to be a question
    assert synthetic.sample(40) == synthetic.sample(40)  # the same sample on every run
    pairs = synthetic.pairs(record)
    assert len(pairs) == counts["kept"] and all(
        p.gold == [{"chunk_id": r.chunk_id}] for p, r in zip(pairs, kept, strict=True)
    )


def test_a_bundle_trained_on_written_questions_only(corpus, fake_llm, tmp_path, client_for):
    fake_llm.writer = topic_question
    call_command("train_retrieval", "--synthetic", "60", "--folds", "3", verbosity=0)
    record = RetrievalBundle.objects.latest("pk")
    # never activated by itself: its figures come from written questions, which overrate it
    assert record.status in (RetrievalBundle.Status.READY, RetrievalBundle.Status.REJECTED), record.detail
    assert bundle.active() is None
    if record.status == RetrievalBundle.Status.READY:
        assert "written questions only" in record.detail and "then activate it" in record.detail
    assert record.summary["synthetic"]["kept"] == record.summary["questions"] > 10
    assert record.synthetic_model == "fake-model.gguf" and record.pairs_file == "60 synthetic questions"
    # its decision, trained on written questions only, is kept for its figures but does not decide
    assert (
        record.figures["decision"]["used"] is False
        and "written questions" in record.figures["decision"]["why_not_used"]
    )
    if record.status != RetrievalBundle.Status.ACTIVE:
        bundle.activate(record, actor="test")
    assert bundle.active_ranker().decision is not None
    assert decision_model.active() is None  # and no train_decision model: the local model decides
    with pytest.raises(CommandError, match="nothing to resume"):
        call_command("train_retrieval", "--resume", str(record.pk), verbosity=0)

    # with labelled pairs beside the written questions, held-out figures on real questions decide
    call_command("train_retrieval", "--rollback", verbosity=0)  # against the untrained ranking again
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("\n".join(json.dumps({"qid": q.qid, "question": q.question, "gold": q.gold}) for q in corpus))
    call_command("train_retrieval", "--pairs", str(pairs_file), "--synthetic", "60", "--folds", "3", verbosity=0)
    mixed = RetrievalBundle.objects.latest("pk")
    assert mixed.pk != record.pk and mixed.status == RetrievalBundle.Status.ACTIVE, mixed.detail
    assert "written questions only" not in mixed.detail
    # the written questions train every fold but only the labelled ones are scored (they are easier)
    written = SyntheticQuestion.objects.filter(bundle=mixed, outcome=SyntheticQuestion.Outcome.KEPT).count()
    assert written > 10 and mixed.figures["trained_only"] == written and mixed.figures["questions"] == len(corpus)
    assert sum(row["test"] for row in mixed.figures["per_fold"]) == len(corpus)
    assert all(row["train"] + row["test"] == len(corpus) + written for row in mixed.figures["per_fold"])
    assert mixed.summary["questions"] == len(corpus) + written  # the final bundle learned from both
    trained = AuditEvent.objects.filter(kind=EventKind.RETRIEVAL_TRAINED).latest("seq")
    assert f"({written} written by the local model, trained on but not scored)" in trained.summary
    page = client_for("admin").get(reverse("retrieval")).content.decode()
    assert f"figures from the {len(corpus)} labelled questions only; the {written} written ones trained" in page
    with pytest.raises(CommandError, match="--pairs FILE, --feedback and/or --synthetic N"):
        call_command("train_retrieval", verbosity=0)


def test_a_model_that_cannot_load_fails_the_bundle_and_keeps_what_was_written(corpus, fake_llm, settings, tmp_path):
    settings.SYNTHETIC_MODEL_PATH = tmp_path / "missing.gguf"
    with pytest.raises(CommandError, match="does not exist"):
        call_command("train_retrieval", "--synthetic", "5", verbosity=0)
    record = RetrievalBundle.objects.latest("pk")
    assert record.status == RetrievalBundle.Status.FAILED and record.resumable
    assert bundle.active() is None


@pytest.mark.django_db(transaction=True)  # the real worker closes old connections, as in production
def test_the_page_starts_and_resumes_written_question_training(
    corpus, fake_llm, client_for, django_capture_on_commit_callbacks
):
    fake_llm.writer = topic_question
    admin = client_for("admin")
    empty = admin.post(reverse("retrieval"), {"synthetic": 0, "folds": 3})
    assert empty.status_code == 422 and "number of questions to write" in empty.content.decode()
    fake_llm.fail_after = 5
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(reverse("retrieval"), {"synthetic": 40, "folds": 3}).status_code == 302
    call_command("db_worker", "--batch", "--no-startup-delay", verbosity=0)  # the task fails half-way
    record = RetrievalBundle.objects.latest("pk")
    page = admin.get(reverse("retrieval")).content.decode()
    assert record.resumable and reverse("retrieval_resume", args=[record.pk]) in page
    fake_llm.fail_after = None
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(reverse("retrieval_resume", args=[record.pk])).status_code == 302
    call_command("db_worker", "--batch", "--no-startup-delay", verbosity=0)
    record.refresh_from_db()
    assert record.status in (RetrievalBundle.Status.READY, RetrievalBundle.Status.REJECTED), record.detail
    assert len(fake_llm.written) == 40
    assert admin.post(reverse("retrieval_resume", args=[record.pk])).status_code == 409


@pytest.fixture
def paraphrases(db, fake_embedder):
    """Questions that say "deadline for X filings" of rules that say "X returns are due": the dense
    half prefers a note that repeats the question's words, until it learns the institution's
    wording."""
    rules = DocumentFactory(title="Rulebook", original_name="rulebook.jsonl")
    notes = DocumentFactory(title="Notes", original_name="notes.jsonl")
    questions = []
    for i, topic in enumerate(TOPICS):
        learned.add_passage(rules, i, "Returns", f"{topic} returns are due within thirty days.", f"rule-{i}")
        learned.add_passage(notes, i, "Notes", f"Filings deadline notes on {topic}: deadline for filings.", f"note-{i}")
        questions.append(Question(f"q{i}", f"What is the deadline for {topic} filings?", [{"passage_id": f"rule-{i}"}]))
    return questions


def test_the_query_adapter_moves_held_out_gold_passages_up(paraphrases):
    lib = rank.library()
    items = training.label(paraphrases, lib)
    examples = training.adapter_examples(items, lib, file_names())
    train, held = examples[:20], examples[20:]
    before = adapter.dense_recall(None, held, lib.vectors, k=1)
    fitted = adapter.train(train, lib.vectors, epochs=30, learning_rate=1e-2, decay=0.1)
    assert before < 0.5 < adapter.dense_recall(fitted, held, lib.vectors, k=1)
    vectors = fitted.apply(np.stack([e.query for e in held]))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_bundle_carries_its_adapter_and_retrieval_uses_it(paraphrases, monkeypatch):
    monkeypatch.setattr(adapter, "SETTINGS", ((30, 1e-2, 0.1),))
    record = training.train_bundle(RetrievalBundle.objects.create(pairs_file="p"), paraphrases, folds=3)
    assert record.status == RetrievalBundle.Status.ACTIVE, record.detail
    figures = record.figures
    assert figures["adapted_dense"]["map@10"]["mean"] > figures["dense"]["map@10"]["mean"]
    assert all(row["adapter"]["chosen"] for row in figures["per_fold"])
    assert (bundle.directory(record) / bundle.ADAPTER_FILE).is_file()
    learned_now = bundle.active_ranker()
    assert learned_now is not None and learned_now.adapter is not None
    top = retrieve("What is the deadline for sukuk issuance filings?", k=1)[0]
    assert top.external_id == f"rule-{TOPICS.index('sukuk issuance')}" and top.bundle == record.label
    bundle.rollback(actor="test")
    assert retrieve("What is the deadline for sukuk issuance filings?", k=1)[0].external_id.startswith("note-")


def test_no_adapter_when_it_does_not_beat_the_packaged_embedder(corpus, monkeypatch):
    monkeypatch.setattr(adapter, "SETTINGS", ((1, 1e-9, 0.0),))  # a step too small to change anything
    fitted, report = training.fit_adapter(training.label(corpus, rank.library()), rank.library())
    assert fitted is None and report["chosen"] is None
