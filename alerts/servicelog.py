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
``prev_hash`` is 64 zeros. SQLite triggers refuse UPDATE and DELETE, so only someone bypassing
this module can change the file — and :meth:`ServiceLog.verify` shows it: it recomputes the
chain and reports the first record that was changed, removed or moved. The chain alone cannot
show a rewrite that re-hashed every record after an edit and the stored head too: that takes a
head kept elsewhere. Each record goes upstream with the chain's head as of it (``seq`` and
``hash``), the platform keeps them, and ``verify(heads=...)`` (``homecare verify-log --head``)
names the first record that is not the one a kept head says, or that is gone. Verification
goes on from the last record verified (a checkpoint, itself checked as a head); ``full``
recomputes every record, which also finds an edit behind the checkpoint left un-hashed.

Appends are idempotent per ``origin`` (a badge message's device and seq; for the API the site,
bed, caregiver, visit and event: :func:`api_origin`), so a message redelivered after a crash is
recorded once. An API call is a retry
only if it is the same call (:func:`repeats`): one under a recorded origin that says anything
else (another caregiver, other services) is judged by :func:`refusal` like any new event,
never answered with the earlier record.

A visit is keyed by site, bed, caregiver and visit id, never by the visit id alone: caregivers'
badges and apps number their visits on their own, so ``v-1`` checked in at two beds, or by two
caregivers, is two visits, each checked and recorded as its own. Nothing that contradicts its
visit enters the chain (:func:`refusal`, checked in the append's own transaction, so two
writers cannot both pass): a check-out needs the visit's check-in, at the same bed, by the same
caregiver, and is made once; a visit is checked in once. A check-in under the key of a visit
that was checked out before it, or checked in :data:`VISIT_GIVEN_UP_MS` before it and never
out (a badge that always sends the same visit id, an app retrying days later), is a new visit
that the log cannot record under that key: refused as ``visit_id_reused``, naming the earlier
visit (any other check-in of a visit checked in already cannot be told from a retry:
``already_checked_in``). A check-out whose visit has no
check-in under its key, while that visit id is checked in (and not out) at another bed or by
another caregiver, is refused naming that (``other_bed``, ``other_caregiver``). The API is
told no (:class:`VisitRefused`, answered 409). A badge cannot be told no, and its message must
still be acknowledged (retrying it would never help), so a badge event that does not fit is
**set aside**, not chained: it is kept with its reason in the ``refused_visit`` table of the
same file (:meth:`ServiceLog.refused`, ``GET /api/v1/service-logs/refused``), once per origin,
logged (``servicelog.visits_set_aside``, one line per batch, with the reasons) and counted
(``homecare_service_visits_set_aside_total{reason}``). The detectors still see every
badge event. A check-out that overtook its check-in (a batch, a QoS 1 redelivery, two sessions: the
device contract allows reordering) is not lost: in one batch the check-in is chained first
(:func:`in_visit_order`); a check-out that came in an earlier batch is set aside as
``no_check_in`` until its check-in comes, then taken out of the refused table and chained
right after it (if its device time is at or after the check-in's and less than
:data:`VISIT_GIVEN_UP_MS` later; logged ``servicelog.check_out_chained``).

**A budget of rows per badge.** Every badge event the log takes is a row for good (chained)
or for months (set aside), so the recorder may be given a :class:`RowBudget` (the gateway's is
:class:`gateway.ingest.badgebudget.BadgeBudget`): asked, in the append's own transaction, about
each badge event that would add a row, and charged only once that transaction is committed. An
event it does not admit is neither chained nor set aside (the gateway dead-letters it); an
event the log already holds (the same origin: a redelivery) adds no row and is never asked.

