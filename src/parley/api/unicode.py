"""Request text must be valid Unicode. JSON may spell a lone UTF-16 surrogate (`"\\ud800"`), which Python
decodes into a `str` that cannot be encoded to UTF-8: the tokenizer, the logs and the grammar compiler would
all fail on it deep inside a request. It is refused at the boundary instead, naming the field."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from ..errors import InvalidRequestError

_SURROGATE = re.compile("[\ud800-\udfff]")


def _path(parts: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in parts) or "body"


def reject_invalid_unicode(body: Any) -> Any:
    """Return `body` unchanged, or raise a 400 naming the first field (in document order) that holds a lone
    surrogate, in its value or its key.

    Walks the decoded JSON without recursion: a hostile body may nest deeply."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(body, ())]
    while stack:
        node, at = stack.pop()
        if isinstance(node, str):
            if (found := _SURROGATE.search(node)) is not None:
                raise InvalidRequestError(
                    f"{_path(at)}: string contains a lone surrogate (U+{ord(found.group()):04X}), "
                    "which is not valid Unicode")
        elif isinstance(node, dict):
            for key, value in reversed(list(node.items())):
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise InvalidRequestError(f"{_path(at)}: an object key contains a lone surrogate, "
                                              "which is not valid Unicode")
                stack.append((value, (*at, key)))
        elif isinstance(node, list):
            stack.extend((value, (*at, i)) for i, value in reversed(list(enumerate(node))))
    return body


class RequestBody(BaseModel):
    """A request body of any API: unknown fields accepted (the SDKs add new ones often), text valid Unicode."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def valid_unicode(cls, data: Any) -> Any:
        return reject_invalid_unicode(data)
