"""Run a benchmark against a fresh, throwaway RegQA data directory (database, uploads, index)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django_here() -> None:
    """Set up Django on the data directory the environment names (REGQA_DATA_DIR), as it is."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "regqa.settings")
    import django

    django.setup()


def setup_django(prefix: str = "regqa-bench-", **env: str) -> Path:
    """Point RegQA at a new temporary data directory, set up Django and migrate. Returns the directory."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["REGQA_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("REGQA_SECRET_KEY", "bench-only")
    os.environ.update(env)
    setup_django_here()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return data_dir
