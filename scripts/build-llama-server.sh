#!/usr/bin/env bash
# Build (once) llama.cpp's own server, `llama-server`, and print its path: the model server with
# parallel slots (continuous batching) that `REGQA_LLM_SERVER=llama-server make run` and the load
# test use. Built from the llama.cpp source inside the llama-cpp-python sdist on PyPI (the same
# llama.cpp version the app runs in-process), with the CPU flags of llama-flags.sh; cached by
# version + flag set. About 11 minutes on a 2-core AVX2-only AMD EPYC.
set -euo pipefail

PY=${PY:-python3}
VERSION=${LLAMA_CPP_VERSION:-0.3.36}
CACHE=${REGQA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/regqa}
args=$(bash "$(dirname "$0")/llama-flags.sh")
key=$(echo "server $VERSION $args" | sha256sum | cut -c1-12)
dir="$CACHE/llama-server-$key"
if [[ ! -x "$dir/llama-server" ]]; then
  echo "building llama-server from llama-cpp-python $VERSION's llama.cpp (about 11 minutes on 2 cores)" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  $PY -m pip download --quiet --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$VERSION" >&2
  tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
  src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
  # shellcheck disable=SC2086  # $args is a list of flags
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON $args >&2
  cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
  mkdir -p "$dir"
  cp "$work/build/bin/llama-server" "$dir/llama-server.tmp" && mv "$dir/llama-server.tmp" "$dir/llama-server"
fi
echo "$dir/llama-server"
