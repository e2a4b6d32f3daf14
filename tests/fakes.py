"""Stand-ins for the models in fast unit tests (the slow tests use the real ones)."""

from __future__ import annotations

import hashlib
import json
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


def reply(answer: str, cited: list[int], found: bool = True) -> str:
    return json.dumps({"passages_state_answer": found, "answer": answer, "cited_passages": cited})


class FakeLlama:
    """The local model (llm.LocalModel): streams a scripted JSON reply a few characters at a time,
    and answers the yes/no question with a set probability."""

    name = "fake-model.gguf"
    sha256 = ""

    def __init__(self, reply: str = reply("Company means any corporation [1].", [1]), delay: float = 0.0) -> None:
        self.reply = reply
        self.delay = delay
        self.calls: list[list[dict]] = []
        self.p_yes = 0.9  # the model's probability that the passages state the answer
        self.asked: list[list[dict]] = []
        self.written: list[list[dict]] = []
        self.writer = lambda messages: "What does the rule require?"
        self.fail_after: int | None = None
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        pass

    def write(self, messages: list[dict], max_tokens: int) -> str:
        """A plain reply (synthetic training questions): `self.writer(messages)`, after
        `self.fail_after` replies it raises, as a worker killed half-way would stop."""
        if self.fail_after is not None and len(self.written) >= self.fail_after:
            raise RuntimeError("worker killed")
        self.written.append(messages)
        return self.writer(messages)

    def yes_probability(self, messages: list[dict]) -> float:
        """The real one reads llama.cpp's logits."""
        self.asked.append(messages)
        if isinstance(self.p_yes, Exception):
            raise self.p_yes
        return self.p_yes

    def stream_json(self, messages):
        """The scripted JSON reply, a few characters at a time."""
        self.calls.append(messages)
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            for start in range(0, len(self.reply), 3):
                time.sleep(self.delay)
                yield self.reply[start : start + 3]
        finally:
            with self._lock:
                self.active -= 1
