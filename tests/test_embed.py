"""The embedder: batches keep their texts' order, and an analyst's question waiting to be embedded
goes before the next batch another request is embedding (asking stays fast under load)."""

from __future__ import annotations

import threading
import time

import numpy as np

from regqa.documents import embed


def test_batches_keep_the_order_of_their_texts(settings):
    settings.EMBEDDING_BATCH_SIZE = 2  # three batches, embedded shortest first
    texts = [
        "A member bank must report every extension of credit to its executive officers.",
        "Company means any corporation.",
        "Insider.",
        "The Board may approve an investment in a foreign company after review of its capital.",
        "Regulation O applies to member banks.",
    ]
    together = embed.embed_passages(texts)
    alone = np.vstack([embed.embed_passages([t]) for t in texts])
    assert together.shape == (5, embed.DIMENSIONS) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


class SlowModel:
    """Records what it encodes, one call at a time as the real one runs, a batch taking 50 ms."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.started = threading.Event()

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        self.started.set()
        time.sleep(0.05)
        return np.ones((len(texts), embed.DIMENSIONS), dtype="float32")


def test_a_question_goes_before_the_next_batch(settings, monkeypatch):
    settings.EMBEDDING_BATCH_SIZE = 2
    model = SlowModel()
    monkeypatch.setattr(embed, "get_model", lambda: model)
    sentences = [f"sentence {n}" for n in range(6)]
    batch = threading.Thread(target=embed.embed_passages, args=(sentences,))
    batch.start()
    assert model.started.wait(5)
    embed.embed_query("Who is an insider?")  # arrives while the first batch is being encoded
    batch.join(5)
    assert [len(c) for c in model.calls] == [2, 1, 2, 2]
    assert model.calls[1] == ["Who is an insider?"]
