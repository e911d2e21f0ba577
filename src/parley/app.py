"""The ASGI application: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from . import __version__
from .api.anthropic.router import router as anthropic_router
from .api.anthropic.signatures import ThinkingSigner, load_or_create_key
from .api.errors import install_error_handlers
from .api.middleware import RequestContextMiddleware
from .api.models import router as models_router
from .api.openai.router import router as openai_router
from .models.registry import ModelRegistry
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    registry = ModelRegistry(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.preload:
            await registry.runner(settings.default_model)
        yield
        registry.close()

    app = FastAPI(title="parley", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    key = load_or_create_key(settings.signing_key, settings.cache_dir / "signing.key")
    app.state.signer = ThinkingSigner(key)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    for prefix in ("", "/anthropic", "/openai"):  # either SDK's base URL, with or without an API prefix
        app.include_router(models_router, prefix=prefix)
    app.include_router(anthropic_router)
    app.include_router(anthropic_router, prefix="/anthropic")
    app.include_router(openai_router)
    app.include_router(openai_router, prefix="/openai")

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        loaded = request.app.state.registry.loaded
        return {
            "status": "ok",
            "models": {
                model_id: r.health()
                for model_id, r in loaded.items()
            },
        }

    return app
