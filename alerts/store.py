"""The alert store: every alert and every transition, durable before it is acknowledged.

(A module over 400 lines: one SQLite schema and the transactions over it; each write's
statements stay together so that what commits together is read together.)

SQLite in WAL mode with ``synchronous=FULL``: a :meth:`AlertStore.write` that returned is on
disk. Two tables:

* ``alerts``: one row per alert, the alert as JSON plus indexed columns for the API's filters
  and its default order (unresolved first, open before acknowledged, then by severity, newest
  first).
* ``changes``: one row per transition with a unique, increasing ``seq`` (its primary key),
  action, actor and note, and the alert as it was right after the transition. It is the audit
  log, and the log that subscribers (the API's event stream, the upstream outbox) read in
  ``seq`` order with :meth:`AlertStore.changes_since`; a write that would leave a gap is
  refused. The one exception is a restore (below): there ``seq`` jumps, never goes back.
* ``handled_events``: the last button/fall event handled per device and lane
  (:class:`~alerts.model.HandledEvent`), written in the same transaction as the changes it
  caused, so a crash never keeps one without the other: a restarted engine knows which calls
  it has handled, whether or not their alerts are still open.

* ``seq_skips``: the ranges of ``seq`` skipped because the store was restored (below).

* ``summary_members``: every member a summary alert (:mod:`alerts.storms`) counts by name,
  beyond the first 50 its evidence lists, written with the changes (:class:`MemberRow`), so a
  restarted gateway knows them all: its detectors clear them when they no longer hold (added
  without a schema version: an older gateway ignores it, and a member it left there is taken
  back and cleared by the detectors if it no longer holds).

A seq is never issued twice, even across a restore from a backup: the highest seq ever issued
is kept *outside* the database, where restoring the database cannot roll it back. Durably in
``<file>.seq-high`` (fsync and atomic rename), reserved :data:`SEQ_RESERVE` ahead so it is
written once per that many changes, before the commit that needs it, and shrunk to the exact
last seq by a clean :meth:`~AlertStore.close`; exactly, per commit, before it, in
``<file>.seq-issued`` without fsync (cheap), tagged with the kernel's boot id: trusted only
within the same boot, so a killed gateway restarts without a gap, and only a reboot without
a clean stop (power loss) falls back to the reservation. Opened below the mark, the store was
restored: it records the range (restored head, mark] in ``seq_skips``, logs
``alerts.store_restored`` once, and numbers new changes after the mark. (After a power loss,
the range may also hold reserved numbers never issued: skipped all the same.) :meth:`last_seq`
includes skipped ranges, so an engine continues after them; a reader that holds a seq inside
one (:meth:`AlertStore.skipped_range`) has seen changes the store no longer has.

Thread-safe: one connection behind one lock. Every method blocks on SQLite; call it from a
worker thread (``asyncio.to_thread``) in async code.

>>> store = AlertStore(":memory:")
>>> store.last_seq(), store.list_alerts()
(0, ([], None))
"""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import msgspec

from alerts.errors import AlertError, InvalidCursor, StoreUnavailable, storage_fault
from alerts.model import (
    Alert,
    AlertChange,
    AlertStatus,
    AlertType,
    EventRef,
    HandledEvent,
    Severity,
)

log = logging.getLogger("homecare.alerts.store")

SCHEMA_VERSION: Final = 3
"""2: ``handled_events`` added; 3: ``seq_skips`` added (older stores are upgraded in place on
open; an older gateway refuses a newer store, which would let it reuse skipped numbers)."""

SEQ_RESERVE: Final = 256
"""How many seqs the high-water file reserves ahead: one fsync and rename per that many
changes. Only a reboot without a clean stop (power loss) skips up to this many unused
numbers at the next open."""


def _boot_id() -> str:
    """The kernel's id of this boot ("unknown" off Linux: the issued hint is never trusted)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or "unknown"
    except OSError:
        return "unknown"

CALLS_KEPT_MS: Final = 8 * 86_400_000
"""Handled calls are remembered this long: longer than the broker keeps a session for an absent
gateway (7 days), so a press the broker or a device sends again within it is recognised as one
already handled, whatever its seq and clock say."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    incident TEXT NOT NULL UNIQUE,
    incident_key TEXT NOT NULL,
    episode INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL,
    severity TEXT NOT NULL,
    severity_rank INTEGER NOT NULL,
    type TEXT NOT NULL,
    site TEXT NOT NULL,
    bed TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    sort_opened INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    alert TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_default_order
    ON alerts (status_rank, severity_rank, sort_opened, id);
