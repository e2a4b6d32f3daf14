"""Test settings: regqa.settings with a throwaway secret key (everything else is the same)."""

import os

os.environ.setdefault("REGQA_SECRET_KEY", "tests-only-not-secret")

from regqa.settings import *  # noqa: E402,F403

# Fast password hashing: tests create users constantly.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Transactional tests empty every table at teardown, which the audit triggers refuse;
# tests/test_audit.py installs the triggers itself to test them.
AUDIT_DB_TRIGGERS = False
