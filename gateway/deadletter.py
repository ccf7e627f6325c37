"""The dead-letter store: every message the gateway could not use, with the reason (SQLite, WAL).

A dead letter keeps the topic, the raw bytes (up to ``keep_bytes``; larger payloads keep their
head, full size and SHA-256), the reason code, a human-readable detail and the receipt time. The
store is bounded by ``max_rows``: past it the oldest entries are deleted and counted, so hostile
traffic cannot fill the disk.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason);
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_ms: int
    topic: str
    payload: bytes
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    received_ms: int
    topic: str
    payload: bytes
    size: int
    sha256: str
    reason: str
    detail: str


class DeadLetterStore:
    """Thread-safe; ``add`` is called from the pipeline's commit thread."""

    def __init__(self, path: str | Path, *, max_rows: int = 1_000_000,
                 keep_bytes: int = 64 * 1024) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.keep_bytes = keep_bytes
        self.evicted = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._rows = int(self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def add(self, letters: Iterable[DeadLetter]) -> int:
        rows = [
            (d.received_ms, d.topic, bytes(d.payload[: self.keep_bytes]), len(d.payload),
             hashlib.sha256(d.payload).hexdigest(), d.reason, d.detail[:1000])
            for d in letters
        ]
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO dead_letters (received_ms, topic, payload, size, sha256, reason,"
                " detail) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._rows += len(rows)
            if self._rows > self.max_rows:
                excess = self._rows - self.max_rows
                self._db.execute(
                    "DELETE FROM dead_letters WHERE id IN"
                    " (SELECT id FROM dead_letters ORDER BY id LIMIT ?)", (excess,))
                self._rows -= excess
                self.evicted += excess
            self._db.execute("COMMIT")
        return len(rows)

    def count(self, reason: str | None = None) -> int:
        with self._lock:
            if reason is None:
                return self._rows
            row = self._db.execute(
                "SELECT count(*) FROM dead_letters WHERE reason = ?", (reason,)).fetchone()
        return int(row[0])

    def counts_by_reason(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT reason, count(*) FROM dead_letters GROUP BY reason").fetchall()
        return {str(r): int(n) for r, n in rows}

    def recent(self, limit: int = 100, *, reason: str | None = None) -> list[StoredDeadLetter]:
        query = ("SELECT id, received_ms, topic, payload, size, sha256, reason, detail"
                 " FROM dead_letters")
        args: tuple[object, ...] = ()
        if reason is not None:
            query += " WHERE reason = ?"
            args = (reason,)
        query += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [StoredDeadLetter(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
