"""The Django admin's user pages as RegQA's Admins may use them: they manage users and their
roles (groups), but only a superuser can grant superuser or staff status or single permissions,
so managing users never lets an Admin give themselves more than their role (a superuser could
read every answer, which the roles keep for Auditors). Changes are audited (auth_events.py)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

SUPERUSER_ONLY = ("is_superuser", "is_staff", "user_permissions")


class RoleSafeUserAdmin(UserAdmin):
    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        return [
            (name, {**options, "fields": tuple(f for f in options["fields"] if f not in SUPERUSER_ONLY)})
            for name, options in fieldsets
        ]


User = get_user_model()
admin.site.unregister(User)
admin.site.register(User, RoleSafeUserAdmin)
