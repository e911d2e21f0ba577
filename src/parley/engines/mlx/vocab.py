"""An MLX model directory's tokenizer and chat template: tokenize, detokenize, end-of-generation.

The engine holds one; the API process opens its own (the tokenizer files only, no weights) so that
rendering, counting and detokenizing never cross into the model's child process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...chat.template import ChatTemplate


def mlx_available() -> str | None:
    """None when the MLX engine can run here, else why not."""
    try:
        import llguidance  # noqa: F401
        import mlx.core  # noqa: F401
        import mlx_lm  # noqa: F401
    except ImportError as exc:
        return f"the MLX engine is not installed ({exc.name}): pip install 'parley[mlx]'"
    return None


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


class MlxVocab:
    def __init__(self, path: Path, tokenizer: Any = None) -> None:
        """`tokenizer`: mlx-lm's wrapper as `mlx_lm.load` returned it; loaded from `path` when not given."""
        config = json.loads((path / "config.json").read_text())
        if tokenizer is None:
            from mlx_lm.utils import load_tokenizer

            tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
        self.wrapper = tokenizer
        hf = self.hf = tokenizer._tokenizer
        self.n_ctx_train = config.get("max_position_embeddings")
        source = hf.chat_template if isinstance(hf.chat_template, str) else None
        if source is None and (path / "chat_template.jinja").is_file():
            source = (path / "chat_template.jinja").read_text()
        self.chat_template = ChatTemplate(source, bos_token=hf.bos_token or "", eos_token=hf.eos_token or "")
        self.eos = frozenset(tokenizer.eos_token_ids)
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
