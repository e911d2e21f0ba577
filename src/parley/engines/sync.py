"""Blocking iteration over an engine's output, for scripts and tests that have no event loop."""

from __future__ import annotations

import queue
from collections.abc import Iterator

from ..core.params import SamplingParams
from .base import Done, Engine, Item, Sampled, Started


def generate(engine: Engine, prompt: list[int], params: SamplingParams) -> Iterator[Sampled]:
    items: queue.SimpleQueue[Item] = queue.SimpleQueue()
    generation = engine.submit(prompt, params, items.put)
    try:
        while True:
            item = items.get()
            if isinstance(item, Done):
                return
            if isinstance(item, BaseException):
                raise item
            if not isinstance(item, Started):
                yield item
    finally:
        generation.cancel()
