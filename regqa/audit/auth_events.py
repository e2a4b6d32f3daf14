"""Audit records for logins and for user and role changes, whatever makes them (the Django
admin, the shell, a command). Connected to Django's signals in AuditConfig.ready()."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from . import log
from .models import EventKind


def _ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


def login_failed(sender, credentials, request=None, **kwargs) -> None:
    if request is not None and getattr(request, "axes_locked_out", False):
        return  # refused by the lockout, its password never checked: recorded once, as the lockout
    username = str(credentials.get("username", ""))
    log.record(EventKind.LOGIN_FAILED, f"Failed login for {username!r}", actor=username, data={"ip": _ip(request)})


def locked_out(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    """django-axes locked a username or an address out: one audit event per lockout period, so
    a client hammering the login page cannot grow the append-only trail without bound."""
    from django.conf import settings
    from django.utils import timezone

    from .models import AuditEvent

    since = timezone.now() - settings.AXES_COOLOFF_TIME
    recent = AuditEvent.objects.filter(kind=EventKind.LOGIN_LOCKED_OUT, created_at__gte=since)
    if any(e.data.get("user") == username or e.data.get("ip") == ip_address for e in recent):
        return  # that user or that address is already recorded as locked out in this period
    log.record(
        EventKind.LOGIN_LOCKED_OUT,
        f"Logins locked out for {username!r} from {ip_address} after {settings.AXES_FAILURE_LIMIT} failures",
        actor=str(username or ""),
        data={"user": username, "ip": ip_address, "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)},
    )


def logged_in(sender, request, user, **kwargs) -> None:
    log.record(EventKind.LOGIN, f"{user.get_username()} logged in", user=user, data={"ip": _ip(request)})


def user_saved(sender, instance, created, update_fields=None, **kwargs) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # the save Django makes at each login, recorded as "login"
    kind = EventKind.USER_CREATED if created else EventKind.USER_CHANGED
    log.record(
        kind,
        f"{kind.split('.')[1].capitalize()} user {instance.get_username()}",
        data={
            "user": instance.get_username(),
            "active": instance.is_active,
            "staff": instance.is_staff,
            "superuser": instance.is_superuser,
        },
    )


def user_deleted(sender, instance, **kwargs) -> None:
    log.record(
        EventKind.USER_DELETED, f"Deleted user {instance.get_username()}", data={"user": instance.get_username()}
    )


def roles_changed(sender, instance, action, pk_set, **kwargs) -> None:
    if action not in ("post_add", "post_remove", "post_clear") or not isinstance(instance, get_user_model()):
        return
    names = sorted(Group.objects.filter(pk__in=pk_set or []).values_list("name", flat=True))
    log.record(
        EventKind.USER_ROLES_CHANGED,
        f"Roles of {instance.get_username()}: {action[5:]} {', '.join(names)}",
        data={
            "user": instance.get_username(),
            "action": action[5:],
            "groups": names,
            "now": sorted(instance.groups.values_list("name", flat=True)),
        },
    )
