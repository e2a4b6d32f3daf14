from __future__ import annotations

from django.conf import settings
from django.db import models


class Answer(models.Model):
    """One question asked by one user, and everything RegQA did to answer it.

    `passages` is a snapshot (text, document, page, score) taken at question time, so the record
    still says what the answer was based on after documents change or are deleted.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the model"
        STREAMING = "streaming", "Being written"
        ANSWERED = "answered", "Answered"
        NOT_COVERED = "not_covered", "Not covered by the documents"
        FAILED = "failed", "Failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="answers")
    question = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    passages = models.JSONField(default=list)
    # The documents the passages came from (for the auditors' filter; the snapshot above is the record).
    documents = models.ManyToManyField("documents.Document", blank=True, related_name="answers")
    filters = models.JSONField(default=dict, blank=True)  # document filters the question was asked with
    answer_text = models.TextField(blank=True)
    citations = models.JSONField(default=list)
    # Sentence-by-sentence citation check (verify.py) and the five-criteria quality check (quality.py).
    verification = models.JSONField(default=dict, blank=True)
    quality = models.JSONField(default=dict, blank=True)
    quality_min = models.PositiveSmallIntegerField(null=True, blank=True, db_index=True)  # lowest score
    model_name = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    retrieval_ms = models.FloatField(null=True, blank=True)
    first_token_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    check_ms = models.FloatField(null=True, blank=True)  # time taken by verification and quality check

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("ask_question", "Can ask questions"),
            ("view_answer_log", "Can view every user's answers"),
            ("export_answer_log", "Can export the answer log"),
        ]

    def __str__(self) -> str:
        return self.question[:80]

    @property
    def verification_status(self) -> str:
        return self.verification.get("status", "")

    @property
    def quality_rows(self) -> list[dict]:
        from .quality import CRITERIA

        return [{"key": k, "name": name, **self.quality[k]} for k, name in CRITERIA.items() if k in self.quality]

    @property
    def is_final(self) -> bool:
        return self.status in (self.Status.ANSWERED, self.Status.NOT_COVERED, self.Status.FAILED)
