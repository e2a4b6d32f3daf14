"""The answer/decline decision with and without its sentence signals, on the same examples.

    REGQA_DATA_DIR=DIR .venv/bin/python bench/decision_signals.py --questions Q.jsonl [--unanswerable P.jsonl] \\
        [--save-models OUT_DIR | --models OUT_DIR]

The examples are those of `train_decision` (each question as asked and with its gold documents
withheld, plus the probe; no model runs). For the signals before the sentence signals were added
and for today's, it prints the ROC AUC cross-validated by question on these examples.
--save-models trains both on all the examples and writes OUT_DIR/before.json and after.json;
--models applies models saved so (trained on another corpus) to these examples: transfer, and how
many of the questions as asked each declines before the model runs. Gradient boosting on today's
signals is measured beside them the same ways (OUT_DIR/boosting.joblib).
"""

from __future__ import annotations

import json
from pathlib import Path

from throwaway import decision_examples


def main() -> None:
    args, _, _, examples = decision_examples(
        __doc__.splitlines()[0], ("--save-models", {"type": Path}), ("--models", {"type": Path})
    )
    import numpy as np

    from regqa.qa import decision_model

    rows, y, groups = [e.signals for e in examples], np.array([e.stated for e in examples]), [e.qid for e in examples]
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
    boosting(args, rows, y, groups, [e.source == "answerable" for e in examples])


def boosting(args, rows: list[dict], y, groups: list[str], asked: list[bool]) -> None:
    """Gradient boosting (sklearn's HistGradientBoostingClassifier, default settings) on today's
    signals: the same folds, threshold rule and figures as decision_model.train's logistic
    regression; --save-models / --models keep it as OUT_DIR/boosting.joblib for transfer."""
    import joblib
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    from regqa.qa import decision_model

    x = np.array([[r[n] for n in decision_model.SIGNALS] for r in rows])
    fold_of = decision_model.group_folds(groups, 5)
    oof = np.zeros(len(y))
    for f in range(5):
        test = fold_of == f
        oof[test] = HistGradientBoostingClassifier(random_state=0).fit(x[~test], y[~test]).predict_proba(x[test])[:, 1]
    threshold = decision_model.threshold_for(y, oof, 0.10)
    declined = oof < threshold
    print(
        f"boosting ({len(decision_model.SIGNALS)} signals) cross-validated here: ROC AUC "
        f"{decision_model.roc_auc(y, oof):.4f}; at its threshold false refusals {declined[y == 1].mean():.1%}, "
        f"correct refusals {declined[y == 0].mean():.1%}",
        flush=True,
    )
    if args.save_models:
        model = HistGradientBoostingClassifier(random_state=0).fit(x, y)
        joblib.dump({"model": model, "threshold": threshold}, args.save_models / "boosting.joblib")
    if args.models and (args.models / "boosting.joblib").exists():
        saved = joblib.load(args.models / "boosting.joblib")
        p = saved["model"].predict_proba(x)[:, 1]
        declined = p < saved["threshold"]
        held = np.array(asked) & (y == 1)
        print(
            f"boosting trained elsewhere: ROC AUC {decision_model.roc_auc(y, p):.4f}; at its threshold false refusals "
            f"{declined[y == 1].mean():.1%}, correct refusals {declined[y == 0].mean():.1%}; questions as asked "
            f"whose passages hold a gold item declined before the model runs: {declined[held].sum()} of {held.sum()}",
            flush=True,
        )


if __name__ == "__main__":
    main()
