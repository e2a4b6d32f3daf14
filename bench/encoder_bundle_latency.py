"""Query time of a retrieval bundle that carries a fine-tuned embedder, against the untrained ranking.

    REGQA_DATA_DIR=DIR .venv/bin/python bench/encoder_bundle_latency.py QUESTIONS.jsonl \\
        --model TUNED_DIR --vectors-from COPY_DIR --ranker DIR/retrieval/bundles/N/ranker.txt

Assembles a bundle from an embedder fine-tuned before (`bench/embedder_fold.py --out TUNED_DIR`),
the passage vectors it stored in the copy of the data directory it re-embedded (`COPY_DIR`: the same
chunk ids), and a ranker trained before; activates it, times `retrieve` (k = 10) on every question,
rolls back and times the untrained ranking on the same questions right after, then deletes the
bundle. Latency only: an assembled bundle's ranking figures mean nothing and are not printed.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

import numpy as np
from throwaway import setup_django_here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--vectors-from", type=Path, required=True)
    parser.add_argument("--ranker", type=Path, required=True)
    args = parser.parse_args()
    setup_django_here()
    from regqa.documents import embed
    from regqa.qa import bundle, encoder, rank
    from regqa.qa.evaluate import read_questions
    from regqa.qa.models import RetrievalBundle
    from regqa.qa.retrieve import retrieve

    if bundle.active() is not None:
        raise SystemExit(
            f"{bundle.active()} is active: roll back to the untrained ranking first (train_retrieval --rollback)"
        )
    rows = sqlite3.connect(args.vectors_from / "db.sqlite3").execute(
        "select id, embedding from documents_chunk where embedding is not null and length(embedding) > 0"
    )
    ids, vectors = zip(*((pk, np.frombuffer(blob, dtype="float32")) for pk, blob in rows), strict=True)
    record = RetrievalBundle.objects.create(pairs_file="latency only (assembled)", status=RetrievalBundle.Status.READY)
    folder = bundle.directory(record)
    folder.mkdir(parents=True)
    try:
        shutil.copy(args.ranker, folder / "ranker.txt")
        (folder / "bundle.json").write_text('{"depth": 100}')
        encoder.TunedEncoder(args.model, np.array(ids, dtype="int64"), np.stack(vectors)).save(folder)
        questions = [q.question for q in read_questions(args.questions)]
        embed.embed_query("warm-up")

        def timed(label: str) -> None:
            retrieve(questions[0], k=10)  # loads the library, the bundle and its embedder
            took = []
            for q in questions:
                started = time.perf_counter()
                retrieve(q, k=10)
                took.append((time.perf_counter() - started) * 1000)
            p95 = statistics.quantiles(took, n=20)[-1]
            print(
                f"{label}: {len(took)} questions, median {statistics.median(took):.0f} ms, p95 {p95:.0f} ms", flush=True
            )

        bundle.activate(record, actor="bench", reason="latency only")
        missing = len(encoder.TunedEncoder.load(folder).missing(rank.library().ids.tolist()))  # type: ignore[union-attr]
        print(f"bundle vectors: {len(ids)}; library passages without one: {missing}")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        timed("bundle with the fine-tuned embedder")
        print(f"peak RSS {rss:.0f} MB before loading the bundle, "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB after")  # fmt: skip
        bundle.rollback(actor="bench")
        timed("untrained ranking")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        record.delete()


if __name__ == "__main__":
    main()
