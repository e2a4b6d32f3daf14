"""Cross-validate the learned ranking under several LightGBM settings, on one set of candidates.

    REGQA_DATA_DIR=DIR .venv/bin/python bench/rank_cv.py QUESTIONS.jsonl [--folds 5] [--json out.json]

The candidates and features of every question are computed once; each setting is then trained on
k-1 folds and scored on the held-out fold (folds by question id, as `evaluate retrieval --folds`).
The product's settings are the first row; the others are what was tried against them.
"""

from __future__ import annotations

import json
import time

from throwaway import figures_line, labelled_questions

SETTINGS = {
    "product (300 rounds, lr 0.05, 31 leaves)": {},
    "600 rounds, lr 0.03": {"rounds": 600, "learning_rate": 0.03},
    "300 rounds, 15 leaves": {"leaves": 15},
    "150 rounds, lr 0.05": {"rounds": 150},
}


def main() -> None:
    only = ("--only", {"action": "store_true", "help": "only the product's setting"})
    args, _, items = labelled_questions(__doc__.splitlines()[0], only)
    from regqa.qa import rank, training

    results = {}
    for name, params in list(SETTINGS.items())[: 1 if args.only else None]:
        started = time.perf_counter()

        def train(chosen, params=params):
            return rank.Ranker.train([i.group for i in chosen], [i.labels for i in chosen], **params)

        figures = training.cross_validate(items, args.folds, train=train)
        results[name] = figures
        print(figures_line(name, figures["reranker"], 42) + f"  {time.perf_counter() - started:.0f} s")
    for method in ("bm25", "dense", "rrf", "minmax"):
        f = next(iter(results.values()))[method]
        print(f"{method:42} R@10 {f['recall@10']['mean']:.4f}  MAP@10 {f['map@10']['mean']:.4f}")
    fs = next(iter(results.values()))["first_stage_recall"]
    print(f"first stage recall: {fs['mean']:.4f} ({fs['sd']:.4f})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
