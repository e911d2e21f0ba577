"""Poison requests: one that was running native code in two crashes of its model's process is refused."""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Iterable

from ...core.params import SamplingParams
from ...errors import InvalidRequestError

POISON_CRASHES = 2  # a request running in this many crashes is refused afterwards
REMEMBERED = 1024  # fingerprints kept (the least recently crashed forgotten first)


def fingerprint(prompt: list[int], params: SamplingParams) -> str:
    """The request as the engine sees it: rendered prompt and constraints."""
    digest = hashlib.sha256(array("i", prompt).tobytes())
    digest.update(repr(params.grammar).encode())
    return digest.hexdigest()[:16]


class CrashLedger:
    """Fingerprint → crashes it was running in."""

    def __init__(self) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()

    def __bool__(self) -> bool:
        """Whether any crash is on record (until then no request needs hashing)."""
        return bool(self._counts)

    def record(self, fingerprints: Iterable[str]) -> None:
        for fp in set(fingerprints):
            self._counts[fp] = self._counts.pop(fp, 0) + 1
        while len(self._counts) > REMEMBERED:
            self._counts.popitem(last=False)

    def refusal(self, fp: str) -> InvalidRequestError | None:
        """The error that refuses this request, when it is poison."""
        times = self._counts.get(fp, 0)
        if times < POISON_CRASHES:
            return None
        return InvalidRequestError(f"this request was running when the model process crashed {times} times; "
                                   "it is refused (poison request)")
