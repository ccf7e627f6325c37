"""The dead-letter store: every message the gateway could not use, with the reason (SQLite, WAL).

A dead letter keeps the topic, the raw bytes (up to ``keep_bytes``; larger payloads keep their
head, full size and SHA-256), the reason code, a human-readable detail and the receipt time. The
store is bounded by ``max_rows``: past it the oldest entries are deleted and counted, so hostile
traffic cannot fill the disk.

Disk trouble raises :class:`~alerts.errors.StorageError` (store ``deadletters``, classified
once in :mod:`alerts.errors`), never a bare ``sqlite3`` error; a store that cannot even be
opened (a full disk at start) does not stop the gateway: it is opened again on the next use.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alerts.errors import StorageError, storage_fault

STORE = "deadletters"

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
        self._db: sqlite3.Connection | None = None
        self._rows = 0
        self.open_error: StorageError | None = None
        """Why the store could not be opened at start (it is tried again on each use)."""
        try:
            with self._lock:
                self._open()
        except StorageError as exc:
            self.open_error = exc

    def _open(self) -> sqlite3.Connection:
        """The connection, opened now if it is not yet (lock held)."""
        if self._db is not None:
            return self._db
        try:
            db = self._connect()
        except (sqlite3.DatabaseError, OSError) as exc:
            if storage_fault(exc) is None:
                raise
            raise StorageError.wrap(STORE, "open", exc) from exc
        self._db = db
        self.open_error = None
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._rows = int(db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
        except BaseException:
            db.close()
            raise
        return db

    def add(self, letters: Iterable[DeadLetter]) -> int:
        rows = [
            (d.received_ms, d.topic, bytes(d.payload[: self.keep_bytes]), len(d.payload),
             hashlib.sha256(d.payload).hexdigest(), d.reason, d.detail[:1000])
            for d in letters
        ]
        if not rows:
            return 0
        with self._lock:
            db = self._open()
            try:
                self._insert(db, rows)
            except (sqlite3.DatabaseError, OSError) as exc:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                if storage_fault(exc) is None:
                    raise
                raise StorageError.wrap(STORE, "write", exc) from exc
        return len(rows)

    def _insert(self, db: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
        """One transaction: the rows, then eviction past ``max_rows`` (lock held)."""
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO dead_letters (received_ms, topic, payload, size, sha256, reason,"
            " detail) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        rows_now = self._rows + len(rows)
        excess = max(0, rows_now - self.max_rows)
        if excess:
            db.execute("DELETE FROM dead_letters WHERE id IN"
                       " (SELECT id FROM dead_letters ORDER BY id LIMIT ?)", (excess,))
        db.execute("COMMIT")
        self._rows = rows_now - excess
        self.evicted += excess

    def count(self, reason: str | None = None) -> int:
        with self._lock:
            db = self._open()
            if reason is None:
                return self._rows
            row = db.execute(
                "SELECT count(*) FROM dead_letters WHERE reason = ?", (reason,)).fetchone()
        return int(row[0])

    def counts_by_reason(self) -> dict[str, int]:
        with self._lock:
            rows = self._open().execute(
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
            rows = self._open().execute(query, (*args, limit)).fetchall()
        return [StoredDeadLetter(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
