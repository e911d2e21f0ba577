"""Conversation → prompt tokens → engine tokens → text with stop rules → parsed, neutral events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from ..core.events import (
    Event,
    Finish,
    PromptCached,
    StopReason,
    TextDelta,
    ThinkingDelta,
    ThinkingEnd,
    TokenChoice,
    TokenLogprobs,
    ToolCallEnd,
    ToolCallStart,
)
from ..core.messages import Conversation
from ..core.params import GrammarConstraint, SamplingParams
from ..core.request import ChatRequest, OutputFormat
from ..core.template import ChatTemplate, template_supports_tools
from ..core.thinking import CLOSE, Thinking, budget_for, starts_in_reasoning, template_switches
from ..engines.base import Engine, Sampled, Started
from ..engines.features import fit_to_engine
from ..engines.runner import Admission, EngineRunner
from ..errors import PromptTooLongError
from ..grammar.json_output import after_reasoning, answer_gbnf
from ..parsers.registry import reasoning_parser_for
from ..parsers.think import ReasoningFormat
from .answer_schema import with_answer_schema
from .call_check import CallChecker
from .decode import Utf8Stream
from .stops import StopMatcher
from .tool_fallback import with_tools_in_text
from .tools import ToolPlan


@dataclass(frozen=True)
class RenderPlan:
    """Everything that decides the prompt text, beyond the conversation itself."""

    tools: ToolPlan
    thinking: Thinking
    output: OutputFormat = OutputFormat()
    reasoning_parser: str | None = None  # a registry name; None: the one the template implies

    @classmethod
    def of(cls, request: ChatRequest, template: ChatTemplate, grammar_in_auto: bool = True) -> RenderPlan:
        """The plan for `request` on a model with this chat template, and the parsers chosen for it."""
        tools = ToolPlan(request.conversation.tools, request.tool_choice, template.source, grammar_in_auto,
                         template.tool_parser)
        return cls(tools, request.thinking, request.output, template.reasoning_parser)

    @property
    def reasoning(self) -> ReasoningFormat:
        return reasoning_parser_for(self.tools.template_source, self.reasoning_parser)

    @property
    def reasons(self) -> bool:
        return self.reasoning.reasons

    def conversation(self, conversation: Conversation) -> Conversation:
        """No tools that may not be called; tools as text for templates that know none."""
        if not self.tools.active:
            conversation = dataclasses.replace(conversation, tools=[])
        if not template_supports_tools(self.tools.template_source):
            conversation = with_tools_in_text(conversation)
        if (schema := self.output.answer_schema) is not None:
            conversation = with_answer_schema(conversation, schema)
        return conversation

    def template_vars(self) -> dict[str, Any]:
        return template_switches(self.thinking) if self.reasons else {}


def render_text(engine: Engine, conversation: Conversation, plan: RenderPlan) -> str:
    """The prompt text, with the model's chat template (blocking: call it off the event loop)."""
    return engine.chat_template.render(plan.conversation(conversation), **plan.template_vars())


async def render_prompt(runner: EngineRunner, conversation: Conversation, plan: RenderPlan) -> tuple[str, list[int]]:
    """Render with the model's chat template and tokenize, off the event loop."""
    engine = runner.engine

    def work() -> tuple[str, list[int]]:
        text = render_text(engine, conversation, plan)
        return text, engine.tokenize(text)

    return await asyncio.to_thread(work)


@dataclass
class PreparedChat:
    """A request that passed every check that can fail before a response starts."""

    prompt_tokens: list[int]
    params: SamplingParams
    engine: Engine
    admission: Admission
    plan: RenderPlan
    thinking_opened: bool  # the prompt ends inside an open `<think>`

    async def events(self) -> AsyncIterator[Event]:
        try:
            async for event in _generate(self):
                yield event
        finally:
            self.admission.release()

    def cancel(self) -> None:
        """Give the queue place back when the events will never be read."""
        self.admission.release()


