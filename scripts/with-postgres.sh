#!/usr/bin/env bash
# Run a command with DATABASE_URL pointing at a throwaway PostgreSQL server with pgvector
# (scripts/pgserver.py) whose data lives in $PGDATA_DIR (default: a new temporary directory,
# deleted afterwards). The server is stopped when the command ends.
#   bash scripts/with-postgres.sh .venv/bin/python -m pytest     (make test's second pass)
#   PGDATA_DIR=var-postgres/pgdata bash scripts/with-postgres.sh bash scripts/run.sh   (make run-postgres)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
temporary=""
if [[ -z "${PGDATA_DIR:-}" ]]; then
  temporary=$(mktemp -d /tmp/regqa-pg.XXXXXX)
  PGDATA_DIR=$temporary
fi
stop() {
  $PY scripts/pgserver.py stop "$PGDATA_DIR" || true
  [[ -z "$temporary" ]] || rm -rf "$temporary"
}
trap stop EXIT
export DATABASE_URL=$($PY scripts/pgserver.py start "$PGDATA_DIR")
echo "PostgreSQL with pgvector: $DATABASE_URL" >&2
"$@"
