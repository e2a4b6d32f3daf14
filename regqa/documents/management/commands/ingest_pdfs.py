"""Add PDF files to the library (skipping files already there) and ingest them."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind
from regqa.documents import checks, ingest, tasks
from regqa.documents.models import Document

FIELDS = ("title", "issuer", "jurisdiction", "doc_type", "effective_date", "sensitivity", "tags")


def metadata(entry: str | dict | None, path: Path) -> dict:
    """A titles.json entry as Document fields: a title, or an object of metadata."""
    if entry is None:
        return {"title": path.stem}
    if isinstance(entry, str):
        return {"title": entry}
    unknown = set(entry) - set(FIELDS)
    if unknown:
        raise CommandError(f"titles.json, {path.name}: unknown fields {sorted(unknown)} (known: {', '.join(FIELDS)})")
    return {"title": path.stem} | {k: v for k, v in entry.items() if v not in (None, "")}


class Command(BaseCommand):
    help = (
        "Add PDFs (files or directories) to the library. Same file twice (by SHA-256) is skipped. "
        "A titles.json next to the PDFs supplies each file's title ({file name: title}) or its metadata "
        "({file name: {title, issuer, jurisdiction, doc_type, effective_date, sensitivity, tags}})."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument(
            "--now", action="store_true", help="Ingest in this process (windows included) instead of the worker."
        )

    def handle(self, *args, paths: list[Path], now: bool = False, **options):
        files = []
        for path in paths:
            if path.is_dir():
                files.extend(sorted(path.glob("*.pdf")))
            elif path.is_file():
                files.append(path)
            else:
                raise CommandError(f"{path} does not exist")
        for path in files:
            titles_file = path.parent / "titles.json"
            titles = json.loads(titles_file.read_text()) if titles_file.exists() else {}
            with path.open("rb") as fh:
                try:
                    sha256 = checks.check_upload(fh, path.stat().st_size)
                except checks.IngestError as exc:
                    self.stderr.write(f"{path.name}: {exc}")
                    continue
                existing = Document.objects.filter(sha256=sha256).first()
                if existing:
                    self.stdout.write(f"{path.name}: already in the library ({existing.get_status_display()})")
                    continue
                with transaction.atomic():
                    document = Document(
                        **metadata(titles.get(path.name), path),
                        original_name=path.name,
                        sha256=sha256,
                        size_bytes=path.stat().st_size,
                    )
                    try:
                        document.full_clean(exclude=["file", "sha256"])
                    except ValidationError as exc:
                        raise CommandError(f"titles.json, {path.name}: {'; '.join(exc.messages)}") from None
                    document.file.save(path.name, File(fh), save=True)
                    audit_log.record_document(EventKind.DOCUMENT_UPLOADED, document, actor="manage.py ingest_pdfs")
                    if not now:
                        transaction.on_commit(partial(tasks.ingest_document.enqueue, document.pk))
            if now:
                document = ingest.ingest_document(document.pk, windows_now=True)
                self.stdout.write(f"{path.name}: {document.get_status_display()} {document.status_detail}".rstrip())
            else:
                self.stdout.write(f"{path.name}: queued for ingestion")
