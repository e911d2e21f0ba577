"""Prompt caching as the API accounts for it. parley's prefix cache re-uses any prompt prefix it holds (that is
`cache_read_input_tokens`); `cache_control` breakpoints say which prefix the client asks to have cached, and so
how much of what was computed now counts as written to the cache (`cache_creation_input_tokens`, split by ttl).

A breakpoint covers the prompt up to and including its block. To find where that is in the rendered token
prompt, the request is rendered again with a mark right after the block; the first character where the two
texts differ is the block's end, and the prompt tokens that lie wholly before it are the breakpoint's tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ...errors import InvalidRequestError
from .protocol import (
    CacheControlParam,
    MessageParam,
    RedactedThinkingBlockParam,
    TextBlockParam,
    ThinkingBlockParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
    _ConversationRequest,
)

MAX_BREAKPOINTS = 4
MARK = "\ue000"  # a private-use character: never what a template renders right after a block
MARK_NAME = "parley_cache_mark"
TTL_ORDER = ("a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block. Note that "
             "blocks are processed in the following order: `tools`, `system`, `messages`.")

Path = tuple[Any, ...]  # ("tools", i) | ("system", i) | ("messages", j) | ("messages", j, k[, n])


@dataclass(frozen=True)
class Mark:
    ttl: Literal["5m", "1h"]
    where: str
    path: Path


@dataclass(frozen=True)
class Breakpoints:
    """Token positions in the prompt: the end of the last 1h breakpoint (0 without one) and of the last one."""

    end_1h: int
    end: int

    def creation(self, cached: int) -> tuple[int, int]:
        """(1h, 5m) tokens written now, as the API bills mixed TTLs: A = the tokens read from the cache,
        B = max(A, the last 1h breakpoint), C = max(B, the last breakpoint); 1h = B - A, 5m = C - B."""
        one_hour = max(cached, self.end_1h)
        return one_hour - cached, max(one_hour, self.end) - one_hour


def _ttl(control: CacheControlParam) -> Literal["5m", "1h"]:
    return control.ttl or "5m"


def _content_marks(blocks: list[Any], where: str, path: Path) -> Iterator[Mark]:
    for k, block in enumerate(blocks):
        if isinstance(block, ToolResultBlockParam) and isinstance(block.content, list):
            yield from _content_marks(block.content, f"{where}.{k}.content", (*path, k))
        control = getattr(block, "cache_control", None)
        if isinstance(control, CacheControlParam):
            yield Mark(_ttl(control), f"{where}.{k}", (*path, k))


def _last_block(messages: list[MessageParam]) -> tuple[Path, Any] | None:
    """Where automatic caching puts its breakpoint: the last block that can carry one."""
    for j in range(len(messages) - 1, -1, -1):
        content = messages[j].content
        if isinstance(content, str):
            return ("messages", j), None
        for k in range(len(content) - 1, -1, -1):
            if not isinstance(content[k], ThinkingBlockParam | RedactedThinkingBlockParam):
                return ("messages", j, k), content[k]
    return None


def cache_marks(req: _ConversationRequest) -> list[Mark]:
    """The request's breakpoints in the API's order (tools, system, messages), validated as the API does."""
    marks = [Mark(_ttl(t.cache_control), f"tools.{i}", ("tools", i))
             for i, t in enumerate(req.tools or []) if t.cache_control is not None]
    if isinstance(req.system, list):
        marks += _content_marks(req.system, "system", ("system",))
    for j, message in enumerate(req.messages):
        if isinstance(message.content, list):
            marks += _content_marks(message.content, f"messages.{j}.content", ("messages", j))
    last = _last_block(req.messages) if req.cache_control is not None else None
    if last is not None and getattr(last[1], "cache_control", None) is None:
        marks.append(Mark(_ttl(req.cache_control), "cache_control", last[0]))
    if len(marks) > MAX_BREAKPOINTS:
        raise InvalidRequestError(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                                  f"Found {len(marks)}.")
    seen_5m = False
    for mark in marks:
        if mark.ttl == "1h" and seen_5m:
            raise InvalidRequestError(f"{mark.where}.cache_control.ttl: {TTL_ORDER}")
        seen_5m = seen_5m or mark.ttl == "5m"
    return marks


def _marked_after(blocks: list[Any], k: int) -> None:
    """Puts the mark right after block k of a content list, where that block's own rendering ends."""
    block = blocks[k]
    if isinstance(block, TextBlockParam):
        blocks[k] = block.model_copy(update={"text": block.text + MARK})
    elif isinstance(block, ToolUseBlockParam):  # calls render after the turn's text: a call of its own
        blocks.insert(k + 1, ToolUseBlockParam(type="tool_use", id=MARK_NAME, name=MARK_NAME, input={}))
    elif isinstance(block, ToolResultBlockParam):  # each result renders as a tool turn: a result of its own
        blocks.insert(k + 1, ToolResultBlockParam(type="tool_result", tool_use_id=MARK_NAME, content=MARK))
    else:  # documents, images, search results: their text is joined with the next block's
        blocks.insert(k + 1, TextBlockParam(type="text", text=MARK))


def with_mark(req: _ConversationRequest, path: Path) -> _ConversationRequest:
    """A copy of the request with the mark right after the block at `path`."""
    copy = req.model_copy(deep=True)
    if path[0] == "tools":
        mark = ToolParam(name=MARK_NAME, description="", input_schema={"type": "object"})
        copy.tools.insert(path[1] + 1, mark)  # type: ignore[union-attr]
    elif path[0] == "system":
        _marked_after(copy.system, path[1])  # type: ignore[arg-type]
    elif len(path) == 2:
        message = copy.messages[path[1]]
        message.content = message.content + MARK  # type: ignore[operator]  # a string turn
    else:
        blocks = copy.messages[path[1]].content
        for index in path[2:-1]:  # a block inside a tool result
            blocks = blocks[index].content  # type: ignore[union-attr,index]
        _marked_after(blocks, path[-1])  # type: ignore[arg-type]
    return copy


def _first_difference(a: str, b: str) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def locate(marks: list[Mark], req: _ConversationRequest, render: Callable[[_ConversationRequest], str],
           tokenize: Callable[[str], list[int]], prompt: list[int]) -> Breakpoints:
    """Where each breakpoint ends in `prompt` (the request's own tokens). A block the prompt does not show
    (tools under tool_choice none, a dropped billing line) ends where the texts stop differing: nowhere, 0."""
    text = render(req)
    ends = {"1h": 0, "5m": 0}
    for mark in marks:
        variant = render(with_mark(req, mark.path))
        if variant == text:
            continue
        offset = _first_difference(text, variant)
        # The tokens wholly before the block's end: a token that spans it belongs to what follows.
        position = _common_prefix(tokenize(text[:offset]), prompt) if offset else 0
        ends[mark.ttl] = max(ends[mark.ttl], position)
    return Breakpoints(ends["1h"], max(ends.values()))
