#!/usr/bin/env bash
# `make reset`: delete the data directory (database, uploads, index, audit key and checkpoints).
# A data directory whose database holds audit events is a record someone may have to produce:
# it is deleted only with CONFIRM=yes (make reset CONFIRM=yes).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${REGQA_DATA_DIR:-$PWD/var}
[[ -e $DATA_DIR ]] || { echo "Nothing to reset: $DATA_DIR does not exist."; exit 0; }
events=0
if [[ -f $DATA_DIR/db.sqlite3 ]]; then
  events=$(.venv/bin/python - "$DATA_DIR/db.sqlite3" <<'PY' 2>/dev/null || echo unknown
import sqlite3, sys
try:
    print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("SELECT COUNT(*) FROM audit_auditevent").fetchone()[0])
except sqlite3.OperationalError:
    print(0)  # no audit table: a database that never ran the migrations
PY
)
fi
if [[ $events != 0 && ${CONFIRM:-} != yes ]]; then
  echo "Refusing to delete $DATA_DIR: its database holds $events audit events (the audit trail)." >&2
  echo "Export them first (manage.py audit export --output FILE) if they must be kept, then run: make reset CONFIRM=yes" >&2
  exit 1
fi
rm -rf "$DATA_DIR"
echo "Deleted $DATA_DIR."
