"""Learned ranking: features of (question, candidate passage) pairs that carry across corpora, and
a LightGBM LambdaMART model that orders the first stage's candidates by them.

The first stage is today's: BM25 and dense candidates (the union of each one's top N). The
features say how each half scored and ranked the candidate, whether the rule or section number
the question names is the passage's, how much of the question the passage's heading and text
hold, how long and how normative the passage is, how its neighbours scored, how much of the
candidate list its document fills, and how close its best window (embed.window_blobs) comes to
the question. Nothing identifies a passage: a model trained on one
library's questions never recalls which passages were gold for them.

This module scores; it does not store bundles (bundle.py) or decide which bundle is active.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Count, Max, Q

from regqa.documents import embed, lexical
from regqa.documents.models import Chunk, Document

from .adapter import QueryAdapter
from .verify import content_terms

FEATURES = [
    "bm25",  # BM25 score
    "bm25_rank",  # 1 = best; N + 1 when outside BM25's top N
    "bm25_share",  # score / the question's best BM25 score
    "dense",  # cosine similarity with the question (the bundle's adapted question vector or tuned embedder, if any)
    "dense_rank",
    "dense_gap",  # best dense similarity minus this one
    "rrf",  # weighted reciprocal rank fusion of the two ranks (the untrained ranking)
    "minmax",  # min-max fusion of the two scores over the candidates
    "rule_share",  # share of the question's rule-number tokens the passage carries (0: none asked)
    "rule_depth",  # most dotted levels of a rule number both name
    "asks_rule",  # the question names a rule or section number
    "heading_overlap",  # share of the question's content words in the passage's heading
    "text_overlap",  # share of the question's content words in the passage
    "words",  # passage length
    "normative",  # must, shall, may not, required... in the passage
    "neighbour_dense",  # best dense similarity of the passages just before and after it
    "neighbour_bm25",  # best BM25 share of those neighbours
    "document_share",  # share of the candidates that come from the passage's document
    "question_terms",  # how many content words the question has
    "document_best_bm25",  # best BM25 share among the candidates of the passage's document
    "document_dense_gap",  # best dense similarity overall minus the best of the passage's document
    "rank_in_document",  # the passage's place by fused rank among its document's candidates
    "title_overlap",  # share of the question's content words in the document's title
    "base_dense",  # cosine similarity with the packaged embedder's question vector (= dense, packaged)
    "base_dense_rank",  # its rank over the library (N + 1 outside the top N)
    "window_best",  # cosine similarity of the passage's window closest to the question (= base_dense: no windows)
    "window_rank",  # its rank among the candidates
    "window_gain",  # window_best - base_dense: one paragraph answers better than the whole passage
]
NORMATIVE = re.compile(r"\b(?:must|shall|may not|required|prohibited|should|is to|are to)\b", re.I)
RRF_K = 60  # the usual constant of reciprocal rank fusion
WINDOW_POOL = 20  # the best candidates the untrained ranking reorders by windows, whatever k (docs/benchmarks.md)


# ---------------------------------------------------------------------------------------------
# The library as arrays: every live passage scored at once


@dataclass
class Library:
    """The live passages of ready documents, as arrays aligned by position."""

    ids: np.ndarray  # chunk ids
    vectors: np.ndarray  # stored embeddings (rows are unit vectors)
    document_ids: np.ndarray
    neighbours: np.ndarray  # positions of the passage before and after it in its document (-1: none)
    words: np.ndarray
    normative: np.ndarray
    rules: list[frozenset[str]]
    heading_terms: list[frozenset[str]]
    text_terms: list[frozenset[str]]
    external_ids: list[str]
    pages: list[tuple[int | None, int | None]]
    window_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, embed.DIMENSIONS), dtype="float16"))
    # each passage's rows of window_rows, [start, end) by position (start == end: no windows stored)
    window_spans: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype="int64"))
    title_terms: dict[int, frozenset[str]] = field(default_factory=dict)  # by document id
    version: tuple = ()
    position: dict[int, int] = field(default_factory=dict)
    _lexical_positions: tuple[Any, np.ndarray] | None = None
    gold_index: dict[tuple[str, ...], list[int]] | None = None  # see training.gold_positions

    @classmethod
    def load(cls, version: tuple = ()) -> Library:
        rows = list(
            Chunk.live.filter(document__status=Document.Status.READY)
            .order_by("document_id", "ordinal")
            .values_list(
                "pk",
                "document_id",
                "ordinal",
                "section",
                "text",
                "embedding",
                "external_id",
                "page_start",
                "page_end",
                "windows",
            )  # fmt: skip
        )
        n = len(rows)
        vectors = np.zeros((n, embed.DIMENSIONS), dtype="float32")
        neighbours = np.full((n, 2), -1, dtype="int64")
        blobs = [bytes(row[9] or b"") for row in rows]  # float16 rows (embed.window_vectors)
        window_counts = np.array([len(b) // (2 * embed.DIMENSIONS) for b in blobs], dtype="int64")
        window_ends = np.cumsum(window_counts)
        for i, row in enumerate(rows):
            if row[5]:
                vectors[i] = np.frombuffer(row[5], dtype="float32")
            if i > 0 and rows[i - 1][1] == row[1]:
                neighbours[i, 0], neighbours[i - 1, 1] = i - 1, i
        library = cls(
            ids=np.array([r[0] for r in rows], dtype="int64"),
            vectors=vectors,
            document_ids=np.array([r[1] for r in rows], dtype="int64"),
            neighbours=neighbours,
            words=np.array([len(r[4].split()) for r in rows], dtype="float32"),
            normative=np.array([len(NORMATIVE.findall(r[4])) for r in rows], dtype="float32"),
            rules=[frozenset(lexical.rule_tokens(f"{r[3]} {r[4][:200]}")) for r in rows],
            heading_terms=[frozenset(content_terms(r[3])) for r in rows],
            text_terms=[frozenset(content_terms(r[4])) for r in rows],
            external_ids=[r[6] for r in rows],
            pages=[(r[7], r[8]) for r in rows],
            window_rows=np.frombuffer(b"".join(blobs), dtype="float16").reshape(-1, embed.DIMENSIONS),
            window_spans=np.column_stack([window_ends - window_counts, window_ends]),
            title_terms={
                pk: frozenset(content_terms(title))
                for pk, title in Document.objects.filter(status=Document.Status.READY).values_list("pk", "title")
            },
            version=version,
        )
        library.position = {int(pk): i for i, pk in enumerate(library.ids)}
        return library

    def best_windows(self, positions: np.ndarray, query: np.ndarray, whole: np.ndarray) -> np.ndarray:
        """The similarity of each passage's window closest to `query`; `whole` (the passage's own
        similarity) for a passage stored without windows."""
        out = whole.astype("float32")
        spans = self.window_spans[positions]
        counts = spans[:, 1] - spans[:, 0]
        has = counts > 0
        if has.any():
            rows = np.concatenate([np.arange(start, end) for start, end in spans[has].tolist()])
            similarity = self.window_rows[rows].astype("float32") @ query
            out[has] = np.maximum.reduceat(similarity, np.concatenate([[0], np.cumsum(counts[has])[:-1]]))
        return out

    def bm25(self, question: str) -> np.ndarray:
        """The BM25 score of every passage, by position."""
        index = lexical.get_lexical_index()
        ids, scores = index.all_scores(question)
        if self._lexical_positions is None or self._lexical_positions[0] is not ids:
            self._lexical_positions = (ids, np.array([self.position.get(i, -1) for i in ids], dtype="int64"))
        out = np.zeros(len(self.ids), dtype="float32")
        if len(scores):
            where = self._lexical_positions[1]
            keep = where >= 0
            out[where[keep]] = scores[keep]
        return out


_library_lock = threading.Lock()
_library: Library | None = None


def library() -> Library:
    """The process's Library, rebuilt when the live passages change or gain windows (read from the
    database: the worker embeds windows after a document is ready)."""
    global _library
    version = tuple(
        Chunk.live.filter(document__status=Document.Status.READY)
        .aggregate(n=Count("pk"), last=Max("pk"), windowed=Count("pk", filter=~Q(windows=b"")))
        .values()
    )
    with _library_lock:
        if _library is None or _library.version != version:
            _library = Library.load(version)
        return _library


def forget_library() -> None:
    global _library
    with _library_lock:
        _library = None


# ---------------------------------------------------------------------------------------------
# Candidates and their features


@dataclass
class Candidates:
    """The first stage's candidates for one question: library positions and their features."""

    positions: np.ndarray
    features: np.ndarray  # len(positions) x len(FEATURES)

    def column(self, name: str) -> np.ndarray:
        return self.features[:, FEATURES.index(name)]


