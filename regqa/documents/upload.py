"""Accept an uploaded PDF: check it, store it as a queued document, record the upload, and queue
its ingestion for when the transaction commits. Ingestion itself is ingest.py, run by the worker.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind

from . import tasks
from .checks import IngestError, check_upload
from .models import Document


def accept_upload(upload, metadata: dict, user) -> Document:
    """Check an uploaded file and store it as a queued document (ingestion is enqueued when the
    transaction commits). Raises IngestError for a file that cannot be accepted."""
    sha256 = check_upload(upload, upload.size)
    existing = Document.objects.filter(sha256=sha256).first()
    if existing:
        raise IngestError(f"This file is already in the library as “{existing.title}”.")
    old = metadata.get("supersedes")
    with transaction.atomic():
        document = Document.objects.create(
            title=metadata.get("title") or (old.title if old else Path(upload.name).stem),
            title_from_file=not metadata.get("title") and not old,
            issuer=metadata.get("issuer") or (old.issuer if old else ""),
            jurisdiction=metadata.get("jurisdiction") or (old.jurisdiction if old else ""),
            doc_type=metadata.get("doc_type") or (old.doc_type if old else ""),
            effective_date=metadata.get("effective_date"),
            sensitivity=metadata.get("sensitivity") or settings.DEFAULT_SENSITIVITY,
            tags=metadata.get("tags", ""),
            supersedes=old,
            version=old.version + 1 if old else 1,
            original_name=upload.name,
            file=upload,
            sha256=sha256,
            size_bytes=upload.size,
            uploaded_by=user,
        )
        transaction.on_commit(lambda: tasks.ingest_document.enqueue(document.pk))
        audit_log.record_document(EventKind.DOCUMENT_UPLOADED, document, user=user)
    return document
