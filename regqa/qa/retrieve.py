"""Find the passages that best match a question: dense + BM25, fused by rank, then reordered by
the passages' best windows (or by a retrieval bundle's learned ranker); of the passages found,
each page's first comes ahead of a second passage of a page already listed.

Dense retrieval (all-MiniLM-L6-v2 + FAISS) finds paraphrases; BM25 finds the exact words of
regulation (rule numbers, defined terms). Each proposes candidates; weighted reciprocal rank
fusion merges the two lists. Every passage keeps its dense cosine similarity as `score`, which
is what the "does the corpus cover this?" check and the UI use.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings

from regqa.documents import embed, index, lexical
from regqa.documents.models import Chunk, Document

from . import bundle, rank
from .schemas import Passage

MODES = ("hybrid", "dense", "bm25")


def retrieve(
    question: str, k: int | None = None, mode: str | None = None, documents: list[int] | None = None
) -> list[Passage]:
    """The best k passages of ready documents, best first; `documents` restricts the search to
    those document ids (the ask page's filters).

    Ids without a live chunk (a document deleted a moment ago) are skipped, so the indexes being
    briefly ahead of the database never shows a dead passage.
    """
    k = k or settings.RETRIEVE_TOP_K
    mode = mode or settings.RETRIEVAL_MODE
    n = max(settings.RETRIEVAL_CANDIDATES, k)
    query = embed.embed_query(question)
    learned = bundle.active_ranker() if mode == "hybrid" else None
    label = ""
    reranked: dict[int, float] = {}
    if learned is not None:
        lib = rank.library()
        allowed = None if documents is None else np.isin(lib.document_ids, documents)
        tuned = None
        if learned.encoder is not None:
            tuned = (learned.encoder.aligned(lib), learned.encoder.embed([question])[0])
            bundle.refresh_when_behind(learned, lib)
        group = rank.candidates(
            question, lib, learned.manifest.get("depth", n), allowed, query_vector=query, adapter=learned.adapter,
            tuned=tuned,
        )  # fmt: skip
        scores = learned.ranker.score(group)
        best = np.argsort(-scores, kind="stable")[: k * 4]
        ranked = [int(lib.ids[group.positions[i]]) for i in best]
        reranked = {chunk_id: round(float(scores[i]), 4) for chunk_id, i in zip(ranked, best, strict=True)}
        label = learned.bundle.label
    else:
        ranked = first_stage(question, query, mode, n, documents)[: k * 4]
    reorder = learned is None and mode == "hybrid" and bool(settings.WINDOW_WORDS)
    rows = Chunk.live.select_related("document")
    chunks = (rows if reorder else rows.defer("windows")).in_bulk(ranked)  # the window vectors only when read
    if reorder:
        ranked = by_windows(ranked, chunks, query)
    passages: list[Passage] = []
    kept_vectors: list[np.ndarray] = []
    for chunk_id in ranked:
        chunk = chunks.get(chunk_id)
        if chunk is None or chunk.document.status != Document.Status.READY:
            continue
        vector = np.frombuffer(chunk.embedding, dtype="float32") if chunk.embedding else np.zeros_like(query)
        twin = next((i for i, v in enumerate(kept_vectors) if same_text(v, vector, passages[i].text, chunk.text)), None)
        if twin is not None:  # the same text in another document (an annual edition printing it again)
            passages[twin].also_in.append(
                {"chunk_id": chunk.pk, "document_id": chunk.document_id, "document_title": chunk.document.title,
                 "page_start": chunk.page_start, "page_end": chunk.page_end}
            )  # fmt: skip
            continue
        if len(passages) == k:
            continue  # full: later chunks can still be twins of the kept ones, nothing else
        kept_vectors.append(vector)
        passages.append(
            Passage(
                chunk_id=chunk.pk,
                document_id=chunk.document_id,
                document_title=chunk.document.title,
                section=chunk.section,
                page_start=chunk.page_start,
                page_end=chunk.page_end,
                text=chunk.text,
                score=round(float(vector @ query), 4),
                external_id=chunk.external_id,
                document_sha256=chunk.document.sha256,
                document_version=chunk.document.version,
                sensitivity=chunk.document.sensitivity,
                bundle=label,
                rerank=reranked.get(chunk.pk),
            )
        )
    return rank.pages_first(passages, lambda p: (p.document_id, p.page_start))


def by_windows(ranked: list[int], chunks: dict[int, Chunk], query: np.ndarray) -> list[int]:
    """The best WINDOW_POOL candidates reordered by reciprocal rank fusion of the order found and of
    each passage's best window's similarity to the question (a passage with one paragraph that
    answers ranks by that paragraph, not by the average of all of them: docs/benchmarks.md,
    "Passage windows"). A passage stored without windows takes its own vector's similarity."""
    best = [window_similarity(chunks.get(chunk_id), query) for chunk_id in ranked[: rank.WINDOW_POOL]]
    return rank.reorder_by_windows(ranked, best)


def window_similarity(chunk: Chunk | None, query: np.ndarray) -> float:
    """The cosine similarity of the passage's window closest to the question (-1: no passage)."""
    if chunk is None:
        return -1.0
    if chunk.windows:
        return float((embed.window_vectors(bytes(chunk.windows)) @ query).max())
    return float(np.frombuffer(chunk.embedding, dtype="float32") @ query) if chunk.embedding else -1.0


def first_stage(question: str, query: np.ndarray, mode: str, n: int, documents: list[int] | None) -> list[int]:
    """Chunk ids by the untrained ranking: dense and/or BM25 candidates, fused by weighted rank."""
    only = None
    if documents is not None:
        only = list(Chunk.live.filter(document__in=documents).values_list("pk", flat=True))
    rankings, weights = [], []
    if mode in ("hybrid", "dense"):
        rankings.append([chunk_id for chunk_id, _ in index.get_index().search(query, n, only)])
        weights.append(settings.FUSION_DENSE_WEIGHT)
    if mode in ("hybrid", "bm25"):
        allowed = set(only) if only is not None else None
        rankings.append([chunk_id for chunk_id, _ in lexical.get_lexical_index().search(question, n, allowed)])
        weights.append(settings.FUSION_LEXICAL_WEIGHT)
    return rank.fuse(rankings, weights)


DUPLICATE_SIMILARITY = 0.97  # cosine of the stored embeddings...
DUPLICATE_WORDS = 0.8  # ...and share of words in common (Jaccard) for two passages to be one


def same_text(a: np.ndarray, b: np.ndarray, text_a: str, text_b: str) -> bool:
    """Whether two passages print the same text (a section repeated in another edition or part)."""
    if float(a @ b) < DUPLICATE_SIMILARITY:
        return False
    words_a, words_b = set(text_a.lower().split()), set(text_b.lower().split())
    return len(words_a & words_b) / max(len(words_a | words_b), 1) >= DUPLICATE_WORDS


def is_covered(passages: list[Passage]) -> bool:
    """Whether some passage is close enough to the question to be worth answering from."""
    return any(p.score >= settings.MIN_RELEVANCE for p in passages)


def filtered_documents(filters: dict) -> list[int] | None:
    """Ids of the ready documents the filters select (None: no filter, every document)."""
    if not filters:
        return None
    documents = Document.objects.filter(status=Document.Status.READY)
    for name in ("issuer", "jurisdiction", "doc_type"):
        if filters.get(name):
            documents = documents.filter(**{name: filters[name]})
    if filters.get("effective_from"):
        documents = documents.filter(effective_date__gte=filters["effective_from"])
    if filters.get("effective_until"):
        documents = documents.filter(effective_date__lte=filters["effective_until"])
    return list(documents.values_list("pk", flat=True))
