"""Test settings: regqa.settings with a throwaway secret key (everything else is the same)."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("REGQA_SECRET_KEY", "tests-only-not-secret")

from regqa.settings import *  # noqa: E402,F403

# Fast password hashing: tests create users constantly.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Transactional tests empty every table at teardown, which the audit triggers refuse;
# tests/test_audit.py installs the triggers itself to test them.
AUDIT_DB_TRIGGERS = False

# On SQLite, the test database is a file like the real one, not Django's default shared in-memory
# database: there, a write that meets another thread's open read (the live server's page polling
# while a worker thread ingests) fails at once with "database table is locked" instead of waiting
# out the timeout, as it does on a file. One per process, so two runs on one machine do not meet.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(Path(tempfile.gettempdir()) / f"regqa-test-{os.getpid()}.sqlite3")
    }
