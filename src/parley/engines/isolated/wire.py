"""What crosses the pipe between the API process and a model's child process.

API → child: one command per message — ("submit", id, prompt, params, fault), ("cancel", id),
("check", id, prompt, params), ("close",).
Child → API: a list of entries per message, whatever was ready (one decode step of every stream, usually):
plain tuples, cheaper to pickle than the engine's dataclasses.
"""

from __future__ import annotations

from ... import errors
from .. import base

STARTED, SAMPLED, DONE, FAILED, CHECKED, STATS, READY, ACCEPTED = range(8)

ErrorPayload = tuple[str, str]  # (ParleyError subclass name, message)


def encode_item(rid: int, item: base.Item) -> tuple:
    if isinstance(item, base.Sampled):
        top = tuple((t.token, t.logprob) for t in item.top)
        return (SAMPLED, rid, item.token, item.logprob, top)
    if isinstance(item, base.Started):
        return (STARTED, rid, item.cached_tokens)
    if isinstance(item, base.Done):
        return (DONE, rid)
    return (FAILED, rid, encode_error(item))


def decode_sampled(entry: tuple) -> base.Sampled:
    _, _, token, logprob, top = entry
    return base.Sampled(token, logprob, tuple(base.TokenLogprob(t, p) for t, p in top))


def encode_error(exc: BaseException) -> ErrorPayload:
    if isinstance(exc, errors.ParleyError):
        return (type(exc).__name__, exc.message)
    return ("EngineError", "generation failed")


def decode_error(payload: ErrorPayload) -> errors.ParleyError:
    name, message = payload
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, errors.ParleyError)):
        kind = errors.EngineError
    return kind(message)
