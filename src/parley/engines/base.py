"""What the chat core needs from an inference engine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol

from ..chat.params import GrammarConstraint, SamplingParams
from ..chat.template import ChatTemplate


class Engine(Protocol):
    """A loaded model. Synchronous; used by one generation at a time (the runner serialises)."""

    n_ctx: int
    chat_template: ChatTemplate

    def tokenize(self, text: str) -> list[int]: ...

    def token_bytes(self, token: int) -> bytes: ...

    def is_end_of_generation(self, token: int) -> bool: ...

    def check_grammar(self, grammar: GrammarConstraint) -> None:
        """Raise InvalidRequestError when the engine cannot compile `grammar`."""
        ...

    def generate(self, prompt: list[int], params: SamplingParams, cancelled: threading.Event) -> Iterator[int]:
        """Yield sampled tokens (an end-of-generation token last) until done, `max_tokens`,
        the context's end, or `cancelled` is set — checked before every decode step."""
        ...

    def close(self) -> None: ...
