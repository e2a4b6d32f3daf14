"""Ingestion throughput and answer latency on the demo PDFs, with the real models.

    .venv/bin/python bench/demo_latency.py [--model PATH]

Uses a throwaway data directory: ingests fixtures/pdfs, warms the models up, then asks each
question below once through the same pipeline as the ask page and prints the timings.
The questions were written for this benchmark from the fixture PDFs (not taken from any
evaluation set, and nothing was tuned on them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from throwaway import ROOT, setup_django

QUESTIONS = [
    "Under Regulation O, what kinds of business entity count as a company?",
    "What is the Federal Reserve's longer-run inflation goal?",
    "What notice must a state member bank give before closing a branch?",
    "Which management official interlocks does Regulation L prohibit?",
    "What is an Edge corporation allowed to do under Regulation K?",
    "What is the best recipe for sourdough bread?",  # not covered: should be declined
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: REGQA_LLM_MODEL or the packaged default)")
    args = parser.parse_args()
    setup_django(**({"REGQA_LLM_MODEL": args.model} if args.model else {}))
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from regqa.documents.models import Document
    from regqa.qa.answer import answer_question, warm_up

    call_command("bootstrap", "--demo-users", stdout=StringIO())
    from regqa.documents import embed

    embed.get_model()  # load time is not ingestion time
    started = time.perf_counter()
    call_command("ingest_pdfs", str(ROOT / "fixtures" / "pdfs"), "--now", stdout=StringIO())
    seconds = time.perf_counter() - started
    pages = sum(Document.objects.values_list("page_count", flat=True))
    chunks = sum(Document.objects.values_list("chunk_count", flat=True))
    print(f"ingestion: {pages} pages, {chunks} passages in {seconds:.1f} s ({pages / seconds:.1f} pages/s)")

    warm_up()
    user = get_user_model().objects.get(username="analyst")
    rows = []
    print(f"\n{'retrieval ms':>12} {'1st token ms':>12} {'total ms':>9}  status       question")
    for question in QUESTIONS:
        answer = answer_question(user, question)
        rows.append(answer)
        print(
            f"{answer.retrieval_ms:12.0f} {answer.first_token_ms or 0:12.0f} {answer.total_ms or 0:9.0f}  "
            f"{answer.status:12} {question[:60]}"
        )
    answered = [a for a in rows if a.first_token_ms]
    print(f"\nmodel: {rows[0].model_name or os.environ.get('REGQA_LLM_MODEL')}")
    print(f"median retrieval: {statistics.median(a.retrieval_ms for a in rows):.0f} ms")
    if answered:
        print(f"median time to first token: {statistics.median(a.first_token_ms for a in answered):.0f} ms")
        print(f"median total (model answers): {statistics.median(a.total_ms for a in answered):.0f} ms")


if __name__ == "__main__":
    main()
