"""What the chat core needs from an inference engine, and what an engine hands back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..core.params import SamplingParams
from ..core.template import ChatTemplate
from .features import EngineFeatures


@dataclass(frozen=True)
class TokenLogprob:
    token: int
    logprob: float


@dataclass(frozen=True)
class Started:
    """The engine took the request; `cached_tokens` of its prompt come from the prefix cache."""

    cached_tokens: int


@dataclass(frozen=True)
class Sampled:
    token: int
    logprob: float | None = None  # set when the request asked for log-probabilities
    top: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Done:
    """The generation is over (end of generation, `max_tokens`, the context's end, or cancelled)."""


# A sink receives, on the engine's thread: Started, then Sampled…, then Done or the exception that ended it.
Item = Started | Sampled | Done | BaseException
Sink = Callable[[Item], None]
# An engine that hands items over in bursts (every stream's token of one decode step) may take an
# `after_delivery` attribute: a callable it calls, on the same thread, once a burst's sinks have all run, so that
# the sinks can queue cheaply and forward the whole burst at once (the model's child process does).
AfterDelivery = Callable[[], None]


class Generation(Protocol):
    def cancel(self) -> None:
        """Stop before the next decode step; the sink still gets Done."""
        ...


class Vocabulary(Protocol):
    """What rendering, counting and detokenizing need: cheap, and local to the API process."""

    chat_template: ChatTemplate

    def tokenize(self, text: str) -> list[int]: ...

    def token_bytes(self, token: int) -> bytes: ...

    def is_end_of_generation(self, token: int) -> bool: ...


class SpeaksThroughVocabulary:
    """An engine's vocabulary methods, answered by the vocabulary it holds."""

    vocab: Vocabulary

    @property
    def chat_template(self) -> ChatTemplate:
        return self.vocab.chat_template

    def tokenize(self, text: str) -> list[int]:
        return self.vocab.tokenize(text)

    def token_bytes(self, token: int) -> bytes:
        return self.vocab.token_bytes(token)

    def is_end_of_generation(self, token: int) -> bool:
        return self.vocab.is_end_of_generation(token)

    def close_reasoning_tokens(self, params: SamplingParams) -> list[int]:
        """The tokens an engine writes for the model to end its reasoning (a spent thinking budget)."""
        return self.tokenize(params.reasoning_budget.close_text)  # type: ignore[union-attr]


class Engine(Vocabulary, Protocol):
    """A loaded model that may run several generations at once (`n_slots`)."""

    n_ctx: int
    n_slots: int
    features: EngineFeatures  # checked before a request reaches the engine (features.py)

    def check(self, prompt: list[int], params: SamplingParams) -> None:
        """Raise InvalidRequestError when the engine will not run this request (a grammar it cannot compile;
        a request that crashed it before); runs before the response starts."""
        ...

    def submit(self, prompt: list[int], params: SamplingParams, sink: Sink) -> Generation:
        """Start generating (or queue until a slot frees); never blocks."""
        ...

    def stats(self) -> dict[str, int | str]:
        """Numbers for /health: slots, busy slots, cached tokens and their bound."""
        ...

    def close(self) -> None:
        """Cancel what runs, wait for it, free the model."""
        ...
