"""Issue, check and revoke personal API tokens (models.ApiToken). A token reads
`rqa_<prefix>_<secret>`; it carries exactly its owner's permissions, checked at each call."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from regqa.audit import log as audit_log
from regqa.audit.models import EventKind

from .models import ApiToken


class TokenRefused(Exception):
    """Why a token cannot be used, in words the caller is shown."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(user, name: str, days: int) -> tuple[ApiToken, str]:
    """A new token for `user`, valid `days` days. Returns the row and the token (shown once)."""
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise ValueError(f"A token lasts from 1 to {settings.API_TOKEN_MAX_DAYS} days.")
    prefix = secrets.token_hex(6)
    token = f"rqa_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        row = ApiToken.objects.create(
            user=user,
            name=name.strip()[:100] or "API token",
            prefix=prefix,
            digest=_digest(token),
            expires_at=timezone.now() + datetime.timedelta(days=days),
        )
        audit_log.record(
            EventKind.API_TOKEN_CREATED,
            f"API token “{row.name}” created (expires {row.expires_at:%Y-%m-%d})",
            user=user,
            data={"token": row.prefix, "name": row.name, "expires_at": row.expires_at.isoformat()},
        )
    return row, token


def revoke(row: ApiToken, by) -> None:
    with transaction.atomic():
        if ApiToken.objects.filter(pk=row.pk, revoked_at=None).update(revoked_at=timezone.now()):
            audit_log.record(
                EventKind.API_TOKEN_REVOKED,
                f"API token “{row.name}” revoked",
                user=by,
                data={"token": row.prefix, "name": row.name, "owner": row.user.get_username()},
            )


def authenticate(token: str):
    """The active user a token belongs to; TokenRefused says why not."""
    parts = token.split("_", 2)  # the secret may hold "_" too
    if len(parts) != 3 or parts[0] != "rqa":
        raise TokenRefused("This is not a RegQA API token.")
    row = ApiToken.objects.select_related("user").filter(prefix=parts[1]).first()
    if row is None or not hmac.compare_digest(row.digest, _digest(token)):
        raise TokenRefused("This API token is not valid.")
    if row.revoked_at:
        raise TokenRefused("This API token has been revoked.")
    now = timezone.now()
    if row.expires_at <= now:
        raise TokenRefused("This API token has expired.")
    if not row.user.is_active:
        raise TokenRefused("The account this API token belongs to is disabled.")
    if not row.last_used_at or now - row.last_used_at > datetime.timedelta(minutes=1):
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)  # not on every call
    return row.user
