"""Does the local model know, after writing an answer, whether the passages stated it? For each
question: P("yes") to the answerability question asked before the answer (as the ask flow does),
the answer itself, its verification, and P("yes") to follow-up questions asked after it in the same
chat. Prints the ROC AUC of each signal, answerable vs unanswerable (choose on a tune half only).

    REGQA_DATA_DIR=var-fintextqa python bench/answerability_after.py --questions Q.jsonl \
        --unanswerable P.jsonl --json out.json
"""

from __future__ import annotations

import json

from answerability import report, setup, show, with_passages

FOLLOW_UPS = {
    "every claim": "Is every claim in your answer stated in the passages? Reply with yes or no.",
    "answers it": "Does your answer give what the question asks for, as stated in the passages? Reply with yes or no.",
}


def main() -> None:
    args, items = setup(__doc__)

    from regqa.qa import answer as answer_mod
    from regqa.qa import llm as local_llm
    from regqa.qa import prompts
    from regqa.qa.verify import verify_answer

    model = local_llm.get_model()
    rows = []
    for i, q, answerable, passages in with_passages(items):
        row = {"qid": q.qid, "answerable": answerable, "p": {"before": answer_mod.answerability(q.question, passages)}}
        messages = prompts.build_messages(q.question, passages)
        raw = "".join(model.stream_json(messages))
        text, _, _ = local_llm.parse_model_output(raw, "")
        row["verification"] = verify_answer(text, passages, q.question).get("status") if text else None
        row["answer"] = text
        for name, follow_up in FOLLOW_UPS.items():
            chat = [*messages, {"role": "assistant", "content": raw}, {"role": "user", "content": follow_up}]
            row["p"][name] = model.yes_probability(chat)
        rows.append(row)
        show(i, row, row["verification"])
    report(rows, ["before", *FOLLOW_UPS])
    args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
