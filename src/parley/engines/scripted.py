"""An engine that replays a fixed script of text pieces, for tests of what the real engine cannot be
made to do on demand (fail mid-stream, split text at chosen points)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ..chat.params import SamplingParams
from ..chat.template import ChatTemplate
from ..errors import EngineError

END = -1


class ScriptedEngine:
    """Each script item is a piece of output bytes (one "token"); `fail_after` raises an engine error
    after that many pieces, as a failed llama_decode would."""

    def __init__(self, pieces: list[bytes], fail_after: int | None = None, n_ctx: int = 4096) -> None:
        self._pieces = pieces
        self._fail_after = fail_after
        self.n_ctx = n_ctx
        self.chat_template = ChatTemplate(None)

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def token_bytes(self, token: int) -> bytes:
        return self._pieces[token]

    def is_end_of_generation(self, token: int) -> bool:
        return token == END

    def check_grammar(self, grammar) -> None:
        pass

    def generate(self, prompt: list[int], params: SamplingParams, cancelled: threading.Event) -> Iterator[int]:
        for i in range(min(len(self._pieces), params.max_tokens)):
            if cancelled.is_set():
                return
            if self._fail_after is not None and i >= self._fail_after:
                raise EngineError("the engine failed")
            yield i
        if len(self._pieces) < params.max_tokens:
            yield END

    def close(self) -> None:
        pass
