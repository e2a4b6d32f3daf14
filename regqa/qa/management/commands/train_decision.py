"""Train the learned answer/decline decision and make it the one answers use.

python manage.py train_decision --questions FILE.jsonl [--unanswerable PROBE.jsonl] [--no-withhold]
    [--folds 5] [--dry-run]

FILE: questions with gold passages or pages (the evaluate format). Each is retrieved as the ask
page would; it counts as "stated" when a gold item is among the passages the model reads. Unless
--no-withhold, each is asked again with its gold documents kept out of retrieval (not stated).
The probe's questions are not stated. Cross-validated by question; the threshold keeps false
refusals at REGQA_DECISION_FALSE_REFUSALS (default 10%). The model is written to
DATA_DIR/decision/model.json; a file that cannot be trained on leaves the active model in place.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind
from regqa.qa import decision_model
from regqa.qa.evaluate import decision_examples
from regqa.qa.management.commands.evaluate import question_file


class Command(BaseCommand):
    help = "Train the answer/decline decision on questions with gold passages (and unanswerable ones)."

    def add_arguments(self, parser):
        parser.add_argument("--questions", type=Path, required=True)
        parser.add_argument("--unanswerable", type=Path)
        parser.add_argument("--no-withhold", action="store_true", help="do not add copies with gold documents withheld")
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--dry-run", action="store_true", help="report the figures, keep the active model")

    def handle(self, *args, questions: Path, **options):
        probe_file = options.get("unanswerable")
        answerable, probe = question_file(questions), question_file(probe_file) if probe_file else []
        if not answerable and not probe:
            raise CommandError(f"{questions} holds no question.")
        with tqdm(total=len(answerable) + len(probe), unit="q", disable=options["verbosity"] < 1) as bar:
            examples = decision_examples(
                answerable, probe, withhold=not options["no_withhold"], progress=lambda: bar.update(1)
            )
        try:
            model = decision_model.train(
                [e.signals for e in examples], [e.stated for e in examples], [e.qid for e in examples],
                folds=options["folds"],
            )  # fmt: skip
        except decision_model.DecisionError as exc:
            raise CommandError(f"{exc} The active decision model is unchanged.") from exc
        f = model.figures
        self.stdout.write(
            f"{f['examples']} examples ({f['answerable']} stated, {f['unanswerable']} not), {f['folds']}-fold "
            f"cross-validation by question: ROC AUC {f['roc_auc']:.3f}; at threshold {model.threshold:.3f}: "
            f"false refusals {f['false_refusals']:.1%} (target {f['false_refusal_target']:.0%}), "
            f"correct refusals {f['correct_refusals']:.1%} (declined before the model runs)"
        )
        for b in f["calibration"]:
            self.stdout.write(
                f"  predicted {b['from']:.1f}-{b['from'] + 0.2:.1f}: mean {b['predicted']:.2f}, "
                f"observed {b['observed']:.2f} (n={b['n']})"
            )
        if options["dry_run"]:
            return
        where = decision_model.save(model)
        audit_log.record(
            EventKind.DECISION_TRAINED,
            f"Answer decision trained on {len(answerable)} questions ({f['examples']} examples)",
            actor="manage.py train_decision",
            data={"file": questions.name, "threshold": model.threshold,
                  "figures": {k: v for k, v in f.items() if k != "calibration"}},
        )  # fmt: skip
        self.stdout.write(f"Saved to {where}; answers use it from now on.")
