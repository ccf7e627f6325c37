"""The resident profiles on disk: their own SQLite file, readable by the gateway's user only.

``data_dir/residents.sqlite3`` holds nothing but the profiles (:class:`~alerts.residents.
Resident`), apart from the alert store, the outbox and everything else that is backed up,
shipped or read by other tools. The file and SQLite's ``-wal``, ``-shm`` and ``-journal``
files beside it are mode 0600: created so, and tightened at every open when someone loosened
them (logged, with the path and the old mode only). A file whose mode cannot be tightened is
not used.

A profile store in trouble never stops the gateway: when the file cannot be opened (disk
trouble, permissions) the store says so once in the log and every call raises
:class:`~alerts.errors.ResidentStoreUnavailable` (the API answers 503) until a later call
manages to open it. Emergency calls do not depend on it.

Nothing here logs a profile's content; the log names files, modes and counts.

Thread-safe: one connection behind one lock; every method blocks on SQLite (run it off the
event loop).

>>> from alerts.residents import Resident
>>> store = ResidentStore(":memory:")
>>> store.put(Resident(site="s", bed="b", display_name="Wang Mei"), actor="anna", now_ms=1)
'created'
>>> store.get("s", "b").updated_by
'anna'
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar

import msgspec

from alerts.errors import ResidentStoreUnavailable, storage_fault
from alerts.residents import Resident, ResidentRow, problems

log = logging.getLogger("homecare.alerts.residents")

FILE_MODE: Final = 0o600
SCHEMA_VERSION: Final = 1
_SIDE_FILES: Final = ("", "-wal", "-shm", "-journal")
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS residents (
    site TEXT NOT NULL,
    bed TEXT NOT NULL,
    profile TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (site, bed)
);
"""

