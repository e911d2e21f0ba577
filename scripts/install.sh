#!/usr/bin/env bash
# Creates .venv in the repository root and installs parley with its embedded models and test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

# llama-cpp-python compiles llama.cpp here (about 9 minutes on 2 cores, then cached by pip). Its default
# native build turns on AMX on Xeons that report it, and llama_decode then segfaults inside VMs that do not
# grant AMX state; a portable AVX2 build runs everywhere and is as fast for this memory-bound decode.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF}"

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[models,test,mlx]"
echo "parley installed in .venv"
