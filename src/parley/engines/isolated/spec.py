"""How to open a model: once in the child (the whole engine) and once in the API process (its vocabulary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import Engine, Vocabulary


@dataclass(frozen=True)
class EngineSpec:
    """Picklable: it crosses into the child process, which builds the engine from it."""

    kind: str  # "llamacpp" | "mlx"
    path: Path
    options: dict[str, Any] = field(default_factory=dict)  # the engine's constructor arguments
    log_level: str = "info"

    def open_engine(self) -> Engine:
        if self.kind == "mlx":
            from ..mlx import MlxEngine

            return MlxEngine(self.path, **self.options)
        from ..llamacpp import LlamaCppEngine

        return LlamaCppEngine(self.path, **self.options)

    def open_vocab(self) -> Vocabulary:
        if self.kind == "mlx":
            from ..mlx import MlxVocab

            return MlxVocab(self.path)
        from ..llamacpp import LlamaCppVocab

        return LlamaCppVocab(self.path, vocab_only=True)