**Judged visits.** The ``service_anomaly`` detector's measurements of each visit it judged
(sensed time, the household's usual people count, infrared samples, the recordings linked and
their coverage, its verdict: :class:`JudgedVisit`) are kept in the ``judged_visit`` table of
the same file, outside the chain (:meth:`ServiceLog.record_judged`), one row per visit (site,
bed, caregiver, visit id), for :data:`JUDGED_KEEP_MS` after its judgement. Settling reads them
(:meth:`ServiceLog.judged`) into the visit's service record, which is chained: that record, not
the table, is what can be traced and verified. A judgement written after its visit's record was
chained without it is queued in ``judged_after_settling``
(:meth:`ServiceLog.judged_after_settling`) until settling has revised the record. A file of
before gets the tables when opened.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

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
CREATE TABLE IF NOT EXISTS settlement (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    log_seq INTEGER NOT NULL,
    alert_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS verify_checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    verified_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS verify_audit (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    records INTEGER NOT NULL,
    head_seq INTEGER NOT NULL,
    first_bad_seq INTEGER,
    error TEXT,
    seconds REAL NOT NULL
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
CREATE INDEX IF NOT EXISTS refused_visit_reason ON refused_visit (reason, at);
CREATE TABLE IF NOT EXISTS judged_visit (
    site TEXT NOT NULL,
    bed TEXT NOT NULL,
    caregiver TEXT NOT NULL,
    visit TEXT NOT NULL,
    judged_at INTEGER NOT NULL,
    measured TEXT NOT NULL,
    PRIMARY KEY (site, bed, caregiver, visit)
);
CREATE INDEX IF NOT EXISTS judged_visit_at ON judged_visit (judged_at);
CREATE TABLE IF NOT EXISTS judged_after_settling (
    site TEXT NOT NULL,
    bed TEXT NOT NULL,
    caregiver TEXT NOT NULL,
    visit TEXT NOT NULL,
    PRIMARY KEY (site, bed, caregiver, visit)
);
CREATE TRIGGER IF NOT EXISTS service_log_no_update BEFORE UPDATE ON service_log
BEGIN SELECT RAISE(ABORT, 'service log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS service_log_no_delete BEFORE DELETE ON service_log
BEGIN SELECT RAISE(ABORT, 'service log is append-only'); END;
"""

_COLUMNS: Final = ("seq, origin, at, recorded_at, site, bed, caregiver, visit, event, method,"
                   " services, source, device, actor, prev_hash, hash, detail")
SERVICE_RECORD: Final = "service"
"""``event`` of a finished visit's service record (:meth:`ServiceLog.append_service`)."""
GATEWAY: Final = "gateway"
"""``source`` of a service record: the gateway settled it."""
JUDGED_KEEP_MS: Final = 35 * 86_400_000
"""How long a judged visit's measurements are kept (its service record, settled minutes after
the judgement, keeps them in the chain for good)."""


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
    at: int | None = None
    """When it happened (None: not known, so a later check-in cannot be told from a retry)."""


VISIT_GIVEN_UP_MS: Final = 24 * 3_600_000
"""A visit checked in this long before and never checked out is given up (as the
``service_anomaly`` detector gives it up): a check-in under its key is a new visit."""


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
        check_out = next((r for r in earlier if r.event == "check_out"), None)
        if check_out is not None and check_out.at is not None and event.at > check_out.at:
            return "visit_id_reused", (
                f"visit {event.visit} of caregiver {event.caregiver} was checked out at "
                f"{event.site}/{event.bed} before this check-in: a new visit under the same "
                f"visit id (at {check_out.at}), not recorded under it")
        if (check_out is None and check_in.at is not None
                and event.at >= check_in.at + VISIT_GIVEN_UP_MS):
            return "visit_id_reused", (
                f"visit {event.visit} of caregiver {event.caregiver} was checked in at "
                f"{event.site}/{event.bed} a day or more before this check-in and given up: a "
                f"new visit under the same visit id (at {check_in.at}), not recorded under it")
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
    detail: dict[str, Any] | None = None
    """A service record's content (:mod:`alerts.servicerecords`); ``None`` for a check-in or
    check-out (and then not hashed: the records of before hash as they always did)."""

    def body(self) -> dict[str, Any]:
        """The fields the hash covers (everything but the two hashes)."""
        body = {"seq": self.seq, "origin": self.origin, "at": self.at,
                "recorded_at": self.recorded_at, "site": self.site, "bed": self.bed,
                "caregiver": self.caregiver, "visit": self.visit, "event": self.event,
                "method": self.method,
                "services": None if self.services is None else list(self.services),
                "source": self.source, "device": self.device, "actor": self.actor}
        if self.detail is not None:
            body["detail"] = self.detail
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgedVisit:
    """What the ``service_anomaly`` detector measured of one finished visit when it judged it,
    whether it found anything or not. ``measured``: small JSON-ready facts, as the detector
    reports them (``gateway/detect/service_anomaly.py``): ``verdict`` (``verified``,
    ``unverifiable`` with ``unverifiable``, ``flagged``), ``reasons``,
    ``sensed_minutes``, ``household_people``, ``infrared_samples``, ``recordings``,
    ``recording_coverage`` and more."""

    site: str
    bed: str
    caregiver: str
    visit: str
    judged_at: int
    measured: dict[str, Any]


def reused_visit_id(visit: str, instance: int) -> str:
    """The visit id a judgement of a visit under a reused visit id is kept under (``visit``,
    ``#``, its check-in time as the detector placed it: the detector's key of it), so that it
    is neither the earlier visit's nor settled into any record; the supervision report reads
    it (:meth:`ServiceLog.judged_reused`)."""
    return f"{visit}#{instance}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceEntry:
    """A finished visit's service record, before it has a place in the chain: chained as
    ``event="service"``, ``source="gateway"``, once per visit and revision (:attr:`origin`)."""

    site: str
    bed: str
    caregiver: str
    visit: str
    at: int
    """The visit's check-out."""
    method: str | None
    services: tuple[str, ...]
    detail: dict[str, Any]
    revision: int = 1

    @property
    def origin(self) -> str:
        base = f"service:{self.site}/{self.bed}/{self.caregiver}/{self.visit}"
        return base if self.revision == 1 else f"{base}#{self.revision}"


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
    """What :meth:`ServiceLog.verify` found."""

    ok: bool
    records: int
    """Records in the chain known good: up to the last record verified, or to the one before
    the first bad one."""
    head_seq: int
    head_hash: str
    """The last record known good."""
    checked: int = 0
    """Records recomputed by this verification (the rest were verified before it)."""
    from_seq: int = 1
    """The first record recomputed (after the checkpoint; 1 for a full pass)."""
    first_bad_seq: int | None = None
    """The first record changed, removed or moved; None when ``ok``, and when a kept head
    shows the chain rewritten without saying where (``suspect_from``)."""
    error: str | None = None
    suspect_from: int | None = None
    """A kept head the chain does not reach: some record from this one to ``first_bad_seq``
    or, when that is None, to the kept head's, was changed, removed or re-hashed."""
    suspect_to: int | None = None
    """The kept head's record the chain does not reach (with ``suspect_from``)."""
    log_last_seq: int = 0
    """Where the log ends: the last record it holds (0: none), sound or not. ``records`` and
    ``head_seq`` say how far it is known good, which may be none of it."""
    kept_beyond_seq: int | None = None
    """The first kept head beyond the log's end (``log_last_seq``): the log does not reach
    it, so it is not sound. None when every kept head is within the log."""
    last_full: Audit | None = None
    """The last full verification (the gateway runs one in the background on the
    housekeeping's schedule, :meth:`ServiceLog.audit`); an incremental one vouches for the
    records before ``from_seq`` only as of it."""

    def log_end(self) -> str:
        """Where the log ends, and a kept head beyond it, in words (the CLI and the API say
        the same).

        >>> Verification(ok=False, records=0, head_seq=0, head_hash="", log_last_seq=78,
        ...              kept_beyond_seq=100).log_end()
        'the log ends at record 78; a kept head is for record 100, beyond its end'
        """
        end = (f"the log ends at record {self.log_last_seq}" if self.log_last_seq
               else "the log holds no record")
        if self.kept_beyond_seq is None:
            return end
        return f"{end}; a kept head is for record {self.kept_beyond_seq}, beyond its end"


@dataclass(frozen=True, slots=True, kw_only=True)
class Audit:
    """What the last full verification found (:meth:`ServiceLog.audit`)."""

    at: int
    """When it ended (epoch ms)."""
    ok: bool
    records: int
    """Records recomputed (every one, up to the stored head as of then)."""
    head_seq: int
    """The last record known good as of then."""
    first_bad_seq: int | None = None
    error: str | None = None
    seconds: float = 0.0


_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                     allow_nan=False)


def canonical_json(fields: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8 (what :func:`chain_hash` hashes)."""
    return _CANONICAL.encode(fields).encode("utf-8")


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """``sha256(prev_hash + canonical JSON of fields)`` as hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(fields)).hexdigest()


_BODY_KEYS: Final = ("seq", "origin", "at", "recorded_at", "site", "bed", "caregiver", "visit",
                     "event", "method", "services", "source", "device", "actor")
"""The hashed fields, in the order of :data:`_COLUMNS`."""
VERIFY_PAGE: Final = 2000
"""Records read per page by :meth:`ServiceLog.verify` (the lock is released between pages)."""


def _row_body(row: Sequence[Any]) -> dict[str, Any]:
    """:meth:`ServiceRecord.body` straight from a row (verification reads thousands)."""
    body = dict(zip(_BODY_KEYS, row, strict=False))
    if body["services"] is not None:
        body["services"] = json.loads(body["services"])
    if row[16] is not None:
        body["detail"] = json.loads(row[16])
    return body


def _iso(ms: int) -> str:
    """``ms`` as UTC ISO 8601 to the second (in messages)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _refused(r: Sequence[Any]) -> RefusedVisit:
    return RefusedVisit(
        event=VisitEvent(origin=r[0], at=r[1], site=r[3], bed=r[4], caregiver=r[5],
                         visit=r[6], event=r[7], method=r[8],
                         services=None if r[9] is None else tuple(json.loads(r[9])),
                         source=r[10], device=r[11], actor=r[12]),
        recorded_at=r[2], reason=r[13], detail=r[14])


def _record(row: Any) -> ServiceRecord:
    (seq, origin, at, recorded_at, site, bed, caregiver, visit, event, method, services, source,
     device, actor, prev_hash, digest, detail) = row
    return ServiceRecord(
        seq=seq, origin=origin, at=at, recorded_at=recorded_at, site=site, bed=bed,
        caregiver=caregiver, visit=visit, event=event, method=method,
        services=None if services is None else tuple(json.loads(services)), source=source,
        device=device, actor=actor, prev_hash=prev_hash, hash=digest,
        detail=None if detail is None else json.loads(detail))


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
        self._audit: Audit | None = None
        self._audit_loaded = False
        if "detail" not in {row[1] for row in self._db.execute("PRAGMA table_info(service_log)")}:
            self._db.execute("ALTER TABLE service_log ADD COLUMN detail TEXT")  # a log of before

    # --- writing ----------------------------------------------------------------------------

    def append(self, events: Sequence[VisitEvent], *, now_ms: int | None = None,
               set_aside_refused: bool = False,
               on_set_aside: Callable[[RefusedVisit], object] | None = None,
               admit: Callable[[VisitEvent], bool] | None = None
               ) -> list[tuple[ServiceRecord, bool]]:
        """Record ``events`` in order, one transaction. Returns each event's record and whether
        it is new (``False``: the same call was recorded before, :func:`repeats`; the earlier
        record is returned).

        An event that contradicts its visit (:func:`refusal`) raises :class:`VisitRefused` and
        nothing of the batch is recorded; with ``set_aside_refused`` (devices, which cannot be
        told no) it is kept in the refused table instead and left out of the result, and
        ``on_set_aside`` is called with each one set aside for the first time, once committed.
        ``admit`` (a :class:`RowBudget`'s plan) is asked about each event that would add a row,
        chained or set aside, in order; one it refuses is neither, and is left out of the
        result. It may be asked again about the same events if the transaction fails."""
        if not events:
            return []
        recorded_at = _now_ms() if now_ms is None else now_ms
        set_aside: list[RefusedVisit] = []
        readmitted: list[VisitEvent] = []
        with self._lock:
            try:
                out = self._append(events, recorded_at, set_aside_refused, set_aside,
                                   readmitted, admit)
            except sqlite3.DatabaseError as exc:
                if storage_fault(exc) is None:
                    raise
                raise ServiceLogUnavailable.wrap("servicelog", "write", exc) from exc
        for held in readmitted:
            log.info("servicelog.check_out_chained site=%s bed=%s caregiver=%s visit=%s at=%d; "
                     "set aside until its check-in came, chained after it", held.site, held.bed,
                     held.caregiver, held.visit, held.at)
        if on_set_aside is not None:
            for refused in set_aside:
                on_set_aside(refused)
        return out

    def _append(self, events: Sequence[VisitEvent], recorded_at: int,
                set_aside_refused: bool = False, set_aside: list[RefusedVisit] | None = None,
                readmitted: list[VisitEvent] | None = None,
                admit: Callable[[VisitEvent], bool] | None = None
                ) -> list[tuple[ServiceRecord, bool]]:
        out: list[tuple[ServiceRecord, bool]] = []
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            head = db.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
            seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            for event in in_visit_order(events):
                rows = db.execute("SELECT seq, site, bed, caregiver, event, at FROM service_log"
                                  " WHERE visit = ? AND event IN ('check_in', 'check_out')"
                                  " ORDER BY seq", (event.visit,)).fetchall()
                key = (event.site, event.bed, event.caregiver)
                own = [r for r in rows if (r[1], r[2], r[3]) == key]
                existing = db.execute(f"SELECT {_COLUMNS} FROM service_log WHERE origin = ?",
                                      (event.origin,)).fetchone()
                if existing is None and event.source == "api":
                    # Recorded before the API's origin named the caregiver: the same call.
                    existing = db.execute(
                        f"SELECT {_COLUMNS} FROM service_log WHERE origin = ? AND caregiver = ?",
                        (_legacy_api_origin(event), event.caregiver)).fetchone()
                if existing is not None:
                    recorded = _record(existing)
                    last_of_visit = bool(own) and own[-1][0] == recorded.seq
                    if repeats(event, recorded, last_of_visit=last_of_visit):
                        out.append((recorded, False))
                        continue
                refused = refusal(event, _earlier(event, own, rows))
                if refused is not None:
                    if not set_aside_refused:
                        raise VisitRefused(event, *refused)
                    if admit is not None and db.execute(
                            "SELECT 1 FROM refused_visit WHERE origin = ?",
                            (event.origin,)).fetchone() is None and not admit(event):
                        continue
                    inserted = db.execute(
                        "INSERT INTO refused_visit (origin, at, recorded_at, site, bed,"
                        " caregiver, visit, event, method, services, source, device, actor,"
                        " reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (origin) DO NOTHING",
                        (event.origin, event.at, recorded_at, event.site, event.bed,
                         event.caregiver, event.visit, event.event, event.method,
                         None if event.services is None else json.dumps(list(event.services)),
                         event.source, event.device, event.actor, *refused)).rowcount
                    if inserted and set_aside is not None:
                        set_aside.append(RefusedVisit(event=event, recorded_at=recorded_at,
                                                      reason=refused[0], detail=refused[1]))
                    continue
                if admit is not None and not admit(event):
                    continue
                seq, prev = self._chain(db, event, seq, prev, recorded_at, out)
                if event.event == "check_in" and set_aside_refused:
                    held = self._held_check_out(db, event)
                    if held is not None:
                        seq, prev = self._chain(db, held, seq, prev, recorded_at, out)
                        if readmitted is not None:
                            readmitted.append(held)
            db.execute("INSERT INTO chain_head (id, seq, hash) VALUES (1, ?, ?)"
                       " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq,"
                       " hash = excluded.hash", (seq, prev))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return out

    def _chain(self, db: sqlite3.Connection, event: VisitEvent, seq: int, prev: str,
               recorded_at: int, out: list[tuple[ServiceRecord, bool]]) -> tuple[int, str]:
        seq += 1
        unsealed = ServiceRecord(
            seq=seq, origin=event.origin, at=event.at, recorded_at=recorded_at,
            site=event.site, bed=event.bed, caregiver=event.caregiver,
            visit=event.visit, event=event.event, method=event.method,
            services=event.services, source=event.source, device=event.device,
            actor=event.actor, prev_hash=prev, hash="")
        digest = chain_hash(prev, unsealed.body())
        self._insert(db, unsealed, digest)
        out.append((replace(unsealed, hash=digest), True))
        return seq, digest

    @staticmethod
    def _held_check_out(db: sqlite3.Connection, check_in: VisitEvent) -> VisitEvent | None:
        """A device's check-out of ``check_in``'s own visit that came before it and was set
        aside for want of it (at or after it by device time, less than
        :data:`VISIT_GIVEN_UP_MS` later): taken out of the refused table to be chained after
        the check-in (module docstring, out of order)."""
        row = db.execute(
            "SELECT id, origin, at, method, services, source, device, actor FROM refused_visit"
            " WHERE site = ? AND bed = ? AND caregiver = ? AND visit = ? AND event = 'check_out'"
            " AND reason IN ('no_check_in', 'other_bed', 'other_caregiver')"
            " AND at >= ? AND at < ? ORDER BY at, id LIMIT 1",
            (check_in.site, check_in.bed, check_in.caregiver, check_in.visit, check_in.at,
             check_in.at + VISIT_GIVEN_UP_MS)).fetchone()
        if row is None:
            return None
        db.execute("DELETE FROM refused_visit WHERE id = ?", (row[0],))
        return VisitEvent(origin=row[1], at=row[2], site=check_in.site, bed=check_in.bed,
                          caregiver=check_in.caregiver, visit=check_in.visit,
                          event="check_out", method=row[3],
                          services=None if row[4] is None else tuple(json.loads(row[4])),
                          source=row[5], device=row[6], actor=row[7])

    @staticmethod
    def _insert(db: sqlite3.Connection, record: ServiceRecord, digest: str) -> None:
        db.execute(
            f"INSERT INTO service_log ({_COLUMNS}) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.seq, record.origin, record.at, record.recorded_at, record.site, record.bed,
             record.caregiver, record.visit, record.event, record.method,
             None if record.services is None else json.dumps(list(record.services)),
             record.source, record.device, record.actor, record.prev_hash, digest,
             None if record.detail is None else canonical_json(record.detail).decode()))

    def append_service(self, entries: Sequence[ServiceEntry], *,
                       cursor: tuple[int, int] | None = None, now_ms: int | None = None,
                       judged_taken: Sequence[tuple[str, str, str, str]] = ()
                       ) -> list[tuple[ServiceRecord, bool]]:
        """Chain the service records of finished visits, in order, each once per
        :attr:`~ServiceEntry.origin` (``False``: recorded before; the earlier record), and move
        the settlement's ``cursor`` (:meth:`settlement_cursor`) in the same transaction, with
        the visits of :meth:`judged_after_settling` it took (``judged_taken``). A record
        chained without a judgement (``evidence.judged_at``) whose judgement was written
        meanwhile is queued there at once, so that no judgement falls between the two."""
        recorded_at = _now_ms() if now_ms is None else now_ms
        out: list[tuple[ServiceRecord, bool]] = []
        with self._writing() as db:
            db.executemany("DELETE FROM judged_after_settling WHERE site = ? AND bed = ? AND"
                           " caregiver = ? AND visit = ?", judged_taken)
            head = db.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
            seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            for entry in entries:
                existing = db.execute(f"SELECT {_COLUMNS} FROM service_log"
                                      " WHERE origin = ?", (entry.origin,)).fetchone()
                if existing is not None:
                    out.append((_record(existing), False))
                    continue
                seq += 1
                unsealed = ServiceRecord(
                    seq=seq, origin=entry.origin, at=entry.at, recorded_at=recorded_at,
                    site=entry.site, bed=entry.bed, caregiver=entry.caregiver,
                    visit=entry.visit, event=SERVICE_RECORD, method=entry.method,
                    services=entry.services, source=GATEWAY, device=None, actor=None,
                    prev_hash=prev, hash="", detail=entry.detail)
                digest = chain_hash(prev, unsealed.body())
                self._insert(db, unsealed, digest)
                out.append((replace(unsealed, hash=digest), True))
                prev = digest
                if "judged_at" not in (entry.detail.get("evidence") or {}) and \
                        db.execute("SELECT 1 FROM judged_visit WHERE site = ? AND bed = ? AND"
                                   " caregiver = ? AND visit = ?", (
                                       entry.site, entry.bed, entry.caregiver,
                                       entry.visit)).fetchone() is not None:
                    self._judged_late(db, entry.site, entry.bed, entry.caregiver,
                                      entry.visit)
            db.execute("INSERT INTO chain_head (id, seq, hash) VALUES (1, ?, ?)"
                       " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq,"
                       " hash = excluded.hash", (seq, prev))
            if cursor is not None:
                db.execute("INSERT INTO settlement (id, log_seq, alert_seq)"
                           " VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                           " log_seq = excluded.log_seq, alert_seq = excluded.alert_seq",
                           cursor)
        return out

    def record_judged(self, visits: Sequence[JudgedVisit]) -> None:
        """Keep the detector's judgements, one transaction (a visit judged again: the latest);
        forgets those older than :data:`JUDGED_KEEP_MS` before the newest."""
        if not visits:
            return
        rows = [(v.site, v.bed, v.caregiver, v.visit, v.judged_at,
                 canonical_json(v.measured).decode()) for v in visits]
        horizon = max(v.judged_at for v in visits) - JUDGED_KEEP_MS
        with self._writing() as db:
            db.executemany(
                "INSERT INTO judged_visit (site, bed, caregiver, visit, judged_at,"
                " measured) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, bed,"
                " caregiver, visit) DO UPDATE SET judged_at = excluded.judged_at,"
                " measured = excluded.measured", rows)
            db.execute("DELETE FROM judged_visit WHERE judged_at < ?", (horizon,))
            for v in visits:  # a visit settled already: its record may need a revision
                self._judged_late(db, v.site, v.bed, v.caregiver, v.visit)

    @staticmethod
    def _judged_late(db: sqlite3.Connection, site: str, bed: str, caregiver: str,
                     visit: str) -> None:
        """Queue the visit for :meth:`judged_after_settling` if it has a service record."""
        db.execute("INSERT OR IGNORE INTO judged_after_settling (site, bed, caregiver, visit)"
                   " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM service_log WHERE visit = ?"
                   " AND site = ? AND bed = ? AND caregiver = ? AND event = ?)",
                   (site, bed, caregiver, visit, visit, site, bed, caregiver, SERVICE_RECORD))

    def judged_after_settling(self, *, limit: int = 1000
                              ) -> list[tuple[str, str, str, str]]:
        """``(site, bed, caregiver, visit)`` of the visits judged after their service record
        was chained without that judgement (a detector that took longer than settling
        waited), for :class:`~alerts.servicerecords.Settlement` to revise; each until the
        settlement takes it (:meth:`append_service`, ``judged_taken``)."""
        with self._lock:
            rows = self._db.execute("SELECT site, bed, caregiver, visit FROM"
                                    " judged_after_settling LIMIT ?", (limit,)).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock (rolled back on any error); a storage fault
        (disk full, I/O) comes out as :class:`ServiceLogUnavailable`."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                if storage_fault(exc) is None:
                    raise
                raise ServiceLogUnavailable.wrap("servicelog", "write", exc) from exc

    def judged(self, site: str, bed: str, caregiver: str, visit: str) -> JudgedVisit | None:
        """The detector's judgement of a visit (:meth:`record_judged`), if it is kept."""
        with self._lock:
            row = self._db.execute(
                "SELECT judged_at, measured FROM judged_visit WHERE site = ? AND bed = ? AND"
                " caregiver = ? AND visit = ?", (site, bed, caregiver, visit)).fetchone()
        if row is None:
            return None
        return JudgedVisit(site=site, bed=bed, caregiver=caregiver, visit=visit,
                           judged_at=int(row[0]), measured=json.loads(row[1]))

    def judged_reused(self, site: str, bed: str, caregiver: str, visit: str
                      ) -> dict[int, JudgedVisit]:
        """The judgements of the visits under a reused visit id ``visit`` of the caregiver at
        the bed (:func:`reused_visit_id`), by their check-in time as the detector placed it."""
        prefix = reused_visit_id(visit, 0)[:-1]
        with self._lock:
            rows = self._db.execute(
                "SELECT visit, judged_at, measured FROM judged_visit WHERE site = ? AND"
                " bed = ? AND caregiver = ? AND substr(visit, 1, ?) = ?",
                (site, bed, caregiver, len(prefix), prefix)).fetchall()
        found: dict[int, JudgedVisit] = {}
        for row in rows:
            instance = str(row[0])[len(prefix):]
            if instance.lstrip("-").isdigit():
                found[int(instance)] = JudgedVisit(
                    site=site, bed=bed, caregiver=caregiver, visit=str(row[0]),
                    judged_at=int(row[1]), measured=json.loads(row[2]))
        return found

    def settlement_cursor(self) -> tuple[int, int]:
        """``(log_seq, alert_seq)``: the last check-out settled and the last alert change read
        by :class:`~alerts.servicerecords.Settlement`; ``(0, 0)`` at first."""
        with self._lock:
            row = self._db.execute("SELECT log_seq, alert_seq FROM settlement WHERE id = 1"
                                   ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    # --- reading ----------------------------------------------------------------------------

    def query(self, *, site: str | None = None, bed: str | None = None,
              caregiver: str | None = None, visit: str | None = None,
              since: int | None = None, until: int | None = None,
              before_seq: int | None = None, after_seq: int | None = None,
              event: str | None = None, newest_first: bool = True, limit: int = 100
              ) -> list[ServiceRecord]:
        """Records matching every given filter (``since <= at < until``), by ``seq``."""
        where: list[str] = []
        args: list[object] = []
        filters: tuple[tuple[str, object], ...] = (
            ("site = ?", site), ("bed = ?", bed), ("caregiver = ?", caregiver),
            ("visit = ?", visit), ("at >= ?", since), ("at < ?", until),
            ("seq < ?", before_seq), ("seq > ?", after_seq), ("event = ?", event))
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
        return [_refused(r) for r in rows]

    def refused_between(self, *, reasons: Sequence[str], since: int, until: int,
                        limit: int = 100_000) -> list[RefusedVisit]:
        """Check-ins/outs set aside for one of ``reasons``, with device time in ``[since,
        until)``, oldest first (the supervision report's visits under a reused visit id)."""
        marks = ",".join("?" * len(reasons))
        with self._lock:
            rows = self._db.execute(
                "SELECT origin, at, recorded_at, site, bed, caregiver, visit, event, method,"
                " services, source, device, actor, reason, detail FROM refused_visit"
                f" WHERE reason IN ({marks}) AND at >= ? AND at < ? ORDER BY at, id LIMIT ?",
                (*reasons, since, until, limit)).fetchall()
        return [_refused(r) for r in rows]

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last record; ``(0, GENESIS)`` when empty. The platform keeps
        this to prove later that nothing after it was removed."""
        with self._lock:
            row = self._db.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def verify(self, *, heads: Iterable[tuple[int, str]] = (), full: bool = False
               ) -> Verification:
        """Recompute the chain from the last record verified (the stored checkpoint), or from
        the first with ``full``, and check it against ``heads``: ``(seq, hash)`` pairs kept
        elsewhere (the heads delivered upstream with each record, :meth:`head`). Reports the
        first record that was changed, removed, moved or is not the one a kept head names.

        The checkpoint is itself a head: a verification starts after it only if its record
        and every kept head at or before it are still as they were (else it recomputes all).
        A record behind the checkpoint edited without re-hashing keeps every hash, so only a
        ``full`` pass finds it; a rewrite that re-hashed the chain is found by any head kept
        after the edit. After a clean pass the checkpoint moves to the stored head; never
        past a bad record. It vouches for no record (it is in the same file, and a pass after
        a rewrite moves it to the re-hashed head): only kept heads do, so a kept head the log
        does not reach, or one beyond its end, names the first bad record only when a kept
        head vouches for the record before it. Reads in pages, releasing the lock between
        them; the chain is verified as it stood when the verification began."""
        kept: dict[int, list[tuple[str, str]]] = {}
        for seq, digest in heads:
            if seq > 0:
                kept.setdefault(int(seq), []).append((str(digest), "kept head"))
        with self._lock:
            head_seq, head_hash, last_row, checkpoint_seq, checkpoint_hash = self._db.execute(
                "SELECT (SELECT seq FROM chain_head WHERE id = 1),"
                " (SELECT hash FROM chain_head WHERE id = 1), (SELECT max(seq) FROM service_log),"
                " (SELECT seq FROM verify_checkpoint WHERE id = 1),"
                " (SELECT hash FROM verify_checkpoint WHERE id = 1)").fetchone()
        head_seq, head_hash = int(head_seq or 0), str(head_hash or GENESIS)
        if checkpoint_seq is not None:
            kept.setdefault(int(checkpoint_seq), []).append((str(checkpoint_hash),
                                                             "verified checkpoint"))
        start = (0, GENESIS)
        if (not full and checkpoint_seq is not None and 0 < checkpoint_seq <= head_seq
                and self._still_kept(kept, int(checkpoint_seq))):
            start = (int(checkpoint_seq), str(checkpoint_hash))
        started = time.perf_counter()
        result = self._verify_from(start, head_seq, head_hash, int(last_row or 0), kept)
        log_last = int(last_row or 0)
        result = replace(result, log_last_seq=log_last, kept_beyond_seq=min(
            (seq for seq, marks in kept.items() if seq > log_last
             and any(what == "kept head" for _, what in marks)), default=None))
        if result.ok and head_seq > 0 and (head_seq, result.head_hash) != (
                checkpoint_seq, checkpoint_hash):
            self._store_checkpoint(head_seq, result.head_hash)
        if start[0] == 0 and not any(what == "kept head" for marks in kept.values()
                                     for _, what in marks):
            # What the file says of itself (a caller's heads, which anyone with a viewer key
            # may send, never mark the log unsound for later answers).
            self._store_audit(Audit(
                at=_now_ms(), ok=result.ok, records=result.checked, head_seq=result.head_seq,
                first_bad_seq=result.first_bad_seq, error=result.error,
                seconds=round(time.perf_counter() - started, 3)))
        last_full = self.last_audit()
        if (result.ok and start[0] > 0 and last_full is not None and not last_full.ok
                and last_full.first_bad_seq is not None and last_full.first_bad_seq <= start[0]):
            # Checked from the checkpoint on, sound; but the last full pass found a bad record
            # behind it, and nothing since says otherwise: not sound until a full pass is.
            return replace(result, ok=False, first_bad_seq=last_full.first_bad_seq,
                           records=min(result.records, last_full.head_seq),
                           head_seq=last_full.head_seq, head_hash="", last_full=last_full,
                           error=f"the last full verification (at {_iso(last_full.at)}) "
                                 f"found: {last_full.error}")
        return replace(result, last_full=last_full)

    def audit(self) -> Verification:
        """A full verification, kept as :meth:`last_audit` (the gateway runs it in the
        housekeeping's thread on its schedule, first within a minute of start): what an
        incremental one no longer recomputes (records before the checkpoint) is re-checked,
        so an edit behind it that kept the old hashes is found without a ``full`` call.
        Logged: ``servicelog.audit_failed`` (error) names the first bad record."""
        result = self.verify(full=True)
        if result.ok:
            log.info("servicelog.audit_ok records=%d head_seq=%d", result.checked,
                     result.head_seq)
        else:
            log.error("servicelog.audit_failed first_bad_seq=%s sound_up_to=%d error=%s; the "
                      "service log's chain is NOT SOUND (homecare verify-log --heads FILE)",
                      result.first_bad_seq, result.head_seq, result.error)
        return result

    def last_audit(self) -> Audit | None:
        """The last full verification (:meth:`audit`, or ``verify(full=True)``)."""
        if self._audit_loaded:
            return self._audit
        with self._lock:
            row = self._db.execute("SELECT at, ok, records, head_seq, first_bad_seq, error,"
                                   " seconds FROM verify_audit WHERE id = 1").fetchone()
        self._audit_loaded = True
        if row is None:
            return None
        self._audit = Audit(at=row[0], ok=bool(row[1]), records=row[2], head_seq=row[3],
                            first_bad_seq=row[4], error=row[5], seconds=row[6])
        return self._audit

    def _store_audit(self, audit: Audit) -> None:
        self._audit, self._audit_loaded = audit, True
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO verify_audit (id, at, ok, records, head_seq, first_bad_seq,"
                    " error, seconds) VALUES (1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                    " SET at = excluded.at, ok = excluded.ok, records = excluded.records,"
                    " head_seq = excluded.head_seq, first_bad_seq = excluded.first_bad_seq,"
                    " error = excluded.error, seconds = excluded.seconds",
                    (audit.at, int(audit.ok), audit.records, audit.head_seq,
                     audit.first_bad_seq, audit.error, audit.seconds))
        except sqlite3.DatabaseError as exc:  # a read-only copy: known in memory
            log.warning("servicelog.audit_not_stored error=%s", exc)

    def _still_kept(self, kept: dict[int, list[tuple[str, str]]], upto: int) -> bool:
        """Whether the records of every kept head up to ``upto`` still have its hash."""
        behind = [seq for seq in kept if seq <= upto]
        found: dict[int, str] = {}
        for first in range(0, len(behind), 500):
            chunk = behind[first:first + 500]
            with self._lock:
                marks = ",".join("?" * len(chunk))
                found.update(self._db.execute(
                    f"SELECT seq, hash FROM service_log WHERE seq IN ({marks})", chunk).fetchall())
        return all(found.get(seq) == digest for seq in behind for digest, _ in kept[seq])

    def _verify_from(self, start: tuple[int, str], head_seq: int, head_hash: str,
                     last_row: int, kept: dict[int, list[tuple[str, str]]]) -> Verification:
        prev_seq, prev = start
        checked = 0
        behind = [seq for seq, marks in kept.items() if 0 < seq <= start[0]
                  and any(what == "kept head" for _, what in marks)]
        agreed, agreed_hash = (max(behind), kept[max(behind)][0][0]) if behind else (0, GENESIS)
        """The last record a head kept elsewhere vouched for (behind the checkpoint verified
        from: still as kept, :meth:`_still_kept`). The checkpoint vouches for none: it is in
        the same file, and a pass after a rewrite moves it to the re-hashed head; it only
        shows, when its record differs from it, that the chain changed since."""

        def bad(seq: int, error: str) -> Verification:
            return Verification(ok=False, records=prev_seq, head_seq=prev_seq, head_hash=prev,
                                checked=checked, from_seq=start[0] + 1, first_bad_seq=seq,
                                error=error)

        while prev_seq < head_seq:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM service_log WHERE seq > ? AND seq <= ?"
                    " ORDER BY seq LIMIT ?", (prev_seq, head_seq, VERIFY_PAGE)).fetchall()
            if not rows:
                break
            for row in rows:
                seq, digest, linked = row[0], row[15], row[14]
                if seq != prev_seq + 1:
                    return bad(prev_seq + 1, f"record {prev_seq + 1} is missing (next is {seq})")
                if linked != prev:
                    return bad(seq, f"record {seq} does not link to the previous record")
                if chain_hash(prev, _row_body(row)) != digest:
                    return bad(seq, f"record {seq} was changed")
                checked += 1
                for expected, what in kept.get(seq, ()):
                    if digest != expected:
                        return self._unreached(start, checked, agreed, agreed_hash, seq,
                                               expected, what)
                    if what == "kept head":
                        agreed, agreed_hash = seq, digest
                prev_seq, prev = seq, digest
            time.sleep(0)  # let the event loop's thread have the GIL between pages
        if prev_seq < head_seq:
            return bad(prev_seq + 1, f"records after {prev_seq} were removed (the stored head "
                                     f"is record {head_seq})")
        if prev != head_hash:
            return bad(head_seq, f"record {head_seq} is not the stored head")
        if last_row > head_seq:
            return bad(head_seq + 1, f"record {head_seq + 1} lies beyond the stored head "
                                     f"(record {head_seq})")
        beyond = [seq for seq in kept if seq > head_seq]
        if beyond:
            return self._gone(start, checked, agreed, agreed_hash, head_seq, min(beyond),
                              kept[min(beyond)][0][1])
        return Verification(ok=True, records=head_seq, head_seq=head_seq, head_hash=prev,
                            checked=checked, from_seq=start[0] + 1)

    @staticmethod
    def _unreached(start: tuple[int, str], checked: int, agreed: int, agreed_hash: str,
                   seq: int, expected: str, what: str) -> Verification:
        """Record ``seq`` is sound by its own links but not the one a kept head says: the
        chain was rewritten and re-hashed from some record after ``agreed`` (the last a head
        vouched for) up to it. Which one, only a head kept for each of them can say; with
        one for the record before, it is ``seq`` itself."""
        if agreed == seq - 1:
            return Verification(
                ok=False, records=agreed, head_seq=agreed, head_hash=agreed_hash,
                checked=checked, from_seq=start[0] + 1, first_bad_seq=seq,
                suspect_from=seq, suspect_to=seq,
                error=f"record {seq} differs from the {what} ({expected[:12]}...): it was "
                      f"changed and the chain re-hashed from it")
        vouched = (f"records up to {agreed} are as kept" if agreed
                   else "no kept head vouches for any record before it")
        return Verification(
            ok=False, records=agreed, head_seq=agreed, head_hash=agreed_hash, checked=checked,
            from_seq=start[0] + 1, first_bad_seq=None, suspect_from=agreed + 1,
            suspect_to=seq,
            error=f"the chain does not reach the {what} (record {seq}, {expected[:12]}...): "
                  f"some record from {agreed + 1} to {seq} was changed, removed or moved and "
                  f"the chain re-hashed ({vouched}); the heads kept for more records "
                  f"(--heads FILE) name the first bad one")

    @staticmethod
    def _gone(start: tuple[int, str], checked: int, agreed: int, agreed_hash: str,
              last: int, seq: int, what: str) -> Verification:
        """The log, sound by its own links, ends at record ``last`` before the kept head's
        record ``seq``. Records after ``last`` were removed, and if a head vouches for
        ``last`` that is all (the first bad record is the one after it). Otherwise the records
        after ``agreed`` (the last a head vouched for) may have been rewritten and re-hashed
        as well: a record removed in the middle and the rest renumbered, or an edit, then the
        tail cut, look the same from a head beyond the log, so none is called sound."""
        if agreed == last:
            return Verification(
                ok=False, records=agreed, head_seq=agreed, head_hash=agreed_hash,
                checked=checked, from_seq=start[0] + 1, first_bad_seq=last + 1,
                error=f"the {what} (record {seq}) is gone: records after {last} were removed")
        # The first bad record is at most the one after the log's end (it is gone).
        vouched = (f"records up to {agreed} are as kept" if agreed
                   else "no kept head vouches for any record before it")
        return Verification(
            ok=False, records=agreed, head_seq=agreed, head_hash=agreed_hash, checked=checked,
            from_seq=start[0] + 1, first_bad_seq=None, suspect_from=agreed + 1,
            suspect_to=last + 1,
            error=f"the {what} (record {seq}) is gone: the log ends at record {last}, which "
                  f"no head vouches for: record {last + 1} or one before it was changed, "
                  f"removed or moved, from {agreed + 1} on, and the chain re-hashed "
                  f"({vouched}); the heads kept for more records (--heads FILE) name the "
                  f"first bad one")

    def _store_checkpoint(self, seq: int, digest: str) -> None:
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO verify_checkpoint (id, seq, hash, verified_at) VALUES (1, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
                    " verified_at = excluded.verified_at", (seq, digest, _now_ms()))
        except sqlite3.DatabaseError as exc:  # a read-only copy, a full disk: verified anyway
            log.warning("servicelog.checkpoint_not_stored seq=%d error=%s", seq, exc)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RowPlan(Protocol):
    """One commit's decisions of a :class:`RowBudget`."""

    def admit(self, event: VisitEvent) -> bool:
        """Whether ``event``, which would add a row, may (asked in order, inside the append's
        transaction; nothing is charged yet)."""

    def apply(self) -> None:
        """Charge what was admitted, and hand on what was not: the append is committed."""


class RowBudget(Protocol):
    """What badges may add to the log (module docstring, A budget of rows per badge)."""

    def plan(self, now_ms: int) -> RowPlan:
        """A fresh plan for the events received up to ``now_ms`` (their receipt time)."""


def badge_origin(message: Message) -> str:
    """The origin of a badge message's record: its device, ``seq`` and device time (a
    redelivery of the same message is recorded once)."""
    a = message.address
    return f"badge:{a.site}/{a.bed}/{a.device}/{message.payload.seq}/{message.payload.ts}"


class ServiceLogRecorder:
    """Pipeline stage: badge check-ins/outs into the service log before acknowledgement;
    those that contradict their visit are set aside with the reason, those ``budget`` does
    not admit are left out (module docstring)."""

    name = "servicelog"

    def __init__(self, log: ServiceLog, *, metrics: CollectorRegistry | None = None,
                 budget: RowBudget | None = None) -> None:
        self.log = log
        self.budget = budget
        self._pending: list[VisitEvent] = []
        self._received_ms = 0
        """The latest receipt time of a badge event taken (the budget's clock)."""
        self.set_aside = Counter(
            "homecare_service_visits_set_aside", "Badge check-ins and check-outs set aside "
            "(not chained: GET /api/v1/service-logs/refused), by the reason they contradict "
            "their visit", ["reason"], registry=metrics)
        log.last_audit()  # loaded now: the gauges below read it from memory
        for name, what, read in (
                ("ok", "1 if the last full verification of the service log's chain found it "
                 "sound, 0 if not (NaN: never run)", lambda a: float(a.ok)),
                ("timestamp_seconds", "When the last full verification of the service log "
                 "ended (NaN: never)", lambda a: a.at / 1000),
                ("records", "Records the last full verification recomputed",
                 lambda a: float(a.records)),
                ("first_bad_seq", "The first bad record the last full verification found "
                 "(0: none)", lambda a: float(a.first_bad_seq or 0))):
            Gauge(f"homecare_service_log_full_verify_{name}", what, registry=metrics
                  ).set_function(functools.partial(_audit_value, log, read))

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        for message, received in zip(messages, received_ms, strict=True):
            payload = message.payload
            if not isinstance(payload, BadgeEvent):
                continue
            a = message.address
            self._pending.append(VisitEvent(
                origin=badge_origin(message), at=payload.ts, site=a.site, bed=a.bed,
                caregiver=payload.caregiver, visit=payload.visit, event=payload.event,
                source="badge", method=payload.method, services=payload.services,
                device=a.device))
            self._received_ms = max(self._received_ms, received)

    def commit(self) -> None:
        # Runs in the commit thread while the event loop waits for it; keep the batch until it
        # is written, so a failed commit is retried with the same events (origins dedupe).
        n = len(self._pending)
        if n:
            reasons: collections.Counter[str] = collections.Counter()
            plan = self.budget.plan(self._received_ms) if self.budget is not None else None
            over = 0

            def admit(event: VisitEvent) -> bool:
                nonlocal over
                assert plan is not None
                admitted = plan.admit(event)
                over += not admitted
                return admitted

            kept = self.log.append(self._pending[:n], set_aside_refused=True,
                                   on_set_aside=lambda refused: reasons.update((refused.reason,)),
                                   admit=None if plan is None else admit)
            if plan is not None:
                plan.apply()
            for reason, count in reasons.items():
                self.set_aside.labels(reason).inc(count)
            if len(kept) + over < n:
                named = ",".join(f"{r}:{c}" for r, c in sorted(reasons.items()))
                log.warning("servicelog.visits_set_aside count=%d reasons=%s (they contradict "
                            "their visits; GET /api/v1/service-logs/refused)",
                            n - len(kept) - over, named or "already_set_aside")
            del self._pending[:n]


def _audit_value(service_log: ServiceLog, read: Callable[[Audit], float]) -> float:
    audit = service_log.last_audit()
    return math.nan if audit is None else read(audit)


def in_visit_order(events: Sequence[VisitEvent]) -> list[VisitEvent]:
    """``events`` in order, but a check-in that came after its own visit's check-out (same
    site, bed, caregiver and visit id, device times in order) moved just before it: a batch,
    a redelivery or two sessions may reorder one visit's events.

    >>> e = dict(origin="o", site="s", bed="b", caregiver="c", visit="v", source="badge")
    >>> [x.event for x in in_visit_order([VisitEvent(event="check_out", at=9, **e),
    ...                                   VisitEvent(event="check_in", at=1, **e)])]
    ['check_in', 'check_out']
    """
    first_out: dict[tuple[str, str, str, str], int] = {}
    rank: list[float] = []
    for i, event in enumerate(events):
        key = (event.site, event.bed, event.caregiver, event.visit)
        out = first_out.get(key)
        if event.event == "check_out":
            first_out.setdefault(key, i)
        elif event.event == "check_in" and out is not None and event.at <= events[out].at:
            rank.append(out - 0.5)
            continue
        rank.append(float(i))
    return [events[i] for i in sorted(range(len(events)), key=lambda i: (rank[i], i))]


def api_origin(site: str, bed: str, caregiver: str, visit: str, event: str) -> str:
    """Idempotency key of an API check-in/out: one of each per visit (site, bed, caregiver and
    visit id); a call under a recorded key is a retry only if it is the same call
    (:func:`repeats`)."""
    return f"api:{site}/{bed}/{caregiver}/{visit}/{event}"


def _legacy_api_origin(event: VisitEvent) -> str:
    """The API's origin before it named the caregiver (logs written by earlier versions)."""
    return f"api:{event.site}/{event.bed}/{event.visit}/{event.event}"


def _earlier(event: VisitEvent, own: Sequence[Sequence[Any]], rows: Sequence[Sequence[Any]]
             ) -> list[VisitRecord]:
    """What :func:`refusal` judges ``event`` by: the check-in and check-out records of its
    own visit (site, bed, caregiver, visit id), or, for a check-out with none, the latest
    check-in of that visit id still open elsewhere (so that it is refused as ``other_bed`` or
    ``other_caregiver``, not as a visit never checked in)."""
    if own or event.event != "check_out":
        return [VisitRecord(site=r[1], bed=r[2], caregiver=r[3], event=r[4], at=r[5])
                for r in own]
    closed = {(r[1], r[2], r[3]) for r in rows if r[4] == "check_out"}
    elsewhere = [r for r in rows if r[4] == "check_in" and (r[1], r[2], r[3]) not in closed]
    return [VisitRecord(site=r[1], bed=r[2], caregiver=r[3], event=r[4], at=r[5])
            for r in elsewhere[-1:]]
