"""Incremental token-bytes → text decoding that never splits a multi-byte character."""

from __future__ import annotations

import codecs


class Utf8Stream:
    """Per-request: bytes in, complete characters out; a partial character waits for its rest."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
