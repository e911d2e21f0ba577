"""Lazy grammars (`tool_choice: auto`) on vLLM: a logits processor that runs inside vLLM's worker.

vLLM's structured outputs constrain from the first token; parley's lazy grammar must let free text through
until a trigger regex matches at the end of the output, then constrain from the trigger's first group on (as
llama.cpp and the MLX engine do). vLLM's structural tags trigger on literal strings and take JSON schemas, not
GBNF, so this is a per-request logits processor instead: llguidance compiles the same GBNF, is fed the text
since the trigger once it fires, and masks every token the grammar forbids from then on. The request carries
its grammar in `extra_args[EXTRA_KEY]`; requests without one are untouched.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from ..hf_vocab import HFVocab
from .grammar import EXTRA_KEY, compile_gbnf

_compiled = lru_cache(maxsize=64)(compile_gbnf)


class _Shared:
    """What every request of one model shares: the tokenizer, as text bytes and as llguidance sees it."""

    def __init__(self, path: Path, n_vocab: int) -> None:
        from llguidance import LLTokenizer

        self.vocab = HFVocab(path)
        self.n_vocab = n_vocab
        self.lltok = LLTokenizer(self.vocab.hf.backend_tokenizer.to_str(), n_vocab=n_vocab,
                                 eos_token=sorted(self.vocab.eos))


class _Request:
    """One request's state. vLLM calls it with the output ids so far (a live list) and the next logits row."""

    def __init__(self, shared: _Shared, gbnf: str, triggers: list[str]) -> None:
        from llguidance.numpy import allocate_token_bitmask

        self._shared = shared
        self._grammar = _compiled(gbnf)
        self._triggers = [re.compile(t) for t in triggers]
        self._bitmask = allocate_token_bitmask(1, shared.lltok.vocab_size)
        self._seen = 0
        self._text = b""
        self._matcher: Any = None
        self._waiting = True  # for a trigger

    def _watch(self, token: int) -> None:
        from llguidance import LLMatcher

        self._text += self._shared.vocab.token_bytes(token)
        text = self._text.decode("utf-8", "ignore")
        for trigger in self._triggers:
            # As llama.cpp does: search the whole output; the trigger itself ends in `$`.
            if (match := trigger.search(text)) and match.end() == len(text):
                self._waiting = False
                matcher = LLMatcher(self._shared.lltok, self._grammar)
                tail = self._shared.vocab.tokenize(text[match.start(1):])
                # The grammar must accept the text since the trigger; if not, this call stays unconstrained.
                self._matcher = matcher if matcher.try_consume_tokens(tail) == len(tail) else None
                return

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        from llguidance.numpy import fill_next_token_bitmask

        while self._seen < len(output_ids):
            token = output_ids[self._seen]
            self._seen += 1
            if token < 0:  # a placeholder of a step still in flight
                continue
            if self._matcher is not None:
                self._matcher.consume_token(token)
            elif self._waiting:
                self._watch(token)
        if self._matcher is None:
            return logits
        fill_next_token_bitmask(self._matcher, self._bitmask, 0)
        vocab = logits.shape[-1]
        allowed = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")[:vocab].astype(bool)
        if allowed.shape[0] < vocab:  # an embedding padded past the tokenizer's vocabulary
            allowed = np.concatenate([allowed, np.zeros(vocab - allowed.shape[0], dtype=bool)])
        mask = torch.from_numpy(allowed).to(logits.device)
        return logits.masked_fill(~mask, float("-inf"))


class LazyGrammarProcessor(AdapterLogitsProcessor):
    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        super().__init__(vllm_config, device, is_pin_memory)
        model = vllm_config.model_config
        self._path = Path(model.tokenizer or model.model)
        self._n_vocab = model.get_vocab_size()
        self._shared: _Shared | None = None  # built on the first lazy request (about a second)

    def is_argmax_invariant(self) -> bool:
        return False  # masking changes the greedy choice

    def new_req_logits_processor(self, params: Any) -> _Request | None:
        spec = (params.extra_args or {}).get(EXTRA_KEY)
        if not spec:
            return None
        if self._shared is None:
            self._shared = _Shared(self._path, self._n_vocab)
        return _Request(self._shared, spec["gbnf"], list(spec["triggers"]))
