"""The vector index of passages, keyed by Chunk primary key, behind one interface with two
engines: FAISS on local disk (the default, with SQLite) and pgvector inside PostgreSQL (when the
database is PostgreSQL, or REGQA_VECTOR_INDEX=pgvector), so that any number of web and worker
processes on any machines share one index, written in the same transactions as the passages.

FAISS (VectorIndex): keyed by Chunk primary key.

Several processes use it: the worker writes (ingestion), the web server reads (questions).
Writers take an exclusive file lock, load the latest file, change it and replace the file
atomically (write a temporary file, then rename), so a crash never leaves a half-written index
and readers never see one. Readers notice a new file by its stat and reload it.

IndexFlatIP is exact, needs no training and searches 100k x 384 vectors in about 15 ms on these
machines (see ../shared/MODELS.md), which covers the corpora RegQA is built for.
"""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import faiss
import numpy as np
from django.conf import settings
from django.db import connection, transaction
from pgvector import Vector

from .embed import DIMENSIONS
from .models import Chunk, Document


class VectorIndex:
    def __init__(self, directory: Path, dimensions: int = DIMENSIONS) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "chunks.faiss"
        self.dimensions = dimensions
        self._index: faiss.Index | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    transactional = False  # written after the passages' transaction commits (ingest.IndexChanges)

    # -- reading ------------------------------------------------------------------------------
    def warm_up(self) -> None:
        self.current()

    def _empty(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimensions))

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self) -> faiss.Index:
        return faiss.read_index(str(self.path)) if self.path.exists() else self._empty()

    def current(self) -> faiss.Index:
        """The index as on disk now, reloaded only when the file changed."""
        with self._lock:
            stamp = self._file_stamp()
            if self._index is None or stamp != self._stamp:
                self._index = self._read()
                self._stamp = stamp
            return self._index

    def search(self, vector: np.ndarray, k: int, only: list[int] | None = None) -> list[tuple[int, float]]:
        """The k nearest chunk ids with their inner products; `only` restricts the search to
        those ids (FAISS skips the others during the scan, so nothing is lost to the cut-off)."""
        index = self.current()
        if index.ntotal == 0 or (only is not None and not only):
            return []
        params = None
        if only is not None:
            selector = faiss.IDSelectorBatch(np.asarray(only, dtype="int64"))
            params = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]  # SWIG: keywords set attributes
        query = np.asarray(vector, dtype="float32").reshape(1, -1)
        scores, ids = index.search(query, min(k, index.ntotal), params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1]

    def __len__(self) -> int:
        return self.current().ntotal

    def ids(self) -> set[int]:
        index = self.current()
        id_map = index.id_map  # type: ignore[attr-defined]  # an IndexIDMap2
        return {int(i) for i in faiss.vector_to_array(id_map)} if index.ntotal else set()

    # -- writing ------------------------------------------------------------------------------
    @contextmanager
    def _writing(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "chunks.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                index = self._read()
                yield index
                self._write(index)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _write(self, index: faiss.Index) -> None:
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def add(self, ids: list[int], vectors: np.ndarray) -> None:
        if not ids:
            return
        vectors = np.ascontiguousarray(vectors, dtype="float32")
        if vectors.shape != (len(ids), self.dimensions):
            raise ValueError(f"expected {len(ids)} x {self.dimensions} vectors, got {vectors.shape}")
        with self._writing() as index:
            id_array = np.asarray(ids, dtype="int64")
            index.remove_ids(id_array)  # re-adding an id replaces it instead of duplicating it
            index.add_with_ids(vectors, id_array)

    def remove(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._writing() as index:
            index.remove_ids(np.asarray(ids, dtype="int64"))

    def rebuild(self, ids: list[int], vectors: np.ndarray) -> None:
        with self._writing() as index:
            index.reset()
            if ids:
                index.add_with_ids(np.ascontiguousarray(vectors, dtype="float32"), np.asarray(ids, dtype="int64"))


class PgVectorIndex:
    """Passage vectors in a `vector(384)` column of the passages' own table, with an HNSW index
    for inner product (migration documents 0006, PostgreSQL only, so the Django model does not
    declare the column). A chunk is in the index when its column is set. Writes belong to the
    caller's transaction: the passages and their vectors commit or roll back together."""

    transactional = True

    def __init__(self, dimensions: int = DIMENSIONS, ef_search: int = 200) -> None:
        self.dimensions = dimensions
        self.ef_search = ef_search  # HNSW candidates per search: recall against exact search

    def warm_up(self) -> None:
        len(self)

    def search(self, vector: np.ndarray, k: int, only: list[int] | None = None) -> list[tuple[int, float]]:
        """As VectorIndex.search. `only` is applied during the HNSW scan (pgvector's iterative
        scan keeps looking until k rows pass the filter), then the rows are ordered exactly."""
        if k <= 0 or (only is not None and not only):
            return []
        query = Vector(np.asarray(vector, dtype="float32").reshape(-1)).to_text()
        where, allowed = "vector IS NOT NULL", []
        if only is not None:
            where += " AND id = ANY(%s)"
            allowed.append(list(only))
        sql = (
            f"SELECT id, score FROM (SELECT id, -(vector <#> %s::vector) AS score FROM documents_chunk "
            f"WHERE {where} ORDER BY vector <#> %s::vector LIMIT %s) hits ORDER BY score DESC, id"
        )
        with transaction.atomic(), connection.cursor() as cursor:  # the settings last for this transaction
            cursor.execute(
                "SELECT set_config('hnsw.ef_search', %s, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true)",
                [str(max(self.ef_search, k))],
            )
            cursor.execute(sql, [query, *allowed, query, k])
            return [(int(i), float(score)) for i, score in cursor.fetchall()]

    def __len__(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM documents_chunk WHERE vector IS NOT NULL")
            return int(cursor.fetchone()[0])

    def ids(self) -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM documents_chunk WHERE vector IS NOT NULL")
            return {int(row[0]) for row in cursor.fetchall()}

    def add(self, ids: list[int], vectors: np.ndarray, batch: int = 1000) -> None:
        if not ids:
            return
        vectors = np.asarray(vectors, dtype="float32")
        if vectors.shape != (len(ids), self.dimensions):
            raise ValueError(f"expected {len(ids)} x {self.dimensions} vectors, got {vectors.shape}")
        with transaction.atomic(), connection.cursor() as cursor:
            for start in range(0, len(ids), batch):
                texts = [Vector(row).to_text() for row in vectors[start : start + batch]]
                cursor.execute(
                    "UPDATE documents_chunk SET vector = data.v::vector FROM "
                    "(SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS v) data "
                    "WHERE documents_chunk.id = data.id",
                    [list(ids[start : start + batch]), texts],
                )

    def remove(self, ids: list[int]) -> None:
        if not ids:
            return
        with connection.cursor() as cursor:
            cursor.execute("UPDATE documents_chunk SET vector = NULL WHERE id = ANY(%s)", [list(ids)])

    def rebuild(self, ids: list[int], vectors: np.ndarray) -> None:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("UPDATE documents_chunk SET vector = NULL WHERE vector IS NOT NULL")
            self.add(ids, vectors)


def engine() -> str:
    """ "pgvector" or "faiss": REGQA_VECTOR_INDEX, or by the database ("auto")."""
    if settings.VECTOR_INDEX != "auto":
        return settings.VECTOR_INDEX
    return "pgvector" if connection.vendor == "postgresql" else "faiss"


@cache
def get_index() -> VectorIndex | PgVectorIndex:
    if engine() == "pgvector":
        return PgVectorIndex()
    return VectorIndex(settings.INDEX_DIR)


# ---------------------------------------------------------------------------------------------
# Keeping the index and the database in step (manage.py index rebuild / check)


def live_chunks():
    """Chunks of ready documents: exactly what the index should hold."""
    return Chunk.live.filter(document__status=Document.Status.READY)


def rebuild_from_database(batch: int = 5000) -> int:
    """Replace the index with the stored embeddings of every live chunk (no re-encoding)."""
    ids, vectors = [], []
    for pk, blob in live_chunks().values_list("pk", "embedding").iterator(chunk_size=batch):
        ids.append(pk)
        vectors.append(np.frombuffer(blob, dtype="float32"))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, DIMENSIONS), dtype="float32")
    get_index().rebuild(ids, matrix)
    return len(ids)


def check_against_database() -> tuple[set[int], set[int]]:
    """(ids the index lacks, ids the index has but the database does not serve)."""
    expected = set(live_chunks().values_list("pk", flat=True))
    present = get_index().ids()
    return expected - present, present - expected


def repair() -> tuple[int, int]:
    """Make the index match the database: add live chunks it lacks (from their stored
    embeddings), drop ids no live chunk has. A worker killed between writing the index and
    committing its transaction leaves such ids; ingestion calls this before each document.
    Returns (added, removed)."""
    missing, extra = check_against_database()
    if extra:
        get_index().remove(sorted(extra))
    if missing:
        rows = live_chunks().filter(pk__in=missing).values_list("pk", "embedding")
        ids, vectors = zip(*[(pk, np.frombuffer(blob, dtype="float32")) for pk, blob in rows], strict=True)
        get_index().add(list(ids), np.vstack(vectors))
    return len(missing), len(extra)
