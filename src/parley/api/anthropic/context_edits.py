"""Context editing (`context_management.edits`, beta context-management-2025-06-27), applied to the request's
messages before rendering, as the API documents it:

- `clear_thinking_20251015` drops the thinking blocks of all but the `keep` most recent assistant turns that
  have any (default: keep 1; `"all"` keeps every one). Only with thinking enabled; listed first.
- `clear_tool_uses_20250919`, once the prompt passes `trigger` (default 100,000 input tokens; or a number of
  tool uses), replaces the results of the oldest tool uses with a placeholder, keeping the `keep` most recent
  (default 3) and those of `exclude_tools`; `clear_tool_inputs` also empties their inputs (all, or those of the
  tools named); with `clear_at_least`, nothing is cleared unless that many input tokens would be.
- `compact_20260112` (summarizing) is accepted while the prompt is below its trigger (default 150,000), where
  it does nothing; past it, a 400: parley does not summarize.

Token counts come from `count`, which renders and tokenizes a request as `/v1/messages` would, so the
`cleared_input_tokens` reported are what the prompt really lost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidRequestError
from .protocol import (
    ClearThinkingEditParam,
    ClearToolUsesEditParam,
    CompactEditParam,
    RedactedThinkingBlockParam,
    ThinkingBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
    _ConversationRequest,
)

CLEARED_RESULT = "[Old tool result content cleared]"
DEFAULT_TRIGGER_TOKENS = 100_000
DEFAULT_KEEP_TOOL_USES = 3
DEFAULT_COMPACT_TRIGGER = 150_000

Request = _ConversationRequest
Counter = Callable[[Request], int]


@dataclass
class EditResult:
    request: Request  # the edited request (the original when nothing applied)
    applied_edits: list[dict[str, Any]] = field(default_factory=list)


class _Tokens:
    """The current request's token count, measured once per version of the request."""

    def __init__(self, request: Request, count: Counter) -> None:
        self.request, self._count, self._n = request, count, None

    @property
    def n(self) -> int:
        if self._n is None:
            self._n = self._count(self.request)
        return self._n

    def measure(self, request: Request) -> int:
        return self._count(request)

    def replace(self, request: Request, n: int) -> None:
        self.request, self._n = request, n


def _edits(req: Request) -> list[Any]:
    return (req.context_management.edits or []) if req.context_management is not None else []


def check_edits(req: Request, thinking_enabled: bool) -> None:
    """The rules the API checks before anything runs."""
    edits = _edits(req)
    for i, edit in enumerate(edits):
        if isinstance(edit, ClearThinkingEditParam):
            if i > 0:
                raise InvalidRequestError(f"context_management.edits.{i}: clear_thinking_20251015 must be the "
                                          "first edit when it is combined with other edits")
            if not thinking_enabled:
                raise InvalidRequestError(f"context_management.edits.{i}: clear_thinking_20251015 requires "
                                          "thinking to be enabled")


def apply_edits(req: Request, count: Counter, thinking_enabled: bool) -> EditResult:
    """Each edit in order, each measured on the request the previous ones left."""
    check_edits(req, thinking_enabled)
    tokens = _Tokens(req, count)
    applied: list[dict[str, Any]] = []
    for edit in _edits(req):
        if isinstance(edit, ClearThinkingEditParam):
            record = _clear_thinking(edit, tokens)
        elif isinstance(edit, ClearToolUsesEditParam):
            record = _clear_tool_uses(edit, tokens)
        else:
            _check_compact(edit, tokens)
            record = None
        if record is not None:
            applied.append(record)
    return EditResult(tokens.request, applied)


# --- clear_thinking_20251015 --------------------------------------------------------------------------------------

def _assistant_turns(req: Request) -> list[list[int]]:
    """Indices of assistant messages, grouped by turn: a turn goes on through user messages that only carry
    tool results (a tool loop), and ends at a user message of its own."""
    turns: list[list[int]] = []
    open_turn = False
    for j, message in enumerate(req.messages):
        if message.role == "assistant":
            if not open_turn:
                turns.append([])
            turns[-1].append(j)
            open_turn = True
        elif message.role == "user":
            content = message.content
            only_results = isinstance(content, list) and bool(content) and all(
                isinstance(b, ToolResultBlockParam) for b in content)
            open_turn = open_turn and only_results
    return turns


