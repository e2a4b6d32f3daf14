"""Measure RegQA on a question set.

python manage.py evaluate retrieval --questions FILE.jsonl [--k 10] [--mode all] [--json OUT]
python manage.py evaluate answers --questions FILE.jsonl [--unanswerable FILE.jsonl]
                                  [--model NAME_OR_PATH ...] [--limit N] [--json OUT]
python manage.py evaluate routing --questions FILE.jsonl [--unanswerable FILE.jsonl]
                                  [--model LOCAL] [--serve-large NAME_OR_PATH | (REGQA_LARGE_LLM_BASE_URL)]
                                  [--min-retrieval N] [--min-groundedness N] [--min-citation N]
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from regqa.documents.embed import embed_query
from regqa.qa import llm
from regqa.qa.evaluate import (
    Question,
    evaluate_answers,
    evaluate_retrieval,
    evaluate_routing,
    file_names,
    read_questions,
)
from regqa.qa.llama_server import ServerFailed, serve
from regqa.qa.models import EscalationPolicy
from regqa.qa.quality import CRITERIA
from regqa.qa.redact import PATTERN_NAMES
from regqa.qa.retrieve import MODES

EVALUATION_USER = "evaluation"


def model_path(name: str) -> Path:
    """A GGUF path, or the name of a packaged model (scripts/fetch_model.py) in the model cache."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    import importlib.util

    spec = importlib.util.spec_from_file_location("fetch_model", settings.BASE_DIR / "scripts" / "fetch_model.py")
    assert spec is not None and spec.loader is not None  # the script is part of the repository
    fetch_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch_model)
    if name in fetch_model.MODELS:
        cached = settings.CACHE_DIR / "models" / fetch_model.MODELS[name][0]
        if cached.is_file():
            return cached
        raise CommandError(f"model {name} is not in the cache: run `python scripts/fetch_model.py {name}`")
    raise CommandError(f"{name} is neither a GGUF file nor one of {', '.join(fetch_model.MODELS)}")


