"""One outer fold of the product's fine-tuned-embedder bundle, with the embedder's epochs and
learning rate chosen inside the fold's training questions (training.choose_encoder_setting).

    REGQA_DATA_DIR=DIR [REGQA_ENCODER_SETTINGS=1:2e-5,2:2e-5,1:5e-5] .venv/bin/python \\
        bench/encoder_choice.py QUESTIONS.jsonl --fold 2 [--folds 5] [--json OUT]

What `train_retrieval --fine-tune-embedder` does for one fold (`--fold`, 1-based, the product's
folds), nothing written to the data directory: fine-tunes on the other folds' questions (each
setting tried on four fifths of them, scored on the fifth, the best trained on all of them),
embeds the library with it, and reports the held-out fold's dense half and reranker beside the
packaged embedder's, the inner scores of each setting, and the time of each step.

`--synthetic-bundle N` adds the questions the local model wrote for bundle N (`train_retrieval
--synthetic`, kept ones only) to the training side, as `train_retrieval --pairs F --synthetic N`
does: they never reach the held-out fold, and they were written from passages, not from questions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from throwaway import setup_django_here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path)
    parser.add_argument("--fold", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--synthetic-bundle", type=int, metavar="N", help="also train on bundle N's written questions")
    args = parser.parse_args()
    setup_django_here()
    from django.conf import settings

    from regqa.qa import rank, synthetic, training
    from regqa.qa.evaluate import read_questions
    from regqa.qa.models import RetrievalBundle

    started = time.perf_counter()
    questions = read_questions(args.questions)
    lib = rank.library()
    items = training.label(questions, lib)
    folds = training.folds_of(questions, args.folds)
    rest = [i for i, f in zip(items, folds, strict=True) if f != args.fold - 1]
    held = [i for i, f in zip(items, folds, strict=True) if f == args.fold - 1]
    written = []
    if args.synthetic_bundle:
        written = training.label(synthetic.pairs(RetrievalBundle.objects.get(pk=args.synthetic_bundle)), lib)
    report: dict = {
        "fold": args.fold,
        "train": len(rest),
        "test": len(held),
        "grid": settings.ENCODER_SETTINGS,
        "hard_negatives": settings.ENCODER_NEGATIVES,
        "synthetic": len(written),
    }
    report["packaged"] = {
        "dense": training.summarise(held, "dense", None, 10),
        "reranker": training.summarise(held, "reranker", training.train_ranker(rest), 10),
    }
    if written:
        reranker = training.train_ranker(rest + written)
        report["packaged"]["reranker_with_written"] = training.summarise(held, "reranker", reranker, 10)
        rest = rest + written  # the embedder and the tuned reranker train on both
    report["label_seconds"] = round(time.perf_counter() - started)
    print(json.dumps(report, default=str), flush=True)

    started = time.perf_counter()
    last = [0.0]

    def note(text: str) -> None:  # at most one line a minute
        if time.perf_counter() - last[0] > 60:
            last[0] = time.perf_counter()
            print(f"{last[0] - started:.0f} s: {text}", flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        tuned, report["encoder"] = training.fit_encoder(rest, lib, Path(scratch) / "fold", note)
        report["fit_seconds"] = round(time.perf_counter() - started)
        print(json.dumps(report["encoder"], default=str), flush=True)
        cache: dict = {}
        tuned_rest, tuned_held = (training.relabel(part, lib, cache, tuned=tuned) for part in (rest, held))
        report["tuned"] = {
            "dense": training.summarise(tuned_held, "dense", None, 10),
            "reranker": training.summarise(tuned_held, "reranker", training.train_ranker(tuned_rest), 10),
            "first_stage_recall": training.first_stage_recall(tuned_held),
        }
    report["seconds"] = round(time.perf_counter() - started)
    for label in ("packaged", "tuned"):
        figures = {m: v for m, v in report[label].items() if isinstance(v, dict)}
        shown = {m: (round(v["recall@10"], 4), round(v["map@10"], 4)) for m, v in figures.items()}
        print(label, shown, flush=True)
    print("choice", report["encoder"]["choice"], "fit", report["fit_seconds"], "s, all", report["seconds"], "s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
