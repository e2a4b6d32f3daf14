"""Write the question -> cited passage pairs analysts confirmed as helpful, for train_retrieval."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from regqa.qa import feedback


class Command(BaseCommand):
    help = "Write the answers analysts found helpful as retrieval training pairs (evaluate format, JSON Lines)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--pairs", required=True, help="The JSON Lines file to write ('-': standard output).")

    def handle(self, *args, **options) -> None:
        lines = [json.dumps(pair, ensure_ascii=False) + "\n" for pair in feedback.pairs()]
        target = options["pairs"]
        if target == "-":
            self.stdout.write("".join(lines), ending="")
            return
        try:
            Path(target).write_text("".join(lines), encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{target} cannot be written: {exc}") from None
        self.stderr.write(f"{len(lines)} pairs written to {target} (answers found helpful, their cited passages).")
