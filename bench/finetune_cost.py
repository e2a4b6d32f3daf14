"""What fine-tuning the embedder costs per batch, and what would cut it: shorter sequences or
batches of passages of similar length.

    REGQA_DATA_DIR=DIR .venv/bin/python bench/finetune_cost.py PAIRS.jsonl [--batches 6]

Reads the library's passages as they are embedded and the gold passages of the pairs file (passage
ids), prints the passages' lengths in tokens, then times a few training steps of the packaged
embedder (32 triples: question, gold passage, a random passage; the loss of tune.fine_tune) and the
embedding of 640 passages: at 256 tokens (the model's limit) with random batches, at 128, and at
256 with the batches of similar length tune.fine_tune trains on since 2026-12-04
(tune.length_batches, by the longer of each triple's two passages: less padding). Cost only: no
model is kept and nothing is scored. Projections are for a fold of 80% of the pairs and a
re-embedding of the whole library.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from throwaway import setup_django_here

BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    setup_django_here()
    import numpy as np
    import torch
    from django.conf import settings
    from sentence_transformers import SentenceTransformer

    from regqa.documents import embed
    from regqa.documents.models import Chunk
    from regqa.documents.tune import length_batches
    from regqa.qa.encoder import passage_texts

    ids = list(Chunk.live.values_list("pk", flat=True))
    text_of = dict(zip(ids, passage_texts(ids), strict=True))
    texts = [t for t in text_of.values() if t]
    by_external = dict(Chunk.live.exclude(external_id="").values_list("external_id", "pk"))
    rng = random.Random(0)
    triples = []
    for line in args.pairs.read_text().splitlines():
        q = json.loads(line)
        for g in q["gold"]:
            if (pk := by_external.get(str(g.get("passage_id")))) is not None:
                triples.append((q["question"], text_of[pk], rng.choice(texts)))
    rng.shuffle(triples)
    torch.set_num_threads(settings.LLM_THREADS)
    tokenizer = SentenceTransformer(embed.model_path(), device="cpu", local_files_only=True).tokenizer
    lengths = np.array([len(tokenizer(t)["input_ids"]) for t in texts])
    print(
        f"{len(texts)} passages, {len(triples)} triples; passage tokens median {np.median(lengths):.0f}, "
        f"p90 {np.percentile(lengths, 90):.0f}; longer than 128: {(lengths > 128).mean():.1%}, "
        f"than 256: {(lengths > 256).mean():.1%}",
        flush=True,
    )
    n = args.batches
    random_batches = [triples[b * BATCH : (b + 1) * BATCH] for b in range(n)]
    # the product's batches (tune.length_batches come in random order: the first n are a sample)
    limit = {"truncation": True, "max_length": 256}
    longer = [max(len(ids) for ids in tokenizer(list(t[1:]), **limit)["input_ids"]) for t in triples]
    bucketed = [[triples[i] for i in batch] for batch in length_batches(longer, BATCH, rng)[:n]]
    for label, limit, batches in (
        ("256 tokens, random batches (before 2026-12-04)", 256, random_batches),
        ("128 tokens, random batches", 128, random_batches),
        ("256 tokens, batches of similar length", 256, bucketed),
    ):
        model = SentenceTransformer(embed.model_path(), device="cpu", local_files_only=True)
        model.max_seq_length = limit
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
        started = time.perf_counter()
        for batch in batches:
            queries = model(model.preprocess([t[0] for t in batch]))["sentence_embedding"]
            passages = model(model.preprocess([t[1] for t in batch] + [t[2] for t in batch]))["sentence_embedding"]
            loss = torch.nn.functional.cross_entropy(queries @ passages.T * 20.0, torch.arange(len(batch)))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        per_batch = (time.perf_counter() - started) / len(batches)
        model.eval()
        started = time.perf_counter()
        with torch.no_grad():
            model.encode(texts[:640], batch_size=BATCH)
        per_passage = (time.perf_counter() - started) / 640
        fold_minutes = per_batch * len(triples) * 0.8 / BATCH / 60
        print(
            f"{label:42} {per_batch:5.2f} s a batch of {BATCH} triples, {per_passage * 1000:5.1f} ms a passage "
            f"embedded; a fold: {fold_minutes:4.1f} min fine-tuning, {per_passage * len(texts) / 60:4.1f} min "
            f"re-embedding",
            flush=True,
        )


if __name__ == "__main__":
    main()
