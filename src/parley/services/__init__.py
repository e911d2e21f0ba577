"""What the server holds between requests, typed: `Services`, built once by `create_app` and kept as
`app.state.services`. Routes reach it through `services(request)`, never through `app.state` itself, so one
dataclass says everything a route may use, and a missing or misspelled attribute is a type error, not a 500.

Below the API layer: nothing here knows a wire format (the batch worker is handed its `answer`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request

from ..models.registry import ModelRegistry
from ..settings import Settings
from .batches.store import BatchStore
from .batches.worker import BatchWorker
from .metrics import Metrics
from .responses.store import ResponseStore
from .signatures import ThinkingSigner


@dataclass
class Services:
    settings: Settings
    registry: ModelRegistry
    metrics: Metrics
    signer: ThinkingSigner  # signs the thinking blocks we send, verifies the ones sent back
    # Set when a shutdown's grace period is over: streams end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Background responses running, by id: cancelled by DELETE / cancel, awaited at shutdown.
    response_tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # Opened at start-up (the app's lifespan), on the data directory; None until then, or when it cannot be
    # opened: the feature is off and its routes say so.
    batch_store: BatchStore | None = None
    batch_worker: BatchWorker | None = None
    response_store: ResponseStore | None = None


def app_services(app: Starlette) -> Services:
    """The app's services: the one read of `app.state` (for code that holds the app, not a request)."""
    return app.state.services


def services(request: Request) -> Services:
    """The services of the app serving `request`. Works as `Depends(services)`, but routes call it directly:
    FastAPI runs a plain-function dependency in its thread pool, a hop per request for one attribute read."""
    return app_services(request.app)
