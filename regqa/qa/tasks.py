"""Background work of the qa app, run by django-tasks-db's worker (`manage.py db_worker`)."""

from __future__ import annotations

from pathlib import Path

from django.tasks import task

from . import training
from .evaluate import read_questions
from .models import RetrievalBundle


@task
def train_retrieval(bundle_id: int, pairs_path: str, folds: int = 5) -> str:
    """Train the bundle row `bundle_id` (created by the page) on the stored pairs file."""
    record = RetrievalBundle.objects.get(pk=bundle_id)
    try:
        questions = read_questions(Path(pairs_path))
    except (OSError, ValueError) as exc:
        RetrievalBundle.objects.filter(pk=bundle_id).update(status=RetrievalBundle.Status.FAILED, detail=str(exc))
        return RetrievalBundle.Status.FAILED
    return training.train_bundle(record, questions, folds=folds, user=record.created_by).status
