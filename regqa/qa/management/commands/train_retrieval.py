"""Train a retrieval bundle from labelled questions and activate it if it measures better.

python manage.py train_retrieval --pairs FILE.jsonl [--folds 5] [--no-activate]
python manage.py train_retrieval --activate N | --rollback | --list

FILE holds one question a line in the evaluate format: {"qid", "question", "gold": [{"passage_id"}
or {"document", "page"}]}. The figures are k-fold cross-validated by question; the bundle becomes
active only if they beat the active ranking's. The same runs from the "Retrieval models" page.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from regqa.qa import bundle, training
from regqa.qa.management.commands.evaluate import question_file
from regqa.qa.models import RetrievalBundle

ACTOR = "manage.py train_retrieval"


class Command(BaseCommand):
    help = "Train a learned ranking (retrieval bundle) on labelled questions; activate, roll back or list bundles."

    def add_arguments(self, parser):
        parser.add_argument("--pairs", type=Path, help="labelled questions (JSON Lines, the evaluate format)")
        parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (by question)")
        parser.add_argument("--no-activate", action="store_true", help="train and report, but do not activate")
        parser.add_argument("--activate", type=int, metavar="N", help="activate bundle N")
        parser.add_argument("--rollback", action="store_true", help="make the previously active bundle active again")
        parser.add_argument("--list", action="store_true", help="list the bundles")

    def handle(self, *args, pairs: Path | None, folds: int, **options):
        try:
            if options["list"]:
                return self.list()
            if options["rollback"]:
                now = bundle.rollback(actor=ACTOR)
                self.stdout.write(f"Rolled back; active now: {now.label if now else 'the untrained ranking'}.")
                return
            if options["activate"]:
                record = RetrievalBundle.objects.filter(pk=options["activate"]).first()
                if record is None:
                    raise CommandError(f"There is no retrieval bundle {options['activate']}.")
                bundle.activate(record, actor=ACTOR, reason="activated by hand")
                self.stdout.write(f"{record.label} is active.")
                return
        except bundle.BundleError as exc:
            raise CommandError(str(exc)) from exc
        if pairs is None:
            raise CommandError("Give --pairs FILE (or --list, --activate N, --rollback).")
        questions = question_file(pairs)
        record = RetrievalBundle.objects.create(
            pairs_file=pairs.name, pairs_sha256=hashlib.sha256(pairs.read_bytes()).hexdigest()
        )
        verbose = options["verbosity"] >= 1
        record = training.train_bundle(
            record,
            questions,
            folds=folds,
            activate=not options["no_activate"],
            actor=ACTOR,
            progress=(lambda p, d: self.stderr.write(f"{p:3d}% {d}")) if verbose else None,
        )
        if record.status == RetrievalBundle.Status.FAILED:
            raise CommandError(f"{record.label} failed: {record.detail}")
        self.report(record)

    def report(self, record: RetrievalBundle) -> None:
        f = record.figures
        k = f["k"]
        self.stdout.write(f"{record.label}: {record.get_status_display()}. {record.detail}")
        self.stdout.write(f"{f['questions']} questions, {f['folds']}-fold cross-validation by question, mean (sd)")
        for method in training.METHODS:
            cells = [f[method][f"{m}@{k}"] for m in ("recall", "map")]
            self.stdout.write(f"  {method:9} R@{k} {cells[0]['mean']:.4f} ({cells[0]['sd']:.4f})  "
                              f"MAP@{k} {cells[1]['mean']:.4f} ({cells[1]['sd']:.4f})")  # fmt: skip
        fs = f["first_stage_recall"]
        self.stdout.write(f"  first stage recall@{f['first_stage_depth']} per half: {fs['mean']:.4f} ({fs['sd']:.4f})")

    def list(self) -> None:
        for record in RetrievalBundle.objects.order_by("pk"):
            score = bundle.score(record.figures) if record.figures else 0.0
            self.stdout.write(
                f"{record.pk:4d} {record.status:9} {record.created_at:%Y-%m-%d %H:%M} "
                f"R@k+MAP@k {score:.4f} {record.pairs_file}  {record.detail[:80]}"
            )
