from __future__ import annotations

from django.conf import settings
from django.db import models


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    title = models.CharField(max_length=300)
    file = models.FileField(upload_to="documents/%Y/%m/", blank=True)
    original_name = models.CharField(max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, unique=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    status_detail = models.TextField(blank=True, help_text="Why ingestion failed, or what it is doing.")
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done while processing.")
    page_count = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    ingested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("manage_documents", "Can upload and manage documents")]

    def __str__(self) -> str:
        return self.title

    @property
    def is_pending(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.PROCESSING)


class Page(models.Model):
    """Extracted text of one PDF page, kept so a citation can show the page it came from."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="pages")
    number = models.PositiveIntegerField(help_text="1-based page number in the PDF.")
    text = models.TextField()

    class Meta:
        ordering = ["document", "number"]
        constraints = [models.UniqueConstraint(fields=["document", "number"], name="unique_page")]

    def __str__(self) -> str:
        return f"{self.document.title}, page {self.number}"


class Chunk(models.Model):
    """A retrievable passage. Its primary key is also its id in the FAISS index."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    section = models.CharField(max_length=300, blank=True)
    page_start = models.PositiveIntegerField(null=True, blank=True)
    page_end = models.PositiveIntegerField(null=True, blank=True)
    external_id = models.CharField(max_length=200, blank=True, db_index=True)
    embedding = models.BinaryField(help_text="float32 vector, so the index can be rebuilt without re-encoding.")

    class Meta:
        ordering = ["document", "ordinal"]

    def __str__(self) -> str:
        return f"{self.document.title} #{self.ordinal}"

    @property
    def pages_label(self) -> str:
        if self.page_start is None:
            return ""
        if self.page_end and self.page_end != self.page_start:
            return f"pp. {self.page_start}-{self.page_end}"
        return f"p. {self.page_start}"
