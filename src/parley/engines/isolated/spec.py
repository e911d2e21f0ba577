"""How to open a model: once in the child (the whole engine) and once in the API process (its vocabulary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import Engine, Vocabulary
from ..features import EngineFeatures


@dataclass(frozen=True)
class EngineSpec:
    """Picklable: it crosses into the child process, which builds the engine from it."""

    kind: str  # a name in engines/registry.py
    path: Path
    options: dict[str, Any] = field(default_factory=dict)  # the engine's constructor arguments
    log_level: str = "info"

    def _kind(self) -> Any:
        from ..registry import ENGINES

        return ENGINES[self.kind]

    def open_engine(self) -> Engine:
        return self._kind().open_engine(self.path, self.options)

    def open_vocab(self) -> Vocabulary:
        return self._kind().open_vocab(self.path)

    @property
    def features(self) -> EngineFeatures:
        return self._kind().features
