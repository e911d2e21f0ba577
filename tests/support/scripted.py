"""An engine that replays a fixed script of text pieces, for tests of what the real engine cannot be
made to do on demand (fail mid-stream, split text at chosen points)."""

from __future__ import annotations

import threading

from parley.core.params import SamplingParams
from parley.core.template import ChatTemplate
from parley.engines.base import Done, Generation, Sampled, Sink, Started
from parley.engines.features import EngineFeatures
from parley.errors import EngineError

END = -1


class _Run:
    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


class ScriptedEngine:
    """Each script item is a piece of output bytes (one "token"); `fail_after` raises an engine error
    after that many pieces, as a failed llama_decode would."""

    n_slots = 1
    features = EngineFeatures(forced_reasoning_close=True, lazy_grammar=True, logprobs=True)  # it replays

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

    def check(self, prompt: list[int], params: SamplingParams) -> None:
        pass

    def submit(self, prompt: list[int], params: SamplingParams, sink: Sink) -> Generation:
        run = _Run()
        threading.Thread(target=self._replay, args=(params, sink, run), daemon=True).start()
        return run

    def _replay(self, params: SamplingParams, sink: Sink, run: _Run) -> None:
        sink(Started(cached_tokens=0))
        for i in range(min(len(self._pieces), params.max_tokens)):
            if run.cancelled.is_set():
                break
            if self._fail_after is not None and i >= self._fail_after:
                sink(EngineError("the engine failed"))
                return
            sink(Sampled(i))
        else:
            if len(self._pieces) < params.max_tokens:
                sink(Sampled(END))
        sink(Done())

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass
