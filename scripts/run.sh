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

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

bash scripts/ocr-deps.sh
# REGQA_LLM_SERVER=llama-server: the answering model from llama.cpp's own server on 127.0.0.1, with
# REGQA_LLM_PARALLEL slots (default 2) written at once (scripts/build-llama-server.sh builds it once);
# REGQA_LLM_SERVER=on: from llama-cpp-python's server (one answer at a time). Both are the served
# path of README "Answers from a model server", on one machine.
if [[ "${REGQA_LLM_SERVER:-off}" != "off" && -z "${REGQA_LLM_BASE_URL:-}" ]]; then
  llm_port=${REGQA_LLM_PORT:-8002}
  llm_gguf=$($PY manage.py shell --no-imports -c 'from django.conf import settings; print(settings.LLM_MODEL_PATH)')
  llm_name=$(basename "$llm_gguf")  # served under its file name, so the thresholds measured for it apply
  # On the app's own machine the model server runs at a lower CPU priority (nice 10): pages,
  # searches and quotes take the cores first when they need them; the model has them otherwise.
  if [[ "$REGQA_LLM_SERVER" == "llama-server" ]]; then
    parallel=${REGQA_LLM_PARALLEL:-2}
    server=$(PY=$PY bash scripts/build-llama-server.sh)
    nice -n 10 "$server" --model "$llm_gguf" --alias "$llm_name" --host 127.0.0.1 --port "$llm_port" --parallel "$parallel" \
      --ctx-size $((4096 * parallel)) --threads 2 --threads-batch 2 --flash-attn on --log-disable &
    pids+=($!)
    export REGQA_LLM_PARALLEL=$parallel
  else
    nice -n 10 $PY -m llama_cpp.server --model "$llm_gguf" --model_alias "$llm_name" --host 127.0.0.1 --port "$llm_port" \
      --n_ctx 4096 --n_threads 2 --n_threads_batch 2 --flash_attn True --verbose False &
    pids+=($!)
    export REGQA_LLM_JSON_FORMAT=json_object REGQA_LLM_PARALLEL=1  # it writes one at a time
  fi
  export REGQA_LLM_BASE_URL="http://127.0.0.1:$llm_port/v1" REGQA_LLM_SERVER_MODEL=$llm_name
  for _ in $(seq 120); do curl -fs "$REGQA_LLM_BASE_URL/models" >/dev/null && break; sleep 1; done
  echo "Answering model: $(basename "$llm_gguf") served at $REGQA_LLM_BASE_URL ($REGQA_LLM_PARALLEL at once)"
fi
$PY manage.py check            # one clear error for a bad setup (e.g. a model server that is down)
$PY manage.py migrate --noinput --skip-checks | grep -v '^  Applying' || true
$PY manage.py audit init-key   # the key that seals the audit trail: outside the database
$PY manage.py bootstrap --demo-users
$PY manage.py ingest_pdfs fixtures/pdfs
$PY manage.py index repair      # index writes follow their commits: mend any a crash cut between the two

$PY manage.py worker --interval 1 &   # resumes interrupted ingestions and queues missing windows first
pids+=($!)
# The large model for escalation. Point REGQA_LARGE_LLM_BASE_URL at a real OpenAI-compatible
# endpoint to use one; otherwise the demo serves a packaged GGUF model (REGQA_LARGE_GGUF, default:
# the local default model) with llama-cpp-python's OpenAI-compatible server on 127.0.0.1.
if [[ -z "${REGQA_LARGE_LLM_BASE_URL:-}" && "${REGQA_LARGE_SERVER:-on}" != "off" ]]; then
  large_port=${REGQA_LARGE_PORT:-8001}
  large_gguf=${REGQA_LARGE_GGUF:-$($PY manage.py shell --no-imports -c 'from django.conf import settings; print(settings.LLM_MODEL_PATH)')}
  $PY -m llama_cpp.server --model "$large_gguf" --model_alias large --host 127.0.0.1 --port "$large_port" \
    --n_ctx 4096 --n_threads 2 --n_threads_batch 2 --flash_attn True --verbose False &
  pids+=($!)
  export REGQA_LARGE_LLM_BASE_URL="http://127.0.0.1:$large_port/v1" REGQA_LARGE_LLM_MODEL=large
  echo "Large model for escalation: $(basename "$large_gguf") at $REGQA_LARGE_LLM_BASE_URL"
fi
# uvicorn serves the ASGI app: pages run in threads, answer streams wait for the model on the event
# loop. One process with the in-process model (it is loaded once); with a model server
# (REGQA_LLM_BASE_URL or REGQA_LLM_SERVER=on) REGQA_WEB_WORKERS may be more.
.venv/bin/uvicorn regqa.asgi:application --host "$HOST" --port "$PORT" --workers "${REGQA_WEB_WORKERS:-1}" \
  --lifespan off --timeout-graceful-shutdown 5 --log-level info &
pids+=($!)
sleep 2
echo
echo "RegQA is running at http://$HOST:$PORT/   (Ctrl-C stops the server and the worker)"
echo "Log in as analyst, admin or auditor with the password printed above."
wait -n "${pids[@]}"