def _ranks(scores: np.ndarray, top: np.ndarray, n: int) -> dict[int, int]:
    order = top[np.argsort(-scores[top], kind="stable")]
    return {int(p): r for r, p in enumerate(order[:n], start=1)}


def minmax_normalise(values: np.ndarray) -> np.ndarray:
    if len(values) == 0:
        return values
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def candidates(
    question: str,
    lib: Library,
    n: int | None = None,
    allowed: np.ndarray | None = None,
    fusion_dense_weight: float = 0.5,
    query_vector: np.ndarray | None = None,
    adapter: QueryAdapter | None = None,
    bm25: np.ndarray | None = None,
    tuned: tuple[np.ndarray, np.ndarray] | None = None,
) -> Candidates:
    """The union of BM25's and the dense half's top `n` for the question (`allowed`: a boolean
    mask of positions the question may see), with the features of each. With an `adapter` the
    dense half searches with the adapted question vector; with `tuned` (a fine-tuned embedder's
    passage vectors by position and question vector, encoder.py) it searches those, and the
    packaged embedder's top `n` join the candidates (they find what the tuned copy lacks yet);
    `bm25` passes the question's BM25 scores when they are already known (training relabels the
    same questions per fold)."""
    n = n or settings.RETRIEVAL_CANDIDATES
    count = len(lib.ids)
    if count == 0:
        return Candidates(np.zeros(0, dtype="int64"), np.zeros((0, len(FEATURES)), dtype="float32"))
    q = embed.embed_query(question) if query_vector is None else query_vector
    base = lib.vectors @ q
    if tuned is not None:
        dense = tuned[0] @ tuned[1]
    else:
        dense = base if adapter is None else lib.vectors @ adapter.apply(q)
    bm25 = lib.bm25(question) if bm25 is None else bm25
    if allowed is not None:
        base = np.where(allowed, base, -np.inf).astype("float32")
        dense = np.where(allowed, dense, -np.inf).astype("float32")
        bm25 = np.where(allowed, bm25, -np.inf).astype("float32")
    k = min(n, count)
    top_base = np.zeros(0, dtype="int64")
    if adapter is None and tuned is None:
        base_rank: dict[int, int] | None = None
    else:
        top_base = np.argpartition(-base, k - 1)[:k]
        top_base = top_base[np.isfinite(base[top_base])]
        base_rank = _ranks(base, top_base, k)
    top_dense = np.argpartition(-dense, k - 1)[:k]
    top_bm25 = np.argpartition(-bm25, k - 1)[:k]
    top_dense = top_dense[np.isfinite(dense[top_dense])]
    top_bm25 = top_bm25[np.isfinite(bm25[top_bm25]) & (bm25[top_bm25] > 0)]
    positions = np.union1d(top_dense, top_bm25).astype("int64")
    if tuned is not None:
        positions = np.union1d(positions, top_base).astype("int64")
    if len(positions) == 0:
        return Candidates(positions, np.zeros((0, len(FEATURES)), dtype="float32"))
    dense_rank, bm25_rank = _ranks(dense, top_dense, k), _ranks(bm25, top_bm25, k)
    best_bm25 = max(float(bm25[positions].max()), 1e-6)
    best_dense = float(dense[positions].max())
    bm25_share_all = np.where(np.isfinite(bm25), bm25, 0.0) / best_bm25
    dense_all = np.where(np.isfinite(dense), dense, 0.0)

    terms = content_terms(question)
    asked_rules = set(lexical.rule_tokens(question))
    documents = lib.document_ids[positions]
    doc_values, doc_counts = np.unique(documents, return_counts=True)
    doc_share = dict(zip(doc_values.tolist(), (doc_counts / len(positions)).tolist(), strict=True))
    cand_dense, cand_bm25 = dense[positions], bm25[positions]
    minmax = fusion_dense_weight * minmax_normalise(cand_dense) + (1 - fusion_dense_weight) * minmax_normalise(
        cand_bm25
    )

    rrf = settings.FUSION_DENSE_WEIGHT / (RRF_K + np.array([dense_rank.get(p, k + 1) for p in positions.tolist()]))
    rrf += settings.FUSION_LEXICAL_WEIGHT / (RRF_K + np.array([bm25_rank.get(p, k + 1) for p in positions.tolist()]))
    doc_bm25: dict[int, float] = {}
    doc_dense: dict[int, float] = {}
    doc_rank: dict[int, int] = {}
    in_document = np.zeros(len(positions), dtype="float32")
    for row in np.argsort(-rrf, kind="stable").tolist():
        d = int(documents[row])
        doc_bm25[d] = max(doc_bm25.get(d, 0.0), float(cand_bm25[row]) / best_bm25)
        doc_dense[d] = max(doc_dense.get(d, -1.0), float(cand_dense[row]))
        doc_rank[d] = doc_rank.get(d, 0) + 1
        in_document[row] = doc_rank[d]

    base_cand = base[positions]
    window_best = lib.best_windows(positions, q, base_cand)
    window_rank = np.empty(len(positions), dtype="float32")
    window_rank[np.argsort(-window_best, kind="stable")] = np.arange(1, len(positions) + 1)

    rows = np.zeros((len(positions), len(FEATURES)), dtype="float32")
    for row, p in enumerate(positions.tolist()):
        d = int(lib.document_ids[p])
        dr, br = dense_rank.get(p, k + 1), bm25_rank.get(p, k + 1)
        shared_rules = asked_rules & lib.rules[p]
        nb = [x for x in lib.neighbours[p].tolist() if x >= 0]
        rows[row] = (
            cand_bm25[row],
            br,
            cand_bm25[row] / best_bm25,
            cand_dense[row],
            dr,
            best_dense - cand_dense[row],
            rrf[row],
            minmax[row],
            len(shared_rules) / len(asked_rules) if asked_rules else 0.0,
            max((t.count("_") for t in shared_rules), default=0),
            1.0 if asked_rules else 0.0,
            len(terms & lib.heading_terms[p]) / len(terms) if terms else 0.0,
            len(terms & lib.text_terms[p]) / len(terms) if terms else 0.0,
            lib.words[p],
            lib.normative[p],
            max((float(dense_all[x]) for x in nb), default=0.0),
            max((float(bm25_share_all[x]) for x in nb), default=0.0),
            doc_share[d],
            len(terms),
            doc_bm25[d],
            best_dense - doc_dense[d],
            in_document[row],
            len(terms & lib.title_terms.get(d, frozenset())) / len(terms) if terms else 0.0,
            base[p] if base_rank is not None else cand_dense[row],
            base_rank.get(p, k + 1) if base_rank is not None else dr,
            window_best[row],
            window_rank[row],
            window_best[row] - base_cand[row],
        )
    return Candidates(positions, rows)


