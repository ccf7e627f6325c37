"""The dead-letter store: messages the gateway could not use, with the reason (SQLite, WAL).

A dead letter is evidence, never data the gateway needs: it keeps the topic (a topic longer
than :data:`TOPIC_HEAD_BYTES`, which only a broken or hostile publisher sends, its head with its
full size and SHA-256, like a payload), the head of the raw bytes (``head_bytes``; the whole
payload, up to 64 KiB, for ``internal_error`` and ``undecodable``, which are bugs of ours to
reproduce), the payload's full size and SHA-256, the reason code, a human-readable detail and
the receipt time. What it guarantees:

* **Bounded by bytes on disk.** The database file, its write-ahead log and the log's index
  together stay within ``max_bytes``. The file may grow to ``max_bytes`` less an allowance for
  the log (a sixteenth of the budget, 256 KiB to 16 MiB) and 128 KiB for its index; a write
  that would grow it further first deletes the oldest dead letters, a thirty-second of the
  budget at a time (counted in ``evicted``), and the new ones take the freed pages, so the file
  keeps its size without a vacuum. The log is truncated before a write that would overflow its
  allowance and once it passes half of it. One file, not segments: operators and tools read
  the ``dead_letters`` table as before, the oldest letters go in small steps, and reusing
  freed pages writes only the new rows (an incremental vacuum would move every page after the
  freed ones through the log: twice the writes). A file over budget at start (an older
  gateway's row-bounded file, or a budget lowered since) is rebuilt at once: its newest dead
  letters, up to three quarters of the budget, are copied into a fresh file that replaces it.
* **A budget per source.** Each source (site/bed/device, see
  :mod:`~gateway.storage.sourcebudget`) may store ``source_bytes_per_s`` on average and
  ``source_burst_bytes`` at once; what it sends beyond is shed: counted
  (``homecare_dead_letters_shed_total{reason}``, :attr:`DeadLetterStore.shed`) and logged at
  most once a minute, not stored. A flooding source cannot push the others' evidence out; a
  publisher that varies the ids in its topics (behind a broker without the generated ACL) is
  many sources, bounded by the store's total alone, which it can rotate.
* **Retry-safe.** A write that failed stores nothing twice when it is retried with the same
  letters (:func:`~gateway.ingest.checkpoint.commit` does): the budget charges on success only,
  and the part of a large write already committed is skipped.

Disk trouble raises :class:`~alerts.errors.StorageError` (store ``deadletters``, classified
once in :mod:`alerts.errors`), never a bare ``sqlite3`` error; a store that cannot even be
opened (a full disk at start) does not stop the gateway: it is opened again on the next use.

The module is over 400 lines because the byte budget is kept where the rows are written, in
one place: the room made, the log truncated, the over-budget file rebuilt, the shed counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from alerts.errors import StorageError, storage_fault
from gateway.monitoring import Metrics
from gateway.storage.sourcebudget import SourceBudget, source_of

log = logging.getLogger("homecare.deadletters")

STORE = "deadletters"
WHOLE_REASONS: Final = frozenset({"internal_error", "undecodable"})
"""Reasons whose payload is kept whole (up to :data:`WHOLE_BYTES`): a bug of ours met by that
input, which a developer needs to reproduce."""
WHOLE_BYTES: Final = 64 * 1024
MIN_BYTES: Final = 1024 * 1024
SHED_LOG_INTERVAL_S: Final = 60.0
ROW_OVERHEAD_BYTES: Final = 100
"""What a row costs beyond its topic, payload and detail (hash, numbers, reason, cell)."""
TOPIC_HEAD_BYTES: Final = 512
"""Bytes of a topic kept. Every device topic is shorter (four ids of at most 64 characters);
MQTT allows 64 KiB, and a flood of such topics would otherwise take the budget in topics."""
_WAL_INDEX_RESERVE: Final = 128 * 1024
_DETAIL_CHARS: Final = 1000
_COLUMNS: Final = ("id, received_ms, topic, payload, size, sha256, reason, detail, topic_size,"
                   " topic_sha256")
_INSERT: Final = ("INSERT INTO dead_letters (received_ms, topic, payload, size, sha256, reason,"
                  " detail, topic_size, topic_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_TOPIC_COLUMNS: Final = (("topic_size", "INTEGER"), ("topic_sha256", "TEXT"))
"""Added after the first files were written: a file without them gets them when opened (both
NULL where the topic is whole, as every older row's is; an older gateway's inserts, which do
not name them, leave them NULL too)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {db}dead_letters (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    topic_size INTEGER,
    topic_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS {db}dead_letters_reason ON dead_letters (reason);
"""

_Row = tuple[int, str, bytes, int, str, str, str, int | None, str | None]


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
    """The topic, or its head when ``topic_size`` is set."""
    payload: bytes
    """The head of the payload (all of it when ``size`` is no larger)."""
    size: int
    """The length of the whole payload as received."""
    sha256: str
    """Of the whole payload as received."""
    reason: str
    detail: str
    topic_size: int | None = None
    """The length in bytes (UTF-8) of the whole topic when it was cut to its head, else
    ``None``."""
    topic_sha256: str | None = None
    """Of the whole topic (UTF-8) when it was cut to its head, else ``None``."""

    @property
    def truncated(self) -> bool:
        return len(self.payload) < self.size

    @property
    def topic_truncated(self) -> bool:
        return self.topic_size is not None


class DeadLetterStore:
    """Thread-safe; ``add`` is called from the pipeline's commit thread and the database
    writer's."""

    def __init__(self, path: str | Path, *, max_bytes: int = 256 * 1024 * 1024,
                 head_bytes: int = 1024, source_bytes_per_s: float = 4096,
                 source_burst_bytes: int = 256 * 1024, metrics: Metrics | None = None) -> None:
        if max_bytes < MIN_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_BYTES} (1 MiB)")
        if head_bytes < 0:
            raise ValueError("head_bytes must be >= 0")
        self.path = Path(path)
        self._in_memory = str(path) == ":memory:"
        if not self._in_memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.head_bytes = head_bytes
        self.wal_bytes_allowed = min(16 * 1024 * 1024, max(256 * 1024, max_bytes // 16))
        """The write-ahead log's share of ``max_bytes``."""
        self.budget = SourceBudget(bytes_per_s=source_bytes_per_s,
                                   burst_bytes=source_burst_bytes)
        self.metrics = metrics
        self.evicted = 0
        """Dead letters deleted (oldest first) to stay within ``max_bytes``."""
        self.shed: Counter[str] = Counter()
        """Dead letters not stored because their source was over its budget, by reason."""
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._rows = 0
        self._page_bytes = 4096
        self._max_pages = 0
        self._committed: list[_Row] = []
        self._shed_since_log: Counter[str] = Counter()
        self._shed_bytes_since_log = 0
        self._last_shed_log = -math.inf
        self.open_error: StorageError | None = None
        """Why the store could not be opened at start (it is tried again on each use)."""
        try:
            with self._lock:
                self._open()
        except StorageError as exc:
            self.open_error = exc

    # --- opening ----------------------------------------------------------------------------

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
        db = self._connect_once()
        try:
            over_budget = self._pages(db)[0] > self._max_pages
        except BaseException:
            db.close()
            raise
        return self._rebuild(db) if over_budget else db

    def _connect_once(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=2000")  # a reader elsewhere: wait, then checkpoint
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # Deleting the oldest letters must not write their pages again (Debian builds
            # zero freed pages by default: as many bytes through the log as were deleted).
            db.execute("PRAGMA secure_delete=FAST")
            db.execute(f"PRAGMA journal_size_limit={self.wal_bytes_allowed}")
            db.executescript(_SCHEMA.format(db=""))
            have = {row[1] for row in db.execute("PRAGMA table_info(dead_letters)")}
            for name, kind in _TOPIC_COLUMNS:
                if name not in have:
                    db.execute(f"ALTER TABLE dead_letters ADD COLUMN {name} {kind}")
            self._page_bytes = int(db.execute("PRAGMA page_size").fetchone()[0])
            self._max_pages = (self.max_bytes - self.wal_bytes_allowed
                               - _WAL_INDEX_RESERVE) // self._page_bytes
            self._rows = int(db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
        except BaseException:
            db.close()
            raise
        return db

    def _rebuild(self, db: sqlite3.Connection) -> sqlite3.Connection:
        """Replace a file over budget by a fresh one holding its newest letters, up to three
        quarters of the budget (only those are read); payloads are cut to their head."""
        before = self._disk_bytes()
        keep_bytes = self._max_pages * self._page_bytes * 3 // 4
        first_kept, kept, total = None, 0, 0
        for row_id, row_bytes in db.execute(
                "SELECT id, length(payload) + length(topic) + length(detail) + ?"
                " FROM dead_letters ORDER BY id DESC", (ROW_OVERHEAD_BYTES,)):
            if total + row_bytes > keep_bytes:
                break
            first_kept, kept, total = row_id, kept + 1, total + row_bytes
        fresh = self.path.with_name(self.path.name + ".rebuild")
        for stale in (fresh, fresh.with_name(fresh.name + "-journal")):
            stale.unlink(missing_ok=True)
        whole = ", ".join(f"'{reason}'" for reason in sorted(WHOLE_REASONS))
        try:
            db.execute("ATTACH DATABASE ? AS fresh", (str(fresh),))
            db.executescript(_SCHEMA.format(db="fresh."))
            db.execute(
                f"INSERT INTO fresh.dead_letters ({_COLUMNS}) SELECT id, received_ms, topic,"
                f" substr(payload, 1, CASE WHEN reason IN ({whole}) THEN ? ELSE ? END), size,"
                f" sha256, reason, detail, topic_size, topic_sha256 FROM main.dead_letters"
                f" WHERE id >= ?",
                (WHOLE_BYTES, self.head_bytes, first_kept if first_kept is not None else 1 << 62))
            db.execute("DETACH DATABASE fresh")
            db.close()
            os.replace(fresh, self.path)
        except BaseException:
            db.close()
            fresh.unlink(missing_ok=True)
            raise
        for stale in (Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            stale.unlink(missing_ok=True)  # the old file's, checkpointed when it was closed
        dropped = self._rows - kept
        db = self._connect_once()
        self._count_evicted(dropped)
        log.warning("deadletters.rebuilt bytes_before=%d bytes_after=%d kept=%d evicted=%d "
                    "max_bytes=%d; the file was over dead_letter_max_bytes", before,
                    self._disk_bytes(), kept, dropped, self.max_bytes)
        return db

    # --- writing ----------------------------------------------------------------------------

    def add(self, letters: Iterable[DeadLetter]) -> int:
        """Store what the sources' budgets admit, shed (count) the rest; returns how many
        were stored."""
        letters = list(letters)
        if not letters:
            return 0
        rows = [self._row(d) for d in letters]
        with self._lock:
            plan = self.budget.plan(
                (source_of(d.topic), _row_bytes(row), d.received_ms)
                for d, row in zip(letters, rows, strict=True))
            kept = [row for row, admitted in zip(rows, plan.admitted, strict=True) if admitted]
            if kept:
                db = self._open()
                try:
                    self._store(db, kept)
                except (sqlite3.DatabaseError, OSError) as exc:
                    if db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
                    if storage_fault(exc) is None:
                        raise
                    raise StorageError.wrap(STORE, "write", exc) from exc
            self.budget.apply(plan)
            if len(kept) < len(rows):
                self._count_shed([(source_of(d.topic), row)
                                  for d, row, admitted in zip(letters, rows, plan.admitted,
                                                              strict=True) if not admitted])
        return len(kept)

    def _row(self, letter: DeadLetter) -> _Row:
        keep = WHOLE_BYTES if letter.reason in WHOLE_REASONS else self.head_bytes
        topic, topic_size, topic_sha256 = _topic_head(letter.topic)
        return (letter.received_ms, topic, bytes(letter.payload[:keep]),
                len(letter.payload), hashlib.sha256(letter.payload).hexdigest(), letter.reason,
                letter.detail[:_DETAIL_CHARS], topic_size, topic_sha256)

    def _store(self, db: sqlite3.Connection, rows: list[_Row]) -> None:
        """The rows, in transactions small enough for the log's allowance; the part of an
        earlier call that failed after committing some of them is skipped (lock held)."""
        done: list[_Row] = []
        if self._committed and rows[:len(self._committed)] == self._committed:
            rows, done, self._committed = rows[len(self._committed):], self._committed, []
        chunk_bytes = self.wal_bytes_allowed // 6
        try:
            start, size = 0, 0
            for end, row in enumerate(rows, 1):
                size += _row_bytes(row)
                if size >= chunk_bytes or end == len(rows):
                    self._insert(db, rows[start:end])
                    done.extend(rows[start:end])
                    start, size = end, 0
                    if self._wal_bytes() > self.wal_bytes_allowed // 2:
                        self._checkpoint(db)
        except BaseException:
            if done:
                self._committed = done
            raise

    def _insert(self, db: sqlite3.Connection, rows: Sequence[_Row]) -> None:
        """One transaction: room made by deleting the oldest letters if the file would outgrow
        its share of the budget, then the rows (lock held)."""
        need = self._pages_for(rows)
        if self._wal_bytes() + 2 * need * (self._page_bytes + 24) > self.wal_bytes_allowed:
            self._checkpoint(db)
        db.execute("BEGIN IMMEDIATE")
        evicted = self._make_room(db, need)
        db.executemany(_INSERT, rows)
        db.execute("COMMIT")
        self._rows += len(rows) - evicted
        self._count_evicted(evicted)

    def _make_room(self, db: sqlite3.Connection, need: int) -> int:
        """Delete the oldest letters until ``need`` pages are free, and a thirty-second of the
        budget more, if the file would otherwise outgrow ``_max_pages``; how many went."""
        pages, free = self._pages(db)
        if pages + max(0, need - free) <= self._max_pages:
            return 0
        want_free = need + min(self._max_pages // 32,
                               self.wal_bytes_allowed // 4 // self._page_bytes)
        deleted = 0
        while free < want_free and deleted < self._rows:
            per_row = max(1e-3, (pages - free) / (self._rows - deleted))
            count = max(1, math.ceil((want_free - free) / per_row))
            last = db.execute("SELECT id FROM dead_letters ORDER BY id LIMIT 1 OFFSET ?",
                              (count - 1,)).fetchone()
            if last is None:
                deleted += db.execute("DELETE FROM dead_letters").rowcount
                break
            deleted += db.execute("DELETE FROM dead_letters WHERE id <= ?", last).rowcount
            pages, free = self._pages(db)
        return deleted

    def _pages_for(self, rows: Sequence[_Row]) -> int:
        """Pages the rows may take, overestimated: cells, index entries, interior pages."""
        data = sum(_row_bytes(row) for row in rows) * 5 // 4
        index = sum(len(row[5]) + 16 for row in rows) * 2
        return -(-(data + index) // (self._page_bytes - 100)) + 4

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def _pages(self, db: sqlite3.Connection) -> tuple[int, int]:
        """The file's pages, and how many of them are free."""
        return (int(db.execute("PRAGMA page_count").fetchone()[0]),
                int(db.execute("PRAGMA freelist_count").fetchone()[0]))

    def _wal_bytes(self) -> int:
        return 0 if self._in_memory else _size(Path(f"{self.path}-wal"))

    def _disk_bytes(self) -> int:
        """The database file, its log and the log's index, as the file system counts them."""
        return 0 if self._in_memory else sum(
            _size(Path(f"{self.path}{suffix}")) for suffix in ("", "-wal", "-shm"))

    def disk_bytes(self) -> int:
        with self._lock:
            return self._disk_bytes()

    # --- counting -------------------------------------------------------------------------------

    def _count_evicted(self, n: int) -> None:
        if n > 0:
            self.evicted += n
            if self.metrics is not None:
                self.metrics.dead_letters_evicted.inc(n)

    def _count_shed(self, shed: list[tuple[str, _Row]]) -> None:
        by_reason = Counter(row[5] for _, row in shed)
        self.shed.update(by_reason)
        if self.metrics is not None:
            for reason, n in by_reason.items():
                self.metrics.dead_letters_shed.labels(reason).inc(n)
        self._shed_since_log.update(source for source, _ in shed)
        self._shed_bytes_since_log += sum(row[3] for _, row in shed)
        now = time.monotonic()
        if now - self._last_shed_log < SHED_LOG_INTERVAL_S:
            return
        top = ",".join(f"{_escaped(source)}:{n}"
                       for source, n in self._shed_since_log.most_common(3))
        log.warning("deadletters.shed letters=%d payload_bytes=%d sources=%d top=%s; over "
                    "dead_letter_source_bytes_per_second, counted in "
                    "homecare_dead_letters_shed_total, not stored (next line in %.0f s at the "
                    "earliest)", self._shed_since_log.total(), self._shed_bytes_since_log,
                    len(self._shed_since_log), top, SHED_LOG_INTERVAL_S)
        self._shed_since_log.clear()
        self._shed_bytes_since_log = 0
        self._last_shed_log = now

    def delete_older_than(self, before_ms: int, limit: int) -> int:
        """Of the ``limit`` oldest letters (by id), delete those received before
        ``before_ms``, in one short transaction (housekeeping's age limit, a slice at a time:
        it goes on while a whole slice went); how many went."""
        with self._lock:
            db = self._open()
            deleted = db.execute(
                "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY id"
                " LIMIT ?) AND received_ms < ?", (limit, before_ms)).rowcount
            self._rows -= deleted
        return int(deleted)

    # --- reading ----------------------------------------------------------------------------

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
        query = f"SELECT {_COLUMNS} FROM dead_letters"
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


def _row_bytes(row: _Row) -> int:
    """What a row costs the budgets: its topic, payload head and detail, a cut topic's size
    and hash, and its overhead."""
    return (len(row[1].encode()) + len(row[2]) + len(row[6].encode()) + ROW_OVERHEAD_BYTES
            + (len(row[8]) + 8 if row[8] is not None else 0))


def _topic_head(topic: str) -> tuple[str, int | None, str | None]:
    """``topic``, or its first :data:`TOPIC_HEAD_BYTES` (whole characters) with the whole
    topic's size and SHA-256 when it is longer."""
    if len(topic) * 4 <= TOPIC_HEAD_BYTES:  # at most 4 bytes a character: short enough
        return topic, None, None
    raw = topic.encode("utf-8", "surrogatepass")
    if len(raw) <= TOPIC_HEAD_BYTES:
        return topic, None, None
    head = raw[:TOPIC_HEAD_BYTES].decode("utf-8", "ignore")
    return head, len(raw), hashlib.sha256(raw).hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _escaped(text: str) -> str:
    """``text`` safe for one log line (device-made topics may hold control characters)."""
    return text.encode("unicode_escape").decode("ascii")
