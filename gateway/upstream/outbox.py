"""The outbox: what is queued to go upstream, per destination, in order (SQLite, WAL).

``data_dir/outbox.sqlite3``. Each destination (the platform, the institution, a family
webhook) is a queue of its own; an entry is ``pending`` until delivered (2xx), or set aside:
``rejected`` with the answer that refused it, or ``parked`` after failing past the retry
horizon while the entry behind it went through (:mod:`gateway.upstream.delivery`). Set-aside
entries stay until :meth:`Outbox.requeue` puts them back in their original places; delivered
entries are pruned after :data:`KEEP_DELIVERED_MS`. The cursors of the logs it is filled from
(:mod:`gateway.upstream.pump`) live in the same file, moved in the same transaction as the
entries they queued.
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
    failing_since INTEGER,
    UNIQUE (destination, key)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, destination, id);
CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


SET_ASIDE: Final = ("parked", "rejected")
"""The states of entries taken out of their queue until someone puts them back."""

_ENTRY = "id, destination, key, kind, body, attempts, next_at, failing_since"


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    destination: str
    key: str
    kind: str
    body: bytes
    attempts: int
    next_at: int
    failing_since: int | None = None
    """When its first failed attempt was (epoch ms); ``None`` while it has not failed."""

    @classmethod
    def _of(cls, row: Sequence[Any]) -> Entry:
        return cls(int(row[0]), row[1], row[2], row[3], bytes(row[4]), int(row[5]),
                   int(row[6]), None if row[7] is None else int(row[7]))


@dataclass(frozen=True, slots=True)
class SetAside:
    """An entry taken out of its queue: ``parked`` or ``rejected``."""

    destination: str
    key: str
    state: str
    attempts: int
    status: int | None
    """The last answer's HTTP status (``None``: a network error or a time-out)."""
    error: str | None
    at: int | None
    """When it was set aside (epoch ms)."""


@dataclass(frozen=True, slots=True)
class Queue:
    """One destination's entries that are not delivered."""

    destination: str
    pending: int
    parked: int
    rejected: int


