"""Import structured passages (JSON Lines: id, doc_id, passage_id, text) into the library."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from regqa.documents.checks import IngestError
from regqa.documents.passages import import_passages, read_passages


class Command(BaseCommand):
    help = (
        "Import passages from a JSON Lines file, one document per doc_id. Each passage keeps its id "
        "as external id; empty passages are skipped; importing the same file again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--document-name", required=True, help="Title (prefix when there are several doc_ids).")
        parser.add_argument("--titles", type=Path, help="JSON file {doc_id: title}.")

    def handle(self, *args, file: Path, document_name: str, titles: Path | None = None, **options):
        if not file.is_file():
            raise CommandError(f"{file} does not exist")
        names = json.loads(titles.read_text()) if titles else None
        try:
            total = sum(1 for g in read_passages(file) for r in g.records if r.text.strip())
        except IngestError as exc:
            raise CommandError(str(exc)) from exc
        created = skipped = 0
        with tqdm(total=total, unit="passage", disable=options["verbosity"] < 1) as bar:
            for document, new in import_passages(file, document_name, names, progress=bar.update):
                if new:
                    created += 1
                else:
                    skipped += 1
                    bar.update(document.chunk_count)
        self.stdout.write(f"{created} document(s) imported, {skipped} already present; {total} passages.")
