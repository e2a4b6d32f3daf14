"""Documents, their extracted pages and their passages (chunks), the records ingestion writes.
No ingestion logic here (ingest.py)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_tasks_db.models import DBTaskResult


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        NEEDS_OCR = "needs_ocr", "Needs OCR"
        FAILED = "failed", "Failed"
        SUPERSEDED = "superseded", "Superseded"

    class Sensitivity(models.TextChoices):
        PUBLIC = "public", "Public"
        INTERNAL = "internal", "Internal"
        CONFIDENTIAL = "confidential", "Confidential"
        RESTRICTED = "restricted", "Restricted"

    title = models.CharField(max_length=300)
    title_from_file = models.BooleanField(default=False, help_text="Take the title from the PDF when ingesting it.")
    issuer = models.CharField("regulator / issuer", max_length=200, blank=True)
    jurisdiction = models.CharField(max_length=100, blank=True)
    doc_type = models.CharField("document type", max_length=100, blank=True)
    effective_date = models.DateField(null=True, blank=True)
    sensitivity = models.CharField(max_length=20, choices=Sensitivity.choices, default=Sensitivity.INTERNAL)
    tags = models.CharField(max_length=300, blank=True, help_text="Comma-separated.")
    version = models.PositiveIntegerField(default=1)
    supersedes = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="newer_versions"
    )
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
    queued_at = models.DateTimeField(null=True, blank=True)  # when its ingestion was last queued
    ingested_at = models.DateTimeField(null=True, blank=True)
    # Written with every progress step: a document "processing" with an old heartbeat lost its
    # worker (killed, crashed) and may be retried.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # "host:pid" of the worker ingesting it: another worker neither starts it again nor, while that
    # process lives, resumes it (ingest.resume_interrupted)
    ingest_worker = models.CharField(max_length=200, blank=True)
    # Seconds spent per ingestion step (extract, chunk, embed, index), for the library and bench/.
    timings = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("manage_documents", "Can upload and manage documents")]

    def __str__(self) -> str:
        return self.title

    @property
    def is_pending(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.PROCESSING) and not self.is_stalled

    @property
    def is_stalled(self) -> bool:
        """Processing, but no progress for longer than a document may take: its worker is gone.
        Or queued, but no ingestion task waits or runs for it: it would wait forever."""
        if self.status == self.Status.QUEUED:
            return self.never_scheduled
        if self.status != self.Status.PROCESSING or self.heartbeat_at is None:
            return False
        return timezone.now() - self.heartbeat_at > timedelta(seconds=settings.INGEST_STALLED_SECONDS)

    @property
    def never_scheduled(self) -> bool:
        """Queued for over a minute with no ingestion task for it in the queue (its enqueue failed,
        say the task table was unreachable when the upload committed). Only the database task
        backend can be asked; with another one this is never claimed."""
        if self.status != self.Status.QUEUED or timezone.now() - (self.queued_at or self.created_at) < timedelta(
            minutes=1
        ):
            return False
        if settings.TASKS["default"]["BACKEND"] != "django_tasks_db.DatabaseBackend":
            return False
        waiting = DBTaskResult.objects.filter(
            task_path="regqa.documents.tasks.ingest_document",
            status__in=["READY", "RUNNING"],
            args_kwargs__args__0=self.pk,
        )
        return not waiting.exists()

    @property
    def can_retry(self) -> bool:
        return self.status in (self.Status.FAILED, self.Status.NEEDS_OCR) or self.is_stalled

    @property
    def tag_list(self) -> list[str]:
        return [t.strip() for t in self.tags.split(",") if t.strip()]


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


class LiveChunks(models.Manager):
    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(retired_at__isnull=True)

    def without_windows(self) -> models.QuerySet:
        """Live passages whose windows are not stored yet (a passage of no words has none to store)."""
        return self.get_queryset().filter(windows=b"").exclude(text__regex=r"^\s*$")


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
    windows = models.BinaryField(
        default=b"", blank=True, help_text="float16 vectors of the passage's windows (embed.embed_chunks); empty: none."
    )
    # Set when `index rechunk` replaced the passage with new ones: it leaves the index and search,
    # but stays, so answers that cited it still open exactly what they cited.
    retired_at = models.DateTimeField(null=True, blank=True)

    objects = models.Manager()  # every passage, retired ones included (what answers cite)
    live = LiveChunks()  # the passages search may return

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
