"""Pick and load llama.cpp's CPU backend at run time: the best variant this CPU and OS can run.

scripts/install.sh builds ggml with GGML_BACKEND_DL: a portable base `libggml-cpu.so` plus variants
`libggml-cpu-<level>.so` (haswell, icelake, ...), each compiled for one instruction-set level. Every variant
exports `ggml_backend_score()`: 0 when this CPU lacks one of its instructions, else higher for more of them.
ggml's own loader trusts CPUID alone; a VM can report AMX without granting its register state, so a variant
that needs AMX is taken only once the kernel grants it (arch_prctl). A build without variants (the CPU backend
linked in) needs nothing loaded.

`PARLEY_CPU_BACKEND=<level>` (or `base`) forces one, e.g. to compare them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from pathlib import Path

log = logging.getLogger("parley.llamacpp")

PREFIX, SUFFIX = "libggml-cpu", ".so"
NEEDS_AMX = ("sapphirerapids",)
_lock = threading.Lock()
_loaded: str | None = None


def lib_dir() -> Path:
    import llama_cpp

    return Path(llama_cpp.__file__).parent / "lib"


def variants(directory: Path) -> dict[str, Path]:
    """{level: path} of the CPU variants in `directory` ("base" for the portable one)."""
    found = {}
    for path in directory.glob(f"{PREFIX}*{SUFFIX}"):
        name = path.name[len(PREFIX):-len(SUFFIX)]
        if name == "":
            found["base"] = path
        elif name.startswith("-"):
            found[name[1:]] = path
    return found


def score(path: Path) -> int:
    """The variant's own verdict on this CPU (0: it cannot run here)."""
    try:
        fn = ctypes.CDLL(str(path)).ggml_backend_score
    except (OSError, AttributeError):
        return 0
    fn.restype = ctypes.c_int
    return int(fn())


def amx_granted() -> bool:
    """Whether the kernel lets this process use AMX tile data (Linux asks for it per process)."""
    if not sys.platform.startswith("linux"):
        return False
    arch_prctl, req_xcomp_perm, xfeature_xtiledata = 158, 0x1023, 18
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(arch_prctl, req_xcomp_perm, xfeature_xtiledata) == 0


def choose(found: dict[str, Path], forced: str | None = None) -> str:
    """The level to load: `forced` if given, else the highest-scoring variant this machine can run."""
    if forced:
        if forced not in found:
            raise RuntimeError(f"PARLEY_CPU_BACKEND={forced}: no such CPU backend (have: {', '.join(sorted(found))})")
        return forced
    best, best_score = "base", 0
    for name, path in found.items():
        if name == "base" or (name in NEEDS_AMX and not amx_granted()):
            continue
        s = score(path)
        if s > best_score:
            best, best_score = name, s
    if best == "base" and "base" not in found:
        raise RuntimeError(f"no CPU backend in {sorted(found)} runs on this CPU")
    return best


def ensure_loaded() -> str:
    """Register a CPU backend once per process, before any model loads; its level ("built-in" if linked)."""
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        # ggml as libllama links it: the wheel holds copies, not links, of libggml.so and libggml.so.0, so
        # llama_cpp._ggml's libggml.so would be a second ggml with its own (empty) backend registry.
        from llama_cpp.llama_cpp import _lib as libggml

        libggml.ggml_backend_reg_count.restype = ctypes.c_size_t
        if libggml.ggml_backend_reg_count() > 0:
            _loaded = "built-in"
            return _loaded
        found = variants(lib_dir())
        name = choose(found, os.environ.get("PARLEY_CPU_BACKEND") or None)
        libggml.ggml_backend_load.restype = ctypes.c_void_p
        libggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
        if not libggml.ggml_backend_load(str(found[name]).encode()):
            raise RuntimeError(f"llama.cpp could not load its CPU backend {found[name]}")
        log.info("CPU backend: %s (of %s)", name, ", ".join(sorted(found)))
        _loaded = name
        return _loaded
