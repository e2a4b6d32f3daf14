"""`manage.py` in a child process, as a deployment runs it: an environment without the test
run's REGQA_, DATABASE_URL or DJANGO_ variables, its own data directory, plus what a test sets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage_env(data_dir: Path, **env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REGQA_", "DATABASE_URL", "DJANGO_"))}
    return clean | {"REGQA_INSECURE_DEV_KEY": "1", "REGQA_DATA_DIR": str(data_dir)} | env


def manage(data_dir: Path, *args: str, code: str = "", timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run `manage.py ARGS` (with `-c CODE` for shell) and capture its output."""
    command = [sys.executable, "manage.py", *args] + (["-c", code] if code else [])
    return subprocess.run(
        command, cwd=ROOT, env=manage_env(data_dir, **env), capture_output=True, text=True, timeout=timeout
    )
