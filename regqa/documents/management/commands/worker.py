"""The background worker: resume interrupted ingestions and queue the passage windows still
missing, then run django-tasks-db's worker.

Any number of workers, on one machine or several, share the task queue in the database (each
task is claimed by one of them). `manage.py worker` takes db_worker's options, e.g.
`manage.py worker --interval 1`.
"""

from __future__ import annotations

from django_tasks_db.management.commands.db_worker import Command as DbWorker

from regqa.documents import ingest


class Command(DbWorker):
    help = "Resume interrupted document ingestions, then process background tasks (django-tasks-db's db_worker)."

    def handle(self, *args, **options):
        resumed = ingest.resume_interrupted()
        if resumed:
            self.stderr.write(f"Resumed the interrupted ingestion of {len(resumed)} document(s): {resumed}")
        windows = ingest.resume_windows()
        if windows:
            self.stderr.write(f"Queued the window embedding of {len(windows)} document(s): {windows}")
        return super().handle(*args, **options)
