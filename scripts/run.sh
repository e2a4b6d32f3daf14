#!/usr/bin/env bash
# Run RegQA with demo data: migrate, roles and demo users, fixture PDFs, worker and web server.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${REGQA_HOST:-127.0.0.1}
PORT=${REGQA_PORT:-8000}
export REGQA_DATA_DIR=${REGQA_DATA_DIR:-$PWD/var}
mkdir -p "$REGQA_DATA_DIR"
if [[ -z "${REGQA_SECRET_KEY:-}" ]]; then
  key_file="$REGQA_DATA_DIR/secret-key"
  [[ -s $key_file ]] || { $PY -c 'import secrets; print(secrets.token_urlsafe(50))' > "$key_file"; chmod 600 "$key_file"; }
  export REGQA_SECRET_KEY=$(cat "$key_file")
fi

bash scripts/ocr-deps.sh
$PY manage.py migrate --noinput | grep -v '^  Applying' || true
$PY manage.py bootstrap --demo-users
$PY manage.py ingest_pdfs fixtures/pdfs

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
$PY manage.py db_worker --interval 1 &
pids+=($!)
# One process (the models are loaded once), threads for concurrent pages and answer streams.
.venv/bin/gunicorn regqa.wsgi --config scripts/gunicorn.conf.py --bind "$HOST:$PORT" \
  --access-logfile - --log-level warning &
pids+=($!)
sleep 2
echo
echo "RegQA is running at http://$HOST:$PORT/   (Ctrl-C stops the server and the worker)"
echo "Log in as analyst, admin or auditor with the password printed above."
wait -n "${pids[@]}"
