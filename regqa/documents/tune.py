"""Adapt the embedding model to an institution's own questions: fine-tune all-MiniLM-L6-v2 on
(question, gold passage) pairs with in-batch negatives (multiple-negatives ranking loss), save
it to a directory, and re-embed the library with it (`manage.py index reembed`).

Everything runs on the CPU with plain PyTorch: sentence-transformers' trainer would need the
`datasets` and `accelerate` packages for what is a thirty-line loop.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from django.conf import settings

from . import embed
from .chunking import embedding_text
from .embed import embed_chunks, window_blobs
from .index import rebuild_from_database
from .models import Chunk, Document


def training_pairs(questions) -> list[tuple[str, str]]:
    """(question, text of a gold passage as it is embedded) for every gold item found in the
    library: {"passage_id"} by external id, {"document", "page"} by the chunks of that page."""
    by_external = {}
    wanted = {g["passage_id"] for q in questions for g in q.gold if "passage_id" in g}
    chunks = Chunk.objects.filter(external_id__in=wanted).select_related("document")
    for chunk in chunks.iterator(chunk_size=2000):
        by_external[chunk.external_id] = embedding_text(chunk.section, chunk.text, chunk.document.title)
    pairs = []
    for q in questions:
        for gold in q.gold:
            if "passage_id" in gold and gold["passage_id"] in by_external:
                pairs.append((q.question, by_external[gold["passage_id"]]))
            elif "document" in gold:
                page_chunks = Chunk.objects.filter(
                    document__original_name=gold["document"],
                    document__status=Document.Status.READY,
                    page_start__lte=gold["page"],
                    page_end__gte=gold["page"],
                ).select_related("document")
                pairs += [(q.question, embedding_text(c.section, c.text, c.document.title)) for c in page_chunks]
    return pairs


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random, width: int = 16) -> list[list[int]]:
    """One epoch's batches (indices into `lengths`) of items of similar length, in random order.

    A batch is padded to its longest passage: a random batch of 32 nearly always holds one near
    the model's 256-token limit, so grouping by length makes a batch about 3.6x cheaper with no
    text cut (bench/finetune_cost.py). Items within `width` tokens of each other are shuffled
    together, so a batch's members (and in-batch negatives) change from epoch to epoch."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: lengths[i] // width)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def fine_tune(
    pairs: Sequence[tuple[str, ...]],
    out_dir: Path,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 2e-5,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> dict:
    """Train from the configured embedding model and save the result to `out_dir`."""
    import torch  # loads torch: only when training
    from sentence_transformers import SentenceTransformer

    if len(pairs) < 2:
        raise ValueError("fine-tuning needs at least two (question, passage) pairs")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    torch.set_num_threads(settings.LLM_THREADS)
    model = SentenceTransformer(embed.model_path(), device="cpu", local_files_only=True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    steps = epochs * math.ceil(len(pairs) / batch_size)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / max(1, steps - warmup))
    )
    limit = {"truncation": True, "max_length": model.max_seq_length}
    lengths = [max(len(ids) for ids in model.tokenizer(list(pair[1:]), **limit)["input_ids"]) for pair in pairs]
    losses, started = [], time.perf_counter()
    for _ in range(epochs):
        epoch_losses = []
        for indices in length_batches(lengths, batch_size, rng):
            batch = [pairs[i] for i in indices]
            if len(batch) < 2:
                continue
            queries = model(model.preprocess([pair[0] for pair in batch]))["sentence_embedding"]
            # In-batch negatives: every other passage of the batch is a wrong answer to a question,
            # and so is each hard negative (the elements after the second: passages the first stage
            # ranks high that are not gold); the same passage twice in a batch is not a negative of itself.
            texts = [pair[1] for pair in batch] + [text for pair in batch for text in pair[2:]]
            passages = model(model.preprocess(texts))["sentence_embedding"]
            scores = queries @ passages.T * 20.0
            gold = [pair[1] for pair in batch]
            same = torch.tensor([[a == b and i != j for j, b in enumerate(texts)] for i, a in enumerate(gold)])
            scores = scores.masked_fill(same, -1e4)
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch)))
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            epoch_losses.append(loss.item())
            if progress:
                progress(len(batch))
        losses.append(float(np.mean(epoch_losses)) if epoch_losses else 0.0)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir))
    return {"pairs": len(pairs), "epochs": epochs, "loss_per_epoch": losses, "seconds": time.perf_counter() - started}


def reembed_library(progress: Callable[[int], None] | None = None) -> int:
    """Re-encode every stored passage and its windows with the configured embedding model and
    rebuild the index (after changing REGQA_EMBEDDING_MODEL: stored embeddings of another model do
    not compare)."""
    rows = list(Chunk.live.select_related("document").only("pk", "section", "text", "document__title"))
    vectors, windows = embed_chunks([(c.document.title, c.section, c.text) for c in rows], progress)
    for chunk, vector, window in zip(rows, vectors, windows, strict=True):
        chunk.embedding = vector.tobytes()
        chunk.windows = window
    Chunk.objects.bulk_update(rows, ["embedding", "windows"], batch_size=2000)
    return rebuild_from_database()


def embed_library_windows(
    every: bool = False,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
    document_id: int | None = None,
) -> int:
    """Embed the windows of the live passages (of one document: `document_id`) that have none
    stored (`every`: of all of them, after changing REGQA_WINDOW_WORDS), a batch at a time, so a
    run cut off keeps what it did. Returns the number of passages embedded."""
    chunks = Chunk.live.all() if every else Chunk.live.without_windows()
    if document_id is not None:
        chunks = chunks.filter(document_id=document_id)
    ids = list(chunks.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), batch):
        rows = list(chunks.filter(pk__in=ids[start : start + batch]).only("pk", "text"))
        windows = window_blobs([c.text for c in rows])
        for chunk, window in zip(rows, windows, strict=True):
            chunk.windows = window
        Chunk.objects.bulk_update(rows, ["windows"])
        if progress:
            progress(len(rows))
    return len(ids)
