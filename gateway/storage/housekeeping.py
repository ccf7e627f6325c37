"""Housekeeping of the data directory: what a year of operation leaves on disk stays bounded.

(A module over 400 lines: the policies, the archive they write and its verification are one
guarantee, nothing is deleted that is not archived or past its age, read in one place.)

What the gateway writes under ``data_dir`` and what bounds it:

=========================== ======================================================================
``spool/``                  ``spool_max_bytes`` (segments, oldest dropped past it)
``deadletters.sqlite3``     ``dead_letter_max_bytes``; here also an age,
                            ``housekeeping_dead_letter_max_age_s``
``alerts.sqlite3``          here: changes older than ``housekeeping_alert_changes_live_months``
                            whole months are **archived** (below), then deleted; resolved alerts
                            whose changes are all archived are deleted, except the last episode
                            of each incident key (the episode numbering goes on from it);
                            handled calls: 8 days (:mod:`alerts.store`)
``keys.sqlite3``            audit rows older than ``housekeeping_audit_live_months`` months
                            **archived**, then deleted; keys themselves are few
``acklinks.sqlite3``        used one-time links older than ``housekeeping_ack_link_max_age_s``
                            (never less than the links' own lifetime) deleted
``outbox.sqlite3``          delivered entries pruned after 30 days by the upstream task;
``notify.sqlite3``          likewise by the notifier; parked and rejected entries stay until an
                            operator acts on them (the API lists them)
``servicelog.sqlite3``      **not bounded**: hash-chained, its triggers refuse DELETE; grows by
                            the visits recorded (README, "Disk use and housekeeping")
``plans.sqlite3``           planned visits whose end is older than
                            ``housekeeping_plans_live_months`` whole months **archived**, then
                            deleted; likewise the service log's side tables ``judged_visit``
                            (by ``judged_at``) and ``refused_visit`` (by ``at``)
``residents.sqlite3``       one row per resident (bed): bounded by the registry
``detectors.snapshot``,     one file each, rewritten in place
``oncall.json``,
``mqtt-session-*.json``,
``registry.cache.json``
=========================== ======================================================================

Every SQLite file is checkpointed on each run: a ``PASSIVE`` checkpoint first (it never blocks
a writer), then ``TRUNCATE``, which then has next to nothing to copy and only resets the WAL
file to zero bytes; it waits at most :data:`CHECKPOINT_WAIT_MS` for readers (new writers wait
behind it meanwhile), else it is tried again next run.

Free pages: every store is created with ``auto_vacuum=NONE`` (changing it takes a full
VACUUM), so pages freed by deletions are reused by the rows that follow; where a file has
``auto_vacuum=INCREMENTAL`` it gets ``PRAGMA incremental_vacuum`` in slices; a file off the
emergency path (not ``alerts.sqlite3``, not ``acklinks.sqlite3``, which an
acknowledgement writes) whose free pages are at least ``housekeeping_vacuum_free_share`` of it
and which is at most ``housekeeping_vacuum_max_bytes`` is VACUUMed.

Archive (``data_dir/archive/``): ``<kind>-YYYY-MM.jsonl.gz``, one JSON object per row with
every column as stored (an alert change keeps the alert as it was, as the JSON text the store
holds), in ``seq`` (or ``id``) order, and ``manifest.jsonl``, one line per archive file: kind,
month, file, rows, first and last number, the SHA-256 of the uncompressed lines, and ``prev``
and ``hash``, a hash chain over the manifest lines. :func:`verify_archive` recomputes every
file's digest and the chain, and checks that the alert changes' numbers run on without a gap
from the first archived one through the archives into the live store (ranges skipped after a
restore, ``seq_skips``, excepted). The order of a month's archiving survives a crash at any
point: file written to a temporary name, fsynced and renamed, the manifest line appended and
fsynced, and only then the rows deleted (an interrupted deletion is finished by the next run).

Only whole months are archived, and never a change a reader still needs: the upstream and
notification outboxes' cursors and the service records' settlement cursor must be past it; the
newest row of a table is never deleted (its number is what the next one follows).

All of it blocks on SQLite: :meth:`Housekeeper.run` runs in a thread of its own, each deletion
in slices of :attr:`Policy.slice_rows` rows, each its own short transaction, with a pause
between them, so a writer (an emergency call's alert commit) waits for one slice at most.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gzip
import hashlib
import itertools
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.storage.deadletters import DeadLetterStore
from gateway.storage.durable import fsync_dir

if TYPE_CHECKING:
    from gateway.config import Settings

log = logging.getLogger("homecare.housekeeping")

ARCHIVE_DIR: Final = "archive"
MANIFEST: Final = "manifest.jsonl"
GENESIS: Final = "0" * 64

NO_VACUUM: Final = frozenset({"alerts.sqlite3", "acklinks.sqlite3"})
"""Files on the emergency or acknowledgement path: a VACUUM locks the whole file for its
duration, so they are only checkpointed (their free pages are reused by new rows)."""

CHECKPOINT_WAIT_MS: Final = 50
"""How long a ``TRUNCATE`` checkpoint may wait for readers to finish; new writers (an alert
commit) wait behind it meanwhile, so never longer than this."""

ALERT_READERS: Final = {
    "outbox.sqlite3": "SELECT seq FROM cursors WHERE source = 'alerts'",
    "notify.sqlite3": "SELECT seq FROM cursors WHERE source = 'alerts'",
    "servicelog.sqlite3": "SELECT alert_seq FROM settlement",
}
"""Readers of the alert change log, by file, and where each keeps the last seq it read."""

SLICE_PAUSE_S: Final = 0.005
"""Pause between two slices: a waiting writer takes the file in between."""


@dataclass(frozen=True, slots=True)
class Kind:
    """A table archived by month."""

    name: str
    file: str
    table: str
    key: str
    at: str


ALERT_CHANGES: Final = Kind("alert-changes", "alerts.sqlite3", "changes", "seq", "at")
KEY_AUDIT: Final = Kind("key-audit", "keys.sqlite3", "audit", "id", "at")
PLANS: Final = Kind("plans", "plans.sqlite3", "plans", "rowid", "end_ms")
JUDGED_VISITS: Final = Kind("judged-visits", "servicelog.sqlite3", "judged_visit", "rowid",
                            "judged_at")
REFUSED_VISITS: Final = Kind("refused-visits", "servicelog.sqlite3", "refused_visit", "id", "at")
ARCHIVED_KINDS: Final = {kind.name: kind for kind in (ALERT_CHANGES, KEY_AUDIT, PLANS,
                                                       JUDGED_VISITS, REFUSED_VISITS)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    dead_letter_max_age_ms: int = 30 * 86_400_000
    """0: no age limit (the byte budget still holds)."""
    alert_changes_live_months: int = 13
    """0: never archived."""
    audit_live_months: int = 13
    """0: never archived."""
    plans_live_months: int = 13
    """Plans, judged and refused visits; 0: never archived."""
    ack_link_max_age_ms: int = 90 * 86_400_000
    ack_link_ttl_ms: int = 3_600_000
    vacuum_free_share: float = 0.25
    vacuum_max_bytes: int = 64 * 1024**2
    slice_rows: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            dead_letter_max_age_ms=round(settings.housekeeping_dead_letter_max_age_s * 1000),
            alert_changes_live_months=settings.housekeeping_alert_changes_live_months,
            audit_live_months=settings.housekeeping_audit_live_months,
            plans_live_months=settings.housekeeping_plans_live_months,
            ack_link_max_age_ms=round(settings.housekeeping_ack_link_max_age_s * 1000),
            ack_link_ttl_ms=round(settings.notify_link_ttl_s * 1000),
            vacuum_free_share=settings.housekeeping_vacuum_free_share,
            vacuum_max_bytes=settings.housekeeping_vacuum_max_bytes)


@dataclass(slots=True)
class Report:
    """What one run did."""

    at_ms: int
    seconds: float = 0.0
    bytes_before: int = 0
    bytes_after: int = 0
    wal_truncated_bytes: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    archived: dict[str, int] = field(default_factory=dict)
    vacuumed: list[str] = field(default_factory=list)
    store_bytes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return max(0, self.bytes_before - self.bytes_after)

    def line(self) -> str:
        """``key=value`` pairs for the log line."""
        parts = [f"seconds={self.seconds:.2f}", f"freed_bytes={self.freed_bytes}",
                 f"disk_bytes={self.bytes_after}",
                 f"wal_truncated_bytes={self.wal_truncated_bytes}"]
        parts += [f"deleted_{k.replace('-', '_')}={v}" for k, v in sorted(self.deleted.items())]
        parts += [f"archived_{k.replace('-', '_')}={v}" for k, v in sorted(self.archived.items())]
        parts.append(f"vacuumed={','.join(self.vacuumed) or '-'}")
        parts.append(f"errors={len(self.errors)}")
        return " ".join(parts)


class HousekeepingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.store_bytes = Gauge(
            "homecare_store_bytes", "Bytes on disk per store of the data directory (a SQLite "
            "file with its -wal and -shm; the spool and the archive directories)", ["store"],
            registry=registry)
        self.last_run = Gauge(
            "homecare_housekeeping_last_run_timestamp_seconds",
            "When the last housekeeping run finished (Unix time)", registry=registry)
        self.last_freed = Gauge(
            "homecare_housekeeping_last_freed_bytes",
            "Bytes on disk the last housekeeping run freed", registry=registry)
        self.last_seconds = Gauge(
            "homecare_housekeeping_last_run_seconds", "How long the last housekeeping run "
            "took", registry=registry)
        self.rows = Counter(
            "homecare_housekeeping_rows", "Rows deleted or archived by housekeeping",
            ["store", "action"], registry=registry)
        self.failures = Counter(
            "homecare_housekeeping_failures", "Housekeeping steps that failed (logged; the "
            "next run tries again)", registry=registry)

    def record(self, report: Report) -> None:
        for store, size in report.store_bytes.items():
            self.store_bytes.labels(store).set(size)
        self.last_run.set(report.at_ms / 1000 + report.seconds)
        self.last_freed.set(report.freed_bytes)
        self.last_seconds.set(report.seconds)
        for store, n in report.deleted.items():
            self.rows.labels(store, "deleted").inc(n)
        for store, n in report.archived.items():
            self.rows.labels(store, "archived").inc(n)
        if report.errors:
            self.failures.inc(len(report.errors))


# --- sizes --------------------------------------------------------------------------------------

def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tree_size(path: Path) -> int:
    if not path.is_dir():
        return 0
    return sum(_size(p) for p in path.rglob("*") if p.is_file())


def store_bytes(data_dir: Path) -> dict[str, int]:
    """Bytes on disk per store: each SQLite file with its ``-wal`` and ``-shm``, the spool
    and the archive directories, and ``other`` (every other file)."""
    sizes: dict[str, int] = {}
    counted: set[Path] = set()
    for db in sorted(data_dir.glob("*.sqlite3")):
        parts = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
        sizes[db.name.removesuffix(".sqlite3")] = sum(_size(p) for p in parts)
        counted.update(parts)
    for name in ("spool", ARCHIVE_DIR):
        sizes[name] = _tree_size(data_dir / name)
    sizes["other"] = sum(_size(p) for p in data_dir.iterdir()
                         if p.is_file() and p not in counted)
    return sizes


# --- months -------------------------------------------------------------------------------------

def month_start_ms(year: int, month: int) -> int:
    return int(dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp() * 1000)


def month_of(at_ms: int) -> tuple[int, int]:
    day = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC)
    return day.year, day.month


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def archive_cutoff_ms(now_ms: int, live_months: int) -> int:
    """The start of the oldest month kept live: the current month and the ``live_months``
    whole months before it stay; months before are archived (UTC months)."""
    year, month = month_of(now_ms)
    index = year * 12 + (month - 1) - live_months
    return month_start_ms(index // 12, index % 12 + 1)


# --- the archive --------------------------------------------------------------------------------

def _entry_hash(prev: str, entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(prev.encode("ascii") + canonical).hexdigest()


def read_manifest(archive: Path) -> list[dict[str, Any]]:
    """The manifest's lines; a last line without its newline (an append cut short by a power
    loss: its month is archived again) is not one."""
    path = archive / MANIFEST
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()
            if line.strip()]


def _private_dir(path: Path) -> None:
    """The archive directory, mode 0700 (what it holds is residents' alerts and the API's
    audit): created so, tightened when found looser."""
    path.mkdir(mode=0o700, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, 0o700)
        log.warning("housekeeping.tightened dir=%s old_mode=%o new_mode=700", path.name, mode)


def _append_manifest(archive: Path, entry: dict[str, Any]) -> dict[str, Any]:
    entries = read_manifest(archive)
    prev = entries[-1]["hash"] if entries else GENESIS
    entry = {**entry, "prev": prev}
    entry["hash"] = _entry_hash(prev, entry)
    path = archive / MANIFEST
    if path.exists():  # drop a last line cut short (read_manifest ignores it)
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as cut:
                cut.truncate(data.rfind(b"\n") + 1)
    with open(path, "a", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # as the archive files: 0644 from the umask before
        out.write(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        out.flush()
        os.fsync(out.fileno())
    return entry


@dataclass(slots=True)
class ArchiveCheck:
    """What :func:`verify_archive` found: ``problems`` empty when all is well."""

    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    """The last number archived per kind."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _archive_lines(path: Path) -> Iterator[bytes]:
    with gzip.open(path, "rb") as lines:
        yield from lines