# ---------------------------------------------------------------------------------------------
# The model


class Ranker:
    """A LightGBM LambdaMART model over FEATURES (saved as LightGBM's own text format)."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        # the columns it was trained on, by name: a bundle trained before a feature was added still scores
        self.columns = [FEATURES.index(name) for name in booster.feature_name()]

    @classmethod
    def train(
        cls,
        groups: list[Candidates],
        labels: list[np.ndarray],
        *,
        rounds: int = 300,
        learning_rate: float = 0.05,
        leaves: int = 31,
        seed: int = 0,
    ) -> Ranker:
        import lightgbm  # loads OpenMP and LightGBM: only when training or loading a ranker

        kept = [(g, y) for g, y in zip(groups, labels, strict=True) if len(g.positions) and y.any()]
        if not kept:
            raise ValueError("no training question has a gold passage among its candidates")
        x = np.vstack([g.features for g, _ in kept])
        y = np.concatenate([lab for _, lab in kept]).astype("int32")
        data = lightgbm.Dataset(x, y, group=[len(g.positions) for g, _ in kept], feature_name=FEATURES)
        params = {
            "objective": "lambdarank",
            "metric": "map",
            "eval_at": [10],
            "learning_rate": learning_rate,
            "num_leaves": leaves,
            "min_data_in_leaf": 20,
            "feature_fraction": 0.9,
            "lambdarank_truncation_level": 20,
            "num_threads": settings.LLM_THREADS,
            "deterministic": True,
            "force_row_wise": True,
            "seed": seed,
            "verbosity": -1,
        }
        return cls(lightgbm.train(params, data, num_boost_round=rounds))

    def score(self, group: Candidates) -> np.ndarray:
        if len(group.positions) == 0:
            return np.zeros(0)
        return np.asarray(self.booster.predict(group.features[:, self.columns], num_threads=1))

    def order(self, group: Candidates) -> np.ndarray:
        """The candidates' library positions, best first."""
        return group.positions[np.argsort(-self.score(group), kind="stable")]

    def save(self, path: Path) -> None:
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: Path) -> Ranker:
        import lightgbm  # see train

        return cls(lightgbm.Booster(model_file=str(path)))

    def importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        total = float(gains.sum()) or 1.0
        names = self.booster.feature_name()
        return {name: round(float(g) / total, 4) for name, g in zip(names, gains, strict=True)}


