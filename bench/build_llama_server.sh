#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` from the llama.cpp sources vendored in the llama-cpp-python sdist
# that parley runs on (same version, same CPU flags), cached outside the repo. Prints the binary's path.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
version="$("$python" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
root="${PARLEY_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/llama-server}/$version"
binary="$root/build/bin/llama-server"
if [[ -x "$binary" ]]; then echo "$binary"; exit 0; fi
mkdir -p "$root"
if [[ ! -d "$root/src" ]]; then
  "$python" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$root" >&2
  mkdir -p "$root/src"
  tar -xzf "$root"/llama_cpp_python-"$version".tar.gz -C "$root/src" --strip-components=1
fi
# The same portable flags as scripts/install.sh: the native build enables AMX, which crashes on some Xeons.
cmake -S "$root/src/vendor/llama.cpp" -B "$root/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$root/build" --target llama-server -j "$(nproc)" >&2
echo "$binary"
