"""Passage import, hybrid retrieval and the evaluation command."""

import io
import json
import math
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command

from regqa.documents import index
from regqa.documents.ingest import ingest_document
from regqa.documents.models import Chunk, Document
from regqa.documents.passages import read_passages, sections_for
from regqa.qa.evaluate import hits_per_rank, score
from regqa.qa.rank import fuse
from regqa.qa.retrieve import Passage, retrieve

from .conftest import FIXTURES, make_pdf

PASSAGES = FIXTURES / "eval" / "passages.jsonl"
QUESTIONS = FIXTURES / "eval" / "questions.jsonl"


# -- metrics, by hand ---------------------------------------------------------------------------


def test_recall_map_ndcg_mrr_against_hand_computed_values():
    # two gold items; hits at ranks 2 and 4 of 5
    m = score([set(), {0}, set(), {1}, set()], n_gold=2, k=5)
    assert m["recall"] == 1.0
    assert m["ap"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["rr"] == 0.5
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)


def test_map_is_normalised_by_gold_count_capped_at_k():
    # 3 gold items, k=2, both top ranks relevant: AP = (1 + 1) / min(3, 2) = 1
    assert score([{0}, {1}, {2}], n_gold=3, k=2)["ap"] == 1.0
    # only one of 3 gold found, at rank 1: AP = 1 / 3, recall = 1 / 3
    m = score([{0}, set(), set()], n_gold=3, k=10)
    assert m["ap"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 3)


def test_a_gold_item_counts_once_even_if_several_passages_hit_it():
    m = score([{0}, {0}, {1}], n_gold=2, k=3)  # rank 2 repeats gold 0: not relevant again
    assert m["ap"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert score([set(), set()], n_gold=1, k=2) == {"recall": 0.0, "ap": 0.0, "ndcg": 0.0, "rr": 0.0}


def test_page_level_gold_matches_the_document_file_and_page_range():
    passage = Passage(
        chunk_id=1, document_id=7, document_title="Reg H", section="", page_start=4, page_end=5, text="text", score=0.5
    )
    gold = [{"document": "12cfr208.pdf", "page": 5}, {"document": "12cfr208.pdf", "page": 6}, {"passage_id": "x"}]
    assert hits_per_rank([passage], gold, {7: "12cfr208.pdf"}) == [{0}]
    assert hits_per_rank([passage], gold, {7: "other.pdf"}) == [set()]


def test_reciprocal_rank_fusion_rewards_agreement_and_honours_weights():
    assert fuse([[1, 2, 3], [3, 1, 4]], [1.0, 1.0])[:2] == [1, 3]
    assert fuse([[1, 2], [2, 1]], [1.0, 3.0])[0] == 2


# -- passage import -----------------------------------------------------------------------------


def test_sections_carry_rule_numbers_and_parent_headings():
    records = read_passages(PASSAGES)[0].records
    sections = dict(zip([r.id for r in records], sections_for(records), strict=True))
    assert sections["p-aml"] == "1.1.1.(1) INTRODUCTION > Jurisdiction"
    assert sections["p-mlro"] == "1.1.2 INTRODUCTION > Jurisdiction"


@pytest.mark.django_db
def test_import_keeps_ids_skips_empty_and_does_not_duplicate(fake_embedder):
    call_command("import_passages", str(PASSAGES), "--document-name", "Rulebook", stdout=io.StringIO(), verbosity=0)
    assert sorted(Document.objects.values_list("title", "chunk_count")) == [("Rulebook 1", 4), ("Rulebook 2", 2)]
    ids = set(Chunk.objects.values_list("external_id", flat=True))
    assert ids == {"p-intro", "p-juris", "p-aml", "p-mlro", "p-capital", "p-liquidity"}
    assert index.get_index().ids() == set(Chunk.objects.values_list("pk", flat=True))
    out = io.StringIO()
    call_command("import_passages", str(PASSAGES), "--document-name", "Rulebook", stdout=out, verbosity=0)
    assert "0 document(s) imported, 2 already present" in out.getvalue()
    assert Chunk.objects.count() == 6


@pytest.mark.django_db
def test_malformed_passage_file_is_refused_with_its_line(tmp_path, fake_embedder):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "doc_id": 1, "text": "ok"}\nnot json\n')
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="line 2"):
        call_command("import_passages", str(bad), "--document-name", "X", verbosity=0)
    assert Document.objects.count() == 0