def question_file(path: Path) -> list[Question]:
    """The questions of a JSON Lines file, or a CommandError saying what is wrong with it."""
    if not path.is_file():
        raise CommandError(f"{path} does not exist")
    try:
        return read_questions(path)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = "Evaluate RegQA's retrieval or answers on questions with gold passages or pages (JSON Lines)."

    def add_arguments(self, parser):
        parser.add_argument("what", choices=["retrieval", "answers", "routing"])
        parser.add_argument("--questions", type=Path, required=True)
        parser.add_argument("--k", type=int, default=10, help="retrieval: the cut-off")
        parser.add_argument(
            "--mode",
            choices=[*MODES, "all"],
            default=None,
            help="retrieval: the mode (default: the configured one; 'all' compares the three).",
        )
        parser.add_argument(
            "--unanswerable", type=Path, help="answers: questions the corpus does not answer (should be declined)"
        )
        parser.add_argument(
            "--model",
            action="append",
            default=[],
            help="answers: a GGUF path or packaged model name; repeat to compare models in one run",
        )
        parser.add_argument(
            "--serve-large",
            metavar="NAME_OR_PATH",
            help="routing: serve this GGUF as the large model (llama_cpp.server on 127.0.0.1) for the run; "
            "without it, REGQA_LARGE_LLM_BASE_URL is used",
        )
        defaults = EscalationPolicy()
        for name, field in (("retrieval", "min_retrieval_score"), ("groundedness", "min_groundedness")):
            parser.add_argument(f"--min-{name}", type=int, default=getattr(defaults, field), dest=field)
        parser.add_argument("--min-citation", type=int, default=defaults.min_citation_accuracy, dest="min_citation")
        parser.add_argument(
            "--folds",
            type=int,
            help="retrieval: k-fold cross-validation by question of the learned ranking (train a reranker on "
            "k-1 folds, evaluate the held-out fold), beside BM25, dense and the two untrained fusions",
        )
        parser.add_argument(
            "--ranker",
            type=Path,
            help="retrieval: also rank with this trained ranker (a bundle's ranker.txt, trained elsewhere: "
            "transfer to this library), beside BM25, dense and the untrained fusions",
        )
        parser.add_argument("--limit", type=int, help="Only the first N questions.")
        parser.add_argument("--json", type=Path, help="Write the figures and per-question results here.")

    def read(self, path: Path, limit: int | None):
        items = question_file(path)[:limit]
        if not items:
            raise CommandError(f"{path} holds no questions")
        return items

    def handle(self, *args, what: str, questions: Path, limit: int | None, **options):
        items = self.read(questions, limit)
        embed_query("warm-up")  # model loading is not retrieval latency
        if what == "retrieval" and options.get("folds"):
            results = [self.folds(items, options["k"], options["folds"], options["verbosity"])]
        elif what == "retrieval" and options.get("ranker"):
            results = [self.transfer(items, options["k"], options["ranker"], options["verbosity"])]
        elif what == "retrieval":
            results = self.retrieval(items, options["k"], options["mode"], options["verbosity"])
        elif what == "answers":
            results = self.answers(items, options, limit)
        else:
            results = self.routing(items, options, limit)
        if options.get("json"):
            options["json"].write_text(json.dumps(results if len(results) > 1 else results[0], indent=1))

    def retrieval(self, items, k: int, mode: str | None, verbosity: int) -> list[dict]:
        modes = list(MODES) if mode == "all" else [mode or settings.RETRIEVAL_MODE]
        results = []
        for m in modes:
            with tqdm(total=len(items), desc=m, unit="q", disable=verbosity < 1) as bar:
                results.append(evaluate_retrieval(items, k=k, mode=m, progress=bar.update))
        header = f"{'mode':8} {'questions':>9} {'R@' + str(k):>7} {'MAP@' + str(k):>7} {'nDCG@' + str(k):>7} "
        header += f"{'MRR@' + str(k):>7} {'ms p50':>7} {'ms p95':>7}"
        self.stdout.write(header)
        for r in results:
            self.stdout.write(
                f"{r['mode']:8} {r['questions']:9d} {r[f'recall@{k}']:7.4f} {r[f'map@{k}']:7.4f} "
                f"{r[f'ndcg@{k}']:7.4f} {r[f'mrr@{k}']:7.4f} {r['latency_ms_median']:7.1f} {r['latency_ms_p95']:7.1f}"
            )
        return results

    def folds(self, items, k: int, folds: int, verbosity: int) -> dict:
        from regqa.qa import rank, training

        lib = rank.library()
        try:
            found = training.check_gold(items, lib, file_names())
            with tqdm(total=len(items), desc="candidates", unit="q", disable=verbosity < 1) as bar:
                labelled = training.label(items, lib, progress=lambda n: bar.update(1))
            with tqdm(total=folds, desc="folds", unit="fold", disable=verbosity < 1) as bar:
                summary = training.cross_validate(labelled, folds, k=k, progress=lambda n: bar.update(1))
        except training.TrainingError as exc:
            raise CommandError(str(exc)) from exc
        summary["gold"] = found
        depth = summary["first_stage_depth"]
        self.stdout.write(
            f"{summary['questions']} questions, {folds}-fold cross-validation by question; mean (sd over folds)"
        )
        self.stdout.write(f"{'method':9} {'R@' + str(k):>15} {'MAP@' + str(k):>15} {'nDCG@' + str(k):>15}")
        for method in training.METHODS:
            cells = [summary[method][f"{m}@{k}"] for m in ("recall", "map", "ndcg")]
            self.stdout.write(f"{method:9} " + " ".join(f"{c['mean']:7.4f} ({c['sd']:.4f})" for c in cells))
        fs = summary["first_stage_recall"]
        self.stdout.write(
            f"first stage (BM25 top {depth} + dense top {depth}): recall {fs['mean']:.4f} ({fs['sd']:.4f})"
        )
        return summary

    def transfer(self, items, k: int, path: Path, verbosity: int) -> dict:
        from regqa.qa import rank, training

        if not path.is_file():
            raise CommandError(f"{path} does not exist")
        ranker = rank.Ranker.load(path)
        lib = rank.library()
        with tqdm(total=len(items), desc="candidates", unit="q", disable=verbosity < 1) as bar:
            labelled = training.label(items, lib, progress=lambda n: bar.update(1))
        results = {"questions": len(items), "k": k, "ranker": str(path)}
        self.stdout.write(f"{len(items)} questions, ranker {path}")
        self.stdout.write(
            f"{'method':9} {'R@' + str(k):>7} {'MAP@' + str(k):>7} {'nDCG@' + str(k):>7} {'MRR@' + str(k):>7}"
        )
        for method in training.METHODS:
            if method == "minmax":
                continue  # its weight is chosen on training questions: there are none here
            row = training.summarise(labelled, method, ranker if method == "reranker" else None, k)
            results[method] = row
            self.stdout.write(
                f"{method:9} " + " ".join(f"{row[f'{m}@{k}']:7.4f}" for m in ("recall", "map", "ndcg", "mrr"))
            )
        results["first_stage_recall"] = training.first_stage_recall(labelled)
        self.stdout.write(
            f"first stage recall (top {training.FIRST_STAGE_DEPTH} per half): {results['first_stage_recall']:.4f}"
        )
        return results

    def answers(self, items, options, limit: int | None) -> list[dict]:
        probe = self.read(options["unanswerable"], limit) if options.get("unanswerable") else []
        paths = [model_path(m) for m in options["model"]] or [Path(settings.LLM_MODEL_PATH)]
        user, _ = get_user_model().objects.get_or_create(username=EVALUATION_USER, defaults={"is_active": False})
        results = []
        for path in paths:
            llm.use_model(path)
            try:
                llm.get_model()  # loading is not answer time
            except llm.ModelUnavailable as exc:
                raise CommandError(str(exc)) from exc
            with tqdm(
                total=len(items) + len(probe), desc=path.name[:30], unit="q", disable=options["verbosity"] < 1
            ) as bar:
                results.append(evaluate_answers(items, user, probe, progress=bar.update))
        for r in results:
            self.stdout.write(self.report(r))
        return results

    def routing(self, items, options, limit: int | None) -> list[dict]:
        probe = self.read(options["unanswerable"], limit) if options.get("unanswerable") else []
        if len(options["model"]) > 1:
            raise CommandError("routing compares one local model with the large one: give --model once")
        local = model_path(options["model"][0]) if options["model"] else Path(settings.LLM_MODEL_PATH)
        llm.use_model(local)
        try:
            llm.get_model()
        except llm.ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        # Automatic mode, every document allowed (this measures quality, not the sensitivity rules),
        # redaction on, no budget limit; the thresholds are the policy defaults unless given.
        policy = EscalationPolicy(
            mode=EscalationPolicy.Mode.AUTOMATIC,
            allowed_groups=["evaluation"],
            max_sensitivity="restricted",
            redact_patterns=PATTERN_NAMES,
            user_daily_escalations=10**9,
            global_daily_escalations=10**9,
            user_daily_tokens=10**12,
            global_daily_tokens=10**12,
            min_retrieval_score=options["min_retrieval_score"],
            min_groundedness=options["min_groundedness"],
            min_citation_accuracy=options["min_citation"],
        )
        user, _ = get_user_model().objects.get_or_create(username=EVALUATION_USER, defaults={"is_active": False})

        def run() -> dict:
            with tqdm(total=len(items) + len(probe), desc="routing", unit="q", disable=options["verbosity"] < 1) as bar:
                return evaluate_routing(items, user, policy, probe, progress=bar.update)

        if options.get("serve_large"):
            try:
                with serve(model_path(options["serve_large"]), threads=settings.LLM_THREADS) as url:
                    settings.LARGE_LLM_BASE_URL, settings.LARGE_LLM_MODEL = url, "large"
                    result = run()
            except ServerFailed as exc:
                raise CommandError(str(exc)) from exc
        elif settings.LARGE_LLM_BASE_URL:
            result = run()
        else:
            raise CommandError("no large model: set REGQA_LARGE_LLM_BASE_URL or give --serve-large NAME_OR_PATH")
        for way in ("local", "large", "routed"):
            self.stdout.write(f"[{way}] " + self.report(result[way]))
        self.stdout.write(
            f"routed: escalated {result['routed']['escalated_share']:.1%} of answerable questions "
            f"({result['routed']['escalated_share_all']:.1%} with the probe); thresholds: retrieval "
            f"{policy.min_retrieval_score}, groundedness {policy.min_groundedness}, "
            f"citation {policy.min_citation_accuracy}"
        )
        for key, label in (("token_f1_all", "token F1 (all answerable)"), ("citation_hit_rate", "citation hits")):
            large, routed = result["large"][key], result["routed"][key]
            if large:
                self.stdout.write(
                    f"routed vs always-large, {label}: {routed:.3f} vs {large:.3f} ({routed / large:.1%})"
                )
        return [result]

    @staticmethod
    def report(r: dict) -> str:
        def pct(value) -> str:
            return "-" if value is None else f"{value:.1%}"

        def num(value, digits=3) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        judge = ", ".join(f"{name.lower()} {num(r['judge'][key], 2)}" for key, name in CRITERIA.items())
        return "\n".join(
            [
                f"model {r['model']}",
                f"  questions {r['questions']}, answered {r['answered']}, quoted {r.get('quoted', 0)}, "
                f"failed {r['failed']}",
                f"  token F1 {num(r['token_f1'])}, ROUGE-L {num(r['rouge_l'])} (answered questions); "
                f"token F1 over all answerable {num(r['token_f1_all'])}",
                f"  citations hit a gold passage/page: {pct(r['citation_hit_rate'])} of answered and quoted",
                f"  sentences verified as supported: {pct(r['sentences_supported'])}",
                f"  false refusals (answerable declined): {pct(r['false_refusal_rate'])}",
                f"  unanswerable probe: {r['unanswerable']} questions, "
                f"correctly declined {pct(r['correct_refusal_rate'])}, quoted {r.get('probe_quoted', 0)}",
                f"  judge means (1-5): {judge}",
                f"  first token ms median {r['first_token_ms_median']:.0f}, p95 {r['first_token_ms_p95']:.0f}; "
                f"total ms median {r['total_ms_median']:.0f}, p95 {r['total_ms_p95']:.0f}; "
                f"check share of total (median) {r['check_share_median']:.1%}",
            ]
        )
