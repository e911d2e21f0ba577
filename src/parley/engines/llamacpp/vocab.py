"""A GGUF model's vocabulary and chat template: tokenize, detokenize, end-of-generation.

The engine holds one over its full model; the API process opens one `vocab_only` (no weights, milliseconds)
so that rendering, counting and detokenizing never cross into the model's child process.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaModel
from llama_cpp._logger import set_verbose

from ...core.template import ChatTemplate
from ...errors import InvalidRequestError

GGUF_MAGIC = b"GGUF"
# Control tokens that output parsers must see; llama.cpp renders control tokens as "" by default.
PRESERVED_MARKERS = ("<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_tag|>",
                     "<think>", "</think>", "<|channel|>", "<|message|>", "<|start|>", "<|end|>")


def read_gguf_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == GGUF_MAGIC


class LlamaCppVocab:
    def __init__(self, path: Path, vocab_only: bool = False) -> None:
        if not path.is_file() or not read_gguf_magic(path):
            raise InvalidRequestError(f"model file '{path.name}' is not a valid GGUF file")
        set_verbose(False)  # llama.cpp logs through llama-cpp-python's logger: only warnings and errors
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = vocab_only
        try:
            self.model = LlamaModel(path_model=str(path), params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise InvalidRequestError(f"model file '{path.name}' could not be loaded") from exc
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.model.vocab)
        self._eog: dict[int, bool] = {}  # per token, asked of llama.cpp once
        self._pieces: dict[int, bytes] = {}
        self.metadata = self.model.metadata()
        self._markers = self._marker_tokens()
        self.chat_template = ChatTemplate(
            self.metadata.get("tokenizer.chat_template"),
            bos_token=self._special_text(self.model.token_bos()),
            eos_token=self._special_text(self.model.token_eos()),
        )

    @classmethod
    def vocab_only(cls, path: Path) -> LlamaCppVocab:
        """The tokenizer and template without the weights (milliseconds), for the API process."""
        return cls(path, vocab_only=True)

    def _special_text(self, token: int) -> str:
        return self.model.token_get_text(token) if token >= 0 else ""

    def _marker_tokens(self) -> frozenset[int]:
        found = set()
        for marker in PRESERVED_MARKERS:
            ids = self.model.tokenize(marker.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                found.add(ids[0])
        return frozenset(found)

    def tokenize(self, text: str) -> list[int]:
        # The template writes BOS itself when the model wants one; llama.cpp adds it only if the
        # vocabulary says so, so drop a rendered copy to avoid a doubled BOS.
        bos = self.chat_template.bos_token
        if bos and self.model.add_bos_token() and text.startswith(bos):
            text = text[len(bos):]
        return self.model.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def token_bytes(self, token: int) -> bytes:
        # Remembered, as end-of-generation answers are: asked for every streamed token.
        if (piece := self._pieces.get(token)) is None:
            piece = self._pieces[token] = self._token_piece(token)
        return piece

    def _token_piece(self, token: int) -> bytes:
        # llama-cpp-python's own token_to_piece returns its whole fixed buffer, NULs included.
        special = token in self._markers
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.model.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.model.vocab, token, buf, len(buf), 0, special)
        return buf.raw[: max(n, 0)]

    def is_end_of_generation(self, token: int) -> bool:
        # Remembered: a ctypes call lets other threads take the GIL, and this is asked for every token.
        if (eog := self._eog.get(token)) is None:
            eog = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self.model.vocab, token))
        return eog

    def close(self) -> None:
        self.model.close()
