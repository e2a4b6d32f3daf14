"""The best window's similarity as a feature of the learned ranker: cross-validated against the
product's features alone, same folds, same candidates, one run.

    REGQA_DATA_DIR=DIR .venv/bin/python bench/window_feature.py QUESTIONS.jsonl [--folds 5]

Each question's candidates and features are computed once (as `train_retrieval` does); the second
run appends three columns per candidate: its best window's cosine similarity with the question
(the passage's own vector when it has no windows), that similarity's rank among the candidates, and
its gain over the whole passage's similarity. Not in the product yet: this measures whether it is
worth adding to rank.FEATURES (which would also need the candidates' windows at query time).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from throwaway import figures_line, labelled_questions

WINDOW_FEATURES = ["window_best", "window_rank", "window_gain"]


def with_window_features(items: list, lib, windows: dict[int, np.ndarray]) -> list:
    from regqa.qa import rank

    def best(position: int, query: np.ndarray) -> float:
        rows = windows.get(int(lib.ids[position]))
        if rows is None or not len(rows):
            rows = lib.vectors[position][None, :]
        return float((rows @ query).max())

    out = []
    for item in items:
        positions = item.group.positions
        similarity = np.array([best(p, item.query_vector) for p in positions], dtype="float64")
        ranks = np.empty(len(positions))
        ranks[np.argsort(-similarity, kind="stable")] = np.arange(1, len(positions) + 1)
        gain = similarity - item.group.column("base_dense")
        features = np.column_stack([item.group.features, similarity, ranks, gain])
        out.append(dataclasses.replace(item, group=rank.Candidates(positions, features)))
    return out


def main() -> None:
    args, _, items = labelled_questions(__doc__.splitlines()[0], json_out=False)
    from regqa.documents.embed import window_vectors
    from regqa.documents.models import Chunk
    from regqa.qa import rank, training

    lib = rank.library()
    windows = {pk: window_vectors(bytes(w)) for pk, w in Chunk.live.values_list("pk", "windows").iterator(2000)}
    print(f"{sum(len(w) > 0 for w in windows.values())} of {len(windows)} passages have windows", flush=True)

    def train(chosen):
        return rank.Ranker.train([i.group for i in chosen], [i.labels for i in chosen])

    for name in ("product features", "with window features"):
        if name == "with window features":
            rank.FEATURES.extend(WINDOW_FEATURES)  # this process only: the columns appended below
            items = with_window_features(items, lib, windows)
        started = time.perf_counter()
        figures = training.cross_validate(items, args.folds, train=train)
        print(figures_line(name, figures["reranker"], 22) + f"  {time.perf_counter() - started:.0f} s", flush=True)
    for method in ("rrf", "minmax"):
        f = figures[method]
        print(f"{method:22} R@10 {f['recall@10']['mean']:.4f}  MAP@10 {f['map@10']['mean']:.4f}")


if __name__ == "__main__":
    main()
