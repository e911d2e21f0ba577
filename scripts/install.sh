#!/usr/bin/env bash
# Creates .venv in the repository root and installs parley with its embedded models and test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

# llama-cpp-python is built here from its sdist with llama.cpp's runtime CPU dispatch (GGML_BACKEND_DL): a
# portable base CPU backend (no SIMD: runs anywhere) in the wheel, plus one backend per instruction-set level
# in LLAMA_CPU_VARIANTS; parley loads the best this CPU and OS can run (engines/llamacpp/cpu_backend.py), so
# AVX-512/VNNI machines get their kernels and older ones still start. Each variant costs ~25 s on 2 cores.
# The wheel is cached per version and flags (pip's own cache would ignore CMAKE_ARGS), variants per version.
# AMX (sapphirerapids) is left out: its kernels in this llama.cpp die of SIGILL on a Xeon VM that grants AMX.
LLAMA_CPP_PYTHON="${LLAMA_CPP_PYTHON:-0.3.36}"
LLAMA_CPU_VARIANTS="${LLAMA_CPU_VARIANTS:-haswell alderlake skylakex cascadelake icelake zen4}"
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF -DGGML_SSE42=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DCMAKE_INSTALL_BINDIR=llama_cpp/lib -DLLAVA_BUILD=OFF}"

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip

cache="${XDG_CACHE_HOME:-$HOME/.cache}/parley/llama-cpp-python/$LLAMA_CPP_PYTHON"
wheels="$cache/wheel-$(echo "$CMAKE_ARGS $(uname -m)" | sha256sum | cut -c1-12)"
sdist="$cache/llama_cpp_python-$LLAMA_CPP_PYTHON.tar.gz"
if [[ ! -f "$sdist" ]]; then
  .venv/bin/python -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_PYTHON" -d "$cache"
fi
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $LLAMA_CPP_PYTHON (about 7 minutes on 2 cores, once)"
  .venv/bin/python -m pip wheel --quiet --no-deps --no-cache-dir "$sdist" -w "$wheels"
fi
wheel="$(ls "$wheels"/llama_cpp_python-*.whl)"
.venv/bin/python -m pip install --quiet "$wheel"  # its dependencies
.venv/bin/python -m pip install --quiet --force-reinstall --no-deps "$wheel"  # over any other build of it
missing=()
for variant in $LLAMA_CPU_VARIANTS; do
  [[ -f "$cache/variants/libggml-cpu-$variant.so" ]] || missing+=("ggml-cpu-$variant")
done
if [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" && ${#missing[@]} -gt 0 ]]; then
  echo "building CPU backends ${missing[*]} (about 25 s each)"
  work="$(mktemp -d)" && tar -xzf "$sdist" -C "$work" --strip-components=1
  cmake -S "$work/vendor/llama.cpp" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_COMMON=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
    >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
  cmake --build "$work/build" -j "$(nproc)" --target "${missing[@]}" >>"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; exit 1; }
  mkdir -p "$cache/variants" && cp "$work"/build/bin/libggml-cpu-*.so "$cache/variants/"
  rm -rf "$work"
fi
lib="$(.venv/bin/python -c 'import pathlib, llama_cpp; print(pathlib.Path(llama_cpp.__file__).parent / "lib")')"
for variant in $LLAMA_CPU_VARIANTS; do
  [[ ! -f "$cache/variants/libggml-cpu-$variant.so" ]] || cp "$cache/variants/libggml-cpu-$variant.so" "$lib/"
done
.venv/bin/python -m pip install --quiet -e ".[models,test,mlx]"
echo "parley installed in .venv"
