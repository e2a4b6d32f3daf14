"""Audit trail tools: `audit verify` walks the hash chain and holds it against the seals and
checkpoints; `audit export` writes the trail; `audit init-key` creates the key file (make run does),
`audit rotate-key` adds a new key; `audit checkpoint` writes a checkpoint of the chain head now."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from regqa.audit import anchor, export
from regqa.audit.log import record, verify
from regqa.audit.models import EventKind


def when(value: str | None):
    try:
        return export.parse_when(value)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = (
        "verify: check the hash chain, seals and checkpoints. export: write entries (JSON Lines or CSV) and a "
        "manifest. init-key, rotate-key: the audit key file. checkpoint: checkpoint the chain head now."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["verify", "export", "init-key", "rotate-key", "checkpoint"])
        parser.add_argument("--since", help="export: from this date/time")
        parser.add_argument("--until", help="export: up to this date/time (default: now)")
        parser.add_argument("--actor", default="", help="export: only this user")
        parser.add_argument("--kind", default="", help="export: only this kind (answer, document.uploaded, ...)")
        parser.add_argument("--model", default="", help="export: only answers by this model (file name)")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument(
            "--output",
            type=Path,
            help="export: file to write (default: standard output); the manifest goes next to it as FILE.manifest.json",
        )

    def handle(self, *args, action: str, **options):
        try:
            if action == "init-key":
                ring = anchor.keyring()
                self.stdout.write(
                    f"Audit key file: {anchor.key_path()} (current key {ring.current}; keep it out of the "
                    "database's reach and back it up: without it the seals cannot be checked)"
                )
                return
            if action == "rotate-key":
                key_id = anchor.rotate()
                self.stdout.write(f"New entries are sealed with key {key_id}; older keys stay to verify older entries.")
                return
            if action == "checkpoint":
                point = anchor.checkpoint_head()
                where = anchor.checkpoint_path()
                self.stdout.write(f"Checkpoint of entry #{point['seq']} -> {where}" if point else "The trail is empty.")
                return
            if action == "verify":
                result = verify()
                if not result.ok:
                    raise CommandError(f"BROKEN after {result.checked} good entries: {result.reason}.")
                self.stdout.write(
                    f"OK: {result.checked} entries, chain intact and sealed, held against {result.checkpoints} "
                    f"checkpoints; last hash {result.last_hash}"
                )
                return
        except anchor.AuditKeyError as exc:
            raise CommandError(str(exc)) from exc
        qs, filters = export.filtered(
            since=when(options["since"]),
            until=when(options["until"]),
            actor=options["actor"],
            kind=options["kind"],
            model=options["model"],
        )
        fmt, output = options["format"], options["output"]
        head = export.manifest(qs, filters, "manage.py audit export", fmt)
        lines = export.jsonl(qs, head) if fmt == "jsonl" else export.csv_rows(qs)
        out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        try:
            for line in lines:
                out.write(line)
        finally:
            if output:
                out.close()
        if output:
            output.with_name(output.name + ".manifest.json").write_text(json.dumps(head, indent=1))
            self.stderr.write(f"{head['count']} entries -> {output} (+ {output.name}.manifest.json)")
        record(
            EventKind.LOG_EXPORTED,
            f"Audit trail exported as {fmt} ({head['count']} entries)",
            actor="manage.py audit export",
            data={"manifest": head},
        )
