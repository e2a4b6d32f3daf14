"""Measure retrieval on a question set: python manage.py evaluate retrieval --questions FILE.jsonl"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from regqa.documents.embed import embed_query
from regqa.qa.evaluate import evaluate_retrieval, read_questions
from regqa.qa.retrieve import MODES


class Command(BaseCommand):
    help = "Evaluate RegQA's retrieval on questions with gold passages or pages (JSON Lines)."

    def add_arguments(self, parser):
        parser.add_argument("what", choices=["retrieval"])
        parser.add_argument("--questions", type=Path, required=True)
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument(
            "--mode",
            choices=[*MODES, "all"],
            default=None,
            help="Retrieval mode (default: the configured one; 'all' compares the three).",
        )
        parser.add_argument("--limit", type=int, help="Only the first N questions.")
        parser.add_argument("--json", type=Path, help="Write the figures and per-question results here.")

    def handle(self, *args, what: str, questions: Path, k: int, mode: str | None, limit: int | None, **options):
        if not questions.is_file():
            raise CommandError(f"{questions} does not exist")
        try:
            items = read_questions(questions)[:limit]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not items:
            raise CommandError(f"{questions} holds no questions")
        embed_query("warm-up")  # model loading is not retrieval latency
        modes = list(MODES) if mode == "all" else [mode or settings.RETRIEVAL_MODE]
        results = []
        for m in modes:
            with tqdm(total=len(items), desc=m, unit="q", disable=options["verbosity"] < 1) as bar:
                results.append(evaluate_retrieval(items, k=k, mode=m, progress=bar.update))
        header = f"{'mode':8} {'questions':>9} {'R@' + str(k):>7} {'MAP@' + str(k):>7} {'nDCG@' + str(k):>7} "
        header += f"{'MRR@' + str(k):>7} {'ms p50':>7} {'ms p95':>7}"
        self.stdout.write(header)
        for r in results:
            self.stdout.write(
                f"{r['mode']:8} {r['questions']:9d} {r[f'recall@{k}']:7.4f} {r[f'map@{k}']:7.4f} "
                f"{r[f'ndcg@{k}']:7.4f} {r[f'mrr@{k}']:7.4f} {r['latency_ms_median']:7.1f} {r['latency_ms_p95']:7.1f}"
            )
        if options.get("json"):
            options["json"].write_text(json.dumps(results if len(results) > 1 else results[0], indent=1))
