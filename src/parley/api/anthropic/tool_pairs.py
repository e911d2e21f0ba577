"""The API's rule for tool turns: every `tool_use` is answered by a `tool_result` in the next message, and a
`tool_result` answers a `tool_use` of the message before. A prompt that breaks it is a 400 with the API's own
wording (clients such as Claude Code recognise these messages), not a template rendered around a gap.

Consecutive turns of one role count as one message, as the API joins them; system messages inside `messages`
(parley's extension, see translate.py) are passed over."""

from __future__ import annotations

from typing import Any

from ...errors import InvalidRequestError
from .protocol import MessageParam, ToolResultBlockParam, ToolUseBlockParam


def _turns(messages: list[MessageParam]) -> list[tuple[str, list[tuple[int, MessageParam]]]]:
    """User and assistant messages with their indices, consecutive ones of a role grouped."""
    turns: list[tuple[str, list[tuple[int, MessageParam]]]] = []
    for i, message in enumerate(messages):
        if message.role == "system":
            continue
        if turns and turns[-1][0] == message.role:
            turns[-1][1].append((i, message))
        else:
            turns.append((message.role, [(i, message)]))
    return turns


def _blocks(turn: list[tuple[int, MessageParam]], kind: type) -> list[tuple[int, int, Any]]:
    return [(i, j, block) for i, message in turn if not isinstance(message.content, str)
            for j, block in enumerate(message.content) if isinstance(block, kind)]


def check_tool_pairs(messages: list[MessageParam]) -> None:
    """Raises InvalidRequestError where a tool_use goes unanswered or a tool_result answers nothing."""
    turns = _turns(messages)
    offered: set[str] = set()  # the tool_use ids of the assistant turn just before
    for n, (role, turn) in enumerate(turns):
        if role == "assistant":
            uses = _blocks(turn, ToolUseBlockParam)
            offered = {block.id for _, _, block in uses}
            if uses and n + 1 < len(turns):  # a final assistant turn is a prefill: nothing can answer it yet
                answered = {block.tool_use_id for _, _, block in _blocks(turns[n + 1][1], ToolResultBlockParam)}
                missing = [(i, block.id) for i, _, block in uses if block.id not in answered]
                if missing:
                    raise InvalidRequestError(
                        f"messages.{missing[0][0]}: `tool_use` ids were found without `tool_result` blocks "
                        f"immediately after: {', '.join(m for _, m in missing)}. Each `tool_use` block must have "
                        f"a corresponding `tool_result` block in the next message.")
            continue
        for i, j, block in _blocks(turn, ToolResultBlockParam):
            if block.tool_use_id not in offered:
                raise InvalidRequestError(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block.tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` block "
                    f"in the previous message.")
        offered = set()
