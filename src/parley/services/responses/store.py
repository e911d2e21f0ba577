"""Stored responses: each response's JSON and its context (the input items it was made from, earlier turns
included), in the SQLite database the Message Batches use, so they survive a restart. Bounded: rows older
than the retention go, and the oldest go first once the rows' bytes pass the cap. Every method blocks;
callers on an event loop run them in a thread."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..batches.store import DATABASE

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    response TEXT NOT NULL,   -- the response object's JSON, as last reported
    context TEXT NOT NULL,    -- the input items it was made from (a continuation's earlier turns first)
    events TEXT NOT NULL,     -- its events as sent, for GET ?stream=true
    bytes INTEGER NOT NULL
);
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ResponseStore:
    def __init__(self, data_dir: Path, retention_days: float, max_bytes: int) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(data_dir / DATABASE, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}
        if "events" not in columns:  # a database from before events were kept
            self._db.execute("ALTER TABLE responses ADD COLUMN events TEXT NOT NULL DEFAULT '[]'")
        self._retention = retention_days * 86400.0
        self._max_bytes = max_bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def save(self, response: dict[str, Any], context: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        """Insert or update a response (a background one is saved as it progresses), then enforce the bounds."""
        body, items, sent = _dumps(response), _dumps(context), _dumps(events)
        with self._lock:
            self._db.execute(
                "INSERT INTO responses (id, created_at, response, context, events, bytes) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET response = excluded.response, events = excluded.events, "
                "bytes = excluded.bytes",
                (response["id"], response["created_at"], body, items, sent, len(body) + len(items) + len(sent)))
            self._prune()

    def _prune(self) -> None:
        self._db.execute("DELETE FROM responses WHERE created_at < ?", (time.time() - self._retention,))
        total = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM responses").fetchone()[0]
        while total > self._max_bytes:
            oldest = self._db.execute("SELECT seq, bytes FROM responses ORDER BY seq LIMIT 1").fetchone()
            if oldest is None:
                return
            self._db.execute("DELETE FROM responses WHERE seq = ?", (oldest[0],))
            total -= oldest[1]

    def get(self, response_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE id = ?", (response_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def _column(self, column: str, response_id: str) -> list[dict[str, Any]] | None:
        with self._lock:
            row = self._db.execute(f"SELECT {column} FROM responses WHERE id = ?", (response_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def context(self, response_id: str) -> list[dict[str, Any]] | None:
        """The input items the response was made from; None for an unknown id."""
        return self._column("context", response_id)

    def events(self, response_id: str) -> list[dict[str, Any]] | None:
        """Its events as they were sent; None for an unknown id."""
        return self._column("events", response_id)

    def history(self, response_id: str) -> list[dict[str, Any]] | None:
        """What a continuation of the response starts from: its context, then its output."""
        with self._lock:
            row = self._db.execute("SELECT response, context FROM responses WHERE id = ?",
                                   (response_id,)).fetchone()
        if row is None:
            return None
        return [*json.loads(row[1]), *json.loads(row[0]).get("output", [])]

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0
