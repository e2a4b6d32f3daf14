"""The embedder adapted to the institution's questions on the query side: a linear map learned
from labelled (question, gold passage) pairs with hard negatives, applied to the packaged
embedder's question vector before the dense search.

Why the query side only: the passages keep the vectors they were stored with, so adapting needs
no re-embedding of the library (minutes on 2 cores for 13,000 passages) and a bundle switch or
rollback is instant and atomic. The map starts as the identity and is pulled back towards it
(weight decay to the identity), so with few pairs it stays close to the packaged embedder.
Training takes seconds on 2 cores; the epochs and learning rate are chosen on questions held out
of the training questions (training.py), never on the questions a figure is reported for.

Hard negatives are the best-ranked candidates of the untrained first stage that are not gold:
the passages an analyst would otherwise have been shown instead of the right one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEMPERATURE = 0.05  # of the contrastive loss (sentence-transformers' default scale of 20)
HARD_NEGATIVES = 15  # per question
BATCH = 64
# (epochs, learning rate, pull towards the identity) tried; on ObliQA folds 0-1 (bench/adapter_cv.py)
# more epochs or a higher rate overfit 2,200 questions, and a pull of 10 did best
SETTINGS = ((2, 1e-3, 1.0), (3, 1e-3, 10.0), (6, 1e-3, 10.0), (3, 3e-4, 1.0))


@dataclass
class QueryAdapter:
    matrix: np.ndarray  # d x d, applied as q -> matrix @ q, then scaled to unit length

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Adapted unit-length vectors for one question vector (d,) or a batch (n, d)."""
        out = np.asarray(vectors, dtype="float32") @ self.matrix.T
        norms = np.linalg.norm(out, axis=-1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype="float32")

    def save(self, path: Path) -> None:
        np.save(path, self.matrix.astype("float32"))

    @classmethod
    def load(cls, path: Path) -> QueryAdapter:
        return cls(np.load(path).astype("float32"))


@dataclass
class Example:
    query: np.ndarray  # the packaged embedder's question vector
    positives: list[int]  # library positions of the gold passages
    negatives: list[int]  # library positions of hard negatives


def train(
    examples: Sequence[Example],
    passage_vectors: np.ndarray,
    *,
    epochs: int,
    learning_rate: float,
    decay: float = 1.0,
    seed: int = 0,
) -> QueryAdapter:
    """Fit the map by a contrastive loss: each (question, gold passage) against the question's
    hard negatives and the other questions' gold passages in the batch."""
    import torch  # loads torch: only when training

    torch.manual_seed(seed)
    rows = [(i, p) for i, e in enumerate(examples) for p in e.positives if e.negatives]
    dim = passage_vectors.shape[1]
    if not rows:
        return QueryAdapter(np.eye(dim, dtype="float32"))
    passages = torch.from_numpy(np.ascontiguousarray(passage_vectors, dtype="float32"))
    queries = torch.from_numpy(np.stack([e.query for e in examples]).astype("float32"))
    negatives = torch.tensor(
        [(e.negatives + e.negatives * HARD_NEGATIVES)[:HARD_NEGATIVES] if e.negatives else [0] * HARD_NEGATIVES
         for e in examples]
    )  # fmt: skip
    gold_sets = [set(e.positives) for e in examples]
    identity = torch.eye(dim)
    matrix = torch.nn.Parameter(identity.clone())
    optimiser = torch.optim.Adam([matrix], lr=learning_rate)
    generator = np.random.default_rng(seed)
    for _ in range(epochs):
        order = generator.permutation(len(rows))
        for start in range(0, len(order), BATCH):
            batch = [rows[j] for j in order[start : start + BATCH]]
            qi = torch.tensor([b[0] for b in batch])
            pos = torch.tensor([b[1] for b in batch])
            q = torch.nn.functional.normalize(queries[qi] @ matrix.T, dim=-1)
            in_batch = q @ passages[pos].T  # B x B: column j is example j's gold passage
            # another example's gold passage that is also gold for this question is not a negative
            mask = torch.tensor([[i != j and batch[j][1] in gold_sets[batch[i][0]] for j in range(len(batch))]
                                 for i in range(len(batch))])  # fmt: skip
            in_batch = in_batch.masked_fill(mask, -1e4)
            hard = torch.einsum("bd,bkd->bk", q, passages[negatives[qi]])
            logits = torch.cat([in_batch, hard], dim=1) / TEMPERATURE
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            loss = loss + decay * ((matrix - identity) ** 2).sum() / dim
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return QueryAdapter(matrix.detach().numpy().astype("float32"))


def dense_recall(
    adapter: QueryAdapter | None, examples: Sequence[Example], passage_vectors: np.ndarray, k: int = 10
) -> float:
    """Share of gold passages in the dense top k over the whole library."""
    return dense_figures(adapter, examples, passage_vectors, k)[0]


def dense_figures(
    adapter: QueryAdapter | None, examples: Sequence[Example], passage_vectors: np.ndarray, k: int = 10
) -> tuple[float, float]:
    """Dense Recall@k and MRR@k over the whole library (settings are chosen by their sum: MRR
    still tells two settings apart when both find every gold passage in the top k)."""
    if not examples:
        return 0.0, 0.0
    queries = np.stack([e.query for e in examples])
    if adapter is not None:
        queries = adapter.apply(queries)
    scores = queries @ passage_vectors.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    found = total = 0
    reciprocal = 0.0
    for row, candidates, e in zip(scores, top, examples, strict=True):
        ordered = candidates[np.argsort(-row[candidates])].tolist()
        found += len(set(ordered) & set(e.positives))
        total += len(e.positives)
        first = next((r for r, p in enumerate(ordered, start=1) if p in e.positives), None)
        reciprocal += 1.0 / first if first else 0.0
    return found / max(total, 1), reciprocal / len(examples)
