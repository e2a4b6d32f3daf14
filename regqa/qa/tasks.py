"""Background work of the qa app, run by django-tasks-db's worker (`manage.py db_worker`)."""

from __future__ import annotations

from django.tasks import task

from regqa.documents.models import Chunk, Document

from . import bundle, encoder, synthetic, training
from .models import RetrievalBundle


@task
def train_retrieval(bundle_id: int, folds: int = 5) -> str:
    """Train the bundle row `bundle_id` (created by the page) on its stored pairs file and, if it
    asks for them, on synthetic questions (written first; a second run resumes the writing)."""
    record = RetrievalBundle.objects.get(pk=bundle_id)
    try:
        questions = training.stored_pairs(record)
    except (OSError, ValueError) as exc:
        RetrievalBundle.objects.filter(pk=bundle_id).update(status=RetrievalBundle.Status.FAILED, detail=str(exc))
        return RetrievalBundle.Status.FAILED
    if record.synthetic_requested:
        return synthetic.train(record, questions, folds=folds, user=record.created_by).status
    return training.train_bundle(record, questions, folds=folds, user=record.created_by).status


@task
def refresh_encoder(bundle_id: int) -> int:
    """Embed with bundle `bundle_id`'s fine-tuned embedder the passages added since it was trained
    (queued by retrieval when it finds some without a vector); returns how many."""
    record = RetrievalBundle.objects.filter(pk=bundle_id).first()
    if record is None:
        return 0
    live = Chunk.live.filter(document__status=Document.Status.READY).values_list("pk", flat=True)
    return encoder.refresh(bundle.directory(record), list(live))
