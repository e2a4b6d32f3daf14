import numpy as np
import pytest

from regqa.documents.index import VectorIndex


def unit(rows: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, 384)).astype("float32")
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_save_and_load_round_trip(tmp_path):
    vectors = unit(50)
    VectorIndex(tmp_path).add(list(range(100, 150)), vectors)
    reopened = VectorIndex(tmp_path)  # another process would do exactly this
    assert len(reopened) == 50
    hits = reopened.search(vectors[7], 3)
    assert hits[0][0] == 107
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert reopened.ids() == set(range(100, 150))
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_remove_and_re_add_do_not_duplicate(tmp_path):
    index = VectorIndex(tmp_path)
    vectors = unit(10)
    index.add(list(range(10)), vectors)
    index.add([3], vectors[3:4])
    assert len(index) == 10
    index.remove([3, 4])
    assert index.ids() == set(range(10)) - {3, 4}
    assert 3 not in [i for i, _ in index.search(vectors[3], 10)]


def test_reader_sees_writes_from_another_instance(tmp_path):
    reader, writer = VectorIndex(tmp_path), VectorIndex(tmp_path)
    assert reader.search(unit(1)[0], 5) == []
    writer.add([1, 2], unit(2))
    assert reader.ids() == {1, 2}


def test_wrong_shape_is_refused(tmp_path):
    with pytest.raises(ValueError):
        VectorIndex(tmp_path).add([1, 2], unit(3))


@pytest.mark.django_db
def test_check_finds_drift_and_rebuild_repairs_it(fake_embedder):
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from regqa.documents import index
    from regqa.documents.models import Chunk, Document

    from .factories import ChunkFactory

    chunks = [ChunkFactory(embedding=unit(1, seed=i)[0].tobytes()) for i in range(4)]
    index.get_index().add([c.pk for c in chunks[:3]], unit(3))  # one passage never reached the index
    stale = ChunkFactory(document__status=Document.Status.FAILED)
    index.get_index().add([stale.pk], unit(1))  # and one that is not live is left behind
    with pytest.raises(CommandError, match="1 passage\\(s\\) missing .* 1 in the index but not live"):
        call_command("index", "check")
    out = io.StringIO()
    call_command("index", "rebuild", stdout=out)
    assert "4 passages" in out.getvalue()
    call_command("index", "check", stdout=io.StringIO())
    assert index.get_index().ids() == set(Chunk.objects.exclude(pk=stale.pk).values_list("pk", flat=True))
    # rebuilt from the stored embeddings: each passage finds itself
    assert index.get_index().search(unit(1, seed=2)[0], 1)[0][0] == chunks[2].pk


@pytest.mark.django_db
def test_bm25_parameters_come_from_settings(settings):
    """b normalises by passage length: at 0 a term counts the same in a short and a long passage."""
    from regqa.documents.lexical import LexicalIndex

    from .factories import ChunkFactory

    short = ChunkFactory(text="Capital buffers.")
    long = ChunkFactory(text="Capital buffers. " + " ".join(f"filler{i} words" for i in range(60)))
    ChunkFactory(text="Unrelated liquidity text.")

    def scores() -> dict[int, float]:
        return dict(LexicalIndex().search("capital buffers", k=3))

    settings.BM25_B = 0.0
    flat = scores()
    assert flat[short.pk] == pytest.approx(flat[long.pk])
    settings.BM25_B = 1.0
    normalised = scores()
    assert normalised[short.pk] > normalised[long.pk]


def test_rule_numbers_become_tokens_of_their_own():
    from regqa.documents.lexical import rule_tokens, tokenize

    assert rule_tokens("Under Rule 6.2.1(a)(i)") == ["r6_2", "r6_2_1", "r6_2_1_a"]
    assert rule_tokens("3.2.1.(1) Jurisdiction") == ["r3_2", "r3_2_1", "r3_2_1_1"]
    assert rule_tokens("§ 208.6(b) and 12 CFR 223.14") == ["r208_6", "r208_6_b", "r223_14"]
    assert rule_tokens("Rule 7 applies") == []
    # the word tokenizer alone keeps nothing of a rule number
    assert "r4_1_1" in tokenize(["Rule 4.1.1 applies"])[0]


@pytest.mark.django_db
def test_bm25_finds_the_rule_a_question_names():
    """The rule whose number the question gives comes first, though another matches its words better."""
    from regqa.documents.lexical import LexicalIndex

    from .factories import ChunkFactory

    other = ChunkFactory(section="3.2.2.(1)", text="A firm must notify the Regulator, and notify it in writing.")
    named = ChunkFactory(section="3.2.1.(1)", text="A firm must notify the Regulator of a change in control.")
    ChunkFactory(section="5.1.1", text="Records of client money must be kept for six years.")
    found = [pk for pk, _ in LexicalIndex().search("What must a firm notify under Rule 3.2.1(1)?", k=3)]
    assert found[:2] == [named.pk, other.pk]
