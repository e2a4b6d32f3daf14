"""Does the local model know when the passages hold the answer? Collects, per question, why the
pipeline answered or declined and the model's probability of "yes" to "Do the passages state the
answer?", for choosing a decline rule on a tune half.

    REGQA_DATA_DIR=var-fintextqa python bench/answerability.py --questions Q.jsonl \
        --unanswerable P.jsonl [--model qwen2.5-coder-0.5b] --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterator
from pathlib import Path

from throwaway import setup_django_here


def auc(pos: list[float], neg: list[float]) -> float:
    """ROC AUC: the chance that an answerable question scores above an unanswerable one."""
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / len(pos) / len(neg)


def sent_passages(question: str) -> list[dict]:
    """The passages the ask flow gives the model for a question, numbered as in its prompt."""
    from django.conf import settings

    from regqa.qa.retrieve import retrieve

    found = retrieve(question)[: settings.CONTEXT_PASSAGES]
    return [p.as_dict() | {"n": n + 1} for n, p in enumerate(found)]


def with_passages(items: list) -> Iterator[tuple[int, object, bool, list[dict]]]:
    """(index, question, answerable, the passages the ask flow gives the model) for each item."""
    for i, (q, answerable) in enumerate(items):
        yield i, q, answerable, sent_passages(q.question)


def show(i: int, row: dict, *extra: object) -> None:
    """One progress line: the question's index and kind and each probability measured."""
    print(i, int(row["answerable"]), " ".join(f"{k} {v:.2f}" for k, v in row["p"].items()), *extra, flush=True)


def report(rows: list[dict], names: list[str]) -> None:
    """Per signal in row["p"]: its AUC and its median on each kind of question."""
    for name in names:
        pos = [r["p"][name] for r in rows if r["answerable"]]
        neg = [r["p"][name] for r in rows if not r["answerable"]]
        print(f"{name:12} AUC {auc(pos, neg):.3f}  answerable median {statistics.median(pos):.2f}  "
              f"unanswerable median {statistics.median(neg) if neg else float('nan'):.2f}")  # fmt: skip


def setup(description: str) -> tuple[argparse.Namespace, list]:
    """Parse --questions, --unanswerable, --model and --json, set up Django on the configured data
    directory, switch to the model asked for, and return the arguments and (question, answerable)
    pairs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--unanswerable", type=Path)
    parser.add_argument("--model")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    setup_django_here()
    from regqa.qa import llm as local_llm
    from regqa.qa.evaluate import read_questions

    if args.model:
        from regqa.qa.management.commands.evaluate import model_path

        local_llm.use_model(model_path(args.model))
    items = [(q, True) for q in read_questions(args.questions)]
    if args.unanswerable:
        items += [(q, False) for q in read_questions(args.unanswerable)]
    return args, items


def main() -> None:
    args, items = setup(__doc__)
    from django.contrib.auth import get_user_model

    from regqa.qa import answer as answer_mod

    user, _ = get_user_model().objects.get_or_create(username="evaluation")
    rows = []
    for i, (q, answerable) in enumerate(items):
        ans = answer_mod.answer_question(user, q.question, route=False)
        p_yes = answer_mod.answerability(q.question, [p for p in ans.passages if p.get("sent_to_model")])
        v = ans.verification or {}
        rows.append(
            {
                "qid": q.qid,
                "answerable": answerable,
                "status": ans.status,
                "p_yes": p_yes,
                "found": v.get("model_says_passages_answer"),
                "verification": v.get("status"),
                "supported": v.get("supported"),
                "sentences": v.get("total"),
                "text": v.get("declined_text") or ans.answer_text,
                "retrieval": (ans.quality or {}).get("retrieval_strength", {}).get("score"),
            }
        )
        r = rows[-1]
        print(f"{i:3} {int(answerable)} {r['status'][:8]:8} p_yes {p_yes:.3f} found {r['found']} "
              f"ver {r['verification']} {r['text'][:80]!r}", flush=True)  # fmt: skip
    args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
