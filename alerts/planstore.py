"""The service plans on disk: ``data_dir/plans.sqlite3``, one row per planned visit.

Keyed by site and plan id (:class:`~alerts.plans.PlannedVisit`): the same plan again changes
nothing (``unchanged``, nothing written), a plan that differs replaces the stored one. An
import is one transaction: every row or none. Every change raises the store's **revision** in
the same transaction, so the ``service_anomaly`` detector, which asks for the revision once
per evaluation, reloads the plans it holds only when something changed, whichever process
(the gateway's API, ``homecare plans import``) changed them.

A plan store in trouble never stops the gateway: when the file cannot be opened the store says
so once in the log and every call raises :class:`~alerts.errors.PlanStoreUnavailable` (the
API answers 503; the detector keeps the plans it has) until a later call manages to open it.

Thread-safe: one connection behind one lock; every method blocks on SQLite (run it off the
event loop).

>>> import zoneinfo
>>> from alerts.plans import DEFAULT_CATALOGUE, Catalogue, make_plan
>>> plan, _ = make_plan(site="s", bed="b", plan="p-1", caregiver="c001", date="2026-11-02",
...                     start="09:00", end="10:00", services=["medication"],
...                     catalogue=Catalogue.parse(DEFAULT_CATALOGUE),
...                     zone=zoneinfo.ZoneInfo("UTC"))
>>> store = PlanStore(":memory:")
>>> store.put(plan, actor="anna", now_ms=1), store.put(plan, actor="anna", now_ms=2)
('created', 'unchanged')
>>> [p.plan for p in store.between(plan.start_ms, plan.end_ms)]
['p-1']
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar

import msgspec

from alerts.errors import PlanStoreUnavailable, storage_fault
from alerts.plans import PlannedVisit, PlanRow

log = logging.getLogger("homecare.alerts.plans")

SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    site TEXT NOT NULL,
    plan TEXT NOT NULL,
    bed TEXT NOT NULL,
    caregiver TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    cancelled INTEGER NOT NULL,
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (site, plan)
);
CREATE INDEX IF NOT EXISTS plans_start ON plans (start_ms, site, plan);
CREATE INDEX IF NOT EXISTS plans_end ON plans (end_ms);
CREATE INDEX IF NOT EXISTS plans_bed ON plans (site, bed, start_ms);
CREATE TABLE IF NOT EXISTS revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
"""

Upserted = Literal["created", "updated", "unchanged"]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class PlanImportResult:
    """What an import did (or, for a dry run, would do), per row and in total."""

    rows: tuple[tuple[int, str, str, Upserted], ...]
    """``(row, site, plan, what)`` for every row, in file order."""

    def count(self, what: Upserted) -> int:
        return sum(1 for *_, done in self.rows if done == what)


