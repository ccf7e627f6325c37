"""The caregiver service log: append-only and tamper-evident (hash-chained SQLite, WAL).

(A module over 400 lines: the chain's hashing, its visit rules and the store that applies
both in one transaction are one guarantee, read in one place.)

Visits are recorded by devices, not typed in: a badge check-in/check-out (``badge/event``)
becomes a record through :class:`ServiceLogRecorder`, a pipeline stage whose ``commit`` writes
the batch before the broker is acknowledged. The caregiver app checks in and out through the
API (``source="api"``, with the API key's name as ``actor``). Identifiers are pseudonymous
(caregiver, visit, bed ids), never names.

Each record carries ``prev_hash`` and ``hash = sha256(prev_hash + canonical JSON of the
record)`` where the canonical JSON has sorted keys, no spaces, UTF-8, and covers every field
but the two hashes (``seq`` included, so records cannot be reordered). The first record's
``prev_hash`` is 64 zeros. :meth:`ServiceLog.verify` recomputes the chain and reports the first
record that was changed, removed or moved; a removed *tail* is caught against the stored head
and, stronger, against a head the platform kept (``expected_head``). SQLite triggers refuse
UPDATE and DELETE, so only someone bypassing this module can change the file — and ``verify``
shows it.

Appends are idempotent per ``origin`` (a badge message's device and seq; for the API the visit
and event), so a message redelivered after a crash is recorded once. An API call is a retry
only if it is the same call (:func:`repeats`): one under a recorded origin that says anything
else (another caregiver, other services) is judged by :func:`refusal` like any new event,
never answered with the earlier record.

Nothing that contradicts its visit enters the chain (:func:`refusal`, checked in the append's
own transaction, so two writers cannot both pass): a check-out needs the visit's check-in, at
the same bed, by the same caregiver, and is made once; a visit is checked in once. The API is
told no (:class:`VisitRefused`, answered 409). A badge cannot be told no, and its message must
still be acknowledged (retrying it would never help), so a badge event that does not fit is
**set aside**, not chained: it is kept with its reason in the ``refused_visit`` table of the
same file (:meth:`ServiceLog.refused`, ``GET /api/v1/service-logs/refused``), once per origin,
and logged (``servicelog.visits_set_aside``, one line per batch). The detectors still see every
badge event. A check-out that overtook its check-in in the network is set aside too, and the
check-in that follows opens the visit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from alerts.errors import ServiceLogUnavailable, VisitRefused, storage_fault
from alerts.model import RefusalReason, VisitEvent
from devices.codec import Message
from devices.schemas import BadgeEvent

log = logging.getLogger("homecare.servicelog")

GENESIS: Final = "0" * 64
"""``prev_hash`` of the first record."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS service_log (
    seq INTEGER PRIMARY KEY,
    origin TEXT NOT NULL UNIQUE,
    at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    site TEXT NOT NULL,
    bed TEXT NOT NULL,
    caregiver TEXT NOT NULL,
    visit TEXT NOT NULL,
    event TEXT NOT NULL,
    method TEXT,
    services TEXT,
    source TEXT NOT NULL,
    device TEXT,
    actor TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS service_log_bed ON service_log (site, bed, at);
