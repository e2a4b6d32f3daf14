"""The three roles, as Django groups with permissions. `manage.py bootstrap` creates them."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

ANALYSTS = "Analysts"
ADMINS = "Admins"
AUDITORS = "Auditors"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    ANALYSTS: ["qa.ask_question"],
    ADMINS: [
        "qa.ask_question",
        "documents.manage_documents",
        "qa.manage_policy",
        "qa.manage_retrieval",
        # users and their roles, in the Django admin (audit/admin.py keeps superuser rights out of reach)
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
        "auth.view_group",
    ],  # fmt: skip
    AUDITORS: ["qa.view_answer_log", "qa.export_answer_log"],
}


def ensure_roles() -> dict[str, Group]:
    """Create the groups and set exactly their permissions (idempotent)."""
    groups = {}
    for name, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for dotted in perms:
            app_label, codename = dotted.split(".")
            wanted.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)
        groups[name] = group
    return groups


def role_of(user) -> str:
    names = sorted(user.groups.values_list("name", flat=True)) if user.is_authenticated else []
    return ", ".join(names) or ("superuser" if getattr(user, "is_superuser", False) else "none")
