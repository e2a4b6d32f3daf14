"""Passage windows against none, side by side in one run: every question retrieved by the product
(`retrieve`, the untrained hybrid ranking, no bundle active) with REGQA_WINDOW_WORDS as set and
with 0, scored on its gold passages or pages. Nothing is trained, so nothing is cross-validated:
the folds (training.folds_of, as train_retrieval's) only give the spread. Run after `index windows`:

    REGQA_DATA_DIR=$D python bench/windows.py QUESTIONS.jsonl [--folds 5] [--json out.json]

`--embedding-cost N` first times embedding N of the library's passages as ingestion does, and
then their windows, one after the other on this CPU (the cost windows add to ingestion).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from throwaway import setup_django_here


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("questions", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--embedding-cost", type=int, default=0, metavar="N")
    args = parser.parse_args()
    setup_django_here()
    from django.conf import settings

    from regqa.documents.models import Chunk
    from regqa.qa import bundle, training
    from regqa.qa.evaluate import file_names, hits_per_rank, read_questions, score
    from regqa.qa.retrieve import retrieve

    if bundle.active_ranker() is not None:
        raise SystemExit("A retrieval bundle is active: its ranker orders the passages, not the windows.")
    without = Chunk.live.filter(windows=b"").count()
    if without:
        raise SystemExit(f"{without} live passages have no windows: run `manage.py index windows` first.")
    if args.embedding_cost:
        embedding_cost(args.embedding_cost)
    questions = read_questions(args.questions)
    folds = training.folds_of(questions, args.folds)
    names = file_names()
    words = settings.WINDOW_WORDS
    results: dict[str, dict] = {}
    retrieve(questions[0].question)  # loads the embedder and indexes before anything is timed
    for label, setting in ((f"windows of {words} words", words), ("no windows", 0)):
        settings.WINDOW_WORDS = setting
        per_fold: dict[str, list[list[float]]] = {}
        latencies = []
        for q, fold in zip(questions, folds, strict=True):
            started = time.perf_counter()
            passages = retrieve(q.question, k=10)
            latencies.append((time.perf_counter() - started) * 1000)
            ranks = hits_per_rank(passages, q.gold, names)
            for k in (3, 5, 10):
                figures = score(ranks, len(q.gold), k)
                per_fold.setdefault(f"recall@{k}", [[] for _ in range(args.folds)])[fold].append(figures["recall"])
                per_fold.setdefault(f"map@{k}", [[] for _ in range(args.folds)])[fold].append(figures["ap"])
        latencies.sort()
        results[label] = {
            name: {
                "mean": statistics.mean(v for fold in values for v in fold),
                "sd": statistics.stdev(statistics.mean(fold) for fold in values if fold),
            }
            for name, values in per_fold.items()
        } | {"median_ms": latencies[len(latencies) // 2], "p95_ms": latencies[int(len(latencies) * 0.95)]}
        row = results[label]
        print(
            f"{label:22} "
            + "  ".join(f"{name} {row[name]['mean']:.4f} ({row[name]['sd']:.4f})" for name in per_fold)
            + f"  median {row['median_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms",
            flush=True,
        )
    settings.WINDOW_WORDS = words
    if args.json:
        args.json.write_text(json.dumps({"questions": len(questions), "results": results}, indent=1))


def embedding_cost(n: int) -> None:
    from regqa.documents import embed
    from regqa.documents.models import Chunk

    rows = list(Chunk.live.select_related("document").order_by("pk")[:n])
    passages, windows = embed.chunk_texts([(c.document.title, c.section, c.text) for c in rows])
    pieces = [w for piece in windows for w in piece]
    embed.embed_texts(passages[:64])  # loads the model before anything is timed
    times = {}
    for name, texts in (("passages", passages), ("windows", pieces), ("passages again", passages)):
        started = time.perf_counter()
        embed.embed_texts(texts)
        times[name] = time.perf_counter() - started
        print(f"embedding {len(texts)} {name}: {times[name]:.1f} s", flush=True)
    print(f"windows / passages: {times['windows'] / times['passages again']:.2f}", flush=True)


if __name__ == "__main__":
    main()
