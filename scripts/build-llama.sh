#!/usr/bin/env bash
# Build (once) a llama-cpp-python wheel that works on this machine's CPU and print its path.
#
# PyPI ships llama-cpp-python only as source; it is built with the CPU flags of llama-flags.sh
# (never an instruction this CPU lacks). The wheel is cached by version + flag set, so a second
# run (or a second clone on the same machine) reuses it.
set -euo pipefail

PY=${PY:-python3}
VERSION=${LLAMA_CPP_VERSION:-0.3.36}
CACHE=${REGQA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/regqa}

args=$(bash "$(dirname "$0")/llama-flags.sh")

key=$(echo "$VERSION $args $($PY -c 'import sys;print(sys.version_info[:2])')" | sha256sum | cut -c1-12)
dir="$CACHE/wheels/llama-cpp-python-$key"
wheel=$(ls "$dir"/llama_cpp_python-*.whl 2>/dev/null | head -1 || true)
if [[ -z "$wheel" ]]; then
  echo "building llama-cpp-python $VERSION (about 4 minutes on 2 cores) with: $args" >&2
  mkdir -p "$dir"
  rm -rf "$dir.tmp"
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    $PY -m pip wheel --no-deps --no-cache-dir -w "$dir.tmp" "llama-cpp-python==$VERSION" >&2
  mv "$dir.tmp"/llama_cpp_python-*.whl "$dir"/ && rm -rf "$dir.tmp"
  wheel=$(ls "$dir"/llama_cpp_python-*.whl | head -1)
fi
echo "$wheel"
