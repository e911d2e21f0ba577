"""Structured output, told: the system prompt says which JSON the answer must be, so that a model writes
meaningful values where the grammar only holds the shape (and `count_tokens` counts what is sent)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ..core.messages import Conversation


def answer_instruction(schema: dict[str, Any]) -> str:
    return ("Answer with only a JSON value, no other text, that is valid against this JSON Schema:\n"
            + json.dumps(schema, ensure_ascii=False))


def with_answer_schema(conversation: Conversation, schema: dict[str, Any]) -> Conversation:
    system = "\n\n".join(t for t in (conversation.system, answer_instruction(schema)) if t)
    return dataclasses.replace(conversation, system=system)