CREATE INDEX IF NOT EXISTS alerts_bed ON alerts (site, bed, status_rank);
CREATE INDEX IF NOT EXISTS alerts_opened ON alerts (opened_at);
CREATE INDEX IF NOT EXISTS alerts_incident_key ON alerts (incident_key, episode);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    actor TEXT,
    note TEXT,
    alert_id TEXT NOT NULL,
    alert TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_alert ON changes (alert_id, seq);
CREATE TABLE IF NOT EXISTS handled_events (
    site TEXT NOT NULL,
    bed TEXT NOT NULL,
    device TEXT NOT NULL,
    call INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    device_ts INTEGER NOT NULL,
    digest TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (site, bed, device, call)
);
CREATE TABLE IF NOT EXISTS handled_calls (
    site TEXT NOT NULL,
    bed TEXT NOT NULL,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    device_ts INTEGER NOT NULL,
    digest TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (site, bed, device, seq, device_ts, digest)
);
CREATE INDEX IF NOT EXISTS handled_calls_at ON handled_calls (at);
CREATE TABLE IF NOT EXISTS summary_members (
    incident_key TEXT NOT NULL,
    member TEXT NOT NULL,
    unregistered INTEGER NOT NULL,
    started_at INTEGER,
    kind TEXT NOT NULL,
    PRIMARY KEY (incident_key, member)
);
CREATE TABLE IF NOT EXISTS seq_skips (
    after_seq INTEGER NOT NULL,
    upto_seq INTEGER NOT NULL PRIMARY KEY,
    at INTEGER NOT NULL,
    clean_stop INTEGER NOT NULL
);
"""

_LAST_SEQ: Final = ("SELECT max(coalesce((SELECT max(seq) FROM changes), 0),"
                    " coalesce((SELECT max(upto_seq) FROM seq_skips), 0))")

_STATUS_RANK: Final = {AlertStatus.OPEN: 0, AlertStatus.ACKNOWLEDGED: 1,
                       AlertStatus.RESOLVED: 2}

_E = TypeVar("_E", AlertStatus, Severity, AlertType)
Filter = str | Sequence[str] | None
"""One value or a list of values (any of them matches); None: no filter."""

MAX_PAGE: Final = 1000


def _enc_hook(obj: Any) -> Any:
    # Evidence comes from detectors: numpy scalars and the like become plain numbers, anything
    # else its text, so an odd value can never block an alert from being stored.
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    return str(obj)


class MemberRow(NamedTuple):
    """One member of a summary alert, as ``summary_members`` holds it."""

    incident_key: str
    """The summary's incident key (``site/bed/type/episode``, no ``#n``)."""
    member: str
    """Its label in the summary (:meth:`alerts.storms.AlertStorms` labels)."""
    unregistered: bool
    started_at: int | None
    kind: str
    """The device kind of a device member (``""``: not a device)."""


class MemberGone(NamedTuple):
    """A member taken out of a summary."""

    incident_key: str
    member: str


MemberChange = MemberRow | MemberGone


def split_incident(incident: str) -> tuple[str, int]:
    """``"site/bed/type/episode#n"`` -> ``("site/bed/type/episode", n)``."""
    key, _, n = incident.rpartition("#")
    if not key or not n.isdigit():
        raise ValueError(f"not an incident key: {incident!r}")
    return key, int(n)


