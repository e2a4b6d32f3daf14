"""Stand-ins for the models in fast unit tests (the slow tests use the real ones)."""

from __future__ import annotations

import hashlib
import re
import threading
import time

import numpy as np

from regqa.documents.embed import DIMENSIONS


def hashed_embedding(texts: list[str]) -> np.ndarray:
    """Bag-of-words vectors: texts sharing words get a high cosine similarity, like real ones."""
    out = np.zeros((len(texts), DIMENSIONS), dtype="float32")
    for row, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            if len(word) > 2:
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
        norm = np.linalg.norm(out[row])
        if norm:
            out[row] /= norm
    return out


class FakeLlama:
    """Streams a scripted reply in the shape llama-cpp-python's create_chat_completion uses."""

    def __init__(self, reply: str = "Company means any corporation [1].", delay: float = 0.0) -> None:
        self.reply = reply
        self.delay = delay
        self.calls: list[list[dict]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def create_chat_completion(self, messages, stream=False, **kwargs):
        self.calls.append(messages)
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            for word in re.findall(r"\S+\s*", self.reply):
                time.sleep(self.delay)
                yield {"choices": [{"delta": {"content": word}}]}
        finally:
            with self._lock:
                self.active -= 1
