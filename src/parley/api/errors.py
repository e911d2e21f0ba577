"""Every failure → the calling API's error envelope, in one place: Anthropic's
`{"type":"error","error":{"type","message"},"request_id"}`, or OpenAI's
`{"error":{"message","type","param","code"}}` on the OpenAI routes."""

from __future__ import annotations

import logging
from contextvars import ContextVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ..errors import OverloadedError, ParleyError

log = logging.getLogger(__name__)
# The current request's id (set by the request-context middleware): on its log lines, its `request-id`
# header, and in its Anthropic error body, as the API puts it there.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                 429: "rate_limit_error", 529: "overloaded_error"}


def is_openai_path(path: str) -> bool:
    return path.startswith(("/openai/", "/v1/responses")) or path.endswith("/chat/completions")


def envelope(openai: bool, error_type: str, message: str, code: str | None = None) -> dict:
    """The error object itself, as a stream's error event carries it."""
    if openai:
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return {"type": "error", "error": {"type": error_type, "message": message}}


def exception_envelope(openai: bool, exc: Exception) -> dict:
    """A failure mid-stream: a ParleyError says what it is; anything else is an internal error."""
    if isinstance(exc, ParleyError):
        return envelope(openai, exc.error_type, exc.message, exc.code)
    return envelope(openai, "api_error", "Internal server error")


def error_body(path: str, error_type: str, message: str, code: str | None = None) -> dict:
    """An error response's body, for the API `path` belongs to; Anthropic's names the request id."""
    if is_openai_path(path):
        return envelope(True, error_type, message, code)
    body = envelope(False, error_type, message)
    if (request_id := request_id_var.get()) != "-":
        body["request_id"] = request_id
    return body


def error_response(request: Request, status: int, error_type: str, message: str,
                   headers: dict[str, str] | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, error_type, message, code), status_code=status,
                        headers=headers)


def validation_message(exc: RequestValidationError | ValidationError) -> str:
    """The one wording of a validation failure: the route's body, or a batch request's `params`."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return "Request body is not valid JSON."
    # With unions pydantic reports one error per branch; the deepest one says what is really wrong.
    worst = max(errors, key=lambda e: len(e.get("loc", ())))
    loc = [str(p) for p in worst.get("loc", ()) if p != "body" and not _is_branch_name(p)]
    message = worst.get("msg", "invalid value")
    return f"{'.'.join(loc)}: {message}" if loc else message


def _is_branch_name(part: object) -> bool:
    """Union branch labels in a pydantic error location; they mean nothing to a client."""
    return isinstance(part, str) and (part == "str" or part.endswith("_block") or "[" in part
                                      or part in {"TextBlockParam", "OtherBlockParam"})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ParleyError)
    async def parley_error(request: Request, exc: ParleyError) -> JSONResponse:
        headers = {"retry-after": "1"} if isinstance(exc, OverloadedError) else None
        if exc.status_code >= 500:
            log.error("request failed: %s", exc.message, exc_info=exc.__cause__)
        return error_response(request, exc.status_code, exc.error_type, exc.message, headers, exc.code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 400, "invalid_request_error", validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        error_type = _STATUS_TYPES.get(exc.status_code, "api_error")
        message = f"Not found: {request.method} {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return error_response(request, exc.status_code, error_type, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(request, 500, "api_error", "Internal server error")