class PlanStore:
    """Planned visits by (site, plan); ``":memory:"`` for tests."""

    def __init__(self, path: str | Path) -> None:
        self.path = path if path == ":memory:" else Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(PlannedVisit)
        self._failing = False
        with self._lock, contextlib.suppress(PlanStoreUnavailable):
            self._open()  # at start, to say so at once; else at each call

    def _open(self) -> sqlite3.Connection:
        """The connection, opened now if need be (caller holds the lock)."""
        if self._db is not None:
            return self._db
        try:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
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
            except BaseException:
                db.close()
                raise
        except (sqlite3.DatabaseError, OSError) as exc:
            error = PlanStoreUnavailable.wrap("plans", f"open ({self.path})", exc)
            if not self._failing:
                self._failing = True
                log.error("plans.unavailable path=%s reason=%s; service plans cannot be read "
                          "or changed until the file can be opened; visits are still checked "
                          "against the plans already loaded", self.path, error.fault.reason)
            raise error from exc
        if self._failing:
            self._failing = False
            log.info("plans.available path=%s", self.path)
        self._db = db
        return db

    # --- reading ------------------------------------------------------------------------------

    def revision(self) -> int:
        """Raised by every change (0 for a store never changed)."""
        with self._lock:
            row = self._run(lambda db: db.execute(
                "SELECT value FROM revision WHERE id = 1").fetchone())
        return int(row[0]) if row else 0

    def get(self, site: str, plan: str) -> PlannedVisit | None:
        with self._lock:
            row = self._run(lambda db: db.execute(
                "SELECT body FROM plans WHERE site = ? AND plan = ?", (site, plan)).fetchone())
        return self._decoder.decode(row[0]) if row else None

    def between(self, since_ms: int, until_ms: int) -> list[PlannedVisit]:
        """Every plan whose window overlaps ``[since_ms, until_ms)`` (cancelled ones too)."""
        with self._lock:
            rows = self._run(lambda db: db.execute(
                "SELECT body FROM plans WHERE end_ms > ? AND start_ms < ?"
                " ORDER BY start_ms, site, plan", (since_ms, until_ms)).fetchall())
        return [self._decoder.decode(row[0]) for row in rows]

    def planned_beds(self, since_ms: int, until_ms: int) -> set[tuple[str, str]]:
        """``(site, bed)`` of the beds with a plan (not cancelled) overlapping the span: the
        beds whose visits are expected to follow a plan."""
        with self._lock:
            rows = self._run(lambda db: db.execute(
                "SELECT DISTINCT site, bed FROM plans WHERE end_ms > ? AND start_ms < ?"
                " AND NOT cancelled", (since_ms, until_ms)).fetchall())
        return {(str(site), str(bed)) for site, bed in rows}

    def list(self, *, site: str | None = None, bed: str | None = None,
             caregiver: str | None = None, since_ms: int | None = None,
             until_ms: int | None = None, after: tuple[int, str, str] | None = None,
             limit: int = 100) -> list[PlannedVisit]:
        """Plans by window start (then site and plan id), those whose window ends after
        ``since_ms`` and starts before ``until_ms``, after the plan ``after`` (a cursor:
        ``(start_ms, site, plan)``), at most ``limit``."""
        where, args = [], []
        for clause, value in (("site = ?", site), ("bed = ?", bed),
                              ("caregiver = ?", caregiver), ("end_ms > ?", since_ms),
                              ("start_ms < ?", until_ms)):
            if value is not None:
                where.append(clause)
                args.append(value)
        if after is not None:
            where.append("(start_ms, site, plan) > (?, ?, ?)")
            args += after
        sql = ("SELECT body FROM plans" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY start_ms, site, plan LIMIT ?")
        with self._lock:
            rows = self._run(lambda db: db.execute(sql, (*args, limit)).fetchall())
        return [self._decoder.decode(row[0]) for row in rows]

    # --- writing ------------------------------------------------------------------------------

    def put(self, plan: PlannedVisit, *, actor: str, now_ms: int) -> Upserted:
        """Create or replace one plan; ``unchanged`` when it is the same (nothing written)."""
        return self.import_rows([plan], actor=actor, now_ms=now_ms).rows[0][3]

    def import_rows(self, rows: Sequence[PlanRow | PlannedVisit], *, actor: str, now_ms: int,
                    dry_run: bool = False) -> PlanImportResult:
        """Upsert every row in one transaction (all or nothing); the same rows again change
        nothing. ``dry_run``: say what would change, write nothing."""
        if not actor:
            raise ValueError("actor is required")

        def upsert(db: sqlite3.Connection) -> PlanImportResult:
            done: list[tuple[int, str, str, Upserted]] = []
            db.execute("BEGIN IMMEDIATE")
            try:
                for number, row in enumerate(rows, start=1):
                    plan = row.plan if isinstance(row, PlanRow) else row
                    if isinstance(row, PlanRow):
                        number = row.row
                    found = db.execute("SELECT body FROM plans WHERE site = ? AND plan = ?",
                                       (plan.site, plan.plan)).fetchone()
                    stored = self._decoder.decode(found[0]) if found else None
                    if stored is not None and stored.same_plan(plan):
                        done.append((number, plan.site, plan.plan, "unchanged"))
                        continue
                    plan = msgspec.structs.replace(plan, updated_at=now_ms, updated_by=actor)
                    db.execute(
                        "INSERT INTO plans (site, plan, bed, caregiver, start_ms, end_ms,"
                        " cancelled, body, updated_at, updated_by)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (site, plan) DO UPDATE SET bed = excluded.bed,"
                        " caregiver = excluded.caregiver, start_ms = excluded.start_ms,"
                        " end_ms = excluded.end_ms, cancelled = excluded.cancelled,"
                        " body = excluded.body,"
                        " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                        (plan.site, plan.plan, plan.bed, plan.caregiver, plan.start_ms,
                         plan.end_ms, int(plan.cancelled), self._encoder.encode(plan).decode(),
                         now_ms, actor))
                    done.append((number, plan.site, plan.plan,
                                 "created" if stored is None else "updated"))
                if any(what != "unchanged" for *_, what in done):
                    _bump(db)
                db.execute("ROLLBACK" if dry_run else "COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return PlanImportResult(tuple(done))

        with self._lock:
            return self._run(upsert)

    def delete(self, site: str, plan: str) -> bool:
        """Remove one plan; False when there was none."""

        def remove(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            try:
                gone = db.execute("DELETE FROM plans WHERE site = ? AND plan = ?",
                                  (site, plan)).rowcount
                if gone:
                    _bump(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return bool(gone)

        with self._lock:
            return self._run(remove)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> PlanStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work`` on the connection (caller holds the lock); storage faults become
        :class:`PlanStoreUnavailable`."""
        db = self._open()
        try:
            return work(db)
        except sqlite3.DatabaseError as exc:
            if storage_fault(exc) is None:
                raise
            raise PlanStoreUnavailable.wrap("plans", "read or write", exc) from exc


def _bump(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO revision (id, value) VALUES (1, 1)"
               " ON CONFLICT (id) DO UPDATE SET value = value + 1")
