"""Run a benchmark against a fresh, throwaway RegQA data directory (database, uploads, index)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(prefix: str = "regqa-bench-", **env: str) -> Path:
    """Point RegQA at a new temporary data directory, set up Django and migrate. Returns the directory."""
    sys.path.insert(0, str(ROOT))
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["REGQA_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("REGQA_SECRET_KEY", "bench-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "regqa.settings")
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return data_dir
