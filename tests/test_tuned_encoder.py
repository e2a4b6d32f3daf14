"""A retrieval bundle that fine-tunes the embedder: the dense half searches the bundle's own vectors
of the library, the packaged vectors stay the ranker's base feature, passages added later are
embedded by the worker, and rolling back returns to the packaged embedder. Fake embedder for the
stored (packaged) vectors; the fine-tuning and its vectors use the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from regqa.documents.models import Chunk
from regqa.qa import bundle, encoder, rank, training
from regqa.qa.models import RetrievalBundle
from regqa.qa.retrieve import retrieve

from . import test_learned_retrieval as learned
from . import test_synthetic

corpus = learned.corpus
paraphrases = test_synthetic.paraphrases
TOPICS = learned.TOPICS


def test_candidates_search_the_tuned_vectors_and_keep_the_packaged_top(corpus):
    lib = rank.library()
    question = "What must a firm do about its liquidity buffers review?"
    tuned = np.zeros_like(lib.vectors)
    target = lib.external_ids.index("rule-5")
    tuned[target, 0] = 1.0
    query = np.zeros(lib.vectors.shape[1], dtype="float32")
    query[0] = 1.0
    no_words = np.zeros(len(lib.ids), dtype="float32")  # BM25 proposes nothing: only the two dense halves
    group = rank.candidates(question, lib, n=2, bm25=no_words, tuned=(tuned, query))
    found = {lib.external_ids[int(p)]: row for p, row in zip(group.positions, group.features, strict=True)}
    f = rank.FEATURES.index
    assert found["rule-5"][f("dense")] == pytest.approx(1.0) and found["rule-5"][f("dense_rank")] == 1
    packaged = rank.candidates(question, lib, n=2, bm25=no_words)
    packaged_top = {lib.external_ids[int(p)] for p in packaged.positions}
    assert packaged_top <= set(found), "the packaged embedder's top candidates join the tuned ones"
    for name in packaged_top:
        p = lib.external_ids.index(name)
        assert found[name][f("base_dense")] == pytest.approx(float(lib.vectors[p] @ packaged_query(question)), abs=1e-5)
        assert found[name][f("dense")] == pytest.approx(0.0)  # the tuned copy knows nothing of it


def packaged_query(question: str) -> np.ndarray:
    from regqa.documents import embed

    return embed.embed_query(question)


def test_refreshing_drops_the_vectors_of_passages_no_longer_live(tmp_path):
    (tmp_path / encoder.MODEL_DIR).mkdir()  # no passage to embed: the weights are not read
    vectors = np.eye(3, rank.embed.DIMENSIONS, dtype="float32")
    encoder.write_vectors(tmp_path, np.array([10, 11, 12]), vectors)
    assert encoder.refresh(tmp_path, [10, 12]) == 0
    kept = encoder.TunedEncoder.load(tmp_path)
    assert kept is not None and kept.ids.tolist() == [10, 12] and np.array_equal(kept.vectors, vectors[[0, 2]])
    assert [f.name for f in tmp_path.iterdir() if f.is_file()] == [encoder.VECTORS_FILE]  # no partial file left
    assert encoder.refresh(tmp_path / "no-bundle-here", [10]) == 0


def test_the_page_asks_for_a_fine_tuned_embedder(
    users, client_for, corpus, tmp_path, django_capture_on_commit_callbacks
):
    pairs = "".join(json.dumps({"qid": q.qid, "question": q.question, "gold": q.gold}) + "\n" for q in corpus)
    admin = client_for("admin")
    with django_capture_on_commit_callbacks(execute=False):
        response = admin.post(
            reverse("retrieval"),
            {"pairs": SimpleUploadedFile("p.jsonl", pairs.encode()), "folds": 3, "fine_tune_embedder": "on"},
        )
    assert response.status_code == 302
    assert RetrievalBundle.objects.get().fine_tune_embedder
    page = admin.get(reverse("retrieval")).content.decode()
    assert "with a fine-tuned embedder" in page and "Fine-tune the embedder" in page


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the real worker closes old connections, as in production
def test_a_bundle_fine_tunes_the_embedder_searches_its_own_vectors_and_embeds_new_passages(
    paraphrases, monkeypatch, tmp_path, django_capture_on_commit_callbacks, settings
):
    # 20 one-sentence pairs: the product's settings would barely move. Each fold chooses between a
    # rate that learns nothing and one that learns; the final embedder takes the folds' choice.
    settings.ENCODER_SETTINGS = ((1, 1e-9), (6, 1e-4))
    monkeypatch.setattr(encoder, "BATCH", 4)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(json.dumps({"qid": q.qid, "question": q.question, "gold": q.gold}) + "\n" for q in paraphrases)
    )
    call_command("train_retrieval", "--pairs", str(pairs), "--folds", "3", "--fine-tune-embedder", verbosity=0)
    record = RetrievalBundle.objects.get()
    assert record.status == RetrievalBundle.Status.ACTIVE, record.detail
    figures = record.figures
    k = figures["k"]
    # held out by question: the fine-tuned embedder finds the rules the packaged one misses
    tuned, packaged = figures[training.TUNED][f"map@{k}"]["mean"], figures["dense"][f"map@{k}"]["mean"]
    assert tuned > packaged + 0.1, (tuned, packaged)
    assert all("encoder" in row and "adapter" not in row for row in figures["per_fold"])
    assert [row["encoder"]["choice"]["chosen"] for row in figures["per_fold"]] == ["6 epochs, lr 0.0001"] * 3
    assert figures["embedder_setting"] == "6 epochs, lr 0.0001, 1 hard negative"
    manifest = json.loads((bundle.directory(record) / "bundle.json").read_text())
    assert manifest["embedder"]["fine_tuned"]["choice"]["why"] == "chosen by the folds"
    folder = bundle.directory(record)
    assert (folder / encoder.MODEL_DIR / "config.json").is_file() and not (folder / bundle.ADAPTER_FILE).exists()
    assert not (settings.DATA_DIR / "retrieval" / "work" / str(record.pk)).exists(), "scratch models removed"
    stored = encoder.TunedEncoder.load(folder)
    assert stored is not None and set(stored.ids.tolist()) == set(Chunk.live.values_list("pk", flat=True))

    question = "What is the deadline for sukuk issuance filings?"
    top = retrieve(question, k=1)[0]
    assert top.external_id == f"rule-{TOPICS.index('sukuk issuance')}" and top.bundle == record.label

    # a document added after training: found at once by words and the packaged embedder, then the
    # worker embeds it with the bundle's encoder and the dense half finds it too
    rules = learned.Document.objects.get(original_name="rulebook.jsonl")
    added = learned.add_passage(
        rules, 99, "Returns", "Tokenised deposits returns are due within thirty days.", "rule-new"
    )
    with django_capture_on_commit_callbacks(execute=True):
        retrieve("What is the deadline for tokenised deposits filings?", k=3)
    call_command("db_worker", "--batch", "--no-startup-delay", verbosity=0)
    refreshed = encoder.TunedEncoder.load(folder)
    assert refreshed is not None and added.pk in refreshed.ids.tolist()
    learned_now = bundle.active_ranker()
    assert learned_now is not None and learned_now.encoder is not None
    assert added.pk in learned_now.encoder.ids.tolist(), "the process reloads the refreshed vectors"
    assert retrieve("What is the deadline for tokenised deposits filings?", k=1)[0].external_id == "rule-new"

    bundle.rollback(actor="test")
    assert retrieve(question, k=1)[0].external_id.startswith("note-")


@pytest.mark.slow
def test_the_epochs_and_rate_are_chosen_on_questions_the_training_never_sees(
    paraphrases, monkeypatch, tmp_path, settings
):
    monkeypatch.setattr(encoder, "BATCH", 4)
    settings.ENCODER_SETTINGS = ((1, 1e-9), (6, 1e-4))  # a rate that learns nothing, and one that learns
    settings.ENCODER_NEGATIVES = 2
    lib = rank.library()
    items = training.label(paraphrases, lib)
    trained_on = []
    real_train = encoder.train

    def train(triples, out_dir, epochs, rate, progress=None):
        assert {len(t) for t in triples} == {4}, "question, gold passage and two hard negatives"
        trained_on.append({t[0] for t in triples})
        return real_train(triples, out_dir, epochs, rate, progress)

    monkeypatch.setattr(encoder, "train", train)
    epochs, rate, report = training.choose_encoder_setting(
        items, lib, encoder.passage_texts(lib.ids.tolist()), tmp_path / "choice", None
    )
    assert (epochs, rate) == (6, 1e-4) and report["chosen"] == "6 epochs, lr 0.0001"
    tried = report["tried"]
    assert tried["6 epochs, lr 0.0001"] > tried["1 epoch, lr 1e-09"]
    fit, check = report["questions"]
    assert fit + check == len(paraphrases) and check > 0
    inner = training.folds_of(paraphrases, 5, salt="encoder")
    checked = {q.question for q, f in zip(paraphrases, inner, strict=True) if f == 0}
    assert len(trained_on) == 2 and all(not (questions & checked) for questions in trained_on)
    assert not (tmp_path / "choice").exists(), "the trial models are removed"


def test_the_final_embedder_takes_the_setting_the_folds_chose_most():
    def fold(epochs, rate, tried=True):
        return {"epochs": epochs, "learning_rate": rate, "choice": {"tried": {"...": 1.0} if tried else None}}

    assert training.most_chosen([fold(1, 2e-5), fold(2, 2e-5), fold(2, 2e-5)]) == (2, 2e-5)
    assert training.most_chosen([fold(1, 5e-5), fold(2, 2e-5)]) == (1, 5e-5), "a tie: the earliest fold's"
    assert training.most_chosen([fold(1, 2e-5, tried=False)]) is None, "no choice made: none to follow"


def test_one_setting_is_used_without_a_trial(corpus, monkeypatch, tmp_path, settings):
    settings.ENCODER_SETTINGS = ((2, 3e-5),)
    monkeypatch.setattr(encoder, "train", lambda *a, **k: pytest.fail("no trial fine-tune for a single setting"))
    lib = rank.library()
    items = training.label(corpus, lib)
    epochs, rate, report = training.choose_encoder_setting(items, lib, [], tmp_path, None)
    assert (epochs, rate, report["chosen"]) == (2, 3e-5, "2 epochs, lr 3e-05")


@pytest.mark.parametrize("negatives", [0, 1, 2])
def test_each_pair_carries_the_untrained_rankings_best_non_gold_passages_as_hard_negatives(corpus, settings, negatives):
    settings.ENCODER_NEGATIVES = negatives
    lib = rank.library()
    items = training.label(corpus, lib)
    texts = encoder.passage_texts(lib.ids.tolist())
    tuples = training.encoder_triples(items, lib, texts)
    assert len(tuples) == len(corpus)
    for item, (question, gold, *hard) in zip(items, tuples, strict=True):
        position = lib.external_ids.index(item.question.gold[0]["passage_id"])
        expected = [int(p) for p in rank.untrained_order(item.group) if int(p) != position][:negatives]
        assert question == item.question.question and gold == texts[position]
        assert hard == [texts[p] for p in expected] and gold not in hard
    if negatives:  # the guidance note on the same topic outranks the rule untrained: the first negative
        assert all("Guidance on" in t[2] for t in tuples)


@pytest.mark.parametrize(
    "value, error",
    [("2", "EPOCHS:LEARNING_RATE"), ("1:fast", "EPOCHS:LEARNING_RATE"), ("0:2e-5", "at least 1"), ("1:2", "between")],
)
def test_bad_encoder_settings_fail_at_start_up(value, error):
    done = start_up({"REGQA_ENCODER_SETTINGS": value})
    assert done.returncode != 0 and "REGQA_ENCODER_SETTINGS" in done.stderr and error in done.stderr


def test_an_empty_setting_is_the_default_and_negatives_cannot_be_negative():
    done = start_up(
        {"REGQA_ENCODER_SETTINGS": "", "REGQA_ENCODER_NEGATIVES": ""},
        "print(settings.ENCODER_SETTINGS, settings.ENCODER_NEGATIVES)",
    )
    assert done.returncode == 0 and done.stdout.strip() == "((1, 2e-05),) 1", done.stderr
    done = start_up({"REGQA_ENCODER_NEGATIVES": "-1"})
    assert done.returncode != 0 and "REGQA_ENCODER_NEGATIVES must be at least 0" in done.stderr


def start_up(variables: dict[str, str], then: str = "") -> subprocess.CompletedProcess[str]:
    """Python started with the settings read from `variables` (and nothing else of this process's)."""
    env = {"DJANGO_SETTINGS_MODULE": "regqa.settings", "REGQA_SECRET_KEY": "x"} | variables
    code = f"import django; django.setup(); from django.conf import settings; {then}"
    return subprocess.run(
        [sys.executable, "-c", code], env=env | {"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
