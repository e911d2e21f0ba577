"""What a GGUF file says about itself, read from its header without loading it.

A small reader of our own rather than llama.cpp: listing must stay cheap (no vocabulary or weights), and a
damaged file must end in a Python exception, never in an abort inside the native library.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from .facts import CorruptModelError, ModelFacts

MAGIC = b"GGUF"
# GGUF value types → struct format of fixed-size scalars (8 = string, 9 = array).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class _Reader:
    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> int | float | bool:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise CorruptModelError("header ends early")
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, keep: bool = True) -> str | None:
        n = int(self.take("Q"))
        if self.pos + n > len(self.buf):
            raise CorruptModelError("header ends early")
        raw = self.buf[self.pos : self.pos + n] if keep else None
        self.pos += n
        return raw.decode("utf-8", "replace") if raw is not None else None

    def value(self, vtype: int) -> object:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:  # vocabularies and merges: skipped, only their length matters here
            item, count = int(self.take("I")), int(self.take("Q"))
            if item in _SCALARS:
                self.pos += count * struct.calcsize("<" + _SCALARS[item])
            elif item == _STRING:
                for _ in range(count):
                    self.string(keep=False)
            else:
                raise CorruptModelError(f"unsupported array item type {item}")
            if self.pos > len(self.buf):
                raise CorruptModelError("header ends early")
            return None
        raise CorruptModelError(f"unknown value type {vtype}")


def read_metadata(path: Path) -> dict[str, object]:
    """Every key/value of the header (arrays as None). Raises CorruptModelError."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != MAGIC:
                raise CorruptModelError("not a GGUF file (bad magic)")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(_Reader(buf))
    except OSError as exc:
        raise CorruptModelError(f"unreadable: {exc.strerror or exc}") from exc


def _parse(reader: _Reader) -> dict[str, object]:
    reader.pos = 4
    version = reader.take("I")
    if version not in (2, 3):
        raise CorruptModelError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = reader.take("Q"), reader.take("Q")
    if n_tensors > 1 << 24 or n_kv > 1 << 20:
        raise CorruptModelError("implausible header counts")
    metadata: dict[str, object] = {}
    for _ in range(int(n_kv)):
        key = reader.string() or ""
        metadata[key] = reader.value(int(reader.take("I")))
    return metadata


def read_gguf_facts(path: Path) -> ModelFacts:
    meta = read_metadata(path)
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise CorruptModelError("no general.architecture in the header")
    ctx, ftype, template = meta.get(f"{arch}.context_length"), meta.get("general.file_type"), meta.get(
        "tokenizer.chat_template")
    return ModelFacts(arch, int(ctx) if isinstance(ctx, int) else None, int(ftype) if isinstance(ftype, int) else None,
                    template if isinstance(template, str) else None)
