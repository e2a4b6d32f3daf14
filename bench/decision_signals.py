"""The answer/decline decision with and without its sentence signals, on the same examples.

    REGQA_DATA_DIR=DIR .venv/bin/python bench/decision_signals.py --questions Q.jsonl [--unanswerable P.jsonl] \\
        [--save-models OUT_DIR | --models OUT_DIR]

The examples are those of `train_decision` (each question as asked and with its gold documents
withheld, plus the probe; no model runs). For the signals before the sentence signals were added
and for today's, it prints the ROC AUC cross-validated by question on these examples.
--save-models trains both on all the examples and writes OUT_DIR/before.json and after.json;
--models applies models saved so (trained on another corpus) to these examples: transfer, and how
many of the questions as asked each declines before the model runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from throwaway import setup_django_here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--unanswerable", type=Path)
    parser.add_argument("--save-models", type=Path)
    parser.add_argument("--models", type=Path)
    args = parser.parse_args()
    setup_django_here()
    import numpy as np

    from regqa.qa import decision_model
    from regqa.qa.evaluate import decision_examples, read_questions

    started = time.perf_counter()
    probe = read_questions(args.unanswerable) if args.unanswerable else []
    examples = decision_examples(read_questions(args.questions), probe)
    rows, y, groups = [e.signals for e in examples], np.array([e.stated for e in examples]), [e.qid for e in examples]
    print(f"{len(rows)} examples ({int(y.sum())} stated) in {time.perf_counter() - started:.0f} s")
    added = {*decision_model.SENTENCE_SIGNALS, "same_document"}  # what the sentence signals' change added
    sets = {"before": [n for n in decision_model.SIGNALS if n not in added], "after": decision_model.SIGNALS}
    for name, names in sets.items():
        model = decision_model.train(rows, y.tolist(), groups, names=names)
        f = model.figures
        line = (
            f"{name:6} ({len(names)} signals) cross-validated here: ROC AUC {f['roc_auc']:.4f}; at its threshold "
            f"false refusals {f['false_refusals']:.1%}, correct refusals {f['correct_refusals']:.1%}"
        )
        if args.models:
            trained = decision_model.DecisionModel.from_json(json.loads((args.models / f"{name}.json").read_text()))
            p = np.array([trained.probability(r) for r in rows])
            declined = p < trained.threshold
            asked = np.array([e.source == "answerable" for e in examples])
            line += (
                f" | trained elsewhere: ROC AUC {decision_model.roc_auc(y, p):.4f}; at its threshold false refusals "
                f"{declined[y == 1].mean():.1%}, correct refusals {declined[y == 0].mean():.1%}; questions as asked "
                f"declined before the model runs: {declined[asked & (y == 1)].sum()} of {(asked & (y == 1)).sum()} "
                f"whose passages hold a gold item, {declined[asked & (y == 0)].sum()} of {(asked & (y == 0)).sum()} "
                f"whose passages do not"
            )
        print(line, flush=True)
        if args.save_models:
            args.save_models.mkdir(parents=True, exist_ok=True)
            (args.save_models / f"{name}.json").write_text(json.dumps(model.as_json(), indent=1))


if __name__ == "__main__":
    main()
