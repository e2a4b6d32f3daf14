"""How much the ranking learns from analysts' feedback alone, against labelled pairs (simulated).

    REGQA_DATA_DIR=DIR .venv/bin/python bench/feedback_cv.py QUESTIONS.jsonl [--folds 5] [--json out.json]

Feedback is what `train_retrieval --feedback` trains on: for an answer its asker found helpful, the
question and the passages it cites that nobody marked wrong. Simulated here for each training
question: the model reads the untrained ranking's top 3, and
- careful analysts: the answer is marked helpful if a gold passage is among the three, and the
  cited passages that are not gold are marked wrong (feedback gold = the gold passages among the 3);
- careless analysts: helpful on the same answers, but no passage is ever marked wrong (feedback
  gold = all three, right or not).
Questions with no gold passage in the top 3 give no feedback. Each variant trains the product's
reranker on the training folds' feedback and is scored on the held-out fold against the full gold
labels, as labelled pairs are (folds by question id, as `train_retrieval`).
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
from throwaway import figures_line, labelled_questions

SENT_TO_MODEL = 3


def main() -> None:
    args, _, items = labelled_questions(__doc__.splitlines()[0])
    from regqa.qa import rank, training

    def feedback(item, careful: bool):
        shown = np.isin(item.group.positions, rank.untrained_order(item.group)[:SENT_TO_MODEL])
        if not (item.labels * shown).any():
            return None  # no gold passage among the three: not helpful, no pair
        labels = item.labels * shown if careful else shown.astype(item.labels.dtype)
        return dataclasses.replace(item, labels=labels)

    variants = {"labelled pairs": None, "careful analysts' feedback": True, "careless analysts' feedback": False}
    results = {}
    for name, careful in variants.items():
        started = time.perf_counter()
        used: list[int] = []

        def train(chosen, careful=careful, used=used):
            if careful is not None:
                chosen = [f for f in (feedback(i, careful) for i in chosen) if f is not None]
            used.append(len(chosen))
            return training.train_ranker(chosen)

        figures = training.cross_validate(items, args.folds, train=train)
        figures["training_questions_per_fold"] = used
        results[name] = figures
        print(
            figures_line(name, figures["reranker"])
            + f"  trained on {min(used)}-{max(used)} questions a fold  {time.perf_counter() - started:.0f} s"
        )
    print(figures_line("untrained (rrf)", next(iter(results.values()))["rrf"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