CREATE INDEX IF NOT EXISTS service_log_caregiver ON service_log (caregiver, at);
CREATE INDEX IF NOT EXISTS service_log_visit ON service_log (visit);
CREATE TABLE IF NOT EXISTS chain_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refused_visit (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL UNIQUE,
    at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    site TEXT NOT NULL,
    bed TEXT NOT NULL,
    caregiver TEXT NOT NULL,
    visit TEXT NOT NULL,
    event TEXT NOT NULL,
    method TEXT,
    services TEXT,
    source TEXT NOT NULL,
    device TEXT,
    actor TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS service_log_no_update BEFORE UPDATE ON service_log
BEGIN SELECT RAISE(ABORT, 'service log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS service_log_no_delete BEFORE DELETE ON service_log
BEGIN SELECT RAISE(ABORT, 'service log is append-only'); END;
"""

_COLUMNS: Final = ("seq, origin, at, recorded_at, site, bed, caregiver, visit, event, method,"
                   " services, source, device, actor, prev_hash, hash")


@dataclass(frozen=True, slots=True, kw_only=True)
class RefusedVisit:
    """A device's check-in/out set aside (outside the chain) with the reason."""

    event: VisitEvent
    recorded_at: int
    reason: RefusalReason
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitRecord:
    """What :func:`refusal` needs of a visit's earlier record."""

    site: str
    bed: str
    caregiver: str
    event: str


def refusal(event: VisitEvent, earlier: Sequence[VisitRecord]
            ) -> tuple[RefusalReason, str] | None:
    """Why ``event`` contradicts the earlier records of its visit (oldest first), or ``None``.

    >>> visit = dict(origin="o", at=0, site="s", bed="b", caregiver="c-1", visit="v-1",
    ...              source="api")
    >>> refusal(VisitEvent(event="check_out", **visit), [])
    ('no_check_in', 'visit v-1 has no check-in')
    >>> refusal(VisitEvent(event="check_out", **visit), [VisitRecord(
    ...     site="s", bed="b", caregiver="c-1", event="check_in")]) is None
    True
    """
    check_in = next((r for r in earlier if r.event == "check_in"), None)
    if event.event == "check_in":
        if check_in is None:
            return None
        return "already_checked_in", (f"visit {event.visit} was already checked in at "
                                      f"{check_in.site}/{check_in.bed}")
    if check_in is None:
        return "no_check_in", f"visit {event.visit} has no check-in"
    if (check_in.site, check_in.bed) != (event.site, event.bed):
        return "other_bed", (f"visit {event.visit} was checked in at {check_in.site}/"
                             f"{check_in.bed}, not {event.site}/{event.bed}")
    if any(r.event == "check_out" for r in earlier):
        return "already_checked_out", f"visit {event.visit} was already checked out"
    if check_in.caregiver != event.caregiver:
        return "other_caregiver", (f"visit {event.visit} was checked in by caregiver "
                                   f"{check_in.caregiver}")
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRecord:
    """A record of the log, with its place in the chain."""

    seq: int
    origin: str
    at: int
    recorded_at: int
    site: str
    bed: str
    caregiver: str
    visit: str
    event: str
    method: str | None
    services: tuple[str, ...] | None
    source: str
    device: str | None
    actor: str | None
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        """The fields the hash covers (everything but the two hashes)."""
        fields = asdict(self)
        del fields["prev_hash"], fields["hash"]
        if self.services is not None:
            fields["services"] = list(self.services)
        return fields


def repeats(event: VisitEvent, recorded: ServiceRecord, *, last_of_visit: bool) -> bool:
    """Whether ``event``, of the same origin as ``recorded``, is that call made again (answered
    with ``recorded``, not chained twice) rather than a new event for :func:`refusal` to judge.

    A badge's origin names one message (device, seq, time): the same origin is a redelivery,
    whenever it comes. The API's origin names a visit's check-in or check-out, so an API call
    is a retry only if it says the same (site, bed, caregiver, visit, event, method, services)
    while the visit is where that call left it (``last_of_visit``): a check-in sent again after
    the visit's check-out is a new check-in, refused as a badge's would be."""
    if event.source == "badge":
        return True
    return last_of_visit and (
        (event.site, event.bed, event.caregiver, event.visit, event.event, event.method,
         event.services)
        == (recorded.site, recorded.bed, recorded.caregiver, recorded.visit, recorded.event,
            recorded.method, recorded.services))


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    ok: bool
    records: int
    """Records checked."""
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    error: str | None = None


def canonical_json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """``sha256(prev_hash + canonical JSON of fields)`` as hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(fields)).hexdigest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _record(row: Any) -> ServiceRecord:
    (seq, origin, at, recorded_at, site, bed, caregiver, visit, event, method, services, source,
     device, actor, prev_hash, digest) = row
    return ServiceRecord(
        seq=seq, origin=origin, at=at, recorded_at=recorded_at, site=site, bed=bed,
        caregiver=caregiver, visit=visit, event=event, method=method,
        services=None if services is None else tuple(json.loads(services)), source=source,
        device=device, actor=actor, prev_hash=prev_hash, hash=digest)


class ServiceLog:
    """Thread-safe; every method blocks on SQLite (call it from a worker thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    # --- writing ----------------------------------------------------------------------------

    def append(self, events: Sequence[VisitEvent], *, now_ms: int | None = None,
               set_aside_refused: bool = False) -> list[tuple[ServiceRecord, bool]]:
        """Record ``events`` in order, one transaction. Returns each event's record and whether
        it is new (``False``: the same call was recorded before, :func:`repeats`; the earlier
        record is returned).

        An event that contradicts its visit (:func:`refusal`) raises :class:`VisitRefused` and
        nothing of the batch is recorded; with ``set_aside_refused`` (devices, which cannot be
        told no) it is kept in the refused table instead and left out of the result."""
        if not events:
            return []
        recorded_at = _now_ms() if now_ms is None else now_ms
        with self._lock:
            try:
                return self._append(events, recorded_at, set_aside_refused)
            except sqlite3.DatabaseError as exc:
                if storage_fault(exc) is None:
                    raise
                raise ServiceLogUnavailable.wrap("servicelog", "write", exc) from exc

    def _append(self, events: Sequence[VisitEvent], recorded_at: int,
                set_aside_refused: bool = False) -> list[tuple[ServiceRecord, bool]]:
        out: list[tuple[ServiceRecord, bool]] = []
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            head = db.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
            seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            for event in events:
                rows = db.execute("SELECT seq, site, bed, caregiver, event FROM service_log"
                                  " WHERE visit = ? ORDER BY seq", (event.visit,)).fetchall()
                existing = db.execute(f"SELECT {_COLUMNS} FROM service_log WHERE origin = ?",
                                      (event.origin,)).fetchone()
                if existing is not None:
                    recorded = _record(existing)
                    last_of_visit = bool(rows) and rows[-1][0] == recorded.seq
                    if repeats(event, recorded, last_of_visit=last_of_visit):
                        out.append((recorded, False))
                        continue
                earlier = [VisitRecord(site=r[1], bed=r[2], caregiver=r[3], event=r[4])
                           for r in rows]
                refused = refusal(event, earlier)
                if refused is not None:
                    if not set_aside_refused:
                        raise VisitRefused(event, *refused)
                    db.execute(
                        "INSERT INTO refused_visit (origin, at, recorded_at, site, bed,"
                        " caregiver, visit, event, method, services, source, device, actor,"
                        " reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (origin) DO NOTHING",
                        (event.origin, event.at, recorded_at, event.site, event.bed,
                         event.caregiver, event.visit, event.event, event.method,
                         None if event.services is None else json.dumps(list(event.services)),
                         event.source, event.device, event.actor, *refused))
                    continue
                seq += 1
                unsealed = ServiceRecord(
                    seq=seq, origin=event.origin, at=event.at, recorded_at=recorded_at,
                    site=event.site, bed=event.bed, caregiver=event.caregiver,
                    visit=event.visit, event=event.event, method=event.method,
                    services=event.services, source=event.source, device=event.device,
                    actor=event.actor, prev_hash=prev, hash="")
                digest = chain_hash(prev, unsealed.body())
                db.execute(
                    f"INSERT INTO service_log ({_COLUMNS}) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, event.origin, event.at, recorded_at, event.site, event.bed,
                     event.caregiver, event.visit, event.event, event.method,
                     None if event.services is None else json.dumps(list(event.services)),
                     event.source, event.device, event.actor, prev, digest))
                out.append((ServiceRecord(**{**asdict(unsealed), "hash": digest}), True))
                prev = digest
            db.execute("INSERT INTO chain_head (id, seq, hash) VALUES (1, ?, ?)"
                       " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq,"
                       " hash = excluded.hash", (seq, prev))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return out

    # --- reading ----------------------------------------------------------------------------

    def query(self, *, site: str | None = None, bed: str | None = None,
              caregiver: str | None = None, visit: str | None = None,
              since: int | None = None, until: int | None = None,
              before_seq: int | None = None, after_seq: int | None = None,
              newest_first: bool = True, limit: int = 100) -> list[ServiceRecord]:
        """Records matching every given filter (``since <= at < until``), by ``seq``."""
        where: list[str] = []
        args: list[object] = []
        filters: tuple[tuple[str, object], ...] = (
            ("site = ?", site), ("bed = ?", bed), ("caregiver = ?", caregiver),
            ("visit = ?", visit), ("at >= ?", since), ("at < ?", until),
            ("seq < ?", before_seq), ("seq > ?", after_seq))
        for clause, value in filters:
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = f"SELECT {_COLUMNS} FROM service_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_record(row) for row in rows]

    def refused(self, *, limit: int = 100) -> list[RefusedVisit]:
        """Device check-ins/outs set aside (never chained), newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT origin, at, recorded_at, site, bed, caregiver, visit, event, method,"
                " services, source, device, actor, reason, detail FROM refused_visit"
                " ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [RefusedVisit(
            event=VisitEvent(origin=r[0], at=r[1], site=r[3], bed=r[4], caregiver=r[5],
                             visit=r[6], event=r[7], method=r[8],
                             services=None if r[9] is None else tuple(json.loads(r[9])),
                             source=r[10], device=r[11], actor=r[12]),
            recorded_at=r[2], reason=r[13], detail=r[14]) for r in rows]

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last record; ``(0, GENESIS)`` when empty. The platform keeps
        this to prove later that nothing after it was removed."""
        with self._lock:
            row = self._db.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def _pages(self, page: int = 1000) -> Iterator[list[ServiceRecord]]:
        after = -1
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM service_log WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, page)).fetchall()
            if not rows:
                return
            records = [_record(row) for row in rows]
            yield records
            after = records[-1].seq

    def verify(self, *, expected_head: tuple[int, str] | None = None) -> Verification:
        """Recompute the chain. ``expected_head``: a ``(seq, hash)`` from :meth:`head` kept
        elsewhere; the log must still contain exactly that record."""
        prev = GENESIS
        expected_seq = 1
        count = 0
        witnessed = expected_head is None or expected_head == (0, GENESIS)

        def bad(seq: int | None, error: str) -> Verification:
            return Verification(ok=False, records=count, head_seq=expected_seq - 1,
                                head_hash=prev, first_bad_seq=seq, error=error)

        for records in self._pages():
            for record in records:
                if record.seq != expected_seq:
                    return bad(expected_seq, f"record {expected_seq} is missing "
                                             f"(next is {record.seq})")
                if record.prev_hash != prev:
                    return bad(record.seq, f"record {record.seq} does not link to the previous "
                                           "record")
                if chain_hash(prev, record.body()) != record.hash:
                    return bad(record.seq, f"record {record.seq} was changed")
                if expected_head is not None and record.seq == expected_head[0]:
                    if record.hash != expected_head[1]:
                        return bad(record.seq, f"record {record.seq} differs from the kept head")
                    witnessed = True
                prev = record.hash
                expected_seq += 1
                count += 1
        stored = self.head()
        if stored != (count, prev):
            return bad(count + 1, f"records after {count} were removed (stored head is "
                                  f"record {stored[0]})")
        if not witnessed:
            return bad(count + 1, f"the kept head (record {expected_head and expected_head[0]})"
                                  " is gone: records were removed")
        return Verification(ok=True, records=count, head_seq=count, head_hash=prev)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ServiceLogRecorder:
    """Pipeline stage: badge check-ins/outs into the service log before acknowledgement;
    those that contradict their visit are set aside with the reason (module docstring)."""

    name = "servicelog"

    def __init__(self, log: ServiceLog) -> None:
        self.log = log
        self._pending: list[VisitEvent] = []

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        for message in messages:
            payload = message.payload
            if not isinstance(payload, BadgeEvent):
                continue
            a = message.address
            self._pending.append(VisitEvent(
                origin=f"badge:{a.site}/{a.bed}/{a.device}/{payload.seq}/{payload.ts}",
                at=payload.ts, site=a.site, bed=a.bed, caregiver=payload.caregiver,
                visit=payload.visit, event=payload.event, source="badge",
                method=payload.method, services=payload.services, device=a.device))

    def commit(self) -> None:
        # Runs in the commit thread while the event loop waits for it; keep the batch until it
        # is written, so a failed commit is retried with the same events (origins dedupe).
        n = len(self._pending)
        if n:
            kept = self.log.append(self._pending[:n], set_aside_refused=True)
            if len(kept) < n:
                log.warning("servicelog.visits_set_aside count=%d (they contradict their "
                            "visits; GET /api/v1/service-logs/refused)", n - len(kept))
            del self._pending[:n]


def api_origin(site: str, bed: str, visit: str, event: str) -> str:
    """Idempotency key of an API check-in/out: one of each per visit; a call under a recorded
    key is a retry only if it is the same call (:func:`repeats`)."""
    return f"api:{site}/{bed}/{visit}/{event}"