def _is_thinking(block: Any) -> bool:
    return isinstance(block, ThinkingBlockParam | RedactedThinkingBlockParam)


def _clear_thinking(edit: ClearThinkingEditParam, tokens: _Tokens) -> dict[str, Any] | None:
    keep = edit.keep
    if keep == "all" or (keep is not None and keep.type == "all"):
        return None
    n_keep = 1 if keep is None else keep.value  # type: ignore[union-attr]
    req = tokens.request
    thinking_turns = [turn for turn in _assistant_turns(req) if any(
        isinstance(req.messages[j].content, list) and any(map(_is_thinking, req.messages[j].content))
        for j in turn)]
    cleared = thinking_turns[:max(0, len(thinking_turns) - n_keep)]
    if not cleared:
        return None
    edited = req.model_copy(deep=True)
    for j in (j for turn in cleared for j in turn):
        message = edited.messages[j]
        if isinstance(message.content, list):
            message.content = [b for b in message.content if not _is_thinking(b)]
    before = tokens.n
    after = tokens.measure(edited)
    tokens.replace(edited, after)
    return {"type": "clear_thinking_20251015", "cleared_thinking_turns": len(cleared),
            "cleared_input_tokens": before - after}


# --- clear_tool_uses_20250919 -------------------------------------------------------------------------------------

def _tool_uses(req: Request) -> list[tuple[int, int, ToolUseBlockParam]]:
    return [(j, k, block) for j, message in enumerate(req.messages) if message.role == "assistant"
            and isinstance(message.content, list)
            for k, block in enumerate(message.content) if isinstance(block, ToolUseBlockParam)]


def _clears_input(edit: ClearToolUsesEditParam, name: str) -> bool:
    option = edit.clear_tool_inputs
    return name in option if isinstance(option, list) else bool(option)


def _clear_tool_uses(edit: ClearToolUsesEditParam, tokens: _Tokens) -> dict[str, Any] | None:
    req = tokens.request
    uses = _tool_uses(req)
    trigger = edit.trigger
    if trigger is not None and trigger.type == "tool_uses":
        if len(uses) <= trigger.value:
            return None
    elif tokens.n <= (trigger.value if trigger is not None else DEFAULT_TRIGGER_TOKENS):
        return None
    excluded = set(edit.exclude_tools or [])
    candidates = [use for use in uses if use[2].name not in excluded]
    n_keep = edit.keep.value if edit.keep is not None else DEFAULT_KEEP_TOOL_USES
    cleared = candidates[:max(0, len(candidates) - n_keep)]
    if not cleared:
        return None
    ids = {block.id for _, _, block in cleared}
    edited = req.model_copy(deep=True)
    for j, k, block in cleared:
        if _clears_input(edit, block.name):
            edited.messages[j].content[k] = block.model_copy(update={"input": {}})  # type: ignore[index]
    for message in edited.messages:
        if message.role == "user" and isinstance(message.content, list):
            message.content = [b.model_copy(update={"content": CLEARED_RESULT, "is_error": None})
                               if isinstance(b, ToolResultBlockParam) and b.tool_use_id in ids else b
                               for b in message.content]
    before = tokens.n
    after = tokens.measure(edited)
    if edit.clear_at_least is not None and before - after < edit.clear_at_least.value:
        return None  # the API clears nothing rather than less than asked
    tokens.replace(edited, after)
    return {"type": "clear_tool_uses_20250919", "cleared_tool_uses": len(cleared),
            "cleared_input_tokens": before - after}


# --- compact_20260112 ---------------------------------------------------------------------------------------------

def _check_compact(edit: CompactEditParam, tokens: _Tokens) -> None:
    trigger = edit.trigger.value if edit.trigger is not None else DEFAULT_COMPACT_TRIGGER
    if tokens.n > trigger:
        raise InvalidRequestError(f"context_management: compact_20260112 would summarize this prompt "
                                  f"({tokens.n} input tokens > trigger {trigger}); this server does not "
                                  "summarize context")