async def prepare_chat(runner: EngineRunner, request: ChatRequest, grammar_in_auto: bool = True) -> PreparedChat:
    """Render, measure and constrain one request; raises a ParleyError for anything refused before a
    response starts."""
    engine = runner.engine
    plan = RenderPlan.of(request, engine.chat_template, grammar_in_auto)
    text, prompt = await render_prompt(runner, request.conversation, plan)
    limit = engine.n_ctx
    if len(prompt) >= limit:
        raise PromptTooLongError(len(prompt), limit - 1)

    def constraint() -> GrammarConstraint | None:  # big tool sets take milliseconds to convert
        return plan.tools.grammar(answer_gbnf(request.output))

    grammar = await asyncio.to_thread(constraint)
    params = request.params
    opened = plan.reasons and starts_in_reasoning(text)
    if grammar is not None and request.output.answer_schema is not None and opened:
        grammar = after_reasoning(grammar, CLOSE)  # the reasoning stays free; the answer is held
    if grammar is not None:
        params = dataclasses.replace(params, grammar=grammar)
    if plan.reasons:
        params = dataclasses.replace(params, reasoning_budget=budget_for(plan.thinking, text, params.max_tokens))
    params = fit_to_engine(engine.features, params, runner.engine_name or "this")
    await asyncio.to_thread(engine.check, prompt, params)
    return PreparedChat(prompt, params, engine, runner.admit(), plan, opened)


class _OutputParsers:
    """Per request: reasoning first, then tool calls on the answer; also notes the calls made."""

    def __init__(self, chat: PreparedChat) -> None:
        self._think = chat.plan.reasoning.make_parser(chat.thinking_opened)
        self._show_thinking = chat.plan.thinking.enabled
        self._tools = chat.plan.tools.parser()
        self._checker = CallChecker(chat.plan.tools.tools)
        self.calls: list[str] = []  # canonical JSON of each complete call this turn
        self.repeated = False  # small models loop on their last call
        self._name = ""

    def feed(self, text: str) -> list[Event]:
        stage = self._think.feed(text) if self._think else ([TextDelta(text)] if text else [])
        return self._route(stage)

    def finish(self) -> list[Event]:
        out = self._route(self._think.finish()) if self._think else []
        return out + self._note(self._tools.finish() if self._tools else [])

    def _route(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, TextDelta):
                out += self._note(self._tools.feed(event.text) if self._tools else [event])
            elif isinstance(event, ThinkingDelta | ThinkingEnd):
                if self._show_thinking:  # a reasoning model asked not to think: its thoughts are dropped
                    out.append(event)
        return out

    def _note(self, events: list[Event]) -> list[Event]:
        for event in events:
            if isinstance(event, ToolCallStart):
                self._name = event.name
            elif isinstance(event, ToolCallEnd) and event.input is not None:
                self._checker.check(self._name, event.input)
                call = json.dumps([self._name, event.input], sort_keys=True)
                self.repeated = self.repeated or call in self.calls
                self.calls.append(call)
        return events


def _token_logprobs(engine: Engine, item: Sampled) -> TokenLogprobs:
    def choice(token: int, logprob: float) -> TokenChoice:
        raw = engine.token_bytes(token)
        return TokenChoice(raw.decode("utf-8", "replace"), raw, logprob)

    return TokenLogprobs(choice(item.token, item.logprob or 0.0), tuple(choice(t.token, t.logprob) for t in item.top))


async def _generate(chat: PreparedChat) -> AsyncIterator[Event]:
    engine = chat.engine
    utf8 = Utf8Stream()
    stops = StopMatcher(chat.params.stop)
    parsers = _OutputParsers(chat)
    produced = cached = 0
    reason: StopReason = "max_tokens"
    matched: str | None = None
    async with aclosing(chat.admission.items(chat.prompt_tokens, chat.params)) as items:
        async for item in items:
            if isinstance(item, Started):
                cached = item.cached_tokens
                yield PromptCached(cached)
                continue
            token = item.token
            produced += 1
            if engine.is_end_of_generation(token):
                reason = "end_turn"
                break
            if item.logprob is not None:
                yield _token_logprobs(engine, item)
            text, matched = stops.feed(utf8.decode(engine.token_bytes(token)))
            for event in parsers.feed(text):
                yield event
            if matched is not None:
                break
            if parsers.repeated:
                reason = "end_turn"
                break
    if matched is None:
        # The turn is over: a partial character or a held-back stop prefix is now plain text.
        text, matched = stops.feed(utf8.flush())
        for event in parsers.feed(text + ("" if matched is not None else stops.flush())):
            yield event
    for event in parsers.finish():
        yield event
    if matched is not None:
        yield Finish("stop_sequence", matched, produced, cached)
    else:
        yield Finish("tool_use" if parsers.calls and reason == "end_turn" else reason, None, produced, cached)
