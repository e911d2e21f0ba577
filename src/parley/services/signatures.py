"""Thinking-block signatures made with a server secret, so that reasoning sent back in history can be trusted.

`summarized` blocks carry an HMAC over their text; `omitted` ones carry the text itself, encrypted and
authenticated (Fernet), and come back with an empty `thinking` that the signature restores.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ..errors import InvalidRequestError

MAC_PREFIX, SEALED_PREFIX = "ps1.", "pe1."


def load_or_create_key(configured: str | None, key_file: Path) -> bytes:
    """The configured key, else one persisted beside the model cache so restarts keep verifying."""
    if configured:
        return configured.encode()
    if key_file.is_file():
        return key_file.read_bytes().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class ThinkingSigner:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._mac_key = hashlib.sha256(b"parley-thinking-mac" + key).digest()

    def _mac(self, thinking: str) -> str:
        digest = hmac.new(self._mac_key, thinking.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, thinking: str, sealed: bool) -> str:
        if sealed:
            return SEALED_PREFIX + self._fernet.encrypt(thinking.encode()).decode()
        return MAC_PREFIX + self._mac(thinking)

    def verify(self, thinking: str, signature: str | None, where: str) -> str:
        """The trusted reasoning text of a block from history; 400 if its signature does not hold."""
        if signature and signature.startswith(SEALED_PREFIX):
            try:
                return self._fernet.decrypt(signature[len(SEALED_PREFIX):].encode()).decode()
            except InvalidToken:
                pass
        elif signature and signature.startswith(MAC_PREFIX):
            if hmac.compare_digest(signature[len(MAC_PREFIX):], self._mac(thinking)):
                return thinking
        raise InvalidRequestError(f"{where}: Invalid `signature` in `thinking` block")
