"""The persistent prompt cache: KV states of long prompt prefixes, kept on disk across restarts.

An engine hands over the state of a sequence (opaque bytes) with the tokens it holds; the store writes it
to a file off the decode path. A file is found by the prefix it starts: every block boundary of its
tokens (every `block` tokens) is a key, a hash chained over the blocks and seeded with the engine's
identity (model file, context settings), so a new prompt finds the longest stored prefix it shares with
any file — a new agent session shares the system prompt and tools of an old one — and loads it.

Nothing unverified is loaded: a file whose checksum, identity or tokens do not match is deleted and
logged. The directory is bounded (least recently used files go first) and one file per conversation is
kept: a file whose tokens a newer one extends is deleted, as the newer one serves all of its prefixes."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import queue
import struct
import threading
import uuid
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("parley.prefix_store")

MAGIC = b"PARLEYKV1\n"
SUFFIX = ".kv"
_HEADER_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class Entry:
    path: Path
    n_tokens: int
    size: int
    keys: tuple[str, ...]  # keys[i]: the prefix of (i + 1) * block tokens


@dataclass(frozen=True)
class Match:
    """A stored file whose first `n_tokens` are the prompt's first `n_tokens`."""

    entry: Entry
    n_tokens: int


@dataclass(frozen=True)
class Restored:
    """A verified file: `state` (the engine's bytes) holds `tokens`; the prompt shares the first `usable`."""

    tokens: list[int]
    state: bytearray | memoryview
    usable: int


def token_bytes(tokens: Sequence[int]) -> bytes:
    return array("i", tokens).tobytes()


def _read_header(f) -> tuple[dict, int]:  # noqa: ANN001 - a binary file
    if f.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a parley prompt-cache file")
    (length,) = _HEADER_LEN.unpack(f.read(_HEADER_LEN.size))
    if length > 1 << 16:
        raise ValueError("header too long")
    header = json.loads(f.read(length))
    return header, len(MAGIC) + _HEADER_LEN.size + length


