"""Run a benchmark against a fresh, throwaway RegQA data directory (database, uploads, index)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def setup_django_here() -> None:
    """Set up Django on the data directory the environment names (REGQA_DATA_DIR), as it is."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "regqa.settings")
    import django

    django.setup()


def setup_django(prefix: str = "regqa-bench-", **env: str) -> Path:
    """Point RegQA at a new temporary data directory, set up Django and migrate. Returns the directory."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["REGQA_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("REGQA_SECRET_KEY", "bench-only")
    os.environ.update(env)
    setup_django_here()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return data_dir


def labelled_questions(description: str, *options: tuple[str, dict], json_out: bool = True) -> tuple[Any, list, list]:
    """What a cross-validation bench starts from: QUESTIONS.jsonl [--folds 5] [--json out.json] (with
    `json_out`) plus `options` (name, add_argument keywords) parsed, Django set up on REGQA_DATA_DIR
    as it is, and every question's candidates labelled against its gold (training.label). Returns
    the arguments, the questions and the labelled items."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("questions", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    if json_out:
        parser.add_argument("--json", type=Path)
    for name, keywords in options:
        parser.add_argument(name, **keywords)
    args = parser.parse_args()
    setup_django_here()
    from regqa.qa import rank, training
    from regqa.qa.evaluate import read_questions

    questions = read_questions(args.questions)
    started = time.perf_counter()
    items = training.label(questions, rank.library())
    print(f"{len(items)} questions labelled in {time.perf_counter() - started:.0f} s", flush=True)
    return args, questions, items


def decision_examples(description: str, *options: tuple[str, dict]) -> tuple[Any, list, list, list]:
    """What a decision bench starts from: --questions Q.jsonl [--unanswerable P.jsonl] [--examples E.json] plus
    `options` (name, add_argument keywords) parsed, Django set up on REGQA_DATA_DIR as it is, and
    train_decision's examples built (each question as asked and with its gold documents withheld,
    plus the probe). Returns the arguments, the questions, the probe questions and the examples."""
    import argparse
    import dataclasses
    import json
    import time

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--unanswerable", type=Path)
    parser.add_argument("--examples", type=Path, help="a JSON file of the examples: read if it exists, else written")
    for name, keywords in options:
        parser.add_argument(name, **keywords)
    args = parser.parse_args()
    setup_django_here()
    from regqa.qa import evaluate

    questions = evaluate.read_questions(args.questions)
    probe = evaluate.read_questions(args.unanswerable) if args.unanswerable else []
    started = time.perf_counter()
    if args.examples and args.examples.exists():  # built before on the same data: the bench reads them
        examples = [evaluate.DecisionExample(**e) for e in json.loads(args.examples.read_text())]
    else:
        examples = evaluate.decision_examples(questions, probe)
        if args.examples:
            args.examples.write_text(json.dumps([dataclasses.asdict(e) for e in examples]))
    stated = sum(e.stated for e in examples)
    print(f"{len(examples)} examples ({stated} stated) in {time.perf_counter() - started:.0f} s", flush=True)
    return args, questions, probe, examples


def figures_line(name: str, figures: dict, width: int = 30) -> str:
    """One method's cross-validated Recall@10 and MAP@10, mean (sd)."""
    r, m = figures["recall@10"], figures["map@10"]
    return f"{name:{width}} R@10 {r['mean']:.4f} ({r['sd']:.4f})  MAP@10 {m['mean']:.4f} ({m['sd']:.4f})"