def verify_archive(data_dir: str | Path) -> ArchiveCheck:
    """Recompute every archive file's digest, row count and first and last number against
    the manifest, the manifest's hash chain, and (alert changes) that the numbers run on
    without a gap through the archives into the live store."""
    data_dir = Path(data_dir)
    archive = data_dir / ARCHIVE_DIR
    check = ArchiveCheck()
    prev = GENESIS
    keys: dict[str, list[int]] = {}
    for i, entry in enumerate(read_manifest(archive), 1):
        if entry.get("prev") != prev or _entry_hash(prev, entry) != entry.get("hash"):
            check.problems.append(f"manifest line {i} ({entry.get('file')}): the chain is "
                                  "broken (changed, removed or moved)")
        prev = str(entry.get("hash"))
        path = archive / str(entry["file"])
        if not path.exists():
            check.problems.append(f"{entry['file']}: missing")
            continue
        digest = hashlib.sha256()
        numbers = []
        archived_kind = ARCHIVED_KINDS.get(str(entry["kind"]))
        key = archived_kind.key if archived_kind is not None else "id"
        try:
            for line in _archive_lines(path):
                digest.update(line)
                numbers.append(int(json.loads(line)[key]))
        except (OSError, EOFError, ValueError, KeyError) as exc:
            check.problems.append(f"{entry['file']}: unreadable ({exc})")
            continue
        check.files += 1
        if digest.hexdigest() != entry["sha256"]:
            check.problems.append(f"{entry['file']}: content differs from the manifest's "
                                  "SHA-256")
        if (len(numbers), numbers[:1], numbers[-1:]) != (entry["rows"], [entry["first"]],
                                                          [entry["last"]]):
            check.problems.append(f"{entry['file']}: rows or numbers differ from the manifest")
        keys.setdefault(entry["kind"], []).extend(numbers)
        check.rows[entry["kind"]] = check.rows.get(entry["kind"], 0) + len(numbers)
    for kind, numbers in keys.items():
        check.heads[kind] = max(numbers)
    archived = keys.get(ALERT_CHANGES.name, [])
    if archived:
        top = max(archived)
        live = data_dir / ALERT_CHANGES.file
        skips: list[tuple[int, int]] = []
        live_seqs: list[int] = []
        if live.exists():
            db = sqlite3.connect(f"file:{live}?mode=ro", uri=True)
            try:
                # The live changes numbered among the archived ones (none, unless a clock set
                # back interleaved two months) and the first after them.
                live_seqs = [int(r[0]) for r in db.execute(
                    "SELECT seq FROM changes WHERE seq <= ? UNION ALL SELECT min(seq) FROM"
                    " changes WHERE seq > ?", (top, top)) if r[0] is not None]
                skips = [(int(a), int(b)) for a, b in
                         db.execute("SELECT after_seq, upto_seq FROM seq_skips")]
            finally:
                db.close()
        overlap = len(set(live_seqs) & set(archived))
        if overlap:
            check.problems.append(f"alert changes: {overlap} archived changes still in the "
                                  "live store (a deletion not finished yet)")
        # Numbers start at 1: anything between 0 and the first archived one is missing too.
        following = [0, *sorted({*archived, *live_seqs})]
        for before, after in itertools.pairwise(following):
            if after == before + 1 or any(a <= before and after <= b + 1 for a, b in skips):
                continue
            check.problems.append(f"alert changes: seq {before + 1}..{after - 1} are neither "
                                  "archived nor live")
    return check


