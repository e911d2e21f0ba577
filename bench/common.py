"""What every benchmark script shares: free ports, and filler prompts that no cache has seen."""

from __future__ import annotations

import socket
import uuid

FILLER = ("The harbour town kept its records in a long ledger: ships that came in, what they carried, who "
          "paid the duty and who argued about it. Entry {i}: a schooner with {n} barrels of salt fish, "
          "a dispute over weights, settled by the harbour master before noon. ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def filler(tokens: int) -> str:
    """Text of roughly `tokens` tokens, opened by a nonce so that no cache holds any of it."""
    one = len(FILLER.split()) * 1.3
    return f"[{uuid.uuid4().hex}] " + "".join(FILLER.format(i=i, n=i * 7 % 90) for i in range(int(tokens / one)))
