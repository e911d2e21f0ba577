"""Conversation → prompt tokens → engine tokens → text with stop rules → neutral events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from ..engines._bridge import Admission, EngineRunner
from ..errors import InvalidRequestError
from .decode import Utf8Stream
from .events import Event, Finish, StopReason, TextDelta
from .messages import Conversation
from .params import SamplingParams
from .stops import StopMatcher


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

    async def events(self) -> AsyncIterator[Event]:
        try:
            async for event in _generate(self.admission, self.prompt_tokens, self.params):
                yield event
        finally:
            self.admission.release()

    def cancel(self) -> None:
        """Give the queue place back when the events will never be read."""
        self.admission.release()


async def prepare_chat(runner: EngineRunner, conversation: Conversation, params: SamplingParams) -> PreparedChat:
    prompt = await tokenize_conversation(runner, conversation)
    limit = runner.engine.n_ctx
    if len(prompt) >= limit:
        raise InvalidRequestError(f"prompt is too long: {len(prompt)} tokens > {limit - 1} maximum")
    return PreparedChat(prompt, params, runner.admit())


async def _generate(admission: Admission, prompt: list[int], params: SamplingParams) -> AsyncIterator[Event]:
    engine = admission._runner.engine
    utf8 = Utf8Stream()
    stops = StopMatcher(params.stop)
    produced = 0
    reason: StopReason = "max_tokens"
    async with aclosing(admission.tokens(prompt, params)) as tokens:
        async for token in tokens:
            produced += 1
            if engine.is_end_of_generation(token):
                reason = "end_turn"
                break
            text, matched = stops.feed(utf8.decode(engine.token_bytes(token)))
            if text:
                yield TextDelta(text)
            if matched is not None:
                yield Finish("stop_sequence", matched, produced)
                return
    # The turn is over: a partial character or a held-back stop prefix is now plain text.
    text, matched = stops.feed(utf8.flush())
    text += "" if matched is not None else stops.flush()
    if text:
        yield TextDelta(text)
    if matched is not None:
        yield Finish("stop_sequence", matched, produced)
    else:
        yield Finish(reason, None, produced)