# -- hybrid retrieval and index consistency -----------------------------------------------------


@pytest.mark.django_db
def test_bm25_half_finds_exact_terms_and_follows_additions_and_removals(fake_embedder, monkeypatch):
    import numpy as np

    from regqa.documents import embed

    call_command("import_passages", str(PASSAGES), "--document-name", "Rulebook", verbosity=0)
    # A query vector orthogonal to everything: dense retrieval is blind, BM25 still finds the term.
    monkeypatch.setattr(embed, "embed_query", lambda text: np.zeros(embed.DIMENSIONS, dtype="float32"))
    found = [p.external_id for p in retrieve("Money Laundering Reporting Officer", k=3, mode="bm25")]
    assert found[0] == "p-mlro"
    assert retrieve("Money Laundering Reporting Officer", k=3, mode="hybrid")[0].external_id == "p-mlro"

    # a PDF added later is searchable at once; deleting it removes it from both halves
    document = Document.objects.create(title="Extra", sha256="c" * 64)
    document.file.save("extra.pdf", ContentFile(make_pdf(["§ 9.1 Scope.\nZebra crossings are regulated."])))
    ingest_document(document.pk)
    assert retrieve("zebra crossings", k=1, mode="bm25")[0].document_id == document.pk
    from regqa.documents.ingest import delete_document

    delete_document(document)
    assert all(p.document_title != "Extra" for p in retrieve("zebra crossings", k=5, mode="bm25"))
    assert index.get_index().ids() == set(Chunk.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_evaluate_command_end_to_end(fake_embedder, tmp_path):
    call_command("import_passages", str(PASSAGES), "--document-name", "Rulebook", verbosity=0)
    out = io.StringIO()
    report = tmp_path / "report.json"
    call_command(
        "evaluate",
        "retrieval",
        "--questions",
        str(QUESTIONS),
        "--k",
        "3",
        "--mode",
        "all",
        "--json",
        str(report),
        stdout=out,
        verbosity=0,
    )
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:4] == ["mode", "questions", "R@3", "MAP@3"]
    assert [line.split()[0] for line in lines[1:]] == ["hybrid", "dense", "bm25"]
    results = json.loads(report.read_text())
    bm25 = results[2]
    assert bm25["questions"] == 3 and len(bm25["per_question"]) == 3
    assert bm25["per_question"][0]["retrieved"][0] == "p-mlro"
    assert bm25["recall@3"] == pytest.approx(sum(q["recall"] for q in bm25["per_question"]) / 3)
    assert 0 < bm25["recall@3"] <= 1 and bm25["latency_ms_median"] > 0


def test_questions_file_errors_are_clear(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="does not exist"):
        call_command("evaluate", "retrieval", "--questions", str(tmp_path / "none.jsonl"))
    empty = Path(tmp_path / "empty.jsonl")
    empty.write_text("")
    with pytest.raises(CommandError, match="no questions"):
        call_command("evaluate", "retrieval", "--questions", str(empty))


@pytest.mark.django_db
def test_bm25_follows_the_database_not_the_index_file(fake_embedder):
    """Ingestion writes the FAISS file before its transaction commits; a BM25 rebuild in that
    window must not leave the new passages out for good."""
    from .factories import ChunkFactory

    call_command("import_passages", str(PASSAGES), "--document-name", "Rulebook", verbosity=0)
    assert retrieve("zebra crossings", k=3, mode="bm25") == []
    chunk = ChunkFactory(text="Zebra crossings are regulated.")  # committed later, index file unchanged
    assert retrieve("zebra crossings", k=3, mode="bm25")[0].chunk_id == chunk.pk
