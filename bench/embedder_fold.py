"""One fold of fine-tuning the embedder with hard negatives, then the reranker on top of it.

    REGQA_DATA_DIR=COPY_OF_DIR .venv/bin/python bench/embedder_fold.py QUESTIONS.jsonl --out DIR \\
        [--fold 0] [--folds 5] [--epochs 1] [--strict]

Trains all-MiniLM-L6-v2 on the questions of the other folds (each gold passage with the
best-ranked non-gold candidate of the untrained ranking as its hard negative), RE-EMBEDS THE
LIBRARY OF REGQA_DATA_DIR (use a copy), then reports on the held-out fold: dense, RRF and the
reranker (trained on the other folds' questions with the tuned embeddings) beside the same
figures with the packaged embedder. `--strict` also leaves out of training every pair whose
passage is gold for a held-out question (passage-disjoint, not only question-disjoint).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from throwaway import setup_django_here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    setup_django_here()
    from django.conf import settings

    from regqa.documents import embed
    from regqa.documents.chunking import embedding_text
    from regqa.documents.models import Chunk
    from regqa.documents.tune import fine_tune, reembed_library
    from regqa.qa import rank, training
    from regqa.qa.evaluate import read_questions

    questions = read_questions(args.questions)
    folds = training.folds_of(questions, args.folds)
    train_q = [q for q, f in zip(questions, folds, strict=True) if f != args.fold]
    held_q = [q for q, f in zip(questions, folds, strict=True) if f == args.fold]
    report: dict = {"fold": args.fold, "train": len(train_q), "test": len(held_q), "strict": args.strict}

    def measure(label: str) -> None:
        rank.forget_library()
        lib = rank.library()
        train_items, held_items = training.label(train_q, lib), training.label(held_q, lib)
        ranker = training.train_ranker(train_items)
        row = {
            m: training.summarise(held_items, m, ranker if m == "reranker" else None, 10)
            for m in ("dense", "rrf", "reranker")
        }
        row["first_stage_recall"] = training.first_stage_recall(held_items)
        report[label] = row
        shown = {m: (round(v["recall@10"], 4), round(v["map@10"], 4)) for m, v in row.items() if isinstance(v, dict)}
        print(label, shown, "first stage", round(row["first_stage_recall"], 4), flush=True)
        return lib, train_items

    lib, train_items = measure("packaged embedder")
    text_of = {}
    for c in Chunk.live.select_related("document").only("pk", "section", "text", "external_id", "document__title"):
        text_of[c.pk] = embedding_text(c.section, c.text, c.document.title)
    held_gold = {str(g["passage_id"]) for q in held_q for g in q.gold if "passage_id" in g}
    triples = []
    for item in train_items:
        gold_positions = [int(p) for p, y in zip(item.group.positions, item.labels, strict=True) if y]
        order = rank.untrained_order(item.group).tolist()
        negative = next((p for p in order if p not in gold_positions), None)
        for p in gold_positions:
            if args.strict and lib.external_ids[p] in held_gold:
                continue
            pos_text = text_of[int(lib.ids[p])]
            triples.append(
                (item.question.question, pos_text)
                + ((text_of[int(lib.ids[negative])],) if negative is not None else ())
            )
    started = time.perf_counter()
    trained = fine_tune(triples, args.out, epochs=args.epochs, learning_rate=args.learning_rate)
    report["training"] = trained | {"triples": len(triples), "seconds": round(time.perf_counter() - started)}
    print("fine-tuned on", len(triples), "pairs with hard negatives in", report["training"]["seconds"], "s", flush=True)
    settings.EMBEDDING_MODEL_PATH = str(args.out)
    embed.get_model.cache_clear()
    started = time.perf_counter()
    count = reembed_library()
    report["reembed_seconds"] = round(time.perf_counter() - started)
    print("re-embedded", count, "passages in", report["reembed_seconds"], "s", flush=True)
    measure("fine-tuned embedder")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
