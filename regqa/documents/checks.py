"""The checks an uploaded file passes before RegQA accepts it, and the error every ingestion step
raises for a problem the uploader can understand and fix. Plain values only: no models, no index.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from django.conf import settings

PDF_MAGIC = b"%PDF-"


class IngestError(Exception):
    """A problem with the input that the uploader can understand and fix."""

    def __init__(self, message: str, needs_ocr: bool = False) -> None:
        super().__init__(message)
        self.needs_ocr = needs_ocr


def looks_like_pdf(head: bytes) -> bool:
    """PDF files start with %PDF- (some tools put junk first; the spec allows 1024 bytes)."""
    return PDF_MAGIC in head[:1024]


def check_upload(fh: BinaryIO, size: int) -> str:
    """Cheap checks done before accepting an upload. Returns the file's SHA-256."""
    max_bytes = settings.MAX_UPLOAD_MB * 1024 * 1024
    if size == 0:
        raise IngestError("The file is empty.")
    if size > max_bytes:
        raise IngestError(f"The file is {size / 1e6:.1f} MB; the limit is {settings.MAX_UPLOAD_MB} MB.")
    fh.seek(0)
    head = fh.read(1024)
    if not looks_like_pdf(head):
        raise IngestError("This is not a PDF file (it does not start with a PDF header), whatever its name says.")
    fh.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
    fh.seek(0)
    return digest.hexdigest()
