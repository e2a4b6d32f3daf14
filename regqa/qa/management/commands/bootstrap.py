"""Create the roles and, with --demo-users, the demo accounts admin / analyst / auditor and a
first escalation policy (on request, for analysts and admins) if none exists."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from regqa import roles

DEMO_USERS = {"admin": roles.ADMINS, "analyst": roles.ANALYSTS, "auditor": roles.AUDITORS}


class Command(BaseCommand):
    help = "Create the Analysts, Admins and Auditors groups (idempotent); optionally the demo users."

    def add_arguments(self, parser):
        parser.add_argument("--demo-users", action="store_true", help="Create admin, analyst and auditor.")

    def handle(self, *args, demo_users: bool = False, **options):
        groups = roles.ensure_roles()
        self.stdout.write(f"Roles: {', '.join(groups)}")
        if not demo_users:
            return
        # Passwords: REGQA_DEMO_PASSWORD for all three, else one random password kept in the data
        # directory so that every run prints the same working credentials.
        credentials = settings.DATA_DIR / "demo-password.txt"
        password = os.environ.get("REGQA_DEMO_PASSWORD")
        if not password:
            if credentials.exists():
                password = credentials.read_text().strip()
            else:
                password = secrets.token_urlsafe(9)
                credentials.parent.mkdir(parents=True, exist_ok=True)
                credentials.write_text(password + "\n")
                credentials.chmod(0o600)
        User = get_user_model()
        for username, group in DEMO_USERS.items():
            user, created = User.objects.get_or_create(username=username)
            if created or os.environ.get("REGQA_DEMO_PASSWORD"):
                user.set_password(password)
                user.save()
            if username == "admin":  # the Django admin for users and roles, not a superuser (roles.py)
                user.is_staff, user.is_superuser = True, False
                user.save()
            user.groups.set([groups[group]])
        self.stdout.write(f"Demo users admin, analyst, auditor; password: {password}")
        from regqa.audit import log as audit_log
        from regqa.qa.models import EscalationPolicy
        from regqa.qa.redact import PATTERN_NAMES

        if not EscalationPolicy.objects.exists():
            policy = EscalationPolicy.objects.create(
                mode=EscalationPolicy.Mode.ON_REQUEST,
                allowed_groups=[roles.ANALYSTS, roles.ADMINS],
                max_sensitivity="internal",
                redact_patterns=PATTERN_NAMES,
                note="demo policy created by bootstrap --demo-users",
            )
            audit_log.record_policy(policy, None, actor="bootstrap")
            self.stdout.write(f"Escalation policy v{policy.version}: on request, for Analysts and Admins")
