"""Index maintenance: `index check` compares the FAISS index with the database; `index rebuild`
rebuilds it from the embeddings stored with each passage; `index reembed` re-encodes every passage
with the configured embedding model (after changing REGQA_EMBEDDING_MODEL) and rebuilds."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from regqa.documents.index import check_against_database, rebuild_from_database


class Command(BaseCommand):
    help = "check: report passages missing from / extra in the index. rebuild: rebuild it from the database."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["check", "rebuild", "reembed"])

    def handle(self, *args, action: str, **options):
        if action == "reembed":
            from regqa.documents.embed import model_path
            from regqa.documents.tune import reembed_library

            count = reembed_library()
            self.stdout.write(f"Re-embedded {count} live passages with {model_path()} and rebuilt the index.")
            return
        if action == "rebuild":
            count = rebuild_from_database()
            self.stdout.write(f"Index rebuilt from the database: {count} passages.")
            return
        missing, extra = check_against_database()
        if missing or extra:
            raise CommandError(
                f"Index and database differ: {len(missing)} passage(s) missing from the index "
                f"(e.g. {sorted(missing)[:5]}), {len(extra)} in the index but not live (e.g. {sorted(extra)[:5]}). "
                "Run `manage.py index rebuild`."
            )
        self.stdout.write("Index and database agree.")