class PrefixStore:
    """Thread-safe: looked up from the submitting thread, fed by the decode thread, written by its own."""

    def __init__(self, root: Path, identity: str, max_bytes: int, block: int = 256, min_tokens: int = 1024) -> None:
        self.root = root
        self.identity = identity
        self.max_bytes = max_bytes
        self.block = block
        self.min_tokens = max(min_tokens, block)
        self._lock = threading.Lock()
        self._by_key: dict[str, Match] = {}
        self._entries: dict[Path, Entry] = {}
        self._pending: set[str] = set()  # full keys of files being written
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=2)  # None: stop
        root.mkdir(parents=True, exist_ok=True)
        self._scan()
        self._writer = threading.Thread(target=self._write_loop, name="parley-prefix-store", daemon=True)
        self._writer.start()

    # ---- keys
    def keys(self, tokens: Sequence[int]) -> list[str]:
        """One key per whole block of `tokens`, each naming the prefix up to its block's end."""
        h = hashlib.sha256(self.identity.encode())
        out = []
        for start in range(0, len(tokens) - self.block + 1, self.block):
            h.update(token_bytes(tokens[start : start + self.block]))
            out.append(h.copy().hexdigest())
        return out

    # ---- lookups (any thread)
    def longest(self, prompt: Sequence[int]) -> Match | None:
        """The longest stored prefix of `prompt` that leaves its last token to decode (its logits start the
        answer), if at least `min_tokens` long."""
        usable = (len(prompt) - 1) // self.block * self.block
        if usable < self.min_tokens:
            return None
        keys = self.keys(prompt[:usable])
        with self._lock:
            for i in range(len(keys) - 1, -1, -1):
                if (found := self._by_key.get(keys[i])) is not None:
                    n = (i + 1) * self.block
                    return Match(found.entry, n) if n >= self.min_tokens else None
        return None

    def worth_saving(self, prompt: Sequence[int], min_new: int | None = None) -> int:
        """How many of `prompt`'s tokens to store now (0: none): whole blocks short of the last token, when
        they reach `min_new` (default `min_tokens`) past what the store already holds of this prompt."""
        n = (len(prompt) - 1) // self.block * self.block
        if n < self.min_tokens:
            return 0
        held = self.longest(prompt)
        key = self.keys(prompt[:n])[-1]
        with self._lock:
            if key in self._pending:
                return 0
        return n if n - (held.n_tokens if held else 0) >= (self.min_tokens if min_new is None else min_new) else 0

    def load(self, match: Match, prompt: Sequence[int]) -> Restored | None:
        """Read and verify a file; a file that does not verify is deleted, logged, and never loaded."""
        path = match.entry.path
        try:
            data = bytearray(path.read_bytes())
            restored = self._verify(data, match, prompt)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            log.warning("prompt cache: discarded %s: %s", path.name, exc)
            self._forget(path, delete=True)
            return None
        try:
            os.utime(path)  # the least recently used go first
        except OSError:
            pass
        return restored

    def _verify(self, data: bytearray, match: Match, prompt: Sequence[int]) -> Restored:
        header, offset = _read_header(io.BytesIO(data))
        if header.get("identity") != self.identity:
            raise ValueError("made for another model or context settings")
        n_tokens, state_size = int(header["n_tokens"]), int(header["state_size"])
        if len(data) != offset + 4 * n_tokens + state_size:
            raise ValueError("truncated")
        body = memoryview(data)[offset:]
        if hashlib.sha256(body).hexdigest() != header["sha256"]:
            raise ValueError("checksum mismatch")
        tokens = array("i")
        tokens.frombytes(body[: 4 * n_tokens])
        n = match.n_tokens
        if n > n_tokens or list(tokens[:n]) != list(prompt[:n]):
            raise ValueError("holds other tokens than its name says")
        return Restored(list(tokens), body[4 * n_tokens :], n)

    # ---- saving (the decode thread hands over, the writer writes)
    def save(self, tokens: list[int], state: object) -> bool:
        """Queue `state` (a buffer: the engine's bytes for `tokens`) to be written; False when the writer is
        busy (the save is skipped, never waited for)."""
        key = self.keys(tokens)[-1]
        with self._lock:
            if key in self._pending or key in self._by_key and self._by_key[key].entry.n_tokens == len(tokens):
                return False
            self._pending.add(key)
        try:
            self._jobs.put_nowait(lambda: self._save_now(tokens, memoryview(state)))  # type: ignore[arg-type]
        except queue.Full:
            with self._lock:
                self._pending.discard(key)
            return False
        return True

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until queued saves are written (tests)."""
        done = threading.Event()
        self._jobs.put(done.set, timeout=timeout)
        done.wait(timeout)

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        try:
            self._jobs.put(None, timeout=30)
        except queue.Full:
            return
        self._writer.join(30)

    def _write_loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def _save_now(self, tokens: list[int], state: memoryview) -> None:
        keys = self.keys(tokens)
        try:
            self._write(tokens, keys, state)
        except OSError as exc:
            log.warning("prompt cache: could not write %d tokens: %s", len(tokens), exc)
        finally:
            with self._lock:
                self._pending.discard(keys[-1])

    def _write(self, tokens: list[int], keys: list[str], state: memoryview) -> None:
        body_tokens = token_bytes(tokens)
        digest = hashlib.sha256(body_tokens)
        digest.update(state)
        header = json.dumps({"identity": self.identity, "n_tokens": len(tokens), "state_size": state.nbytes,
                             "sha256": digest.hexdigest()}).encode()
        path = self.root / f"{keys[-1]}{SUFFIX}"
        tmp = self.root / f".{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(MAGIC + _HEADER_LEN.pack(len(header)) + header)
            f.write(body_tokens)
            f.write(state)
        os.replace(tmp, path)  # whole or absent: a reader never sees half a file
        entry = Entry(path, len(tokens), path.stat().st_size, tuple(keys))
        with self._lock:
            superseded = [e.path for e in self._entries.values()
                          if e.path != path and e.n_tokens <= len(tokens) and e.keys and e.keys[-1] in keys]
        for old in superseded:
            self._forget(old, delete=True)
        self._index(entry)
        log.info("prompt cache: stored %d tokens (%.1f MB)", len(tokens), entry.size / 1e6)
        self._evict()

    # ---- the index
    def _index(self, entry: Entry) -> None:
        with self._lock:
            self._entries[entry.path] = entry
            for i, key in enumerate(entry.keys):
                held = self._by_key.get(key)
                if held is None or held.entry.n_tokens < entry.n_tokens:
                    self._by_key[key] = Match(entry, (i + 1) * self.block)

    def _forget(self, path: Path, delete: bool) -> None:
        with self._lock:
            entry = self._entries.pop(path, None)
            if entry is not None:
                for key in entry.keys:
                    if (held := self._by_key.get(key)) is not None and held.entry.path == path:
                        del self._by_key[key]
                # another file may hold the same prefixes
                for other in self._entries.values():
                    for i, key in enumerate(other.keys):
                        if key in entry.keys and key not in self._by_key:
                            self._by_key[key] = Match(other, (i + 1) * self.block)
        if delete:
            try:
                path.unlink()
            except OSError:
                pass

    def _scan(self) -> None:
        """Index this identity's files; count every file of the directory towards the bound."""
        for path in self.root.glob(f"*{SUFFIX}"):
            try:
                with open(path, "rb") as f:
                    header, _ = _read_header(f)
                    if header.get("identity") != self.identity:
                        continue
                    tokens = array("i")
                    tokens.frombytes(f.read(4 * int(header["n_tokens"])))
            except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
                log.warning("prompt cache: discarded %s: %s", path.name, exc)
                path.unlink(missing_ok=True)
                continue
            self._index(Entry(path, len(tokens), path.stat().st_size, tuple(self.keys(tokens))))
        for tmp in self.root.glob(".*.tmp"):  # a write cut short by a crash
            tmp.unlink(missing_ok=True)
        self._evict()

    def _evict(self) -> None:
        files = []
        for path in self.root.glob(f"*{SUFFIX}"):
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            self._forget(path, delete=True)
            total -= size

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"disk_cache_files": len(self._entries),
                    "disk_cache_bytes": sum(e.size for e in self._entries.values())}
