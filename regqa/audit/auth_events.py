"""Audit records for logins and for user, role and permission changes, whatever makes them (the
Django admin, the shell, a command), with who made them: the logged-in user of the request
(middleware.acting_user), or "system" outside a request. Connected to Django's signals in
AuditConfig.ready()."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from . import log
from .middleware import acting_user
from .models import EventKind


def _by() -> dict:
    """The acting user as `log.record` arguments: the request's user, else the system."""
    acting = acting_user.get()
    if isinstance(acting, str):  # middleware.acting(): a named actor such as single sign-on
        return {"actor": acting}
    user = getattr(acting, "user", None)  # the request's user
    if user is not None and user.is_authenticated:
        return {"user": user}
    return {"actor": "system"}


def _ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


def login_failed(sender, credentials, request=None, **kwargs) -> None:
    if request is not None and getattr(request, "axes_locked_out", False):
        return  # refused by the lockout, its password never checked: recorded once, as the lockout
    if "username" not in credentials:
        return  # not a password login: a refused single sign-on is recorded with its reason (sso.py)
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
    sso = getattr(user, "backend", "").startswith("regqa.accounts.")
    data: dict = {"ip": _ip(request), "method": "sso" if sso else "password"}
    if sso:
        data["groups"] = user.sso_identity.groups  # the provider's, as they mapped to the roles
        data["roles"] = sorted(user.groups.values_list("name", flat=True))
    log.record(EventKind.LOGIN, f"{user.get_username()} logged in", user=user, data=data)


def user_saved(sender, instance, created, update_fields=None, **kwargs) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # the save Django makes at each login, recorded as "login"
    kind = EventKind.USER_CREATED if created else EventKind.USER_CHANGED
    log.record(
        kind,
        f"{kind.split('.')[1].capitalize()} user {instance.get_username()}",
        **_by(),
        data={
            "user": instance.get_username(),
            "active": instance.is_active,
            "staff": instance.is_staff,
            "superuser": instance.is_superuser,
        },
    )


def user_deleted(sender, instance, **kwargs) -> None:
    log.record(
        EventKind.USER_DELETED,
        f"Deleted user {instance.get_username()}",
        **_by(),
        data={"user": instance.get_username()},
    )


def roles_changed(sender, instance, action, pk_set, **kwargs) -> None:
    if action not in ("post_add", "post_remove", "post_clear") or not isinstance(instance, get_user_model()):
        return
    names = sorted(Group.objects.filter(pk__in=pk_set or []).values_list("name", flat=True))
    log.record(
        EventKind.USER_ROLES_CHANGED,
        f"Roles of {instance.get_username()}: {action[5:]} {', '.join(names)}",
        **_by(),
        data={
            "user": instance.get_username(),
            "action": action[5:],
            "groups": names,
            "now": sorted(instance.groups.values_list("name", flat=True)),
        },
    )


def _permission_names(pks) -> list[str]:
    rows = Permission.objects.filter(pk__in=pks or []).values_list("content_type__app_label", "codename")
    return sorted(f"{app}.{codename}" for app, codename in rows)


def user_permissions_changed(sender, instance, action, pk_set, **kwargs) -> None:
    """Single permissions given to or taken from a user (beside their roles)."""
    if action not in ("post_add", "post_remove", "post_clear") or not isinstance(instance, get_user_model()):
        return
    names = _permission_names(pk_set)
    log.record(
        EventKind.USER_PERMISSIONS_CHANGED,
        f"Permissions of {instance.get_username()}: {action[5:]} {', '.join(names)}",
        **_by(),
        data={"user": instance.get_username(), "action": action[5:], "permissions": names,
              "now": _permission_names(instance.user_permissions.values_list("pk", flat=True))},
    )  # fmt: skip


def role_permissions_changed(sender, instance, action, pk_set, **kwargs) -> None:
    """Permissions given to or taken from a role (a group): every member's rights change."""
    if action not in ("post_add", "post_remove", "post_clear") or not isinstance(instance, Group):
        return
    names = _permission_names(pk_set)
    log.record(
        EventKind.ROLE_PERMISSIONS_CHANGED,
        f"Permissions of role {instance.name}: {action[5:]} {', '.join(names)}",
        **_by(),
        data={"role": instance.name, "action": action[5:], "permissions": names,
              "now": _permission_names(instance.permissions.values_list("pk", flat=True))},
    )  # fmt: skip


def role_saved(sender, instance, created, **kwargs) -> None:
    if created:
        log.record(EventKind.ROLE_CREATED, f"Role {instance.name} created", **_by(), data={"role": instance.name})


def role_deleted(sender, instance, **kwargs) -> None:
    log.record(EventKind.ROLE_DELETED, f"Role {instance.name} deleted", **_by(), data={"role": instance.name})