def untrained_order(group: Candidates, fusion: str = "rrf") -> np.ndarray:
    """The candidates in the order of a fusion without a model ("rrf" or "minmax"); "rrf" is the
    product's untrained ranking, so with windows on its best WINDOW_POOL are reordered by their best
    windows as retrieve does."""
    rows = np.argsort(-group.column(fusion), kind="stable")
    order = group.positions[rows]
    if fusion != "rrf" or not settings.WINDOW_WORDS:
        return order
    best = group.column("window_best")[rows[:WINDOW_POOL]].tolist()
    return np.array(reorder_by_windows(order.tolist(), best), dtype="int64")


def reorder_by_windows(order: list[int], best: list[float]) -> list[int]:
    """The first WINDOW_POOL items of `order` reordered by reciprocal rank fusion (equal weights) of
    their place and of their best window's similarity to the question (`best`, one for each of
    them), the rest after them: a long passage whose one paragraph answers moves up
    (docs/benchmarks.md, "Passage windows")."""
    pool = order[:WINDOW_POOL]
    by_window = [pool[i] for i in sorted(range(len(pool)), key=lambda i: -best[i])]
    return fuse([pool, by_window], [1.0, 1.0]) + order[WINDOW_POOL:]


def fuse(rankings: list[list[int]], weights: list[float]) -> list[int]:
    """Weighted reciprocal rank fusion: sum of weight / (RRF_K + rank) over the lists."""
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for place, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (RRF_K + place)
    return sorted(scores, key=lambda item: -scores[item])


def pages_first[T](items: list[T], page: Callable[[T], tuple[int, int | None]]) -> list[T]:
    """`items` (passages found, best first) with each page's first ahead of a second passage of a
    page already listed, each group in its order: the passages the model reads (the first
    CONTEXT_PASSAGES) then come from as many pages as the passages shown reach, not from one page
    cut into several passages, and the passages shown stay the ones found (docs/benchmarks.md,
    "Each page's first passage first"). `page`: an item's (document, first page); an item whose
    page is None (passages imported without pages) is never moved back."""
    seen: set[tuple[int, int | None]] = set()
    first: list[T] = []
    later: list[T] = []
    for item in items:
        key = page(item)
        (later if key in seen else first).append(item)
        if key[1] is not None:
            seen.add(key)
    return first + later
