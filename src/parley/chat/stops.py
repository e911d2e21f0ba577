"""Incremental stop-string matching: text leaves only once it can no longer start a stop string."""

from __future__ import annotations

from ..parsers.holdback import partial_marker


class StopMatcher:
    """Per-request. `feed` returns (safe text, matched stop or None); `flush` releases what is held."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        buf = self._held + text
        first: tuple[int, str] | None = None
        for stop in self._stops:
            at = buf.find(stop)
            if at >= 0 and (first is None or at < first[0]):
                first = (at, stop)
        if first is not None:
            self._held = ""
            return buf[: first[0]], first[1]
        keep = partial_marker(buf, self._stops)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], None

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
