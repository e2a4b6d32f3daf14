"""RegQA on a real PostgreSQL server with pgvector (scripts/pgserver.py starts a throwaway one):
the audit chain with 16 concurrent writers. Each check runs `manage.py` in a subprocess against
that server, as a deployment would, whatever database the rest of the suite uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from . import processes
from .processes import ROOT


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pgdata")
    started = subprocess.run(
        [sys.executable, "scripts/pgserver.py", "start", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if started.returncode != 0:
        pytest.fail(f"PostgreSQL did not start: {started.stderr[-2000:]}")
    yield started.stdout.strip()
    subprocess.run([sys.executable, "scripts/pgserver.py", "stop", str(directory)], cwd=ROOT, timeout=60)


def manage(url: str, data_dir: Path, *args: str, code: str = "") -> subprocess.CompletedProcess:
    return processes.manage(data_dir, *args, code=code, timeout=600, DATABASE_URL=url)


@pytest.fixture(scope="session")
def migrated(postgres_url, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pgapp")
    result = manage(postgres_url, data_dir, "migrate", "--noinput")
    assert result.returncode == 0, result.stderr[-3000:]
    return postgres_url, data_dir


WRITERS = """
import json, threading
from django.db import connection, connections
from regqa.audit import log
from regqa.audit.models import AuditEvent, EventKind

assert connection.vendor == "postgresql"
barrier = threading.Barrier(16)
errors = []

def write(writer):
    try:
        barrier.wait()
        for n in range(12):
            log.record(EventKind.ANSWER, f"writer {writer} event {n}", actor=f"w{writer}")
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connections.close_all()

threads = [threading.Thread(target=write, args=(w,)) for w in range(16)]
for t in threads: t.start()
for t in threads: t.join()
seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
print(json.dumps({"errors": errors, "seqs": seqs}))
"""


@pytest.mark.slow
def test_sixteen_concurrent_audit_writers_lose_and_fork_nothing_on_postgresql(migrated):
    url, data_dir = migrated
    result = manage(url, data_dir, "shell", code=WRITERS)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["errors"] == []
    before = outcome["seqs"][0] - 1 if outcome["seqs"] else 0
    assert outcome["seqs"] == list(range(before + 1, before + 16 * 12 + 1))  # every event, no gap, no fork
    verified = manage(url, data_dir, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in (verified.stdout + verified.stderr).lower()


@pytest.mark.parametrize("url", ["postgres://regqa@127.0.0.1:1/regqa", "postgres://regqa@/regqa?host=/nonexistent"])
def test_an_unreachable_database_is_one_clear_error_at_start_up(url, tmp_path):
    result = manage(url, tmp_path, "check")
    assert result.returncode == 1
    assert "(regqa.E002) The database (postgresql at" in result.stderr and "cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr
