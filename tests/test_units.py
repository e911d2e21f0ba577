"""Incremental pieces, each case whole and split at every offset."""

from __future__ import annotations

import asyncio

import pytest

from parley.api.sse import with_heartbeat
from parley.chat.decode import Utf8Stream
from parley.chat.stops import StopMatcher


def _run_stops(chunks: list[str], stops: list[str]) -> tuple[str, str | None, str]:
    matcher = StopMatcher(stops)
    out = ""
    for chunk in chunks:
        text, matched = matcher.feed(chunk)
        out += text
        if matched:
            return out, matched, ""
    return out, None, matcher.flush()


@pytest.mark.parametrize("text, stops, expected, matched", [
    ("Hello END world", ["END"], "Hello ", "END"),
    ("abcabd", ["abd"], "abc", "abd"),
    ("no stop here", ["zz"], "no stop here", None),
    ("x</s", ["</stop>"], "x</s", None),  # a partial stop at the end is released as text
    ("aXbY", ["Y", "X"], "a", "X"),  # the earliest match wins
])
def test_stop_matcher_every_split(text, stops, expected, matched):
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            out, got, tail = _run_stops([text[:i], text[i:j], text[j:]], stops)
            assert (out + tail, got) == (expected, matched), (i, j)


def test_stop_matcher_holds_back_possible_prefix():
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("abc ST") == ("abc ", None)
    assert matcher.feed("O") == ("", None)
    assert matcher.feed("P!") == ("", "STOP")


def test_utf8_stream_never_splits_a_character():
    data = "a🌍你好é".encode()
    for i in range(len(data) + 1):
        stream = Utf8Stream()
        parts = [stream.decode(data[:i]), stream.decode(data[i:]), stream.flush()]
        assert "".join(parts) == "a🌍你好é"
        assert all("\ufffd" not in p for p in parts)


def test_heartbeat_fills_silence_and_closes_source():
    closed = []

    async def slow():
        try:
            await asyncio.sleep(0.35)
            yield "a"
            yield "b"
        finally:
            closed.append(True)

    async def main():
        return [item async for item in with_heartbeat(slow(), 0.1)]

    items = asyncio.run(main())
    assert items[-2:] == ["a", "b"] and items.count(None) >= 2 and set(items[:-2]) == {None}
    assert closed == [True]
