"""Background work, run by django-tasks-db's worker (`manage.py db_worker`)."""

from django.tasks import task

from . import ingest


@task
def ingest_document(document_id: int) -> str:
    return ingest.ingest_document(document_id).status


@task
def embed_windows(document_id: int) -> int:
    return ingest.embed_windows(document_id)
