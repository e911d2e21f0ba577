"""The registry: a public name (or alias) → a model file → a loaded engine, loaded on first use.

At most `max_loaded_models` stay loaded (the least recently used idle one makes room) and an idle one may expire
after `model_ttl_seconds`. A request takes its runner before it is admitted to the runner's queue (the prompt is
rendered in between), so a model taken out of service leaves `loaded` at once but is closed only when it is idle
and has not been handed out for a grace period: an engine is never freed under a request that holds it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engines.base import Engine
from ..engines.formats.facts import CorruptModelError, ModelFacts, served_context
from ..engines.isolated import EngineSpec, IsolatedEngine
from ..engines.registry import FORMATS, EngineKind, engine_for
from ..engines.runner import EngineRunner, GenerationStats
from ..errors import InvalidRequestError, NotFoundError
from ..settings import Settings
from .config import ModelsConfig, load_config
from .discovery import ModelEntry, discover, file_entry, hf_cache_dir, searched_places
from .hub import download, split_hf_id

log = logging.getLogger(__name__)

GRACE_SECONDS = 10.0  # longer than any prompt render between taking a runner and being admitted
TICK_SECONDS = 0.5  # how often idle expiry and deferred closes are checked


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.config: ModelsConfig = load_config(settings.config)
        self._hf_root = hf_cache_dir(settings.hf_cache_dir)
        self._runners: dict[str, EngineRunner] = {}
        self._used: dict[str, float] = {}  # monotonic time last handed out or seen busy
        self._pinned: set[str] = set()  # registered engines: cannot be reloaded, so never unloaded
        self._retired: list[tuple[EngineRunner, float]] = []  # out of service, closed once surely unused
        self._loading: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kinds: dict[str, str] = {}  # loaded model → its engine's name
        self._headers: dict[tuple[Path, int, int], ModelFacts | str] = {}
        self._sweeper: asyncio.Task[None] | None = None
        # Told about every finished generation (model id, figures): the metrics hook.
        self.on_generation: Callable[[str, GenerationStats], None] | None = None

    # -- what can be served --------------------------------------------------------------------------------

    def inspect(self, entry: ModelEntry) -> ModelFacts | str:
        """The model's header facts, or why its file is unusable; cached per file version."""
        if entry.path is None:
            return "no file"
        try:
            st = entry.path.stat()
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
        key = (entry.path, st.st_size, st.st_mtime_ns)
        try:
            kind = self.engine_of(entry)
        except ValueError as exc:  # --engine or the model's config names an engine for another format
            return str(exc)
        if (reason := kind.unavailable()) is not None:
            return reason
        if key not in self._headers:
            try:
                self._headers[key] = FORMATS[entry.format].describe(entry.path)
            except CorruptModelError as exc:
                log.warning("skipping %s: %s", entry.path, exc)
                self._headers[key] = str(exc)
        return self._headers[key]

    def served_shape(self, entry: ModelEntry) -> tuple[int | None, str | None]:
        """(the context it is or would be served with, its chat template source), from the loaded engine or,
        unloaded, from the settings and the model's header; None where the header cannot tell."""
        canonical = entry.target or entry.id
        if (runner := self._runners.get(canonical)) is not None:
            return runner.engine.n_ctx, runner.engine.chat_template.source
        facts = self.inspect(entry)
        if isinstance(facts, str):
            return None, None
        own = self.config.overrides(canonical)
        asked = int(own.get("n_ctx", self._settings.n_ctx))
        scaling = float(own.get("rope_scaling_factor", self._settings.rope_scaling_factor))
        if self.engine_of(entry).name != "llamacpp":  # rope scaling is llama.cpp's setting
            scaling = 1.0
        return served_context(asked, facts.context_length, scaling), facts.chat_template

    def parser_names(self, entry: ModelEntry) -> tuple[str | None, str | None]:
        """(tool parser, reasoning parser) by name, as the loaded model has them or, unloaded, as it would;
        None: the chat template's."""
        canonical = entry.target or entry.id
        if (runner := self._runners.get(canonical)) is not None:
            template = runner.engine.chat_template
            return template.tool_parser, template.reasoning_parser
        return self._parser_names(self.config.overrides(canonical))

    def _parser_names(self, own: dict[str, Any]) -> tuple[str | None, str | None]:
        """A model's own `tool_parser` / `reasoning_parser` beat --tool-parser / --reasoning-parser."""
        s = self._settings
        return own.get("tool_parser") or s.tool_parser, own.get("reasoning_parser") or s.reasoning_parser

    def engine_of(self, entry: ModelEntry) -> EngineKind:
        """The engine that serves this model: its config's `engine`, else --engine, else the first installed
        one for its format. Raises ValueError when the one asked for serves another format."""
        own = self.config.overrides(entry.target or entry.id).get("engine")
        return engine_for(entry.format, str(own or self._settings.engine))

    def inventory(self) -> list[tuple[ModelEntry, ModelFacts | str]]:
        """Every discovered model (aliases aside) with its header facts or what is wrong with it."""
        s = self._settings
        entries = discover(s.models, s.models_dir, self._hf_root)
        entries.sort(key=lambda e: e.id != s.default_model)  # stable: the default first
        return [(e, self.inspect(e)) for e in entries]

    def _models(self) -> list[ModelEntry]:
        # Embedded models are checksummed when assembled; their first part alone need not hold the header.
        return [e for e, info in self.inventory() if e.source == "embedded" or not isinstance(info, str)]

    def catalogue(self) -> list[ModelEntry]:
        """Re-scanned on each call so that files dropped into the models dir appear; corrupt files are left
        out. Exact aliases follow the models (patterns cannot be listed)."""
        models = self._models()
        aliases = []
        for name, target in self.config.listable_aliases().items():
            if (entry := _match(models, target)) and not _match(models, name):
                aliases.append(entry.as_alias(name))
        return models + aliases

    def _route(self, name: str) -> tuple[str, ModelEntry | None, bool]:
        """(the canonical id, its entry when on disk, whether an alias led there). Exact ids win."""
        models = self._models()
        if entry := _match(models, name):
            return entry.id, entry, False
        target = self.config.alias_target(name)
        if target is None:
            return name, None, False
        entry = _match(models, target)
        return (entry.id if entry else target), entry, True

    def resolve(self, model_id: str) -> ModelEntry:
        canonical, entry, via_alias = self._route(model_id)
        if entry is None:
            raise NotFoundError(self._missing(model_id, canonical))
        return entry.as_alias(model_id) if via_alias else entry

    def _missing(self, model_id: str, canonical: str, why: str | None = None) -> str:
        s = self._settings
        what = f"model '{model_id}'" + (f" (alias of '{canonical}')" if canonical != model_id else "")
        corrupt = [f"{e.path.name} is not usable: {info}" for e, info in self.inventory()
                   if e.id == canonical and isinstance(info, str)]
        log.info("%s was not found; searched %s", what, searched_places(s.models, s.models_dir, self._hf_root))
        places = searched_places(s.models, s.models_dir, self._hf_root, paths=False)
        parts = [f"{what} was not found; searched {places}", *corrupt, *([why] if why else [])]
        return "; ".join(parts)

    # -- loaded models -------------------------------------------------------------------------------------

    @property
    def loaded(self) -> dict[str, EngineRunner]:
        return dict(self._runners)

    async def runner(self, model_id: str) -> EngineRunner:
        """The loaded model, loading (or downloading) it off the event loop on first use."""
        self._start_sweeper()
        if runner := self._take(model_id):
            return runner
        # Scanning the disk (and reading new files' headers) must not stall requests to loaded models.
        canonical, entry, _ = await asyncio.to_thread(self._route, model_id)
        if runner := self._take(canonical):
            return runner
        lock = self._loading.setdefault(canonical, asyncio.Lock())  # per model: others keep serving
        async with lock:
            if runner := self._take(canonical):
                return runner
            asked = canonical
            if entry is None:
                entry = await self._fetch(model_id, canonical)
                canonical = entry.id  # as the HF cache now lists it: `org/repo:f.gguf` may be plain `org/repo`
                if runner := self._take(canonical):
                    return runner
            self._shrink(self._settings.max_loaded_models - 1, spare_recent=False)  # free memory first
            self._loop = asyncio.get_running_loop()  # a model's child process is read from the loop
            engine = await asyncio.to_thread(self._load, entry, canonical, asked)
            self._runners[canonical] = self._runner_for(canonical, engine)
            runner = self._take(canonical)
            assert runner is not None
            # Others that were busy before the load may be idle now.
            self._shrink(self._settings.max_loaded_models, spare_recent=True, protect=canonical)
            return runner

    async def _fetch(self, model_id: str, canonical: str) -> ModelEntry:
        if split_hf_id(canonical) is None:
            raise NotFoundError(self._missing(model_id, canonical))
        try:
            path = await asyncio.to_thread(download, canonical, self._hf_root, self._settings.hub_timeout)
        except NotFoundError as exc:
            raise NotFoundError(self._missing(model_id, canonical, exc.message)) from None
        return _match(self._models(), canonical) or file_entry(canonical, path, "hf-cache")

    def _load(self, entry: ModelEntry, canonical: str, asked: str) -> Engine:
        s = self._settings
        # [models."ID"] beats the global settings; the id as listed wins over the id as asked for.
        own = {**self.config.overrides(asked), **self.config.overrides(canonical)}
        path = entry.locate(s.cache_dir)
        try:
            kind = self.engine_of(entry)
        except ValueError as exc:
            raise InvalidRequestError(f"model '{canonical}': {exc}") from None
        if (reason := kind.unavailable()) is not None:
            raise InvalidRequestError(f"model '{canonical}' cannot be loaded: {reason}")
        log.info("loading %s from %s with %s %s", canonical, path, kind.name, own or "")
        setting = {"vllm": s.vllm_args, **{name: getattr(s, name) for name in type(s).model_fields}}
        options = kind.options(lambda name: own.get(name, setting.get(name)))
        spec = EngineSpec(kind.name, path, options, s.log_level)
        if s.isolate_models and kind.isolate:
            engine: Engine = IsolatedEngine(spec, max_rss_mb=float(own.get("max_model_rss_mb", s.max_model_rss_mb)),
                                            fault_injection=s.fault_injection, name=canonical, loop=self._loop)
        else:
            engine = spec.open_engine()
        engine.chat_template.time_limit = s.render_timeout
        engine.chat_template.tool_parser, engine.chat_template.reasoning_parser = self._parser_names(own)
        self._kinds[canonical] = kind.name
        return engine

    def register_engine(self, model_id: str, engine: Engine) -> None:
        """Serve an already-built engine under `model_id` (embedding parley, tests); it is never unloaded."""
        self._runners[model_id] = self._runner_for(model_id, engine)
        self._pinned.add(model_id)

    def _runner_for(self, model_id: str, engine: Engine) -> EngineRunner:
        observe = self.on_generation
        report = (lambda stats: observe(model_id, stats)) if observe is not None else None
        return EngineRunner(engine, self._settings.max_queue, report, self._kinds.get(model_id, "registered"))

    def _take(self, name: str) -> EngineRunner | None:
        runner = self._runners.get(name)
        if runner is not None:
            self._used[name] = time.monotonic()
        return runner

    # -- unloading -----------------------------------------------------------------------------------------

    def _retire(self, name: str, why: str) -> None:
        log.info("unloading %s (%s)", name, why)
        self._retired.append((self._runners.pop(name), self._used.pop(name, 0.0)))

    def _idle_lru(self) -> list[str]:
        """Loaded models that may be unloaded (idle, not pinned), least recently used first."""
        idle = [n for n, r in self._runners.items() if n not in self._pinned and r.admitted == 0]
        return sorted(idle, key=lambda n: self._used.get(n, 0.0))

    def _shrink(self, limit: int, spare_recent: bool, protect: str | None = None) -> None:
        """Unload idle models until at most `limit` remain; busy ones are left for a later pass."""
        count = sum(n not in self._pinned for n in self._runners)
        now = time.monotonic()
        for name in self._idle_lru():
            if count <= limit:
                break
            if name == protect or (spare_recent and now - self._used.get(name, 0.0) < GRACE_SECONDS):
                continue  # just handed out: its request is probably about to be admitted
            self._retire(name, "least recently used")
            count -= 1
        self._reap()

    def _reap(self) -> None:
        now = time.monotonic()
        waiting = []
        for runner, used in self._retired:
            if runner.admitted == 0 and runner.active_generations == 0 and now - used >= GRACE_SECONDS:
                # Off the event loop: stopping a model's process takes a moment that other streams should not wait.
                threading.Thread(target=runner.close, name="parley-unload", daemon=True).start()
            else:
                waiting.append((runner, now if runner.admitted else used))
        self._retired = waiting

    def maintain(self) -> None:
        """One pass of housekeeping: idle expiry, the loaded-models limit, deferred closes."""
        now = time.monotonic()
        for name, runner in self._runners.items():
            if runner.admitted:
                self._used[name] = now  # idle time counts from when the model was last seen busy
        ttl = self._settings.model_ttl_seconds
        if ttl > 0:
            for name in self._idle_lru():
                if now - self._used.get(name, 0.0) >= ttl:
                    self._retire(name, f"idle for {ttl:g} s")
        self._shrink(self._settings.max_loaded_models, spare_recent=True)

    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.maintain()
            except Exception:  # housekeeping must never stop for good
                log.exception("model housekeeping failed")

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for runner in [*self._runners.values(), *(r for r, _ in self._retired)]:
            runner.close()
        self._runners.clear()
        self._retired.clear()


def _match(models: list[ModelEntry], name: str) -> ModelEntry | None:
    for entry in models:
        if entry.id == name:
            return entry
    parsed = split_hf_id(name)
    if parsed and parsed[1]:  # `org/repo:file.gguf` cached as the repo's only file is listed as `org/repo`
        for entry in models:
            if entry.source == "hf-cache" and entry.id == parsed[0] and entry.path and entry.path.name == parsed[1]:
                return entry
    return None
