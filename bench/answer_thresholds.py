"""Re-decide a finished `evaluate answers` run under other answerability thresholds, without
re-running the model.

    REGQA_DATA_DIR=var-fintextqa python bench/answer_thresholds.py TUNE.json [HOLDOUT.json ...]

Every answer of the run is stored with the model's probability that its passages state the answer,
the draft the model wrote (answered, withheld or declined) and the passages. The decline rule
(answer.settle) is replayed for every pair of thresholds: REGQA_ANSWERABLE_THRESHOLD (the best
passage a strong match, retrieval strength 5) and REGQA_ANSWERABLE_THRESHOLD_WEAK (weaker). Prints
false refusals and probe questions declined per run and pair, first checking that the run's own
thresholds reproduce its outcomes. Choose on the tune run; report the holdout run.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from throwaway import setup_django_here

GRID = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", type=Path, nargs="+", help="JSON written by `evaluate answers --json`")
    args = parser.parse_args()
    setup_django_here()
    from django.conf import settings

    from regqa.qa import citations, decision
    from regqa.qa.models import Answer
    from regqa.qa.quality import retrieval_strength

    def replay(answer: Answer, p: float) -> bool:
        """Whether settle answers the stored draft once the gate lets it through."""
        v = answer.verification or {}
        draft = v.get("withheld_draft") or v.get("draft_text") or v.get("declined_text")
        if answer.status == Answer.Status.ANSWERED and not v.get("quoted"):
            draft = answer.answer_text
        if not draft:
            return False
        sent = [p for p in answer.passages if p.get("sent_to_model")]
        cited = [c["n"] for c in citations.parse_citations(draft, 10**6)]
        settings.ANSWERABLE_THRESHOLD = settings.ANSWERABLE_THRESHOLD_WEAK = 1e-9  # the gate open
        trial = Answer(question=answer.question)
        decision.settle(trial, draft, cited, v.get("model_says_passages_answer", True), sent, p)
        return trial.status == Answer.Status.ANSWERED

    for run in args.runs:
        rows = []
        for r in json.loads(run.read_text())["per_question"]:
            answer = Answer.objects.get(pk=r["answer_id"])
            v = answer.verification or {}
            p = v.get("answerability")
            sent = [x for x in answer.passages if x.get("sent_to_model")]
            rows.append(
                {
                    "answerable": r["answerable"],
                    "answered": r["status"] == Answer.Status.ANSWERED,
                    "p": p,
                    "strong": bool(sent) and retrieval_strength(sent)["score"] >= 5,
                    "through": replay(answer, p) if p is not None else None,
                    "threshold": v.get("answerability_threshold"),
                }
            )

        def outcome(row: dict, threshold: float) -> bool:
            return row["answered"] if row["p"] is None else row["through"] and row["p"] >= threshold

        same = sum(outcome(row, row["threshold"] or 0.0) == row["answered"] for row in rows)
        answerable = [row for row in rows if row["answerable"]]
        probe = [row for row in rows if not row["answerable"]]
        print(f"{run}: {len(answerable)} answerable, {len(probe)} probe; the run's own thresholds "
              f"reproduce {same} of {len(rows)} outcomes")  # fmt: skip
        print("strong  weak  false refusals  probe declined")
        for strong, weak in itertools.product(GRID, GRID):
            fr = sum(not outcome(r, strong if r["strong"] else weak) for r in answerable) / len(answerable)
            declined = sum(not outcome(r, strong if r["strong"] else weak) for r in probe) / max(1, len(probe))
            print(f"{strong:6.2f} {weak:5.2f} {fr:15.1%} {declined:15.1%}")


if __name__ == "__main__":
    main()
