"""The ASGI application: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import __version__
from .api.anthropic.batch_answer import answer as batch_answer
from .api.anthropic.batches import router as batches_router
from .api.anthropic.router import router as anthropic_router
from .api.auth import ApiKeyMiddleware
from .api.errors import install_error_handlers
from .api.middleware import RequestContextMiddleware
from .api.models import router as models_router
from .api.openai.router import router as openai_router
from .api.playground import router as playground_router
from .api.responses.router import router as responses_router
from .models.registry import ModelRegistry
from .services import Services
from .services.batches.store import BatchStore
from .services.batches.worker import BatchWorker
from .services.metrics import Metrics
from .services.responses.store import ResponseStore
from .services.signatures import ThinkingSigner, load_or_create_key
from .settings import Settings, api_keys

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _start_batches(services: Services) -> BatchWorker | None:
    """Open the batch store and resume its unfinished batches; without a usable data dir, batches are off."""
    settings = services.settings
    try:
        store = BatchStore(settings.data_dir)
    except (OSError, sqlite3.Error):
        log.exception("Message Batches are off: cannot open the data directory %s", settings.data_dir)
        return None
    # The worker runs each request through the Messages API's own code, handed down as a callable.
    worker = BatchWorker(store, functools.partial(batch_answer, services=services), settings.parallel,
                         settings.batch_retention_days)
    services.batch_store, services.batch_worker = store, worker
    worker.start()
    return worker


def _open_response_store(services: Services) -> None:
    """Stored responses share the batches' database; without a usable data dir, `store` is refused."""
    settings = services.settings
    try:
        services.response_store = ResponseStore(settings.data_dir, settings.response_retention_days,
                                                int(settings.response_store_size))
    except (OSError, sqlite3.Error):
        log.exception("stored responses are off: cannot open the data directory %s", settings.data_dir)
        services.response_store = None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    registry = ModelRegistry(settings)
    metrics = Metrics()
    metrics.watch_engines(lambda: registry.loaded)
    registry.on_generation = metrics.generation
    keys = api_keys(settings)
    if settings.host not in LOOPBACK and not keys:
        log.warning("listening on %s without an API key: anyone who can reach it can use it (--api-key)",
                    settings.host)
    key = load_or_create_key(settings.signing_key, settings.cache_dir / "signing.key")
    services = Services(settings, registry, metrics, ThinkingSigner(key))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.preload:
            await registry.runner(settings.default_model)
        worker = _start_batches(services)
        _open_response_store(services)
        yield
        tasks = list(services.response_tasks.values())
        for task in tasks:  # background responses end as cancelled
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if services.response_store is not None:
            services.response_store.close()
        if worker is not None:
            await worker.stop()  # running batch requests stay pending, to run after the restart
            if services.batch_store is not None:
                services.batch_store.close()
        registry.close()

    app = FastAPI(title="parley", version=__version__, lifespan=lifespan)
    app.state.services = services  # the only write to app.state; read through parley.services.services()
    install_error_handlers(app)
    # Outermost last: CORS (preflights need no key), then request id / metrics / body limit, then the key.
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, on_response=metrics.request,
                       path_limits={"/v1/messages/batches": max(settings.max_batch_bytes, settings.max_body_bytes)})
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["request-id"])
    for prefix in ("", "/anthropic", "/openai"):  # either SDK's base URL, with or without an API prefix
        app.include_router(models_router, prefix=prefix)
    app.include_router(anthropic_router)
    app.include_router(anthropic_router, prefix="/anthropic")
    app.include_router(batches_router)
    app.include_router(batches_router, prefix="/anthropic")
    app.include_router(openai_router)
    app.include_router(openai_router, prefix="/openai")
    app.include_router(responses_router)
    app.include_router(responses_router, prefix="/openai")
    app.include_router(playground_router)  # the web playground, at / and /playground

    @app.get("/health")
    async def health() -> dict[str, Any]:
        loaded = registry.loaded
        return {
            "status": "ok",
            # What a client needs to find and configure itself (`parley launch`, the playground).
            "server": "parley",
            "version": __version__,
            "default_model": settings.default_model,
            "api_key_required": bool(keys),
            "models": {model_id: r.health() for model_id, r in loaded.items()},
        }

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
