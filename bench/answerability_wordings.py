"""Which yes/no question separates answerable from unanswerable questions best? For each question
the passages are retrieved as the ask flow does, and the local model's P("yes") is read for each
wording (the passages and question are evaluated once; each wording costs its own few tokens).
Prints the ROC AUC of every wording and of their mean, for choosing on a tune half only.

    REGQA_DATA_DIR=var-fintextqa python bench/answerability_wordings.py --questions Q.jsonl \
        --unanswerable P.jsonl [--model qwen2.5-coder-0.5b] --json out.json
"""

from __future__ import annotations

import json
import statistics

from answerability import report, setup, show, with_passages

WORDINGS = {
    "state": "Do the passages state the answer to the question? Reply with yes or no.",
    "written": "Is the answer to the question written in the passages? Reply with yes or no.",
    "alone": "Can the question be answered from the passages alone, without outside knowledge? Reply with yes or no.",
    "specific": "Do the passages contain the specific information the question asks for? Reply with yes or no.",
    "quote": "Could you answer the question by quoting one sentence of the passages? Reply with yes or no.",
}


def main() -> None:
    args, items = setup(__doc__)
    from regqa.qa import llm as local_llm
    from regqa.qa import prompts

    model = local_llm.get_model()
    rows = []
    for i, q, answerable, passages in with_passages(items):
        base = prompts.build_messages(q.question, passages)
        row = {"qid": q.qid, "answerable": answerable, "p": {}}
        for name, wording in WORDINGS.items():
            messages = [dict(m) for m in base]
            messages[-1]["content"] = messages[-1]["content"].replace(
                prompts.INSTRUCTIONS, prompts.UNTRUSTED + "\n" + wording
            )
            row["p"][name] = model.yes_probability(messages)
        rows.append(row)
        show(i, row)
    for r in rows:
        r["p"]["mean"] = statistics.fmean(r["p"].values())
    report(rows, [*WORDINGS, "mean"])
    args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