Upserted = Literal["created", "updated", "unchanged"]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did (or, for a dry run, would do), per row and in total."""

    rows: tuple[tuple[int, str, str, Upserted], ...]
    """``(row, site, bed, what)`` for every row, in file order."""

    def count(self, what: Upserted) -> int:
        return sum(1 for *_, done in self.rows if done == what)


def make_private(path: Path) -> list[tuple[str, int]]:
    """Create ``path`` (mode 0600) if it is missing, and give it and SQLite's files beside it
    mode 0600; returns ``(file name, old mode)`` of each file it had to tighten. Raises
    ``PermissionError`` when a file stays readable by others (a file system without modes, a
    file of another user)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(fd)
    tightened = []
    for suffix in _SIDE_FILES:
        side = path.with_name(path.name + suffix)
        try:
            mode = stat.S_IMODE(os.stat(side).st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(side, FILE_MODE)
            tightened.append((side.name, mode))
            if stat.S_IMODE(os.stat(side).st_mode) & 0o077:
                raise PermissionError(f"{side} stays readable by others (mode "
                                      f"{stat.S_IMODE(os.stat(side).st_mode):o}) after chmod")
    return tightened


class ResidentStore:
    """Resident profiles by (site, bed); ``":memory:"`` for tests."""

    def __init__(self, path: str | Path) -> None:
        self.path = path if path == ":memory:" else Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Resident)
        self._failing = False
        with self._lock, contextlib.suppress(ResidentStoreUnavailable):
            self._open()  # at start, to tighten the files and say so; else at each call

    # --- opening ------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """The connection, opened now if need be (caller holds the lock)."""
        if self._db is not None:
            return self._db
        try:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                for name, mode in make_private(self.path):
                    log.warning("residents.permissions_tightened file=%s mode_was=%o mode=600; "
                                "resident profiles must be readable by the gateway's user "
                                "only", name, mode)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                 timeout=10.0)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(_SCHEMA)
                row = db.execute("SELECT max(version) FROM schema_version").fetchone()
                if row[0] is None:
                    db.execute("INSERT INTO schema_version (version) VALUES (?)",
                               (SCHEMA_VERSION,))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(f"schema version {row[0]} is newer than this "
                                                f"gateway's {SCHEMA_VERSION}")
                if isinstance(self.path, Path):
                    make_private(self.path)  # -wal and -shm exist now: check them too
            except BaseException:
                db.close()
                raise
        except (sqlite3.DatabaseError, OSError) as exc:
            error = ResidentStoreUnavailable.wrap("residents", f"open ({self.path})", exc)
            if not self._failing:
                self._failing = True
                log.error("residents.unavailable path=%s reason=%s; resident profiles cannot "
                          "be read or changed (the API answers 503) until the file can be "
                          "opened; alerts are not affected", self.path, error.fault.reason)
            raise error from exc
        if self._failing:
            self._failing = False
            log.info("residents.available path=%s", self.path)
        self._db = db
        return db

    # --- reading ------------------------------------------------------------------------------

    def get(self, site: str, bed: str) -> Resident | None:
        """The profile of ``site``/``bed``, if there is one."""
        with self._lock:
            row = self._run(lambda db: db.execute(
                "SELECT profile FROM residents WHERE site = ? AND bed = ?",
                (site, bed)).fetchone())
        return self._decoder.decode(row[0]) if row else None

    def list(self, *, site: str | None = None, bed: str | None = None,
             after: tuple[str, str] | None = None, limit: int = 100) -> list[Resident]:
        """Profiles by site and bed, those of ``site`` (and ``bed``) only if given, after the
        bed ``after`` (a cursor), at most ``limit``."""
        where, args = [], []
        for column, value in (("site", site), ("bed", bed)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if after is not None:
            where.append("(site, bed) > (?, ?)")
            args += after
        sql = ("SELECT profile FROM residents" + (" WHERE " + " AND ".join(where) if where
                                                  else "") + " ORDER BY site, bed LIMIT ?")
        with self._lock:
            rows = self._run(lambda db: db.execute(sql, (*args, limit)).fetchall())
        return [self._decoder.decode(row[0]) for row in rows]

    def count(self) -> int:
        with self._lock:
            row = self._run(lambda db: db.execute("SELECT count(*) FROM residents").fetchone())
        return int(row[0])

    # --- writing ------------------------------------------------------------------------------

    def put(self, resident: Resident, *, actor: str, now_ms: int) -> Upserted:
        """Create or replace the profile of its bed; ``unchanged`` when it is the same (then
        nothing is written). Raises ``ValueError`` for a profile :func:`problems` refuses."""
        result = self.import_rows([resident], actor=actor, now_ms=now_ms)
        return result.rows[0][3]

    def import_rows(self, rows: Sequence[ResidentRow | Resident], *, actor: str, now_ms: int,
                    dry_run: bool = False) -> ImportResult:
        """Upsert every row in one transaction (all or nothing): a :class:`ResidentRow`
        updates the fields it gives, a :class:`Resident` replaces the whole profile. The same
        rows again change nothing. ``dry_run``: say what would change, write nothing."""
        if not actor:
            raise ValueError("actor is required")

        def upsert(db: sqlite3.Connection) -> ImportResult:
            done: list[tuple[int, str, str, Upserted]] = []
            db.execute("BEGIN IMMEDIATE")
            try:
                for number, row in enumerate(rows, start=2):
                    found = db.execute("SELECT profile FROM residents WHERE site = ? AND bed = ?",
                                       (row.site, row.bed)).fetchone()
                    stored = self._decoder.decode(found[0]) if found else None
                    if isinstance(row, ResidentRow):
                        number, changed = row.row, row.applied_to(stored)
                    else:
                        changed = row
                    bad = problems(changed)
                    if bad:
                        where = f"row {number}: " if isinstance(row, ResidentRow) or len(
                            rows) > 1 else ""
                        raise ValueError(where + "; ".join(
                            f"{column}: {what}" for column, what in bad))
                    if stored is not None and stored.same_profile(changed):
                        done.append((number, row.site, row.bed, "unchanged"))
                        continue
                    changed = msgspec.structs.replace(changed, updated_at=now_ms,
                                                      updated_by=actor)
                    db.execute(
                        "INSERT INTO residents (site, bed, profile, updated_at, updated_by)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (site, bed) DO UPDATE SET"
                        " profile = excluded.profile, updated_at = excluded.updated_at,"
                        " updated_by = excluded.updated_by",
                        (row.site, row.bed, self._encoder.encode(changed).decode(), now_ms,
                         actor))
                    done.append((number, row.site, row.bed,
                                 "created" if stored is None else "updated"))
                db.execute("ROLLBACK" if dry_run else "COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return ImportResult(tuple(done))

        with self._lock:
            return self._run(upsert)

    def delete(self, site: str, bed: str) -> bool:
        """Remove the profile of ``site``/``bed``; False when there was none."""
        with self._lock:
            cursor = self._run(lambda db: db.execute(
                "DELETE FROM residents WHERE site = ? AND bed = ?", (site, bed)))
        return bool(cursor.rowcount)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ResidentStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------------

    def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work`` on the connection (caller holds the lock); storage faults become
        :class:`ResidentStoreUnavailable`."""
        db = self._open()
        try:
            return work(db)
        except sqlite3.DatabaseError as exc:
            if storage_fault(exc) is None:
                raise
            raise ResidentStoreUnavailable.wrap("residents", "read or write", exc) from exc
