"""Cross-validate the query adapter's settings: dense Recall@10 on held-out folds.

REGQA_DATA_DIR=DIR .venv/bin/python bench/adapter_cv.py QUESTIONS.jsonl [--folds 5]
"""

from __future__ import annotations

import time

from throwaway import labelled_questions


def main() -> None:
    max_folds = ("--max-folds", {"type": int, "default": 5})
    args, questions, items = labelled_questions(__doc__.splitlines()[0], max_folds, json_out=False)
    from regqa.qa import adapter, rank, training
    from regqa.qa.evaluate import file_names

    lib = rank.library()
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
