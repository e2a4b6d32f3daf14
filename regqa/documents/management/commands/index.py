"""Index maintenance: `index check` compares the FAISS index with the database; `index repair`
adds what it lacks and drops what the database does not serve (make run runs it before starting
the worker); `index rebuild` rebuilds it from the embeddings stored with each passage; `index
reembed` re-encodes every passage with the configured embedding model (after changing
REGQA_EMBEDDING_MODEL) and rebuilds; `index rechunk` cuts every ready document's stored pages into
passages again with the current REGQA_CHUNK_WORDS / REGQA_CHUNK_OVERLAP (old passages are
retired, so old answers still open them); `index windows` embeds the windows of the passages
stored without them (a library from before windows; `--all`: every passage, after changing
REGQA_WINDOW_WORDS)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from regqa.documents.index import check_against_database, rebuild_from_database, repair


class Command(BaseCommand):
    help = (
        "check: report passages missing from / extra in the index. repair: mend those. "
        "rebuild: rebuild it from the database. "
        "reembed: re-encode every passage. rechunk: cut documents into passages again with the current settings. "
        "windows: embed the windows of passages stored without them (--all: of every passage)."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["check", "repair", "rebuild", "reembed", "rechunk", "windows"])
        parser.add_argument("--all", action="store_true", help="windows: of every live passage, not only those without")
        parser.add_argument("--document", type=int, action="append", help="rechunk only this document id (repeatable)")

    def handle(self, *args, action: str, **options):
        if action == "rechunk":
            self.rechunk(options["document"])
            return
        if action == "reembed":
            from regqa.documents.embed import model_path
            from regqa.documents.tune import reembed_library

            count = reembed_library()
            self.stdout.write(f"Re-embedded {count} live passages with {model_path()} and rebuilt the index.")
            return
        if action == "windows":
            self.windows(options["all"])
            return
        if action == "repair":
            added, removed = repair()
            self.stdout.write(f"Index repaired: {added} passages added, {removed} removed.")
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

    def windows(self, every: bool) -> None:
        from django.conf import settings

        from regqa.documents.tune import embed_library_windows

        if not settings.WINDOW_WORDS:
            raise CommandError("REGQA_WINDOW_WORDS is 0: passages are not embedded in windows.")
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            self.stdout.write(f"  {done} passages", ending="\r")

        count = embed_library_windows(every, progress=progress)
        self.stdout.write(f"Embedded the windows of {count} passage(s), {settings.WINDOW_WORDS} words each.")

    def rechunk(self, only: list[int] | None) -> None:
        from django.conf import settings

        from regqa.documents.ingest import rechunk_document
        from regqa.documents.models import Document

        documents = Document.objects.filter(status=Document.Status.READY).order_by("pk")
        if only:
            documents = documents.filter(pk__in=only)
            missing = set(only) - set(documents.values_list("pk", flat=True))
            if missing:
                raise CommandError(f"No ready document with id {', '.join(map(str, sorted(missing)))}.")
        changed = 0
        for document in documents:
            if not document.pages.exists():
                self.stdout.write(f"{document.title}: imported passages (no stored pages), left as they are")
                continue
            retired, created = rechunk_document(document)
            if created:
                changed += 1
                self.stdout.write(f"{document.title}: {retired} passages retired, {created} new")
            else:
                self.stdout.write(f"{document.title}: unchanged")
        self.stdout.write(
            f"Rechunked {changed} document(s) with {settings.CHUNK_WORDS} words per passage, "
            f"{settings.CHUNK_OVERLAP_WORDS} overlap."
        )
