"""Accept an uploaded PDF: check it, store it as a queued document, record the upload, and queue
its ingestion for when the transaction commits. Ingestion itself is ingest.py, run by the worker.

Uploads are bounded while they are read (BoundedUploadHandler, first in FILE_UPLOAD_HANDLERS),
before a view or authentication sees them: a file past REGQA_MAX_UPLOAD_MB is skipped unread and
named to the admin, and a request announcing more than the files of one upload may hold is not
read at all.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.db import transaction
from django.http import QueryDict
from django.utils import timezone
from django.utils.datastructures import MultiValueDict

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
            queued_at=timezone.now(),
        )
        # robust: an enqueue that fails (the queue unreachable) must not turn a stored upload into an
        # error page; the library then shows the document as never scheduled, with Retry
        transaction.on_commit(lambda: tasks.ingest_document.enqueue(document.pk), robust=True)
        audit_log.record_document(EventKind.DOCUMENT_UPLOADED, document, user=user)
    return document


MAX_FILES_PER_UPLOAD = 20


class BoundedUploadHandler(FileUploadHandler):
    """Stops reading an uploaded file at the size limit (the rest is skipped, never stored), and a
    whole request announced larger than MAX_FILES_PER_UPLOAD files of that size before reading it.
    What was refused is left on the request (`refused_uploads`, `upload_refused`) for the view."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.limit = settings.MAX_UPLOAD_MB * 1024 * 1024
        self.request.refused_uploads = []  # type: ignore[union-attr]
        if content_length > self.limit * MAX_FILES_PER_UPLOAD + settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            self.request.upload_refused = (  # type: ignore[union-attr]
                f"The upload is {content_length / 1e6:.0f} MB: more than {MAX_FILES_PER_UPLOAD} files of at most "
                f"{settings.MAX_UPLOAD_MB} MB each. Nothing was read; upload fewer or smaller files."
            )
            return QueryDict(), MultiValueDict()  # parsed as empty: the body is never read
        return None

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.read = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.read += len(raw_data)
        if self.read > self.limit:
            self.request.refused_uploads.append(  # type: ignore[union-attr]
                f"{self.file_name}: the file is larger than the {settings.MAX_UPLOAD_MB} MB limit; it was not read."
            )
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
