"""Audit trail tools: `manage.py audit verify` walks the hash chain."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from regqa.audit.log import verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain and report the first broken or missing entry."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["verify"])

    def handle(self, *args, action: str, **options):
        result = verify()
        if not result.ok:
            raise CommandError(f"BROKEN after {result.checked} good entries: {result.reason}.")
        self.stdout.write(f"OK: {result.checked} entries, chain intact; last hash {result.last_hash}")
