"""The window features of the learned ranker, ablated: the product's ranker cross-validated with and
without its three window columns, same folds, same candidates, one run.

    REGQA_DATA_DIR=DIR .venv/bin/python bench/window_feature.py QUESTIONS.jsonl [--folds 5]

Each question's candidates and features are computed once (as `train_retrieval` does, packaged
embedder, no query adapter); the first run trains and scores the ranker with window_best,
window_rank and window_gain held constant (so it learns from the columns of rank.FEATURES before
windows), the second on all of them. The library's passages need their windows stored
(`manage.py index windows`), else the window columns only repeat the passage's own similarity.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from throwaway import figures_line, labelled_questions

WINDOW_FEATURES = ["window_best", "window_rank", "window_gain"]


def without_window_features(items: list) -> list:
    """The items with the window columns made constant (0): LightGBM cannot split on them, so the
    ranker learns from the other columns only; the untrained ranking still reads them."""
    from regqa.qa import rank

    blank = [rank.FEATURES.index(name) for name in WINDOW_FEATURES]
    out = []
    for item in items:
        features = item.group.features.copy()
        features[:, blank] = 0.0
        out.append(dataclasses.replace(item, group=rank.Candidates(item.group.positions, features)))
    return out


def main() -> None:
    args, _, items = labelled_questions(__doc__.splitlines()[0], json_out=False)
    from regqa.qa import rank, training

    lib = rank.library()
    windowed = int((lib.window_spans[:, 1] > lib.window_spans[:, 0]).sum())
    print(f"{windowed} of {len(lib.ids)} passages have windows ({len(lib.window_rows)} windows)", flush=True)

    def train(chosen):
        return rank.Ranker.train([i.group for i in chosen], [i.labels for i in chosen])

    for name, chosen in (("without window features", without_window_features(items)), ("product features", items)):
        started = time.perf_counter()
        figures = training.cross_validate(chosen, args.folds, train=train)
        print(figures_line(name, figures["reranker"], 24) + f"  {time.perf_counter() - started:.0f} s", flush=True)
    for method in ("rrf", "minmax"):
        f = figures[method]
        print(f"{method:24} R@10 {f['recall@10']['mean']:.4f}  MAP@10 {f['map@10']['mean']:.4f}")
    gains = np.array([i.group.column("window_gain").max() for i in items if len(i.group.positions)])
    print(f"best window gain per question: median {np.median(gains):.3f}, p90 {np.percentile(gains, 90):.3f}")


if __name__ == "__main__":
    main()
