"""Batches, their requests and their results as SQLite rows (WAL, synchronous=FULL).

A request row holds its raw `params` JSON and, once answered, its state and result JSON: answering is one
UPDATE of a still-pending row, in the same transaction that ends the batch when it was the last one, so a result
is either committed or the request is still pending (and is simply run again after a crash). Every method
blocks; callers on an event loop run them in a thread. One connection, one lock: calls are short.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import string
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATABASE = "batches.sqlite3"  # also holds stored Responses (services/responses/store.py)
EXPIRES_AFTER = 24 * 3600.0  # seconds from creation, as the API
OUTCOMES = ("succeeded", "errored", "canceled", "expired")
CANCELED = '{"type":"canceled"}'
EXPIRED = '{"type":"expired"}'
_ALPHABET = string.ascii_letters + string.digits

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order: lists are newest first
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,                   -- in_progress | canceling | ended
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    ended_at REAL,
    cancel_initiated_at REAL,
    total INTEGER NOT NULL,
    counts TEXT                             -- {"succeeded": n, ...} once ended
);
CREATE TABLE IF NOT EXISTS requests (
    batch_seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | succeeded | errored | canceled | expired
    result TEXT,                            -- the result object's JSON, once answered
    PRIMARY KEY (batch_seq, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS requests_pending ON requests (batch_seq, idx) WHERE state = 'pending';
"""


@dataclass(frozen=True)
class BatchRow:
    seq: int
    id: str
    status: str
    created_at: float
    expires_at: float
    ended_at: float | None
    cancel_initiated_at: float | None
    total: int
    counts: dict[str, int] = field(default_factory=dict)  # by outcome; empty until the batch ends


@dataclass(frozen=True)
class PendingRequest:
    batch_seq: int
    idx: int
    params: str  # JSON

    @property
    def key(self) -> tuple[int, int]:
        return self.batch_seq, self.idx