# --- the housekeeper ----------------------------------------------------------------------------

class Stopped(Exception):
    """The gateway is stopping: the run ends between two slices."""


class Housekeeper:
    """One run at a time (:meth:`run`, blocking: call it from a thread of its own)."""

    def __init__(self, data_dir: str | Path, policy: Policy, *,
                 metrics: HousekeepingMetrics | None = None,
                 deadletters: DeadLetterStore | None = None,
                 alert_readers: Iterable[str] | None = None,
                 audits: Iterable[tuple[str, Callable[[], object]]] = (),
                 clock: Callable[[], float] = time.time) -> None:
        """``deadletters``: the gateway's open dead-letter store, which keeps count of its
        rows: its letters are deleted through it (without, through a connection of our own).
        ``alert_readers``: the files of the alert change log's readers in use, of
        :data:`ALERT_READERS` (an outbox left by an upstream no longer configured holds nothing
        back); None: every one there is. ``audits``: named checks run last in each run (the
        service log's full verification, :meth:`alerts.ServiceLog.audit`: what incremental
        verification no longer recomputes is recomputed on this schedule, off the event
        loop)."""
        self.data_dir = Path(data_dir)
        self.deadletters = deadletters
        self.alert_readers = None if alert_readers is None else frozenset(alert_readers)
        self.audits = list(audits)
        self.archive = self.data_dir / ARCHIVE_DIR
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.stopping = threading.Event()
        self.last: Report | None = None

    def measure(self) -> dict[str, int]:
        """Bytes on disk per store, into ``homecare_store_bytes`` (between runs)."""
        sizes = store_bytes(self.data_dir)
        if self.metrics is not None:
            for store, size in sizes.items():
                self.metrics.store_bytes.labels(store).set(size)
        return sizes

    # -- one run --

    def run(self, now_ms: int | None = None) -> Report:
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        started = time.perf_counter()
        report = Report(at_ms=now_ms)
        report.bytes_before = sum(store_bytes(self.data_dir).values())
        p = self.policy
        steps: list[tuple[str, Callable[[], object]]] = []
        if p.alert_changes_live_months > 0:
            steps.append(("alert-changes", lambda: self._archive(
                ALERT_CHANGES, archive_cutoff_ms(now_ms, p.alert_changes_live_months),
                self._alert_readers_seq(), report)))
            steps.append(("alerts", lambda: self._delete_archived_alerts(report)))
        if p.audit_live_months > 0:
            steps.append(("key-audit", lambda: self._archive(
                KEY_AUDIT, archive_cutoff_ms(now_ms, p.audit_live_months), None, report)))
        if p.plans_live_months > 0:
            cutoff = archive_cutoff_ms(now_ms, p.plans_live_months)
            for kind in (PLANS, JUDGED_VISITS, REFUSED_VISITS):
                steps.append((kind.name, functools.partial(self._archive, kind, cutoff, None,
                                                           report)))
        if p.dead_letter_max_age_ms > 0:
            steps.append(("deadletters", lambda: self._delete_dead_letters(
                now_ms - p.dead_letter_max_age_ms, report)))
        steps.append(("acklinks", lambda: self._delete_sliced(
            "acklinks", "acklinks.sqlite3", "used_links", "rowid", "used_at < ?",
            (now_ms - max(p.ack_link_max_age_ms, p.ack_link_ttl_ms),), report)))
        steps.append(("compact", lambda: self._compact(report)))
        steps.extend(self.audits)
        for name, step in steps:
            if self.stopping.is_set():
                break
            try:
                step()
            except Stopped:
                break
            except (sqlite3.Error, OSError, ValueError) as exc:
                report.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                log.error("housekeeping.failed step=%s error=%s: %s; tried again next run",
                          name, type(exc).__name__, exc)
        report.store_bytes = store_bytes(self.data_dir)
        report.bytes_after = sum(report.store_bytes.values())
        report.seconds = time.perf_counter() - started
        self.last = report
        if self.metrics is not None:
            self.metrics.record(report)
        log.info("housekeeping.done %s", report.line())
        return report

    # -- SQLite --

    @contextlib.contextmanager
    def _open(self, name: str) -> Iterator[sqlite3.Connection | None]:
        path = self.data_dir / name
        if not path.exists():
            yield None
            return
        db = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            yield db
        finally:
            db.close()

    def _pause(self) -> None:
        if self.stopping.wait(SLICE_PAUSE_S):
            raise Stopped

    def _delete_sliced(self, store: str, file: str, table: str, key: str, where: str,
                       args: tuple[object, ...], report: Report, *, keep_newest: bool = False
                       ) -> int:
        """Delete the rows ``where`` says, a slice at a time: the rows are looked for in a
        read (no lock: the search may scan the table), then deleted by key with ``where``
        checked again, a short write."""
        deleted = 0
        limit = self.policy.slice_rows
        with self._open(file) as db:
            if db is None or not _has_table(db, table):
                return 0
            if keep_newest:
                where = f"({where}) AND {key} < (SELECT max({key}) FROM {table})"
            find = f"SELECT {key} FROM {table} WHERE {where} ORDER BY {key} LIMIT ?"
            while True:
                keys = [row[0] for row in db.execute(find, (*args, limit))]
                if not keys:
                    break
                marks = ",".join("?" * len(keys))
                deleted += db.execute(f"DELETE FROM {table} WHERE {key} IN ({marks}) AND"
                                      f" ({where})", (*keys, *args)).rowcount
                if len(keys) < limit:
                    break
                self._pause()
        if deleted:
            report.deleted[store] = report.deleted.get(store, 0) + deleted
        return deleted

    def _delete_dead_letters(self, before_ms: int, report: Report) -> None:
        store = self.deadletters
        if store is None:
            self._delete_sliced("deadletters", "deadletters.sqlite3", "dead_letters", "id",
                                "received_ms < ?", (before_ms,), report)
            return
        deleted = 0
        while True:
            n = store.delete_older_than(before_ms, self.policy.slice_rows)
            deleted += n
            if n < self.policy.slice_rows:
                break
            self._pause()
        if deleted:
            report.deleted["deadletters"] = report.deleted.get("deadletters", 0) + deleted

    def _alert_readers_seq(self) -> int | None:
        """The lowest alert seq a reader of the change log still needs to have read past (the
        upstream and notification outboxes, the service records' settlement); None: none."""
        seqs = []
        for file, sql in ALERT_READERS.items():
            if self.alert_readers is not None and file not in self.alert_readers:
                continue
            with self._open(file) as db:
                if db is None:
                    continue
                try:
                    row = db.execute(sql).fetchone()
                except sqlite3.OperationalError:  # no such table: nothing read yet
                    row = (0,)
                seqs.append(int(row[0]) if row else 0)
        return min(seqs) if seqs else None

    def _archive(self, kind: Kind, cutoff_ms: int, readers_seq: int | None,
                 report: Report) -> None:
        """Archive whole months of ``kind`` before ``cutoff_ms``, oldest first."""
        _private_dir(self.archive)
        with self._open(kind.file) as db:
            if db is None or not _has_table(db, kind.table):
                return
            # A deletion a crash interrupted: rows already in an archive file.
            for entry in read_manifest(self.archive):
                if entry["kind"] == kind.name:
                    self._delete_range(db, kind, entry)
            while True:
                row = db.execute(f"SELECT min({kind.at}), max({kind.key}) FROM {kind.table}"
                                 ).fetchone()
                if row[0] is None or row[0] >= cutoff_ms:
                    return
                year, month = month_of(row[0])
                end_ms = month_start_ms(*next_month(year, month))
                if end_ms > cutoff_ms:
                    return
                limit = int(row[1]) - 1  # the newest row stays
                if readers_seq is not None:
                    limit = min(limit, readers_seq)
                written = self._write_month(db, kind, year, month, end_ms, limit)
                if written is None:
                    return
                self._delete_range(db, kind, written)
                report.archived[kind.name] = (report.archived.get(kind.name, 0)
                                              + written["rows"])
                self._pause()

    def _write_month(self, db: sqlite3.Connection, kind: Kind, year: int, month: int,
                     end_ms: int, limit: int) -> dict[str, Any] | None:
        """Write the month's rows (up to number ``limit``) to their archive file and the
        manifest; None when there is nothing it may archive."""
        name = f"{kind.name}-{year:04d}-{month:02d}.jsonl.gz"
        taken = {e["file"] for e in read_manifest(self.archive)}
        n = 1
        while name in taken:
            n += 1
            name = f"{kind.name}-{year:04d}-{month:02d}.{n}.jsonl.gz"
        tmp = self.archive / (name + ".tmp")
        digest = hashlib.sha256()
        try:
            rows, first, last = self._write_rows(db, kind, tmp, end_ms, limit, digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if not rows:
            tmp.unlink()
            return None
        os.replace(tmp, self.archive / name)
        fsync_dir(self.archive)
        return _append_manifest(self.archive, {
            "kind": kind.name, "month": f"{year:04d}-{month:02d}", "file": name, "rows": rows,
            "first": first, "last": last, "sha256": digest.hexdigest(),
            "archived_at": int(self.clock() * 1000)})

    def _write_rows(self, db: sqlite3.Connection, kind: Kind, tmp: Path, end_ms: int,
                    limit: int, digest: Any) -> tuple[int, int | None, int | None]:
        """The rows below ``end_ms`` up to number ``limit``, in order, gzipped into ``tmp``
        (fsynced); read a slice at a time, the gateway's stop looked at between slices."""
        columns = [r[1] for r in db.execute(f"PRAGMA table_info({kind.table})")]
        if kind.key not in columns:
            columns.insert(0, kind.key)  # rowid: a table keyed by name, numbered by SQLite
        rows, first, last, after = 0, None, None, -1
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
            os.fchmod(raw.fileno(), 0o600)  # residents' alerts and the API's audit
            while True:
                if self.stopping.is_set():
                    raise Stopped
                batch = db.execute(
                    f"SELECT {', '.join(columns)} FROM {kind.table} WHERE {kind.key} > ? AND"
                    f" {kind.key} <= ? AND {kind.at} < ? ORDER BY {kind.key} LIMIT ?",
                    (after, limit, end_ms, self.policy.slice_rows)).fetchall()
                if not batch:
                    break
                for values in batch:
                    line = (json.dumps(dict(zip(columns, values, strict=True)),
                                       separators=(",", ":"), ensure_ascii=False) + "\n"
                            ).encode()
                    out.write(line)
                    digest.update(line)
                after = int(batch[-1][columns.index(kind.key)])
                first = int(batch[0][columns.index(kind.key)]) if first is None else first
                last = after
                rows += len(batch)
            out.close()
            raw.flush()
            os.fsync(raw.fileno())
        return rows, first, last

    def _delete_range(self, db: sqlite3.Connection, kind: Kind, entry: dict[str, Any]
                      ) -> None:
        """Delete the rows an archive file holds: numbered ``first`` to ``last`` and of its
        month or before (a row numbered among them but of a later month, its clock set back
        meanwhile, is not in the file)."""
        year, month = (int(part) for part in str(entry["month"]).split("-"))
        end_ms = month_start_ms(*next_month(year, month))
        sql = (f"DELETE FROM {kind.table} WHERE {kind.key} IN (SELECT {kind.key} FROM"
               f" {kind.table} WHERE {kind.key} BETWEEN ? AND ? AND {kind.at} < ?"
               f" ORDER BY {kind.key} LIMIT {int(self.policy.slice_rows)})")
        while db.execute(sql, (entry["first"], entry["last"], end_ms)).rowcount:
            self._pause()

    def _delete_archived_alerts(self, report: Report) -> None:
        """Resolved alerts none of whose changes is live any more, except the last episode of
        each incident key (the engine numbers the next episode after it)."""
        self._delete_sliced(
            "alerts", ALERT_CHANGES.file, "alerts", "rowid",
            "status_rank = 2 AND NOT EXISTS (SELECT 1 FROM changes c WHERE c.alert_id ="
            " alerts.id) AND episode < (SELECT max(episode) FROM alerts a2 WHERE"
            " a2.incident_key = alerts.incident_key)", (), report)

    # -- checkpoint and free pages --

    def _compact(self, report: Report) -> None:
        for path in sorted(self.data_dir.glob("*.sqlite3")):
            if self.stopping.is_set():
                raise Stopped
            wal = path.with_name(path.name + "-wal")
            before = _size(wal)
            with self._open(path.name) as db:
                if db is None:
                    continue
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                # TRUNCATE holds new writers back while it waits for readers: not longer than
                # CHECKPOINT_WAIT_MS (then it is tried again next run).
                db.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                db.execute("PRAGMA busy_timeout=5000")
                if busy:
                    log.info("housekeeping.checkpoint_busy file=%s; a reader held it, tried "
                             "again next run", path.name)
                report.wal_truncated_bytes += max(0, before - _size(wal))
                self._free_pages(db, path, report)

    def _free_pages(self, db: sqlite3.Connection, path: Path, report: Report) -> None:
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
        if not free or not pages:
            return
        mode = int(db.execute("PRAGMA auto_vacuum").fetchone()[0])
        if mode == 2:  # incremental
            while int(db.execute("PRAGMA freelist_count").fetchone()[0]):
                db.execute("PRAGMA incremental_vacuum(256)").fetchall()
                self._pause()
            report.vacuumed.append(path.name)
        elif (path.name not in NO_VACUUM and free / pages >= self.policy.vacuum_free_share
              and _size(path) <= self.policy.vacuum_max_bytes):
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            report.vacuumed.append(path.name)


def _has_table(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (table,)).fetchone() is not None
