"""The instant answer from the documents (answer.instant_quote): how fast, and how often the quoted
sentences already hold the reference answer, on FinTextQA dev (49 questions, real PDFs).

    .venv/bin/python bench/instant_answer.py [--questions ../shared/benchdata/fintextqa/questions_dev.jsonl]

Uses a throwaway data directory: ingests fixtures/pdfs (the FinTextQA PDFs) with the real
embedder, then for each question times what the ask page does before the model runs: retrieval
and the instant quote. Nothing here is tuned on these questions (the quote's rules predate them).

"Holds the reference answer" is measured two ways: a quoted sentence comes from a gold page; and
the share of the reference answer's content words (stemmed, stop words out) that the quote holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from io import StringIO
from pathlib import Path

from throwaway import ROOT, setup_django


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT.parent / "shared" / "benchdata" / "fintextqa" / "questions_dev.jsonl"
    parser.add_argument("--questions", type=Path, default=default)
    args = parser.parse_args()
    setup_django()
    from django.conf import settings
    from django.core.management import call_command

    from regqa.documents import embed
    from regqa.documents.models import Document
    from regqa.qa.answer import instant_quote, warm_up
    from regqa.qa.retrieve import retrieve
    from regqa.qa.verify import content_terms

    embed.get_model()
    call_command("ingest_pdfs", str(ROOT / "fixtures" / "pdfs"), "--now", stdout=StringIO())
    names = dict(Document.objects.values_list("pk", "original_name"))
    warm_up()
    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    rows = []
    for q in questions:
        started = time.perf_counter()
        passages = [p.as_dict() | {"n": i + 1} for i, p in enumerate(retrieve(q["question"]))]
        retrieval_ms = (time.perf_counter() - started) * 1000
        sent = passages[: settings.CONTEXT_PASSAGES]
        instant = instant_quote(q["question"], sent)
        total_ms = (time.perf_counter() - started) * 1000
        gold = {(g["document"], g["page"]) for g in q.get("gold", [])}
        by_n = {p["n"]: p for p in sent}
        quoted_pages = {
            (names.get(by_n[n]["document_id"]), page)
            for s in instant.get("verification", {}).get("sentences", [])
            for n in s["citations"]
            if n in by_n
            for page in range(by_n[n]["page_start"] or 0, (by_n[n]["page_end"] or by_n[n]["page_start"] or 0) + 1)
        }
        reference = content_terms(q.get("answer", ""))
        held = len(reference & content_terms(instant.get("text", ""))) / len(reference) if reference else 0.0
        rows.append(
            {
                "qid": q["qid"],
                "quoted": bool(instant),
                "retrieval_ms": retrieval_ms,
                "total_ms": total_ms,
                "gold_page": bool(gold & quoted_pages),
                "answer_words_held": held,
            }
        )
    quoted = [r for r in rows if r["quoted"]]
    totals = [r["total_ms"] for r in rows]
    print(f"{len(rows)} questions; a quote shown for {len(quoted)} ({len(quoted) / len(rows):.0%})")
    print(
        f"retrieval + quote: p50 {statistics.median(totals):.0f} ms, p95 {percentile(totals, 0.95):.0f} ms, "
        f"max {max(totals):.0f} ms (retrieval alone p50 {statistics.median(r['retrieval_ms'] for r in rows):.0f} ms)"
    )
    print(
        f"a quoted sentence from a gold page: {sum(r['gold_page'] for r in rows)} of {len(rows)} "
        f"({sum(r['gold_page'] for r in rows) / len(rows):.0%})"
    )
    held = [r["answer_words_held"] for r in rows]
    print(
        f"reference answer's content words held by the quote: mean {statistics.mean(held):.2f}, "
        f"median {statistics.median(held):.2f}; at least half of them: {sum(h >= 0.5 for h in held)} of {len(rows)}"
    )


if __name__ == "__main__":
    main()
