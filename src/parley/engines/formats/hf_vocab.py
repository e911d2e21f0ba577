"""A Hugging Face model directory's tokenizer and chat template: tokenize, detokenize, end-of-generation.

Shared by the engines that serve HF directories (MLX, vLLM). The engine holds one; the API process opens its
own (the tokenizer files only, no weights) so that rendering, counting and detokenizing stay in the API process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...core.template import ChatTemplate


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: the printable stand-in of each byte → the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _ids(value: Any) -> set[int]:
    if isinstance(value, int):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, int)}
    return set()


def config_eos_ids(path: Path) -> set[int]:
    """End-of-generation ids as config.json and generation_config.json declare them (either may list several)."""
    return _ids(_json(path / "config.json").get("eos_token_id")) | _ids(
        _json(path / "generation_config.json").get("eos_token_id"))


class HFVocab:
    def __init__(self, path: Path, hf_tokenizer: Any = None, eos_ids: Iterable[int] | None = None) -> None:
        """`hf_tokenizer`: a transformers tokenizer already loaded (mlx-lm's, vLLM's); loaded from `path` when
        not given. `eos_ids`: the end-of-generation ids; by default those of the config files and the tokenizer."""
        config = _json(path / "config.json")
        if hf_tokenizer is None:
            from transformers import AutoTokenizer

            hf_tokenizer = AutoTokenizer.from_pretrained(str(path))
        hf = self.hf = hf_tokenizer
        self.n_ctx_train = config.get("max_position_embeddings")
        source = hf.chat_template if isinstance(hf.chat_template, str) else None
        if source is None and (path / "chat_template.jinja").is_file():
            source = (path / "chat_template.jinja").read_text()
        self.chat_template = ChatTemplate(source, bos_token=hf.bos_token or "", eos_token=hf.eos_token or "")
        if eos_ids is None:
            eos_ids = config_eos_ids(path) | _ids(hf.eos_token_id)
        self.eos = frozenset(eos_ids)
        self._special = frozenset(hf.all_special_ids) | frozenset(
            i for i, t in hf.added_tokens_decoder.items() if t.special)
        self._bytes = _byte_decoder()

    def tokenize(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))  # the template writes BOS itself

    def token_bytes(self, token: int) -> bytes:
        piece = self.hf.convert_ids_to_tokens(token)
        if piece is None:
            return b""
        if token in self._special:
            return piece.encode()
        if all(c in self._bytes for c in piece):  # byte-level BPE
            return bytes(self._bytes[c] for c in piece)
        if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:  # SentencePiece byte fallback
            return bytes([int(piece[3:5], 16)])
        return piece.replace("\u2581", " ").encode()

    def is_end_of_generation(self, token: int) -> bool:
        return token in self.eos
