"""Test-only fault injection (`--fault-injection`): a prompt that contains `parley-fault:KIND@N` makes the
model's child process die the way native code does — `segv` (a real invalid read) or `abort` — when that
request samples its N-th token (N = 0: as the request is submitted). Off unless the setting is on."""

from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass

MARKER = re.compile(rb"parley-fault:(segv|abort)@(\d+)")


@dataclass(frozen=True)
class Fault:
    kind: str
    step: int


def find_fault(prompt_text: bytes) -> Fault | None:
    match = MARKER.search(prompt_text)
    return Fault(match[1].decode(), int(match[2])) if match else None


def crash(fault: Fault) -> None:
    if fault.kind == "abort":
        os.abort()
    ctypes.string_at(0)  # SIGSEGV: a read of address 0, as a native bug would do
