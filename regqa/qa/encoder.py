"""The embedder fine-tuned on the institution's questions, as a retrieval bundle carries it: the
weights (a sentence-transformers directory) and the bundle's own vectors of the library's passages.

Why its own vectors: fine-tuning changes how passages are embedded, so the stored vectors (the
packaged embedder's, which the index, the windows and the answer checks use) stay as they are and
the bundle searches a copy made with its encoder. A switch or rollback stays instant and atomic,
and the packaged vectors remain the ranker's `base_dense` feature beside the tuned `dense`.

A passage added after training has no vector in the copy until the worker embeds it (`refresh`,
run after each document is ready): meanwhile the bundle's dense half does not see it, and BM25
and the packaged embedder's top candidates still propose it (rank.candidates).

Training (training.py builds the tuples): each (question, gold passage) with the best-ranked
non-gold candidates of the untrained ranking as hard negatives (settings.ENCODER_NEGATIVES),
other passages of the batch as more negatives (documents.tune.fine_tune), for the epochs and
learning rate training.py chooses among settings.ENCODER_SETTINGS on a fifth of the training
questions.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regqa.documents import embed
from regqa.documents.chunking import embedding_text
from regqa.documents.models import Chunk
from regqa.documents.tune import fine_tune

MODEL_DIR = "encoder"  # inside a bundle's directory
VECTORS_FILE = "encoder_vectors.npz"  # chunk ids and their vectors, one file so they change together
BATCH = 32


@dataclass
class TunedEncoder:
    model_dir: Path
    ids: np.ndarray  # chunk ids
    vectors: np.ndarray  # their unit vectors under this encoder, row by row
    _aligned: tuple[Any, np.ndarray] | None = field(default=None, repr=False)

    def embed(self, texts: list[str]) -> np.ndarray:
        return embed.encode_with(embed.load_model(str(self.model_dir)), texts)

    def aligned(self, lib: Any) -> np.ndarray:
        """The vectors by position of a rank.Library (zero rows: passages it has no vector of)."""
        if self._aligned is None or self._aligned[0] is not lib:
            out = np.zeros((len(lib.ids), embed.DIMENSIONS), dtype="float32")
            for row, pk in enumerate(self.ids.tolist()):
                if (position := lib.position.get(pk)) is not None:  # passages no longer live are skipped
                    out[position] = self.vectors[row]
            self._aligned = (lib, out)
        return self._aligned[1]

    def missing(self, ids: Sequence[int]) -> list[int]:
        known = set(self.ids.tolist())
        return [int(pk) for pk in ids if int(pk) not in known]

    def save(self, folder: Path) -> None:
        """Into a bundle's (partial) directory: the weights and the vectors."""
        if self.model_dir.resolve() != (folder / MODEL_DIR).resolve():
            shutil.copytree(self.model_dir, folder / MODEL_DIR)
        write_vectors(folder, self.ids, self.vectors)

    @classmethod
    def load(cls, folder: Path) -> TunedEncoder | None:
        if not (folder / MODEL_DIR).is_dir():
            return None
        with np.load(folder / VECTORS_FILE) as stored:
            return cls(folder / MODEL_DIR, stored["ids"], stored["vectors"])


def write_vectors(folder: Path, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Replace the vectors file whole: written beside, then renamed (a reader sees old or new)."""
    partial = folder / f"{VECTORS_FILE}.{os.getpid()}.partial.npz"  # two workers refreshing never share one
    np.savez(partial, ids=np.asarray(ids, dtype="int64"), vectors=np.asarray(vectors, dtype="float32"))
    partial.replace(folder / VECTORS_FILE)


def passage_texts(ids: Sequence[int]) -> list[str]:
    """The passages as they are embedded (title and heading first), in the order of `ids`."""
    rows = Chunk.objects.select_related("document").only("pk", "section", "text", "document__title")
    by_id = {c.pk: embedding_text(c.section, c.text, c.document.title) for c in rows.filter(pk__in=list(ids))}
    return [by_id.get(int(pk), "") for pk in ids]


def train(
    triples: Sequence[tuple[str, ...]],
    out_dir: Path,
    epochs: int,
    learning_rate: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune the packaged embedder on (question, passage, hard negatives...) tuples into `out_dir`."""
    total = epochs * len(triples)
    done = [0]

    def trained(batch: float) -> None:
        done[0] += int(batch)
        if progress and (done[0] // BATCH) % 5 == 0:
            progress(f"fine-tuning the embedder, lr {learning_rate:g}: {min(done[0], total)} of {total} pair-epochs")

    report = fine_tune(triples, out_dir, epochs=epochs, batch_size=BATCH, learning_rate=learning_rate, progress=trained)
    return report | {"learning_rate": learning_rate}


def fit(
    triples: Sequence[tuple[str, ...]],
    ids: np.ndarray,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
    *,
    epochs: int,
    learning_rate: float,
    texts: list[str] | None = None,
) -> tuple[TunedEncoder, dict[str, Any]]:
    """Fine-tune the packaged embedder on the triples into `out_dir`, then embed the passages `ids`
    with it (the bundle's copy of the vectors; `texts`: theirs as embedded, if already read)."""
    report = train(triples, out_dir, epochs, learning_rate, progress)
    texts = passage_texts(ids.tolist()) if texts is None else texts

    def embedded(n: int) -> None:
        if progress:
            progress(f"embedding the library with the fine-tuned embedder: {n} of {len(texts)} passages")

    vectors = embed.embed_texts(texts, embedded, model=embed.load_model(str(out_dir)))
    return TunedEncoder(out_dir, np.asarray(ids, dtype="int64").copy(), vectors), report | {"triples": len(triples)}


def refresh(folder: Path, ids: Sequence[int]) -> int:
    """Embed with the bundle's encoder the passages `ids` its copy lacks and drop those no longer
    live. Returns how many were added."""
    encoder = TunedEncoder.load(folder)
    if encoder is None:
        return 0
    wanted = [int(pk) for pk in ids]
    added = encoder.missing(wanted)
    keep = np.isin(encoder.ids, np.array(wanted, dtype="int64"))
    if not added and keep.all():
        return 0
    new = encoder.embed(passage_texts(added)) if added else np.zeros((0, embed.DIMENSIONS), dtype="float32")
    ids_out = np.concatenate([encoder.ids[keep], np.array(added, dtype="int64")])
    vectors_out = np.vstack([encoder.vectors[keep], new]).astype("float32")
    write_vectors(folder, ids_out, vectors_out)
    return len(added)
