"""Conversation → prompt tokens → engine tokens → text with stop rules → parsed, neutral events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from ..engines._bridge import Admission, EngineRunner
from ..errors import InvalidRequestError
from .decode import Utf8Stream
from .events import Event, Finish, StopReason, TextDelta, ToolCallEnd, ToolCallStart
from .messages import Conversation
from .params import SamplingParams
from .stops import StopMatcher
from .tool_fallback import template_supports_tools, with_tools_in_text
from .tools import ToolChoice, ToolPlan


def conversation_for(conversation: Conversation, plan: ToolPlan) -> Conversation:
    """What the template renders: no tools that may not be called; tools as text if it knows none."""
    if not plan.active:
        conversation = dataclasses.replace(conversation, tools=[])
    if not template_supports_tools(plan.template_source):
        conversation = with_tools_in_text(conversation)
    return conversation


async def tokenize_conversation(runner: EngineRunner, conversation: Conversation) -> list[int]:
    """Render with the model's chat template and tokenize, off the event loop."""
    engine = runner.engine

    def work() -> list[int]:
        return engine.tokenize(engine.chat_template.render(conversation))

    return await asyncio.to_thread(work)


@dataclass
class PreparedChat:
    """A request that passed every check that can fail before a response starts."""

    prompt_tokens: list[int]
    params: SamplingParams
    admission: Admission
    tools: ToolPlan

    async def events(self) -> AsyncIterator[Event]:
        try:
            async for event in _generate(self.admission, self.prompt_tokens, self.params, self.tools):
                yield event
        finally:
            self.admission.release()

    def cancel(self) -> None:
        """Give the queue place back when the events will never be read."""
        self.admission.release()


async def prepare_chat(runner: EngineRunner, conversation: Conversation, params: SamplingParams,
                       choice: ToolChoice | None = None, grammar_in_auto: bool = True) -> PreparedChat:
    engine = runner.engine
    plan = ToolPlan(conversation.tools, choice or ToolChoice(), engine.chat_template.source, grammar_in_auto)
    prompt = await tokenize_conversation(runner, conversation_for(conversation, plan))
    limit = engine.n_ctx
    if len(prompt) >= limit:
        raise InvalidRequestError(f"prompt is too long: {len(prompt)} tokens > {limit - 1} maximum")
    grammar = plan.grammar()
    if grammar is not None:
        await asyncio.to_thread(engine.check_grammar, grammar)
        params = dataclasses.replace(params, grammar=grammar)
    return PreparedChat(prompt, params, runner.admit(), plan)


async def _generate(admission: Admission, prompt: list[int], params: SamplingParams,
                    tools: ToolPlan) -> AsyncIterator[Event]:
    engine = admission._runner.engine
    utf8 = Utf8Stream()
    stops = StopMatcher(params.stop)
    parser = tools.parser()
    produced = 0
    reason: StopReason = "max_tokens"
    matched: str | None = None
    calls: list[str] = []  # canonical JSON of each complete call this turn
    repeated = False
    name = ""

    def parsed(text: str) -> list[Event]:
        nonlocal repeated, name
        events = parser.feed(text) if parser else ([TextDelta(text)] if text else [])
        for event in events:
            if isinstance(event, ToolCallStart):
                name = event.name
            elif isinstance(event, ToolCallEnd) and event.input is not None:
                call = json.dumps([name, event.input], sort_keys=True)
                repeated = repeated or call in calls  # small models loop on their last call
                calls.append(call)
        return events

    async with aclosing(admission.tokens(prompt, params)) as tokens:
        async for token in tokens:
            produced += 1
            if engine.is_end_of_generation(token):
                reason = "end_turn"
                break
            text, matched = stops.feed(utf8.decode(engine.token_bytes(token)))
            for event in parsed(text):
                yield event
            if matched is not None:
                break
            if repeated:
                reason = "end_turn"
                break
    if matched is None:
        # The turn is over: a partial character or a held-back stop prefix is now plain text.
        text, matched = stops.feed(utf8.flush())
        for event in parsed(text + ("" if matched is not None else stops.flush())):
            yield event
    for event in parser.finish() if parser else []:
        yield event
    if matched is not None:
        yield Finish("stop_sequence", matched, produced)
    else:
        yield Finish("tool_use" if calls and reason == "end_turn" else reason, None, produced)
