"""Lazy grammars (`tool_choice: auto`) on vLLM: a logits processor that runs inside vLLM's worker.

vLLM's structured outputs constrain from the first token; parley's lazy grammar must let free text through
until a trigger regex matches at the end of the output, then constrain from the trigger's first group on (as
llama.cpp and the MLX engine do). vLLM's structural tags trigger on literal strings and take JSON schemas, not
GBNF, so this is a per-request logits processor instead: llguidance compiles the same GBNF, is fed the text
since the trigger once it fires, and masks every token the grammar forbids from then on. The request carries
its grammar in `extra_args[EXTRA_KEY]`; requests without one are untouched.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from ..constrained import ConstrainedOutput, compile_gbnf, make_tokenizer
from ..formats.hf_vocab import HFVocab
from .grammar import EXTRA_KEY

_compiled = lru_cache(maxsize=64)(compile_gbnf)


class _Shared:
    """What every request of one model shares: the tokenizer, as text bytes and as llguidance sees it."""

    def __init__(self, path: Path, n_vocab: int) -> None:
        self.vocab = HFVocab(path)
        self.lltok = make_tokenizer(self.vocab.hf.backend_tokenizer.to_str(), n_vocab, sorted(self.vocab.eos))


class _Request:
    """One request's adapter over the shared matcher. vLLM calls it with the output ids so far (a live list)
    and the next logits row."""

    def __init__(self, shared: _Shared, gbnf: str, triggers: list[str]) -> None:
        self._output = ConstrainedOutput(shared.lltok, _compiled(gbnf), triggers, shared.vocab.token_bytes,
                                         shared.vocab.tokenize)
        self._seen = 0

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        while self._seen < len(output_ids):
            token = output_ids[self._seen]
            self._seen += 1
            if token >= 0:  # below 0: a placeholder of a step still in flight
                self._output.consume(token)
        allowed = self._output.allowed(logits.shape[-1])
        if allowed is None:
            return logits
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