@dataclass(frozen=True, slots=True)
class Report:
    """The outbox as the station's API shows it."""

    configured: bool
    queues: list[Queue]
    set_aside: list[SetAside]


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
        if "failing_since" not in columns:  # an outbox of a release before parking
            self._db.execute("ALTER TABLE outbox ADD COLUMN failing_since INTEGER")

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
        """The oldest pending entry (of ``destination``)."""
        sql = f"SELECT {_ENTRY} FROM outbox WHERE state = 'pending'"
        args: tuple[object, ...] = ()
        if destination is not None:
            sql += " AND destination = ?"
            args = (destination,)
        row = self._execute(sql + " ORDER BY id LIMIT 1", args).fetchone()
        return Entry._of(row) if row else None

    def behind(self, entry: Entry) -> Entry | None:
        """The pending entry right behind ``entry`` in its queue."""
        row = self._execute(f"SELECT {_ENTRY} FROM outbox WHERE state = 'pending' AND"
                            " destination = ? AND id > ? ORDER BY id LIMIT 1",
                            (entry.destination, entry.id)).fetchone()
        return Entry._of(row) if row else None

    def due(self, now_ms: int) -> list[str]:
        """Destinations whose head (oldest pending entry) is due at ``now_ms``."""
        return [r[0] for r in self._execute(
            "SELECT o.destination FROM outbox AS o JOIN (SELECT MIN(id) AS id FROM outbox"
            " WHERE state = 'pending' GROUP BY destination) AS head ON o.id = head.id"
            " WHERE o.next_at <= ?", (now_ms,)).fetchall()]

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

    def retry(self, entry: Entry, next_at: int, status: int | None, error: str,
              now_ms: int) -> None:
        """A failed attempt: try again at ``next_at``; the first failure's time is kept."""
        self._execute("UPDATE outbox SET attempts = attempts + 1, next_at = ?, status = ?,"
                      " error = ?, failing_since = COALESCE(failing_since, ?) WHERE id = ?",
                      (next_at, status, error[:500], now_ms, entry.id))

    def attempted(self, entry: Entry, status: int | None, error: str) -> None:
        """A failed attempt out of turn (the entry behind a failing head, tried to tell a
        failing entry from a failing destination): counted, nothing else changes."""
        self._execute("UPDATE outbox SET attempts = attempts + 1, status = ?, error = ?"
                      " WHERE id = ?", (status, error[:500], entry.id))

    def park(self, entry: Entry, now_ms: int) -> None:
        """Take ``entry`` out of its queue (it failed past the retry horizon)."""
        self._execute("UPDATE outbox SET state = 'parked', done_at = ? WHERE id = ?"
                      " AND state = 'pending'", (now_ms, entry.id))

    def prune(self, before_ms: int) -> int:
        """Forget entries delivered before ``before_ms``; returns how many."""
        return self._execute("DELETE FROM outbox WHERE state = 'delivered' AND done_at < ?",
                             (before_ms,)).rowcount

    def rejected_entries(self) -> list[tuple[str, str, int | None, str | None, int | None]]:
        """``(destination, key, status, error, when)`` of the entries rejected, oldest
        first."""
        return [(e.destination, e.key, e.status, e.error, e.at)
                for e in self.set_aside("rejected")]

    def set_aside(self, *states: str, limit: int | None = None) -> list[SetAside]:
        """The entries set aside (``parked``, ``rejected``, or both when no state is given),
        oldest first."""
        chosen = states or SET_ASIDE
        marks = ",".join("?" * len(chosen))
        sql = ("SELECT destination, key, state, attempts, status, error, done_at FROM outbox"
               f" WHERE state IN ({marks}) ORDER BY id")
        args: list[object] = list(chosen)
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [SetAside(r[0], r[1], r[2], int(r[3]), r[4], r[5], r[6])
                for r in self._execute(sql, args).fetchall()]

    def requeue(self, *states: str, destination: str | None = None) -> dict[str, int]:
        """Put the entries set aside (``parked``, ``rejected``, or both when no state is
        given; of ``destination`` only, if given) back in their queues, in their original
        places, due now; returns how many of each state."""
        requeued = {}
        for state in states or SET_ASIDE:
            sql = ("UPDATE outbox SET state = 'pending', next_at = 0, done_at = NULL,"
                   " failing_since = NULL WHERE state = ?")
            args: list[object] = [state]
            if destination is not None:
                sql += " AND destination = ?"
                args.append(destination)
            requeued[state] = self._execute(sql, args).rowcount
        return requeued

    def requeue_rejected(self) -> int:
        """Put the rejected entries back in the queue (in their original places)."""
        return self.requeue("rejected")["rejected"]

    def retry_now(self) -> None:
        """Make every pending entry due now (at start: the platform may be back)."""
        self._execute("UPDATE outbox SET next_at = 0 WHERE state = 'pending'")

    def counts(self) -> dict[str, int]:
        rows = self._execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        counts = {"pending": 0, "delivered": 0, "rejected": 0, "parked": 0}
        counts.update({str(state): int(n) for state, n in rows})
        return counts

    def count(self, state: str) -> int:
        """How many entries are in ``state`` (``pending``, ``parked``, ``rejected``; the
        index answers)."""
        return int(self._execute("SELECT COUNT(*) FROM outbox WHERE state = ?",
                                 (state,)).fetchone()[0])

    def report(self, *, limit: int = 100) -> Report:
        """Each destination's entries not delivered, and the first ``limit`` set aside."""
        rows = self._execute(
            "SELECT destination, state, COUNT(*) FROM outbox WHERE state IN"
            " ('pending', 'parked', 'rejected') GROUP BY destination, state").fetchall()
        queues: dict[str, dict[str, int]] = {}
        for destination, state, n in rows:
            queues.setdefault(destination, {})[state] = int(n)
        return Report(configured=True, queues=[
            Queue(destination, counts.get("pending", 0), counts.get("parked", 0),
                  counts.get("rejected", 0)) for destination, counts in sorted(queues.items())],
            set_aside=self.set_aside(limit=limit))

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
