"""BM25 over the stored passages (bm25s), the lexical half of hybrid retrieval.

Exact words matter in regulation: rule numbers, defined terms, "Regulation O". Dense vectors
blur them; BM25 does not. The BM25 index is built in memory from the database (about a second
per 10,000 passages) and rebuilt whenever the set of passages changes. That is read from the
database itself (count and highest id of the chunks), not from the FAISS file: ingestion writes
the FAISS file before its transaction commits, so a rebuild triggered by the file could miss the
new passages for good. Which documents are ready is checked at query time by `retrieve`.
"""

from __future__ import annotations

import re
import threading
from functools import cache

import bm25s
import numpy as np
import Stemmer
from django.conf import settings
from django.db.models import Count, Max

from .chunking import embedding_text
from .models import Chunk

_stemmer = Stemmer.Stemmer("english")
# Rule and section numbers: "Rule 6.2.1(a)(i)", "3.2.1.(1)", "§ 208.6(b)". Word tokenizers split
# them into single digits and drop them, so each becomes whole tokens of its own instead.
RULE_NUMBER = re.compile(r"\b(\d+(?:\.\d+)+)((?:\.?\(\w{1,4}\))*)")


def rule_tokens(text: str) -> list[str]:
    """'Rule 6.2.1(a)' -> ['r6_2', 'r6_2_1', 'r6_2_1_a']: the number, the rules it belongs to
    (at least two levels) and its first lettered or numbered paragraph."""
    tokens = []
    for number, tail in RULE_NUMBER.findall(text):
        parts = number.split(".")
        tokens += ["r" + "_".join(parts[:i]) for i in range(2, len(parts) + 1)]
        paragraph = re.search(r"\((\w{1,4})\)", tail)
        if paragraph:
            tokens.append("r" + "_".join(parts) + "_" + paragraph.group(1).lower())
    return tokens


def tokenize(texts: list[str]) -> list[list[str]]:
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer, return_ids=False, show_progress=False)
    return [words + rule_tokens(text) for words, text in zip(tokens, texts, strict=True)]


class LexicalIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = object()
        self._bm25: bm25s.BM25 | None = None
        self._ids: list[int] = []

    def _build(self) -> None:
        rows = list(Chunk.live.values_list("pk", "text", "section", "document__title"))
        self._ids = [pk for pk, *_ in rows]
        if not rows:
            self._bm25 = None
            return
        bm25 = bm25s.BM25(k1=settings.BM25_K1, b=settings.BM25_B)
        bm25.index(tokenize([embedding_text(s, t, title) for _, t, s, title in rows]), show_progress=False)
        self._bm25 = bm25

    def _current(self) -> tuple[bm25s.BM25 | None, list[int]]:
        with self._lock:
            version = tuple(Chunk.live.aggregate(n=Count("pk"), last=Max("pk")).values())
            if version != self._version:
                self._build()
                self._version = version
            return self._bm25, self._ids

    def all_scores(self, query: str) -> tuple[list[int], np.ndarray]:
        """(chunk ids, BM25 score of each for the query): every passage scored, for the reranker's
        features. The ids list is the same object until the passages change."""
        bm25, ids = self._current()
        tokens = tokenize([query])[0]
        if bm25 is None or not tokens:
            return ids, np.zeros(len(ids), dtype="float32")
        return ids, np.asarray(bm25.get_scores(tokens), dtype="float32")

    def search(self, query: str, k: int, only: set[int] | None = None) -> list[tuple[int, float]]:
        """The k best chunk ids by BM25; `only` restricts them to those ids (a weight mask)."""
        bm25, ids = self._current()
        if bm25 is None:
            return []
        tokens = tokenize([query])
        if not tokens[0]:
            return []
        mask = None
        if only is not None:
            mask = np.fromiter((i in only for i in ids), dtype="float32", count=len(ids))
            if not mask.any():
                return []
        found, scores = bm25.retrieve(tokens, k=min(k, len(ids)), show_progress=False, n_threads=1, weight_mask=mask)
        return [(ids[int(i)], float(s)) for i, s in zip(found[0], scores[0], strict=True) if s > 0]


@cache
def get_lexical_index() -> LexicalIndex:
    return LexicalIndex()