class BatchStore:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DATABASE
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed result survives power loss, not just a crash
        self._db.executescript(_SCHEMA)
        self._lock_file = data_dir / "batches.lock"
        self._lock_fd: int | None = None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def try_lock(self) -> bool:
        """Whether this process is the one that runs the store's batches (one per data dir, so two servers
        sharing it do not both compute every request). The OS drops the lock with the process."""
        if self._lock_fd is not None:
            return True
        try:
            import fcntl
        except ImportError:  # no flock (Windows): trust that one server uses the directory
            self._lock_fd = -1
            return True
        import os

        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- batches
    def create(self, requests: Sequence[tuple[str, dict[str, Any]]], now: float | None = None) -> BatchRow:
        """`requests`: (custom_id, params) in order."""
        now = time.time() if now is None else now
        batch_id = "msgbatch_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
        rows = [(i, cid, json.dumps(params, ensure_ascii=False, separators=(",", ":")))
                for i, (cid, params) in enumerate(requests)]
        with self._tx() as db:
            seq = db.execute(
                "INSERT INTO batches (id, status, created_at, expires_at, total) VALUES (?, 'in_progress', ?, ?, ?)",
                (batch_id, now, now + EXPIRES_AFTER, len(rows))).lastrowid
            db.executemany("INSERT INTO requests (batch_seq, idx, custom_id, params) VALUES (?, ?, ?, ?)",
                           [(seq, i, cid, params) for i, cid, params in rows])
        return self._get_seq(seq)  # type: ignore[return-value]

    def get(self, batch_id: str) -> BatchRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return _batch(row) if row else None

    def _get_seq(self, seq: int) -> BatchRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM batches WHERE seq = ?", (seq,)).fetchone()
        return _batch(row) if row else None

    def page(self, limit: int, before_id: str | None = None, after_id: str | None = None
             ) -> tuple[list[BatchRow], bool]:
        """Newest first. `after_id`: the page just after that batch (older ones); `before_id`: just before it
        (newer ones). Raises KeyError for a cursor that names no batch. Returns the page and `has_more`."""
        cursor = after_id if after_id is not None else before_id
        with self._lock:
            anchor = None
            if cursor is not None:
                found = self._db.execute("SELECT seq FROM batches WHERE id = ?", (cursor,)).fetchone()
                if found is None:
                    raise KeyError(cursor)
                anchor = found[0]
            if before_id is not None:
                rows = self._db.execute("SELECT * FROM batches WHERE seq > ? ORDER BY seq ASC LIMIT ?",
                                        (anchor, limit + 1)).fetchall()
                has_more = len(rows) > limit
                rows = rows[:limit][::-1]
            else:
                bound = anchor if anchor is not None else 2**63 - 1
                rows = self._db.execute("SELECT * FROM batches WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                                        (bound, limit + 1)).fetchall()
                has_more = len(rows) > limit
                rows = rows[:limit]
        return [_batch(r) for r in rows], has_more

    def delete(self, batch_id: str) -> None:
        with self._tx() as db:
            found = db.execute("SELECT seq FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if found:
                db.execute("DELETE FROM requests WHERE batch_seq = ?", found)
                db.execute("DELETE FROM batches WHERE seq = ?", found)

    # ---- requests
    def next_pending(self, limit: int) -> list[PendingRequest]:
        """The oldest pending requests of batches still in progress."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.batch_seq, r.idx, r.params FROM requests r JOIN batches b ON b.seq = r.batch_seq "
                "WHERE r.state = 'pending' AND b.status = 'in_progress' ORDER BY r.batch_seq, r.idx LIMIT ?",
                (limit,)).fetchall()
        return [PendingRequest(*r) for r in rows]

    def finish(self, batch_seq: int, idx: int, state: str, result: str) -> bool:
        """Answer a pending request (and end its batch if it was the last); False if it was answered already
        (canceled or expired meanwhile): every request is answered once."""
        with self._tx() as db:
            answered = db.execute(
                "UPDATE requests SET state = ?, result = ? WHERE batch_seq = ? AND idx = ? AND state = 'pending'",
                (state, result, batch_seq, idx)).rowcount
            if answered:
                self._end_if_done(db, batch_seq)
        return bool(answered)

    def results(self, batch_seq: int, after_idx: int = -1, limit: int = 1000) -> list[tuple[int, str, str]]:
        """(idx, custom_id, result JSON) of answered requests, in request order, from `after_idx` on."""
        with self._lock:
            return self._db.execute(
                "SELECT idx, custom_id, result FROM requests WHERE batch_seq = ? AND idx > ? AND result IS NOT NULL "
                "ORDER BY idx LIMIT ?", (batch_seq, after_idx, limit)).fetchall()

    # ---- ending batches early
    def begin_cancel(self, batch_id: str, running: Sequence[int], now: float | None = None) -> BatchRow | None:
        """Cancel a batch still in progress: its pending requests but the `running` ones (by idx) are canceled
        now; it is `canceling` until those are answered, then `ended`."""
        now = time.time() if now is None else now
        with self._tx() as db:
            found = db.execute("SELECT seq, status FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if found is None:
                return None
            seq, status = found
            if status == "in_progress":
                db.execute("UPDATE batches SET status = 'canceling', cancel_initiated_at = ? WHERE seq = ?",
                           (now, seq))
                self._close_pending(db, seq, CANCELED, "canceled", running)
        return self._get_seq(seq)

    def sweep(self, running: dict[int, Sequence[int]], now: float | None = None) -> list[int]:
        """Housekeeping: a canceling batch's pending requests (but `running`, by batch seq) are canceled; an
        unfinished batch past `expires_at` has every pending request expired. Returns the seqs of batches
        that ended here."""
        now = time.time() if now is None else now
        ended = []
        with self._tx() as db:
            for seq, status, expires_at in db.execute(
                    "SELECT seq, status, expires_at FROM batches WHERE status != 'ended'").fetchall():
                if expires_at <= now:
                    self._close_pending(db, seq, EXPIRED, "expired", ())
                elif status == "canceling":
                    self._close_pending(db, seq, CANCELED, "canceled", running.get(seq, ()))
                if db.execute("SELECT status FROM batches WHERE seq = ?", (seq,)).fetchone()[0] == "ended":
                    ended.append(seq)
        return ended

    def purge(self, created_before: float) -> int:
        """Forget batches created before this time (their results are past retention); how many."""
        with self._tx() as db:
            seqs = db.execute("SELECT seq FROM batches WHERE created_at < ?", (created_before,)).fetchall()
            db.executemany("DELETE FROM requests WHERE batch_seq = ?", seqs)
            db.executemany("DELETE FROM batches WHERE seq = ?", seqs)
        return len(seqs)

    def _close_pending(self, db: sqlite3.Connection, seq: int, result: str, state: str,
                       keep: Sequence[int]) -> None:
        keep_list = ",".join(str(int(i)) for i in keep)
        db.execute(f"UPDATE requests SET state = ?, result = ? WHERE batch_seq = ? AND state = 'pending' "
                   f"AND idx NOT IN ({keep_list})", (state, result, seq))
        self._end_if_done(db, seq)

    @staticmethod
    def _end_if_done(db: sqlite3.Connection, seq: int) -> None:
        if db.execute("SELECT 1 FROM requests WHERE batch_seq = ? AND state = 'pending' LIMIT 1",
                      (seq,)).fetchone():
            return
        counts = dict.fromkeys(OUTCOMES, 0)
        for state, n in db.execute("SELECT state, COUNT(*) FROM requests WHERE batch_seq = ? GROUP BY state",
                                   (seq,)).fetchall():
            counts[state] = n
        db.execute("UPDATE batches SET status = 'ended', ended_at = ?, counts = ? WHERE seq = ? AND status != 'ended'",
                   (time.time(), json.dumps(counts), seq))


def _batch(row: tuple) -> BatchRow:
    seq, batch_id, status, created, expires, ended, cancel, total, counts = row
    return BatchRow(seq, batch_id, status, created, expires, ended, cancel, total,
                    json.loads(counts) if counts else {})
