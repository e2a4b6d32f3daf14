from __future__ import annotations

from django.db import models


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
