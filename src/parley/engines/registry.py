"""Every engine parley can run, by its public name: the model format it opens, whether it is installed here,
what it can do, and how to build it. The model registry, discovery, the CLI, `parley models` and `/health` read
this table instead of naming engines; an engine is a folder under engines/ plus one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .base import Engine, Vocabulary
from .features import EngineFeatures
from .formats.facts import ModelFacts
from .formats.gguf import read_gguf_facts
from .formats.hf_dir import is_hf_dir, read_hf_facts

Setting = Callable[[str], Any]  # a load setting by name: the model's own (config file) or the server's


@dataclass(frozen=True)
class ModelFormat:
    name: str
    detect: Callable[[Path], bool]
    describe: Callable[[Path], ModelFacts]  # raises CorruptModelError


GGUF = ModelFormat("gguf", lambda p: p.is_file(), read_gguf_facts)
HF_DIR = ModelFormat("hf-dir", is_hf_dir, read_hf_facts)
FORMATS = {f.name: f for f in (GGUF, HF_DIR)}


@dataclass(frozen=True)
class EngineKind:
    name: str
    format: ModelFormat
    engine_class: str  # "module:Class", imported on first use: an engine not installed costs nothing
    vocab_class: str  # "module:Class" or "module:Class.factory", called with the path: tokenizer and template only
    options: Callable[[Setting], dict[str, Any]]  # the engine class's constructor arguments
    availability: str | None = None  # "module:function" saying why the engine cannot run here (None: it can);
    # without one, the engine's package importing is enough
    isolate: bool = True  # run in a supervised child process (False: the engine isolates its own core)

    def unavailable(self) -> str | None:
        """None when the engine can run here, else why not."""
        return _unavailable(self.name, self.availability or self.engine_class.partition(":")[0])

    def open_engine(self, path: Path, options: dict[str, Any]) -> Engine:
        return _load(self.engine_class)(path, **options)

    def open_vocab(self, path: Path) -> Vocabulary:
        return _load(self.vocab_class)(path)

    @property
    def features(self) -> EngineFeatures:
        return _load(self.engine_class).features


@cache
def _unavailable(name: str, check: str) -> str | None:
    try:
        return _load(check)() if ":" in check else (importlib.import_module(check) and None)
    except ImportError as exc:
        return f"the {name} engine is not installed ({exc.name or check})"


def _load(target: str) -> Any:
    """`module:Name` or `module:Class.factory`."""
    module, _, path = target.partition(":")
    found: Any = importlib.import_module(module)
    for attr in path.split("."):
        found = getattr(found, attr)
    return found


def _llamacpp_options(get: Setting) -> dict[str, Any]:
    return {"n_ctx": int(get("n_ctx")), "rope_scaling_factor": float(get("rope_scaling_factor")),
            "n_threads": get("n_threads"), "n_batch": int(get("n_batch")),
            "min_p": float(get("min_p")), "n_slots": int(get("parallel")), "prefill_chunk": int(get("prefill_chunk")),
            "draft_max": int(get("draft_max")), "cache_ram": int(get("cache_ram")),
            "disk_cache": {"dir": str(Path(get("data_dir")) / "prompt-cache"), "max_bytes": int(get("disk_cache_size")),
                           "min_tokens": int(get("disk_cache_min_tokens"))}}


def _mlx_options(get: Setting) -> dict[str, Any]:
    return {"n_ctx": int(get("n_ctx")), "min_p": float(get("min_p")), "cache_ram": int(get("cache_ram"))}


def _vllm_options(get: Setting) -> dict[str, Any]:
    return {"n_ctx": int(get("n_ctx")), "max_num_seqs": int(get("parallel")), "min_p": float(get("min_p")),
            "vllm_args": dict(get("vllm") or {})}


ENGINES: dict[str, EngineKind] = {kind.name: kind for kind in (
    EngineKind("llamacpp", GGUF, "parley.engines.llamacpp:LlamaCppEngine",
               "parley.engines.llamacpp.vocab:LlamaCppVocab.vocab_only", _llamacpp_options),
    EngineKind("mlx", HF_DIR, "parley.engines.mlx:MlxEngine", "parley.engines.mlx:MlxVocab", _mlx_options,
               "parley.engines.mlx.vocab:mlx_available"),
    EngineKind("vllm", HF_DIR, "parley.engines.vllm:VllmEngine", "parley.engines.vllm:VllmVocab", _vllm_options,
               "parley.engines.vllm.vocab:vllm_available", isolate=False),
)}
ENGINE_CHOICES = ("auto", *ENGINES)


def engine_for(model_format: str, wanted: str = "auto") -> EngineKind:
    """The engine that serves this format: the one asked for, else the first installed one (else the first,
    whose `unavailable()` then says what to install)."""
    if wanted != "auto":
        kind = ENGINES[wanted]
        if kind.format.name != model_format:
            raise ValueError(f"the {wanted} engine serves {kind.format.name} models, not {model_format}")
        return kind
    serving = [k for k in ENGINES.values() if k.format.name == model_format]
    return next((k for k in serving if k.unavailable() is None), serving[0])
