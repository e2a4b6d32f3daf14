"""The answer/decline decision against the local model's yes/no probability, in one run.

    REGQA_DATA_DIR=DIR .venv/bin/python bench/decision_auc.py --questions Q.jsonl [--unanswerable P.jsonl] \\
        [--model-file decision.json] [--json out.json]

For every question (and, for answerable ones, a copy with their gold documents withheld from
retrieval) it computes the decision's signals and asks the local model "do the passages state the
answer?" on the same passages (P(yes), as the ask page does). It prints the ROC AUC of:
P(yes) alone; the decision model cross-validated by question on these examples (signals only, and
signals + P(yes)); and, with --model-file, a decision model trained elsewhere (transfer).
The label is whether a gold item is among the passages the model reads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from throwaway import decision_examples


def main() -> None:
    started = time.perf_counter()
    args, questions, probe, examples = decision_examples(
        __doc__.splitlines()[0], ("--model-file", {"type": Path}), ("--json", {"type": Path})
    )
    import numpy as np

    from regqa.qa import decision_model, llm
    from regqa.qa.answer import answerability

    llm.get_model()
    by_qid = {q.qid: q for q in [*questions, *probe]}
    rows = []
    for e in examples:
        q, passages = by_qid[e.qid], e.passages
        with llm.slots:
            p_yes = answerability(q.question, passages)
        rows.append({"qid": e.qid, "source": e.source, "stated": e.stated, "p_yes": p_yes, "signals": e.signals})
        print(f"{len(rows):3d}/{len(examples)} {e.source:10} stated={e.stated} p_yes={p_yes:.3f}", flush=True)
    y = np.array([r["stated"] for r in rows])
    p_yes = np.array([r["p_yes"] if r["p_yes"] is not None else 0.5 for r in rows])
    report = {"examples": len(rows), "stated": int(y.sum()), "seconds": round(time.perf_counter() - started)}
    report["auc_p_yes"] = decision_model.roc_auc(y, p_yes)
    cv = decision_model.train([r["signals"] for r in rows], y.tolist(), [r["qid"] for r in rows])
    report["auc_decision_cv"] = cv.figures["roc_auc"]
    report["decision_cv"] = cv.figures
    with_p = [r["signals"] | {"p_yes": r["p_yes"] or 0.5} for r in rows]
    names = [*decision_model.SIGNALS, "p_yes"]
    combined = decision_model.train(with_p, y.tolist(), [r["qid"] for r in rows], names=names)
    report["auc_decision_plus_p_yes_cv"] = combined.figures["roc_auc"]
    report["decision_plus_p_yes_cv"] = combined.figures
    if args.model_file:
        model = decision_model.DecisionModel.from_json(json.loads(args.model_file.read_text()))
        p = np.array([model.probability(r["signals"]) for r in rows])
        declined = p < model.threshold
        report["transfer"] = {
            "auc": decision_model.roc_auc(y, p),
            "threshold": model.threshold,
            "false_refusals": float(declined[y == 1].mean()) if (y == 1).any() else None,
            "correct_refusals": float(declined[y == 0].mean()) if (y == 0).any() else None,
        }
    for key, value in report.items():
        if not isinstance(value, dict):
            print(f"{key}: {value}")
    for key in ("decision_cv", "decision_plus_p_yes_cv", "transfer"):
        if key in report:
            print(key, {k: v for k, v in report[key].items() if k != "calibration"})
    if args.json:
        args.json.write_text(json.dumps({"report": report, "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
