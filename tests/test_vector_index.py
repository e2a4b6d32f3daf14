"""The vector index interface, run against every engine this database offers: FAISS always,
pgvector when the suite runs on PostgreSQL (CI runs it on both: README "Development")."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from regqa.documents import index
from regqa.documents.index import PgVectorIndex, VectorIndex

from .factories import ChunkFactory, DocumentFactory


def unit(rows: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, 384)).astype("float32")
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=["faiss", "pgvector"])
def engine(request, db, tmp_path):
    if request.param == "pgvector":
        if connection.vendor != "postgresql":
            pytest.skip("pgvector needs the suite on PostgreSQL (DATABASE_URL): CI runs it there too")
        return PgVectorIndex()
    return VectorIndex(tmp_path / "index")


def chunks(count: int, **fields):
    return [ChunkFactory(**fields).pk for _ in range(count)]


def test_add_search_remove_and_re_add(engine):
    ids = chunks(10)
    vectors = unit(10)
    engine.add(ids, vectors)
    assert len(engine) == 10 and engine.ids() == set(ids)
    hits = engine.search(vectors[7], 3)
    assert hits[0][0] == ids[7] and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True)
    engine.add([ids[3]], vectors[3:4])  # re-adding replaces, never duplicates
    assert len(engine) == 10
    engine.remove([ids[3], ids[4]])
    assert engine.ids() == set(ids) - {ids[3], ids[4]}
    assert ids[3] not in [i for i, _ in engine.search(vectors[3], 10)]


def test_search_restricted_to_some_passages_finds_them_all(engine):
    """A filter (the ask page's document filters) keeps k results even when the passages it
    allows are far from the query: nothing is lost to a cut-off before the filter."""
    first, second = DocumentFactory(), DocumentFactory()
    ids = chunks(40, document=first) + chunks(5, document=second)
    vectors = unit(45)
    engine.add(ids, vectors)
    allowed = ids[40:]
    hits = engine.search(vectors[0], 5, only=allowed)  # the query is a passage of the other document
    assert sorted(i for i, _ in hits) == sorted(allowed)
    assert engine.search(vectors[0], 5, only=[]) == []


def test_rebuild_replaces_everything(engine):
    ids = chunks(6)
    engine.add(ids[:4], unit(4))
    engine.rebuild(ids[2:], unit(4, seed=1))
    assert engine.ids() == set(ids[2:])
    assert engine.search(unit(4, seed=1)[3], 1)[0][0] == ids[5]


def test_wrong_shape_is_refused(engine):
    with pytest.raises(ValueError):
        engine.add(chunks(2), unit(3))


def test_the_engine_follows_the_database_unless_set(settings):
    index.get_index.cache_clear()
    expected = PgVectorIndex if connection.vendor == "postgresql" else VectorIndex
    assert isinstance(index.get_index(), expected)
    settings.VECTOR_INDEX = "faiss"
    index.get_index.cache_clear()
    assert isinstance(index.get_index(), VectorIndex)
    index.get_index.cache_clear()
