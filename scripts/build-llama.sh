#!/usr/bin/env bash
# Build (once) a llama-cpp-python wheel that works on this machine's CPU and print its path.
#
# PyPI ships llama-cpp-python only as source. The default "native" build enables llama.cpp's
# AMX code path, which segfaults on the first decode on these Xeons (see MODELS.md). We turn
# GGML_NATIVE off and switch on only the instruction sets /proc/cpuinfo reports, so the wheel
# never uses an instruction the CPU lacks. The wheel is cached by version + flag set, so a second
# run (or a second clone on the same machine) reuses it.
set -euo pipefail

PY=${PY:-python3}
VERSION=${LLAMA_CPP_VERSION:-0.3.36}
CACHE=${REGQA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/regqa}

flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]]; }
args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
on() { if has "$1"; then args+=" -D$2=ON"; else args+=" -D$2=OFF"; fi; }
on avx GGML_AVX
on avx2 GGML_AVX2
on fma GGML_FMA
on f16c GGML_F16C
on bmi2 GGML_BMI2
on avx_vnni GGML_AVX_VNNI
on avx512f GGML_AVX512
on avx512vbmi GGML_AVX512_VBMI
on avx512_vnni GGML_AVX512_VNNI
on avx512_bf16 GGML_AVX512_BF16

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
