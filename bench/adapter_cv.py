"""Cross-validate the query adapter's settings: dense Recall@10 on held-out folds.

REGQA_DATA_DIR=DIR .venv/bin/python bench/adapter_cv.py QUESTIONS.jsonl [--folds 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from throwaway import setup_django_here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-folds", type=int, default=5)
    args = parser.parse_args()
    setup_django_here()
    from regqa.qa import adapter, rank, training
    from regqa.qa.evaluate import file_names, read_questions

    questions = read_questions(args.questions)
    lib = rank.library()
    started = time.perf_counter()
    items = training.label(questions, lib)
    print(f"labelled in {time.perf_counter() - started:.0f} s", flush=True)
    examples = training.adapter_examples(items, lib, file_names())
    folds = training.folds_of(questions, args.folds)
    for fold in range(min(args.folds, args.max_folds)):
        rest = [e for e, f in zip(examples, folds, strict=True) if f != fold]
        held = [e for e, f in zip(examples, folds, strict=True) if f == fold]
        row = [f"fold {fold}: base {adapter.dense_recall(None, held, lib.vectors):.4f}"]
        for epochs, lr, decay in adapter.SETTINGS:
            t = time.perf_counter()
            a = adapter.train(rest, lib.vectors, epochs=epochs, learning_rate=lr, decay=decay)
            recall = adapter.dense_recall(a, held, lib.vectors)
            row.append(f"{epochs}/{lr:g}/{decay:g} {recall:.4f} ({time.perf_counter() - t:.0f}s)")
        print("  ".join(row), flush=True)


if __name__ == "__main__":
    main()
