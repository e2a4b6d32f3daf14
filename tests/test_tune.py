"""Fine-tuning the embedding model on (question, gold passage) pairs, and re-embedding the library."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from django.core.management import call_command

from regqa.documents import embed
from regqa.documents.models import Chunk
from regqa.documents.tune import fine_tune, length_batches, reembed_library, training_pairs
from regqa.qa.evaluate import Question

from .conftest import FIXTURES
from .factories import ChunkFactory, DocumentFactory

pytestmark = pytest.mark.django_db

PASSAGES = FIXTURES / "eval" / "passages.jsonl"


def test_training_pairs_follow_passage_ids_and_pages():
    rulebook = DocumentFactory(title="Rulebook", original_name="rules.pdf")
    ChunkFactory(document=rulebook, text="Records are kept six years.", external_id="p-1", page_start=2, page_end=3)
    ChunkFactory(document=rulebook, text="Fees are due monthly.", page_start=5, page_end=5)
    questions = [
        Question("q1", "How long are records kept?", [{"passage_id": "p-1"}, {"passage_id": "missing"}]),
        Question("q2", "When are fees due?", [{"document": "rules.pdf", "page": 5}]),
        Question("q3", "Unknown?", [{"document": "other.pdf", "page": 1}]),
    ]
    pairs = training_pairs(questions)
    assert pairs == [
        ("How long are records kept?", "Rulebook\nRecords are kept six years."),
        ("When are fees due?", "Rulebook\nFees are due monthly."),
    ]


def test_too_few_pairs_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        fine_tune([("q", "p")], tmp_path / "model")


def test_batches_group_items_of_similar_length_and_change_from_epoch_to_epoch():
    rng = random.Random(0)
    lengths = [rng.randrange(10, 256) for _ in range(200)]
    first, second = length_batches(lengths, 8, rng), length_batches(lengths, 8, rng)
    for batches in (first, second):
        assert sorted(i for batch in batches for i in batch) == list(range(200))  # each item once
        assert all(len(batch) == 8 for batch in batches)
        # padded to its longest: a batch spans at most two length groups of 16 tokens
        assert all(max(lengths[i] // 16 for i in b) - min(lengths[i] // 16 for i in b) <= 1 for b in batches)
    assert first != second
    assert {frozenset(b) for b in first} != {frozenset(b) for b in second}  # members change, not only order
    # batches come in random order, not shortest first
    assert [max(lengths[i] for i in b) for b in first] != sorted(max(lengths[i] for i in b) for b in first)


@pytest.mark.slow
def test_tuning_brings_questions_closer_to_their_passages_and_reembed_uses_the_tuned_model(tmp_path, settings):
    call_command("import_passages", str(PASSAGES), "--document-name", "Rulebook", verbosity=0)
    by_id = dict(Chunk.objects.values_list("external_id", "text"))
    questions = tmp_path / "train.jsonl"
    rows = [
        ('{"qid": "a", "question": "Who needs an MLRO?", "gold": [{"passage_id": "p-mlro"}]}'),
        ('{"qid": "b", "question": "Where does the AML Rulebook apply?", "gold": [{"passage_id": "p-aml"}]}'),
    ]
    rows.append('{"qid": "c", "question": "Which jurisdiction?", "gold": [{"passage_id": "p-juris"}]}')
    questions.write_text("\n".join(rows) + "\n")
    evaluation = tmp_path / "holdout.jsonl"  # its gold passage must not be trained on
    evaluation.write_text(
        '{"qid": "h", "question": "What jurisdiction applies?", "gold": [{"passage_id": "p-juris"}]}\n'
    )
    pairs = training_pairs([Question("a", "Who needs an MLRO?", [{"passage_id": "p-mlro"}])])
    assert pairs and by_id["p-mlro"] in pairs[0][1]

    def similarity() -> float:
        q, p = embed.embed_passages(["Who needs an MLRO?", pairs[0][1]])
        return float(np.dot(q, p))

    before = similarity()
    out = io.StringIO()
    model_dir = tmp_path / "tuned"
    call_command("tune_embedder", "--questions", str(questions), "--out", str(model_dir), "--epochs", "8",
                 "--batch-size", "2", "--learning-rate", "1e-4", "--exclude", str(evaluation),
                 stdout=out, verbosity=0)  # fmt: skip
    assert "3 (question, gold passage) pairs" in out.getvalue() and "2 pairs left" in out.getvalue()
    assert (model_dir / "config.json").is_file()

    settings.EMBEDDING_MODEL_PATH = str(model_dir)
    embed.get_model.cache_clear()
    try:
        after = similarity()
        assert after > before + 0.05, (before, after)
        stored_before = Chunk.objects.get(external_id="p-mlro").embedding
        assert reembed_library() == Chunk.objects.count()
        chunk = Chunk.objects.select_related("document").get(external_id="p-mlro")
        assert chunk.embedding != stored_before
        from regqa.documents.chunking import embedding_text

        expected = embed.embed_passages([embedding_text(chunk.section, chunk.text, chunk.document.title)])[0]
        assert np.allclose(np.frombuffer(chunk.embedding, dtype="float32"), expected, atol=1e-5)
    finally:
        embed.get_model.cache_clear()
