#!/usr/bin/env bash
# The llama.cpp CMake flags for this machine's CPU (used by build-llama.sh and build-llama-server.sh).
#
# The default "native" build enables llama.cpp's AMX code path, which segfaults on the first decode
# on these Xeons (see MODELS.md). We turn GGML_NATIVE off and switch on only the instruction sets
# /proc/cpuinfo reports, so the build never uses an instruction the CPU lacks.
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
echo "$args"