class AlertStore:
    """Alerts and their transitions in SQLite; ``":memory:"`` for offline replay and tests."""

    def __init__(self, path: str | Path) -> None:
        self.path = path if path == ":memory:" else Path(path)
        self.high_water_path: Path | None = None
        self._issued_path: Path | None = None
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.high_water_path = self.path.with_name(self.path.name + ".seq-high")
            self._issued_path = self.path.with_name(self.path.name + ".seq-issued")
        self.calls_kept_ms = CALLS_KEPT_MS
        """How long a handled call is remembered (:meth:`handled_calls`)."""
        self._reserved = 0
        self._issued_fd: int | None = None
        self._boot = _boot_id()
        self._lock = threading.Lock()
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
        self._decoder = msgspec.json.Decoder(Alert)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is None or int(row[0]) < SCHEMA_VERSION:
                self._db.execute("INSERT INTO schema_version (version) VALUES (?)",
                                 (SCHEMA_VERSION,))
            elif int(row[0]) > SCHEMA_VERSION:
                raise AlertError(f"alert store {path} has schema version {row[0]}, newer than "
                                 f"this gateway's {SCHEMA_VERSION}")
            self._skip_restored()
        except sqlite3.DatabaseError as exc:
            if storage_fault(exc) is None:
                raise
            raise StoreUnavailable.wrap("alerts", f"open ({path})", exc) from exc
        except OSError as exc:
            raise StoreUnavailable.wrap("alerts", f"open ({self.high_water_path})", exc
                                        ) from exc

    # --- the high-water mark ------------------------------------------------------------------

    def _skip_restored(self) -> None:
        """At open: number after the high-water mark if the database is below it."""
        if self.high_water_path is None:
            return
        try:
            mark, state = self.high_water_path.read_text().split()
            high = int(mark)
        except FileNotFoundError:
            return  # a new store, or one from before the mark: reserved at the first write
        except ValueError:
            raise AlertError(f"unreadable seq high-water file {self.high_water_path}; it "
                             f"must not be edited (the highest change seq ever issued)"
                             ) from None
        self._reserved = high
        last_stop = "clean"
        if state != "issued":
            issued = self._read_issued()
            if issued is not None and issued <= high:
                high, last_stop = issued, "killed"
            else:
                last_stop = "rebooted"
        head = int(self._db.execute(_LAST_SEQ).fetchone()[0])
        if head >= high:
            return
        self._db.execute("INSERT INTO seq_skips (after_seq, upto_seq, at, clean_stop)"
                         " VALUES (?, ?, strftime('%s', 'now') * 1000, ?)",
                         (head, high, int(last_stop == "clean")))
        log.warning("alerts.store_restored restored_head=%d high_water=%d skipped=%d "
                    "last_stop=%s; the database is behind the highest change seq issued "
                    "(restored from a backup%s): new changes are numbered after %d, stream "
                    "clients inside the skipped range get a reset", head, high, high - head,
                    last_stop,
                    ", or reserved numbers left unused by a reboot without a clean stop"
                    if last_stop == "rebooted" else "", high)

    def _read_issued(self) -> int | None:
        """The exact last seq issued, if written during this boot (else None: unknown)."""
        assert self._issued_path is not None
        try:
            boot, seq = self._issued_path.read_text().split()
            return int(seq) if boot == self._boot and self._boot != "unknown" else None
        except (OSError, ValueError):
            return None

    def _write_issued(self, seq: int) -> None:
        """Overwritten in place (one fixed-width line), no fsync: the page cache survives a
        killed process, and after a reboot the hint is not trusted."""
        assert self._issued_path is not None
        if self._issued_fd is None:
            self._issued_fd = os.open(self._issued_path, os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(self._issued_fd, f"{self._boot} {seq:020d}\n".encode(), 0)

    def _write_high_water(self, seq: int, *, state: str) -> None:
        """Durably: written to a temporary file, fsynced, renamed over, directory fsynced."""
        assert self.high_water_path is not None
        tmp = self.high_water_path.with_name(self.high_water_path.name + ".tmp")
        with open(tmp, "w") as file:
            file.write(f"{seq} {state}\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.high_water_path)
        directory = os.open(self.high_water_path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    # --- writing ------------------------------------------------------------------------------

    def write(self, changes: Sequence[AlertChange],
              handled: Sequence[HandledEvent] = (),
              members: Sequence[MemberChange] = ()) -> None:
        """Append ``changes`` (continuing the sequence without a gap after :meth:`last_seq`),
        upsert their alerts,
        remember ``handled`` (each replaces the one of its device and lane) and apply the
        summaries' ``members`` changes (in order), in one
        transaction. Raises :class:`StoreUnavailable` on disk trouble (nothing is written then)
        and ``ValueError`` for a batch that would break the sequence."""
        if not changes and not handled and not members:
            return
        handled_rows = [(h.site, h.bed, h.event.device, int(h.event.call), h.event.seq,
                         h.event.device_ts, h.event.digest, h.at) for h in handled]
        change_rows = []
        alerts: dict[str, Alert] = {}
        for change in changes:
            body = self._encoder.encode(change.alert).decode()
            change_rows.append((change.seq, change.at, change.action, change.actor, change.note,
                                change.alert.id, body))
            alerts[change.alert.id] = change.alert
        alert_rows = [self._alert_row(alert) for alert in alerts.values()]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    last = int(self._db.execute(_LAST_SEQ).fetchone()[0])
                    expected = list(range(last + 1, last + 1 + len(changes)))
                    if changes and [c.seq for c in changes] != expected:
                        raise ValueError(
                            f"changes must continue the sequence after {last} without gaps; "
                            f"got seq {changes[0].seq}..{changes[-1].seq}")
                    top = last + len(changes)
                    if self.high_water_path is not None and changes:
                        # before the commit: no seq is ever on disk above either mark
                        if top > self._reserved:
                            self._write_high_water(top + SEQ_RESERVE, state="reserved")
                            self._reserved = top + SEQ_RESERVE
                        self._write_issued(top)
                    self._db.executemany(
                        "INSERT INTO changes (seq, at, action, actor, note, alert_id, alert)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", change_rows)
                    self._db.executemany(
                        "INSERT INTO alerts (id, incident, incident_key, episode, status,"
                        " status_rank, severity, severity_rank, type, site, bed, opened_at,"
                        " sort_opened, updated_at, alert)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
                        " status_rank = excluded.status_rank, severity = excluded.severity,"
                        " severity_rank = excluded.severity_rank,"
                        " updated_at = excluded.updated_at, alert = excluded.alert",
                        alert_rows)
                    self._db.executemany(
                        "INSERT OR REPLACE INTO handled_events (site, bed, device, call, seq,"
                        " device_ts, digest, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", handled_rows)
                    calls = [row[:3] + row[4:] for row in handled_rows if row[3]]
                    if calls:
                        self._db.executemany(
                            "INSERT OR IGNORE INTO handled_calls (site, bed, device, seq,"
                            " device_ts, digest, at) VALUES (?, ?, ?, ?, ?, ?, ?)", calls)
                        self._db.execute("DELETE FROM handled_calls WHERE at < ?",
                                         (max(row[-1] for row in calls) - self.calls_kept_ms,))
                    # Runs of inserts and of deletes, in their order (a member removed then
                    # added again within one write ends up stored).
                    for added, run in groupby(members, key=lambda m: isinstance(m, MemberRow)):
                        if added:
                            self._db.executemany(
                                "INSERT OR REPLACE INTO summary_members (incident_key, member,"
                                " unregistered, started_at, kind) VALUES (?, ?, ?, ?, ?)",
                                [(m.incident_key, m.member, int(m.unregistered), m.started_at,
                                  m.kind) for m in run if isinstance(m, MemberRow)])
                        else:
                            self._db.executemany("DELETE FROM summary_members WHERE"
                                                 " incident_key = ? AND member = ?",
                                                 [tuple(m) for m in run])
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                if storage_fault(exc) is None:
                    raise
                raise StoreUnavailable.wrap("alerts", "write", exc) from exc
            except OSError as exc:
                raise StoreUnavailable.wrap("alerts", "write (seq high-water)", exc) from exc

    def _alert_row(self, alert: Alert) -> tuple[object, ...]:
        key, episode = split_incident(alert.incident)
        return (alert.id, alert.incident, key, episode, alert.status.value,
                _STATUS_RANK[alert.status], alert.severity.value, alert.severity.rank,
                alert.type.value, alert.site, alert.bed, alert.opened_at, -alert.opened_at,
                alert.updated_at, self._encoder.encode(alert).decode())

    # --- reading ------------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert | None:
        rows = self._query("SELECT alert FROM alerts WHERE id = ?", (alert_id,))
        return self._decoder.decode(rows[0][0]) if rows else None

    def open_alerts(self) -> list[Alert]:
        """Every alert not yet resolved, oldest first."""
        rows = self._query("SELECT alert FROM alerts WHERE status_rank < 2"
                           " ORDER BY opened_at, id")
        return [self._decoder.decode(r[0]) for r in rows]

    def resolved_opened_since(self, since_ms: int) -> list[Alert]:
        """The resolved alerts opened at or after ``since_ms``, oldest first."""
        rows = self._query("SELECT alert FROM alerts WHERE opened_at >= ? AND status_rank = 2"
                           " ORDER BY opened_at, id", (since_ms,))
        return [self._decoder.decode(r[0]) for r in rows]

    def summary_members(self) -> dict[str, list[MemberRow]]:
        """Every summary's members by incident key, in the order they joined."""
        rows = self._query("SELECT incident_key, member, unregistered, started_at, kind"
                           " FROM summary_members ORDER BY rowid")
        members: dict[str, list[MemberRow]] = {}
        for key, member, unregistered, started_at, kind in rows:
            members.setdefault(str(key), []).append(MemberRow(
                str(key), str(member), bool(unregistered),
                None if started_at is None else int(started_at), str(kind)))
        return members

    def episode_counters(self) -> dict[str, int]:
        """The highest episode number of every incident key (``site/bed/type/episode``)."""
        rows = self._query("SELECT incident_key, max(episode) FROM alerts"
                           " GROUP BY incident_key")
        return {str(k): int(n) for k, n in rows}

    def handled_calls(self) -> list[HandledEvent]:
        """Every call (press, long_press, fall_detected) handled within :attr:`calls_kept_ms`
        of the newest, oldest first: what tells a replayed call from a new one."""
        rows = self._query("SELECT site, bed, device, seq, device_ts, digest, at"
                           " FROM handled_calls ORDER BY at")
        return [HandledEvent(site=site, bed=bed, at=at, event=EventRef(
                    device=device, seq=seq, device_ts=device_ts, digest=digest, call=True))
                for site, bed, device, seq, device_ts, digest, at in rows]

    def handled_events(self) -> list[HandledEvent]:
        """The last event handled of every device and lane (see :meth:`write`)."""
        rows = self._query("SELECT site, bed, device, call, seq, device_ts, digest, at"
                           " FROM handled_events ORDER BY site, bed, device, call")
        return [HandledEvent(site=site, bed=bed, at=at, event=EventRef(
                    device=device, seq=seq, device_ts=device_ts, digest=digest,
                    call=bool(call)))
                for site, bed, device, call, seq, device_ts, digest, at in rows]

    def history(self, alert_id: str) -> list[AlertChange]:
        """Every transition of one alert, in order."""
        rows = self._query("SELECT seq, at, action, actor, note, alert FROM changes"
                           " WHERE alert_id = ? ORDER BY seq", (alert_id,))
        return [self._change(row) for row in rows]

    def changes_since(self, seq: int, limit: int = 1000) -> list[AlertChange]:
        """Transitions with a sequence number above ``seq``, in order, at most ``limit``."""
        if limit < 1:
            raise ValueError("limit must be positive")
        rows = self._query("SELECT seq, at, action, actor, note, alert FROM changes"
                           " WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))
        return [self._change(row) for row in rows]

    def last_seq(self) -> int:
        """The sequence number of the latest transition, or the end of a range skipped after
        a restore if that is higher (0 when there is neither): the next change is numbered
        after it."""
        return int(self._query(_LAST_SEQ)[0][0])

    def skipped_range(self, seq: int) -> tuple[int, int] | None:
        """The range ``(after, upto]`` skipped after a restore that holds ``seq``, if any: a
        reader at ``seq`` saw changes the restored store does not have."""
        rows = self._query("SELECT after_seq, upto_seq FROM seq_skips"
                           " WHERE after_seq < ? AND ? <= upto_seq LIMIT 1", (seq, seq))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def list_alerts(self, *, status: Filter = None, severity: Filter = None,
                    type: Filter = None, site: Filter = None,
                    bed: Filter = None, since: int | None = None, until: int | None = None,
                    cursor: str | None = None, limit: int = 100,
                    ) -> tuple[list[Alert], str | None]:
        """One page of alerts matching every given filter, and the cursor of the next page
        (None on the last page).

        Order: unresolved first (open before acknowledged), then by severity, then newest
        ``opened_at`` first. ``since`` (inclusive) and ``until`` (exclusive) bound
        ``opened_at``. The cursor is keyset-based: alerts inserted meanwhile never shift a
        page, so no alert is served twice or skipped because of an insert.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        where: list[str] = []
        args: list[object] = []

        def any_of(column: str, values: Iterable[object]) -> None:
            listed = list(values)
            where.append(f"{column} IN ({', '.join('?' * len(listed))})")
            args.extend(listed)

        if status is not None:
            any_of("status", (s.value for s in _values(AlertStatus, status)))
        if severity is not None:
            any_of("severity", (s.value for s in _values(Severity, severity)))
        if type is not None:
            any_of("type", (t.value for t in _values(AlertType, type)))
        if site is not None:
            any_of("site", _strings(site))
        if bed is not None:
            any_of("bed", _strings(bed))
        if since is not None:
            where.append("opened_at >= ?")
            args.append(since)
        if until is not None:
            where.append("opened_at < ?")
            args.append(until)
        if cursor is not None:
            where.append("(status_rank, severity_rank, sort_opened, id) > (?, ?, ?, ?)")
            args.extend(_decode_cursor(cursor))
        sql = ("SELECT status_rank, severity_rank, sort_opened, id, alert FROM alerts"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY status_rank, severity_rank, sort_opened, id LIMIT ?")
        rows = self._query(sql, (*args, limit + 1))
        page = rows[:limit]
        alerts = [self._decoder.decode(row[4]) for row in page]
        next_cursor = _encode_cursor(page[-1][:4]) if len(rows) > limit else None
        return alerts, next_cursor

    def responses(self, *, since: int, until: int, site: Filter = None,
                  limit: int = 100_000) -> list[FirstResponse]:
        """Every alert opened in ``[since, until)`` (on ``site``, if given), oldest first, with
        its first acknowledgement and whether it was ever downgraded (a critical call the
        person cancelled): what the response report measures. At most ``limit`` (the caller
        refuses a period with more)."""
        where = ["a.opened_at >= ?", "a.opened_at < ?"]
        args: list[object] = [since, until]
        if site is not None:
            sites = _strings(site)
            where.append(f"a.site IN ({', '.join('?' * len(sites))})")
            args.extend(sites)
        first_ack = ("SELECT c.{} FROM changes c WHERE c.alert_id = a.id"
                     " AND c.action = 'acknowledged' ORDER BY c.seq LIMIT 1")
        rows = self._query(
            f"SELECT a.alert, ({first_ack.format('at')}), ({first_ack.format('actor')}),"
            " EXISTS (SELECT 1 FROM changes c WHERE c.alert_id = a.id"
            " AND c.action = 'downgraded') FROM alerts a WHERE " + " AND ".join(where)
            + " ORDER BY a.opened_at, a.id LIMIT ?", (*args, limit))
        return [FirstResponse(self._decoder.decode(body), at, actor, bool(downgraded))
                for body, at, actor, downgraded in rows]

    def count(self, *, status: Filter = None) -> int:
        if status is None:
            return int(self._query("SELECT count(*) FROM alerts")[0][0])
        values = [s.value for s in _values(AlertStatus, status)]
        return int(self._query(
            f"SELECT count(*) FROM alerts WHERE status IN ({', '.join('?' * len(values))})",
            values)[0][0])

    def close(self) -> None:
        """Close the database; the high-water mark shrinks from a reservation to the last seq
        issued, so a clean restart skips nothing."""
        with self._lock:
            try:
                if self.high_water_path is not None and self._reserved:
                    last = int(self._db.execute(_LAST_SEQ).fetchone()[0])
                    if last < self._reserved:
                        self._write_high_water(last, state="issued")
                        self._reserved = last
            finally:
                self._db.close()
                if self._issued_fd is not None:
                    os.close(self._issued_fd)
                    self._issued_fd = None

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------------

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                if storage_fault(exc) is None:
                    raise
                raise StoreUnavailable.wrap("alerts", "read", exc) from exc

    def _change(self, row: tuple[Any, ...]) -> AlertChange:
        seq, at, action, actor, note, body = row
        return AlertChange(seq=seq, at=at, action=action, actor=actor, note=note,
                           alert=self._decoder.decode(body))


class FirstResponse(NamedTuple):
    """An alert with its first acknowledgement (:meth:`AlertStore.responses`)."""

    alert: Alert
    acknowledged_at: int | None
    acknowledged_by: str | None
    downgraded: bool
    """Ever downgraded from critical (a call cancelled by the person within the window)."""


def _strings(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _values(enum: type[_E], value: str | Sequence[str]) -> list[_E]:
    try:
        return [enum(v) for v in _strings(value)]
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise ValueError(f"unknown {enum.__name__} in {value!r} (one of {allowed})") from None


def _encode_cursor(key: Sequence[object]) -> str:
    raw = msgspec.json.encode(["c1", *key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int, int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, status_rank, severity_rank, sort_opened, alert_id = msgspec.json.decode(raw)
    except (ValueError, TypeError, msgspec.DecodeError):
        raise InvalidCursor(f"invalid cursor {cursor[:80]!r}") from None
    if (tag != "c1" or not all(isinstance(v, int) and not isinstance(v, bool)
                                for v in (status_rank, severity_rank, sort_opened))
            or not isinstance(alert_id, str)):
        raise InvalidCursor(f"invalid cursor {cursor[:80]!r}")
    return status_rank, severity_rank, sort_opened, alert_id
