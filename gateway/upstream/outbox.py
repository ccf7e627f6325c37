"""The outbox: what is queued to go upstream, per destination, in order (SQLite, WAL).

``data_dir/outbox.sqlite3``. Each destination (the platform, a family webhook) is a queue of
its own; an entry is ``pending`` until delivered (2xx), or set aside as ``rejected`` with the
answer; delivered entries are pruned after :data:`KEEP_DELIVERED_MS`. The cursors of the logs
it is filled from (:mod:`gateway.upstream.pump`) live in the same file, moved in the same
transaction as the entries they queued.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

KEEP_DELIVERED_MS: Final = 30 * 86_400_000
"""Delivered entries are pruned from the outbox after this long (their source logs keep
everything; rejected entries stay until someone looks)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    queued_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL DEFAULT 0,
    done_at INTEGER,
    status INTEGER,
    error TEXT,
    UNIQUE (destination, key)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, destination, id);
CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    destination: str
    key: str
    kind: str
    body: bytes
    attempts: int
    next_at: int


class Outbox:
    """The durable queue (see the module docstring). Thread-safe; every method blocks on
    SQLite (the delivery loop calls them from a worker thread)."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                   timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "destination" not in columns:
            self._db.close()
            raise sqlite3.DatabaseError(f"{path}: an outbox of an earlier development build "
                                        "(no destinations); move it aside")

    def _execute(self, sql: str, args: Sequence[object] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def cursor(self, source: str) -> int:
        row = self._execute("SELECT seq FROM cursors WHERE source = ?", (source,)).fetchone()
        return int(row[0]) if row else 0

    def enqueue(self, source: str, seq: int,
                entries: Sequence[tuple[str, str, str, bytes]], now_ms: int) -> int:
        """Queue ``entries`` (destination, key, kind, body) read from ``source`` up to ``seq``,
        and move its cursor there, in one transaction. A key already queued for its destination
        is left as it is."""
        with self._lock, self._transaction():
            added = 0
            for destination, key, kind, body in entries:
                added += self._db.execute(
                    "INSERT OR IGNORE INTO outbox (destination, key, kind, body, queued_at)"
                    " VALUES (?,?,?,?,?)", (destination, key, kind, body, now_ms)).rowcount
            self._db.execute("INSERT INTO cursors (source, seq) VALUES (?, ?) ON CONFLICT"
                             " (source) DO UPDATE SET seq = excluded.seq", (source, seq))
        return added

    def destinations(self) -> list[str]:
        """Destinations with entries pending."""
        return [r[0] for r in self._execute(
            "SELECT DISTINCT destination FROM outbox WHERE state = 'pending'").fetchall()]

    def head(self, destination: str | None = None) -> Entry | None:
        """The oldest entry not yet delivered or rejected (of ``destination``)."""
        sql = ("SELECT id, destination, key, kind, body, attempts, next_at FROM outbox"
               " WHERE state = 'pending'")
        args: tuple[object, ...] = ()
        if destination is not None:
            sql += " AND destination = ?"
            args = (destination,)
        row = self._execute(sql + " ORDER BY id LIMIT 1", args).fetchone()
        return Entry(int(row[0]), row[1], row[2], row[3], bytes(row[4]), int(row[5]),
                     int(row[6])) if row else None

    def due(self, now_ms: int) -> list[str]:
        """Destinations whose head (oldest pending entry) is due at ``now_ms``."""
        return [r[0] for r in self._execute(
            "SELECT o.destination FROM outbox AS o JOIN (SELECT MIN(id) AS id FROM outbox"
            " WHERE state = 'pending' GROUP BY destination) AS head ON o.id = head.id"
            " WHERE o.next_at <= ?", (now_ms,)).fetchall()]

    def pending(self) -> int:
        """How many entries are pending (the index answers: the delivered are not counted)."""
        return int(self._execute(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0])

    def reject_elsewhere(self, destinations: Sequence[str], error: str, now_ms: int) -> int:
        """Set aside as rejected every pending entry of a destination not in ``destinations``
        (a family webhook taken out of the registry); returns how many."""
        marks = ",".join("?" * len(destinations))
        return self._execute(
            "UPDATE outbox SET state = 'rejected', done_at = ?, error = ? WHERE state ="
            f" 'pending' AND destination NOT IN ({marks})",
            (now_ms, error[:500], *destinations)).rowcount

    def delivered(self, entry: Entry, status: int, now_ms: int) -> None:
        self._execute("UPDATE outbox SET state = 'delivered', done_at = ?, status = ?,"
                         " attempts = attempts + 1, error = NULL WHERE id = ?",
                         (now_ms, status, entry.id))

    def rejected(self, entry: Entry, status: int, error: str, now_ms: int) -> None:
        self._execute("UPDATE outbox SET state = 'rejected', done_at = ?, status = ?,"
                         " attempts = attempts + 1, error = ? WHERE id = ?",
                         (now_ms, status, error[:500], entry.id))

    def retry(self, entry: Entry, next_at: int, status: int | None, error: str) -> None:
        self._execute("UPDATE outbox SET attempts = attempts + 1, next_at = ?, status = ?,"
                         " error = ? WHERE id = ?", (next_at, status, error[:500], entry.id))

    def prune(self, before_ms: int) -> int:
        """Forget entries delivered before ``before_ms``; returns how many."""
        return self._execute("DELETE FROM outbox WHERE state = 'delivered' AND done_at < ?",
                             (before_ms,)).rowcount

    def rejected_entries(self) -> list[tuple[str, str, int | None, str | None, int | None]]:
        """``(destination, key, status, error, when)`` of the entries set aside, oldest
        first."""
        return [(r[0], r[1], r[2], r[3], r[4]) for r in self._execute(
            "SELECT destination, key, status, error, done_at FROM outbox"
            " WHERE state = 'rejected' ORDER BY id").fetchall()]

    def requeue_rejected(self) -> int:
        """Put the rejected entries back in the queue (in their original places)."""
        return self._execute("UPDATE outbox SET state = 'pending', next_at = 0, done_at = NULL"
                             " WHERE state = 'rejected'").rowcount

    def retry_now(self) -> None:
        """Make every pending entry due now (at start: the platform may be back)."""
        self._execute("UPDATE outbox SET next_at = 0 WHERE state = 'pending'")

    def counts(self) -> dict[str, int]:
        rows = self._execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        counts = {"pending": 0, "delivered": 0, "rejected": 0}
        counts.update({str(state): int(n) for state, n in rows})
        return counts

    def entries(self, state: str | None = None) -> list[tuple[str, str, int | None]]:
        """``(key, state, status)`` of every entry (or those in ``state``), in queue order."""
        sql = "SELECT key, state, status FROM outbox"
        args: tuple[object, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            args = (state,)
        return [(r[0], r[1], r[2]) for r in self._execute(sql + " ORDER BY id", args).fetchall()]

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
