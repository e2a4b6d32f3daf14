"""Re-route a finished `evaluate routing` run under other trigger settings, without re-running models.

    python bench/route_thresholds.py RUN.json QUESTIONS.jsonl [UNANSWERABLE.jsonl] [--max-share 0.4]

`evaluate routing --json RUN.json` keeps, for every question, the local answer and the large
answer; routing only chooses between them, so any policy's routed result can be recomputed with
the product's own router (routing.route). For every combination of triggers it prints the share
escalated and the routed quality on the tune and holdout halves (bench/split_questions.py's hash
split). Choose on `tune`; report `holdout`.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

from throwaway import setup_django


def half(qid: str) -> str:
    return "tune" if int(hashlib.sha256(qid.encode()).hexdigest(), 16) % 2 == 0 else "holdout"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("questions", type=Path, nargs="+")
    parser.add_argument("--max-share", type=float, default=0.4)
    args = parser.parse_args()
    setup_django("regqa-route-")
    from regqa.qa.models import EscalationPolicy
    from regqa.qa.routing import Usage, route

    text = {}
    for path in args.questions:
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                text[item["qid"]] = item["question"]
    run = json.loads(args.run.read_text())
    rows = list(zip(run["local"]["per_question"], run["large"]["per_question"], strict=True))
    passage = [{"n": 1, "text": "-", "document_title": "-", "sensitivity": "public"}]

    def quality(local: dict, routed_reasons: list[str]) -> dict:
        scores = {k: {"score": v} for k, v in local.get("scores", {}).items()}
        # runs made before every row carried its scores: "nothing relevant" is in the reasons
        if "retrieval_strength" not in scores and any("no passage is relevant" in r for r in routed_reasons):
            scores["retrieval_strength"] = {"score": 1}
        return scores

    def figures(chosen: list[tuple[dict, bool]]) -> dict:
        answerable = [(r, e) for r, e in chosen if r["answerable"]]
        answered = [r for r, _ in answerable if r["status"] == "answered"]
        hits = [r["citation_hit"] for r in answered if r.get("citation_hit") is not None]
        return {
            "n": len(answerable),
            "escalated": sum(e for _, e in answerable) / max(1, len(answerable)),
            "f1_all": sum(r.get("f1", 0.0) for r, _ in answerable) / max(1, len(answerable)),
            "hits": sum(hits) / len(hits) if hits else 0.0,
            "answered": len(answered),
            "probe_declined": sum(r["status"] == "not_covered" for r, _ in chosen if not r["answerable"]),
        }

    grid = itertools.product([0, 2, 3, 4], [0, 3, 4, 5], [0, 3, 4], [True, False], [True, False])
    results = []
    for retrieval, grounded, citation, on_decline, complex_ in grid:
        policy = EscalationPolicy(
            mode="automatic",
            allowed_groups=["evaluation"],
            max_sensitivity="restricted",
            min_retrieval_score=retrieval,
            min_groundedness=grounded,
            min_citation_accuracy=citation,
            escalate_on_decline=on_decline,
            escalate_complex=complex_,
            user_daily_escalations=10**9,
            global_daily_escalations=10**9,
            user_daily_tokens=10**12,
            global_daily_tokens=10**12,
        )
        by_half: dict[str, list] = {"tune": [], "holdout": [], "all": []}
        for (local, large), routed in zip(rows, run["routed"]["per_question"], strict=True):
            decision = route(
                text[local["qid"]], passage, local["status"], quality(local, routed.get("reasons", [])),
                {"evaluation"}, policy, Usage(), endpoint="http://x",
            )  # fmt: skip
            escalated = decision.action == "escalate"
            pick = (large if escalated else local, escalated)
            by_half[half(local["qid"])].append(pick)
            by_half["all"].append(pick)
        results.append(
            ((retrieval, grounded, citation, on_decline, complex_), {k: figures(v) for k, v in by_half.items()})
        )

    always = {
        name: {
            h: figures([(r, False) for r in run[name]["per_question"] if h == "all" or half(r["qid"]) == h])
            for h in ("tune", "holdout", "all")
        }
        for name in ("local", "large")
    }
    for name, f in always.items():
        print(f"always {name:5}: " + "  ".join(f"{h} F1 {f[h]['f1_all']:.3f} hits {f[h]['hits']:.2f}" for h in f))
    allowed = [r for r in results if r[1]["tune"]["escalated"] <= args.max_share]
    allowed.sort(key=lambda r: (-r[1]["tune"]["f1_all"], r[1]["tune"]["escalated"]))
    print(
        f"\nbest on tune, at most {args.max_share:.0%} escalated (retrieval, groundedness, citation, decline, complex):"
    )
    for settings_, f in allowed[:10]:
        parts = [f"{h} esc {f[h]['escalated']:.0%} F1 {f[h]['f1_all']:.3f} hits {f[h]['hits']:.2f}" for h in f]
        print(f"{settings_}: " + " | ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
