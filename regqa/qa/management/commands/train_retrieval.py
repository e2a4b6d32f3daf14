"""Train a retrieval bundle from labelled questions and activate it if it measures better.

python manage.py train_retrieval --pairs FILE.jsonl [--feedback] [--synthetic N] [--folds 5] [--no-activate]
                                  [--no-adapter | --fine-tune-embedder]
python manage.py train_retrieval --feedback           (the answers analysts marked helpful, their cited passages)
python manage.py train_retrieval --synthetic N        (no labelled pairs: the local model writes N questions)
python manage.py train_retrieval --resume N           (a bundle whose run stopped: writing resumes where it was)
python manage.py train_retrieval --activate N | --rollback | --list

FILE holds one question a line in the evaluate format: {"qid", "question", "gold": [{"passage_id"}
or {"document", "page"}]}. The figures are k-fold cross-validated by question; the bundle becomes
active only if they beat the active ranking's. The same runs from the "Retrieval models" page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from regqa.qa import bundle, feedback, synthetic, training
from regqa.qa.models import RetrievalBundle

ACTOR = "manage.py train_retrieval"


class Command(BaseCommand):
    help = "Train a learned ranking (retrieval bundle) on labelled questions; activate, roll back or list bundles."

    def add_arguments(self, parser):
        parser.add_argument("--pairs", type=Path, help="labelled questions (JSON Lines, the evaluate format)")
        parser.add_argument(
            "--feedback",
            action="store_true",
            help="also train on the answers analysts marked helpful (their cited passages as gold)",
        )
        parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (by question)")
        parser.add_argument("--no-activate", action="store_true", help="train and report, but do not activate")
        parser.add_argument("--no-adapter", action="store_true", help="leave the embedder as packaged (ranker only)")
        parser.add_argument(
            "--fine-tune-embedder",
            action="store_true",
            help="fine-tune the embedder (per fold, then on every question) and carry it with its own vectors of the "
            "library, instead of a query adapter: about 15 minutes a fold for 2,200 questions on 2 cores of an AMD "
            "EPYC with AVX-512, more without AVX-512 (4-5x that when REGQA_ENCODER_SETTINGS lists three "
            "epochs:rate settings to choose from)",
        )
        parser.add_argument(
            "--synthetic",
            type=int,
            default=0,
            metavar="N",
            help="also train on questions the local model writes for N passages",
        )
        parser.add_argument("--resume", type=int, metavar="N", help="continue bundle N where its run stopped")
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
        if options["resume"]:
            record = RetrievalBundle.objects.filter(pk=options["resume"]).first()
            if record is None:
                raise CommandError(f"There is no retrieval bundle {options['resume']}.")
            if not record.resumable:
                raise CommandError(f"{record.label} is {record.get_status_display().lower()}: nothing to resume.")
            questions = training.stored_pairs(record)
        else:
            synthetic_n = options["synthetic"]
            if synthetic_n < 0:
                raise CommandError("--synthetic must be a number of passages, 0 or more.")
            if pairs is None and not synthetic_n and not options["feedback"]:
                raise CommandError(
                    "Give --pairs FILE, --feedback and/or --synthetic N "
                    "(or --resume N, --list, --activate N, --rollback)."
                )
            if pairs is not None and not pairs.is_file():
                raise CommandError(f"{pairs} does not exist")
            try:
                content, questions, added = feedback.training_set(
                    pairs.read_bytes() if pairs is not None else b"",
                    pairs.name if pairs is not None else "",
                    options["feedback"],
                    other_sources=bool(synthetic_n),
                )
            except UnicodeDecodeError as exc:
                raise CommandError(f"{pairs} is not UTF-8 text.") from exc
            except ValueError as exc:  # a line that is not a question record, or no feedback to train on
                raise CommandError(str(exc)) from exc
            _, sha256 = training.store_pairs(content) if content.strip() else (None, "")
            record = RetrievalBundle.objects.create(
                pairs_file=training.sources_label(pairs.name if pairs else None, added, synthetic_n),
                pairs_sha256=sha256,
                synthetic_requested=synthetic_n,
                folds=folds,  # what a resume from the page uses
                fine_tune_embedder=options["fine_tune_embedder"],
            )
        verbose = options["verbosity"] >= 1
        run: dict[str, Any] = dict(
            folds=folds,
            activate=not options["no_activate"],
            adapt=not options["no_adapter"],
            actor=ACTOR,
            progress=(lambda p, d: self.stderr.write(f"{p:3d}% {d}")) if verbose else None,
        )
        if record.synthetic_requested:
            record = synthetic.train(record, questions, **run)
        else:
            record = training.train_bundle(record, questions, **run)
        if record.status == RetrievalBundle.Status.FAILED:
            raise CommandError(f"{record.label} failed: {record.detail}")
        self.report(record)

    def report(self, record: RetrievalBundle) -> None:
        f = record.figures
        k = f["k"]
        self.stdout.write(f"{record.label}: {record.get_status_display()}. {record.detail}")
        self.stdout.write(f"{f['questions']} questions, {f['folds']}-fold cross-validation by question, mean (sd)")
        for method in training.methods_of(f):
            cells = [f[method][f"{m}@{k}"] for m in ("recall", "map")]
            self.stdout.write(f"  {method:9} R@{k} {cells[0]['mean']:.4f} ({cells[0]['sd']:.4f})  "
                              f"MAP@{k} {cells[1]['mean']:.4f} ({cells[1]['sd']:.4f})")  # fmt: skip
        chosen = [row["adapter"].get("chosen") for row in f["per_fold"] if "adapter" in row]
        if chosen:
            self.stdout.write(f"  query adapter per fold: {chosen}")
        tuned = [row["encoder"] for row in f["per_fold"] if "encoder" in row]
        if tuned:
            seconds = ", ".join(f"{t['seconds']:.0f}" for t in tuned)
            self.stdout.write(f"  embedder fine-tuned per fold on {tuned[0]['triples']}+ pairs, seconds: {seconds}")
            self.stdout.write(f"  its epochs and learning rate per fold: {[t['choice']['chosen'] for t in tuned]}")
        fs = f["first_stage_recall"]
        self.stdout.write(f"  first stage recall@{f['first_stage_depth']} per half: {fs['mean']:.4f} ({fs['sd']:.4f})")
        d = f.get("decision") or {}
        if "roc_auc" in d:
            w = d["without_reranker"]
            self.stdout.write(
                f"  answer decision ({d['examples']} held-out examples, {d['answerable']} stated): ROC AUC "
                f"{d['roc_auc']:.3f} (without the reranker's scores {w['roc_auc']:.3f}); at threshold "
                f"{d['threshold']:.3f}: false refusals {d['false_refusals']:.1%}, correct refusals "
                f"{d['correct_refusals']:.1%} (without: {w['false_refusals']:.1%}, {w['correct_refusals']:.1%})"
            )
        elif d:
            self.stdout.write(f"  no answer decision in this bundle: {d.get('error')}")

    def list(self) -> None:
        for record in RetrievalBundle.objects.order_by("pk"):
            score = bundle.score(record.figures) if record.figures else 0.0
            self.stdout.write(
                f"{record.pk:4d} {record.status:9} {record.created_at:%Y-%m-%d %H:%M} "
                f"R@k+MAP@k {score:.4f} {record.pairs_file}  {record.detail[:80]}"
            )
