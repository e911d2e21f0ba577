#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` from the llama.cpp sources vendored in the llama-cpp-python sdist
# that parley runs on (same version), cached outside the repo. Prints the binary's path.
#   bash bench/build_llama_server.sh            portable flags, as scripts/install.sh used to build
#   bash bench/build_llama_server.sh --native   -DGGML_NATIVE=ON: the best this CPU can do (the baseline for prefill)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
version="$("$python" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
root="${PARLEY_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/llama-server}/$version"
build="$root/build"
flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
       -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
if [[ "${1:-}" == "--native" ]]; then
  # Native builds are per CPU model: the cache key is the CPU's flags. AMX stays off: its kernels in this
  # llama.cpp die of SIGILL (tilezero in tinygemm_kernel_amx) on a Xeon VM whose kernel grants AMX.
  build="$root/build-native-noamx-$(grep -m1 '^flags' /proc/cpuinfo | sha256sum | cut -c1-12)"
  flags=(-DGGML_NATIVE=ON "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
         "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
fi
binary="$build/bin/llama-server"
if [[ -x "$binary" ]]; then echo "$binary"; exit 0; fi
mkdir -p "$root"
if [[ ! -d "$root/src" ]]; then
  "$python" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$root" >&2
  mkdir -p "$root/src"
  tar -xzf "$root"/llama_cpp_python-"$version".tar.gz -C "$root/src" --strip-components=1
fi
cmake -S "$root/src/vendor/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release "${flags[@]}" \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$build" --target llama-server -j "$(nproc)" >&2
echo "$binary"
