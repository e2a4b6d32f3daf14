"""The audit trail's one table (append-only) and the closed list of event kinds."""

from __future__ import annotations

from django.db import models


class EventKind(models.TextChoices):
    """Every kind of audit event RegQA writes. `log.record` refuses any other, so this is the list
    the auditor's filter offers. (Not a field choice: the column keeps the plain value, and a
    kind added here needs no migration of the append-only table.)"""

    QUESTION_ASKED = "question.asked", "Question asked (passages shown)"
    ANSWER = "answer", "Answer"
    ANSWER_ABANDONED = "answer.abandoned", "Answer abandoned (never opened)"
    ANSWER_ESCALATED = "answer.escalated", "Answer sent to the large model"
    ANSWER_ESCALATION_REFUSED = "answer.escalation_refused", "Escalation refused"
    ANSWER_FEEDBACK = "answer.feedback", "Feedback on an answer"
    ANSWERS_SOURCE_AMENDED = "answers.source_amended", "Answers flagged: a cited source was amended"
    DOCUMENT_UPLOADED = "document.uploaded", "Document uploaded"
    DOCUMENT_EDITED = "document.edited", "Document metadata edited"
    DOCUMENT_RETRIED = "document.retried", "Document ingestion retried"
    DOCUMENT_DELETED = "document.deleted", "Document deleted"
    DOCUMENT_SUPERSEDED = "document.superseded", "Document superseded by a new version"
    DOCUMENT_RECHUNKED = "document.rechunked", "Document cut into new passages"
    POLICY_CHANGED = "policy.changed", "Escalation policy changed"
    RETRIEVAL_TRAINED = "retrieval.trained", "Retrieval bundle trained"
    RETRIEVAL_ACTIVATED = "retrieval.activated", "Retrieval bundle activated"
    RETRIEVAL_ROLLED_BACK = "retrieval.rolled_back", "Retrieval bundle rolled back"
    DECISION_TRAINED = "decision.trained", "Answer decision model trained"
    LOG_EXPORTED = "log.exported", "Log exported"
    LOGIN = "login", "Login"
    LOGIN_FAILED = "login.failed", "Failed login"
    LOGIN_LOCKED_OUT = "login.locked_out", "Logins locked out (too many failures)"
    USER_CREATED = "user.created", "User created"
    USER_CHANGED = "user.changed", "User changed"
    USER_DELETED = "user.deleted", "User deleted"
    USER_ROLES_CHANGED = "user.roles_changed", "User roles changed"
    USER_PERMISSIONS_CHANGED = "user.permissions_changed", "User permissions changed"
    ROLE_PERMISSIONS_CHANGED = "role.permissions_changed", "Role permissions changed"
    ROLE_CREATED = "role.created", "Role created"
    ROLE_DELETED = "role.deleted", "Role deleted"
    API_TOKEN_CREATED = "api_token.created", "API token created"
    API_TOKEN_REVOKED = "api_token.revoked", "API token revoked"


class AppendOnlyError(Exception):
    """Audit events are never changed or deleted once written."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events cannot be updated")

    def delete(self):
        raise AppendOnlyError("audit events cannot be deleted")

    def bulk_update(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be updated")


class AuditEvent(models.Model):
    """One entry of the tamper-evident audit trail.

    `hash` is SHA-256 over a canonical serialisation of the entry including `prev_hash`, the
    hash of the entry before it, so changing, removing or inserting an entry breaks the chain
    (`manage.py audit verify`). The application refuses updates and deletes; database triggers
    (migration 0002) refuse them for anything else that talks to the database.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=40, db_index=True)
    actor = models.CharField(max_length=150, blank=True, db_index=True, help_text="Username at the time.")
    role = models.CharField(max_length=100, blank=True)
    summary = models.CharField(max_length=500)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # The seal: HMAC-SHA256 of the hash under the key `key_id` of the audit key file (anchor.py),
    # which the database never holds. Null only for entries written before sealing existed (and
    # nullable so the column is added in place: the append-only triggers stay as they are).
    key_id = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    mac = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}: {self.summary}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be deleted")
