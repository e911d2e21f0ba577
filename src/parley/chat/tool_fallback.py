"""For chat templates that know nothing of tools: describe the tools in the system prompt and write tool
calls and results into the turns as plain text, so the model still sees them (as Ollama and llama.cpp do)."""

from __future__ import annotations

import dataclasses
import json

from ..core.messages import ChatMessage, Conversation


def _tools_prompt(conversation: Conversation) -> str:
    lines = [json.dumps({"name": t.name, "description": t.description, "parameters": t.input_schema},
                        ensure_ascii=False) for t in conversation.tools]
    return (
        "You can call these tools:\n" + "\n".join(lines) + "\n\n"
        'To call a tool, answer with only a JSON object: {"name": <tool name>, "arguments": <arguments object>}'
    )


def _as_text(message: ChatMessage) -> ChatMessage:
    if message.role == "tool":
        return ChatMessage("user", f"Result of {message.name or 'the tool'}:\n{message.content}")
    if message.tool_calls:
        calls = "\n".join(json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False)
                          for c in message.tool_calls)
        return ChatMessage(message.role, "\n".join(t for t in (message.content, calls) if t))
    return message


def with_tools_in_text(conversation: Conversation) -> Conversation:
    messages: list[ChatMessage] = []
    for message in map(_as_text, conversation.messages):
        if messages and messages[-1].role == message.role:  # tool results next to user text
            message = ChatMessage(message.role, messages.pop().content + "\n\n" + message.content)
        messages.append(message)
    system = "\n\n".join(s for s in (conversation.system, _tools_prompt(conversation) if conversation.tools else "")
                         if s)
    return dataclasses.replace(conversation, messages=messages, system=system or None, tools=[])
