"""The registry: a stable public name → a model file → a loaded engine, loaded on first use."""

from __future__ import annotations

import asyncio
import logging

from ..engines._bridge import EngineRunner
from ..engines.base import Engine
from ..engines.llamacpp import LlamaCppEngine
from ..errors import NotFoundError
from ..settings import Settings
from .discovery import ModelEntry, discover, hf_cache_dir

log = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runners: dict[str, EngineRunner] = {}
        self._loading: dict[str, asyncio.Lock] = {}

    def catalogue(self) -> list[ModelEntry]:
        """Re-scanned on each call so that files dropped into the models dir appear."""
        s = self._settings
        entries = discover(s.models, s.models_dir, hf_cache_dir(s.hf_cache_dir))
        entries.sort(key=lambda e: e.id != s.default_model)  # stable: the default first
        return entries

    def resolve(self, model_id: str) -> ModelEntry:
        for entry in self.catalogue():
            if entry.id == model_id:
                return entry
        raise NotFoundError(f"model: {model_id}")

    @property
    def loaded(self) -> dict[str, EngineRunner]:
        return dict(self._runners)

    async def runner(self, model_id: str) -> EngineRunner:
        """The loaded model, loading it (off the event loop) on first use."""
        if runner := self._runners.get(model_id):
            return runner
        entry = self.resolve(model_id)
        lock = self._loading.setdefault(model_id, asyncio.Lock())
        async with lock:
            if runner := self._runners.get(model_id):
                return runner
            engine = await asyncio.to_thread(self._load, entry)
            runner = EngineRunner(engine, self._settings.max_queue)
            self._runners[model_id] = runner
            return runner

    def register_engine(self, model_id: str, engine: Engine) -> None:
        """Serve an already-built engine under `model_id` (embedding parley, tests)."""
        self._runners[model_id] = EngineRunner(engine, self._settings.max_queue)

    def _load(self, entry: ModelEntry) -> LlamaCppEngine:
        s = self._settings
        path = entry.locate(s.cache_dir)
        log.info("loading %s from %s", entry.id, path)
        return LlamaCppEngine(path, n_ctx=s.n_ctx, n_threads=s.n_threads, n_batch=s.n_batch, min_p=s.min_p)

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
