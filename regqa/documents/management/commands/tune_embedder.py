"""Fine-tune the embedding model on your own questions with gold passages or pages.

python manage.py tune_embedder --questions TRAIN.jsonl --out DIR [--epochs 1] [--batch-size 32]

Then use it: REGQA_EMBEDDING_MODEL=DIR python manage.py index reembed (and keep the variable set
for the app). Train on one part of a question set and evaluate on the other
(bench/split_questions.py), never on the questions you report.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from regqa.documents.tune import fine_tune, training_pairs
from regqa.qa.management.commands.evaluate import question_file


class Command(BaseCommand):
    help = "Fine-tune the embedding model on (question, gold passage) pairs from a JSON Lines question file."

    def add_arguments(self, parser):
        parser.add_argument("--questions", type=Path, required=True)
        parser.add_argument("--out", type=Path, required=True, help="directory for the tuned model")
        parser.add_argument(
            "--exclude",
            type=Path,
            help="questions you will evaluate on: their gold passages are left out of training, so that "
            "the evaluation never sees a passage the model was trained to find",
        )
        parser.add_argument("--epochs", type=int, default=1)
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument("--learning-rate", type=float, default=2e-5)

    def handle(self, *args, questions: Path, out: Path, **options):
        items = question_file(questions)
        pairs = training_pairs(items)
        self.stdout.write(f"{len(items)} questions, {len(pairs)} (question, gold passage) pairs in the library")
        if options.get("exclude"):
            held_out = {passage for _, passage in training_pairs(question_file(options["exclude"]))}
            pairs = [(q, p) for q, p in pairs if p not in held_out]
            self.stdout.write(f"{len(pairs)} pairs left after leaving out the gold passages of {options['exclude']}")
        total = len(pairs) * options["epochs"]
        with tqdm(total=total, unit="pair", disable=options["verbosity"] < 1) as bar:
            try:
                result = fine_tune(
                    pairs,
                    out,
                    epochs=options["epochs"],
                    batch_size=options["batch_size"],
                    learning_rate=options["learning_rate"],
                    progress=bar.update,
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        losses = ", ".join(f"{x:.3f}" for x in result["loss_per_epoch"])
        self.stdout.write(
            f"Trained {result['epochs']} epoch(s) in {result['seconds']:.0f} s; mean loss per epoch {losses}"
        )
        self.stdout.write(f"Saved to {out}. Use it: REGQA_EMBEDDING_MODEL={out} python manage.py index reembed")
