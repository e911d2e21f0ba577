"""The web playground: one page at `/` and `/playground` that talks to the server's own Anthropic API.

Everything ships inside the package (no build step, no CDN); the page and its assets are open paths, since only
the API calls they make need a key.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

NO_CACHE = {"Cache-Control": "no-cache"}
ASSETS = {"playground.js": "text/javascript; charset=utf-8", "playground.css": "text/css; charset=utf-8"}
PATHS = ("/", "/playground", *(f"/playground/{name}" for name in ASSETS))


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@router.get("/")
@router.get("/playground")
async def page() -> HTMLResponse:
    return HTMLResponse(_read("index.html"), headers=NO_CACHE)


@router.get("/playground/playground.js")
async def script() -> Response:
    return Response(_read("playground.js"), media_type=ASSETS["playground.js"], headers=NO_CACHE)


@router.get("/playground/playground.css")
async def stylesheet() -> Response:
    return Response(_read("playground.css"), media_type=ASSETS["playground.css"], headers=NO_CACHE)
