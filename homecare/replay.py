"""Offline replay: recorded traffic through the whole pipeline on a simulated clock.

(A module over 400 lines: one run of what the gateway builds, on its clock, with the summary
of what it read, raised and judged, which the command prints.)

Each JSONL line (DESIGN.md, "Recorded traffic") becomes a received message whose receipt time
is the line's ``t``: decoded and validated by the device codec, deduplicated, counted or
dead-lettered by the same :class:`~gateway.ingest.pipeline.Pipeline` as in the gateway, and
handed to the :class:`~gateway.detect.alerting.AlertingStage` (immediate rules, the detectors of
:mod:`gateway.detect`, the real :class:`~alerts.engine.AlertEngine` on an in-memory
:class:`~alerts.store.AlertStore`). Dead letters go to an in-memory store and are counted.
Time-series points are neither formatted nor stored.

The clock: messages are fed in batches of at most ``tick_ms`` of simulated time, and the stage
is ticked at every ``tick_ms`` boundary, also across gaps in the traffic. A batch also ends
right after an emergency-button or fall event, so those alerts open at that message's receipt
time, exactly as in the live gateway. Alert ids are seeded: the same traffic, registry and
settings give byte-identical alerts.

Nobody answers alerts in a replay, yet an unresolved alert absorbs every later finding of its
incident (a second emergency call from the same bed a day later would only update the first
call). A simulated dispatcher therefore resolves every alert ``dispatcher_after_ms`` after it
opened (actor :data:`DISPATCHER`); 0 leaves alerts as the engine left them.

The service checks (``service_anomaly``) run as in the gateway: the ``service_*`` settings'
thresholds, and the plans given (``plans``: a plan store, e.g. :func:`plans_from_csv` of the
file ``homecare plans import`` takes), else none (then no visit is ``unplanned`` or
``outside_window`` and no plan ``missed``: a bed nobody plans is not judged by plans). Visits
come from the badges' ``badge/event`` messages of the traffic. Check-ins and check-outs made
through the caregiver app (``POST /api/v1/visits/...``) are not MQTT traffic and so not in
it: those visits are not replayed, and their homes' samples count as the household's. Each
visit judged is counted by verdict (:attr:`ReplaySummary.visits`), as the gateway keeps its
judgement in the service log.

A line that is not a traffic record (not JSON, a field missing or of the wrong type, ``t`` not
an integer epoch ms, a payload that is not base64) is skipped, counted per reason with its
first line numbers (:class:`ReplaySummary`): a replay never drops input silently, and
``homecare replay`` fails unless told to accept it. A float ``t``, even an integral one such as
``1.7955108e12``, is not read: recorded traffic carries integer milliseconds, and a tool that
wrote floats may have rounded them.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final, Never, cast

import msgspec

from alerts import Catalogue, JudgedVisit, PlanStore, PlanZones, parse_plans_csv, registry_places
from alerts.engine import seeded_ids
from alerts.model import Alert
from alerts.rules import ImmediateRules
from alerts.store import MAX_PAGE, AlertStore
from devices.codec import Codec
from devices.devicetime import ClockWindow
from devices.registry import Registry
from devices.topics import is_urgent
from devices.traffic import decode_line, unreadable_reason
from gateway.config import Settings
from gateway.detect import (
    SNAPSHOT_FILE,
    Restored,
    ServiceAnomalyDetector,
    build_detectors,
    restore_snapshot,
    save_snapshot,
    service_checks,
)
from gateway.detect.alerting import AlertingStage, engine_from_settings
from gateway.ingest.checkpoint import commit
from gateway.ingest.message import RawMessage
from gateway.ingest.pipeline import Pipeline, device_budget
from gateway.monitoring import Metrics
from gateway.storage.deadletters import DeadLetterStore
from gateway.tsdb.lineprotocol import LineEncoder

DEFAULT_TICK_MS: Final = 10_000
"""Simulated time between two ticks of the alerting stage."""
DEFAULT_DISPATCHER_AFTER_MS: Final = 60 * 60_000
DISPATCHER: Final = "replay-dispatcher"
MAX_BATCH: Final = 5_000
"""Messages per pipeline batch at most (a burst of traffic within one tick)."""
UNREADABLE_EXAMPLES: Final = 5
"""Line numbers kept per reason a line could not be read."""
APP_VISITS_NOTE: Final = ("visits checked in through the caregiver app are not in recorded "
                          "traffic (the app calls the API, not MQTT): not replayed")


@dataclass(slots=True)
class ReplaySummary:
    """What a replay saw and raised."""

    lines: int = 0
    unreadable_lines: int = 0
    unreadable: Counter[str] = field(default_factory=Counter)
    """Lines not read, per reason (``t is not an integer epoch ms``, ``not JSON``...)."""
    unreadable_at: dict[str, list[int]] = field(default_factory=dict)
    """Per reason, the first :data:`UNREADABLE_EXAMPLES` line numbers (1-based, in the file)."""
    accepted: int = 0
    duplicates: int = 0
    retained_events: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    ticks: int = 0
    restarts: int = 0
    visits: Counter[str] = field(default_factory=Counter)
    """Visits the service checks judged (badge visits: :data:`APP_VISITS_NOTE`), by verdict
    (``verified``, ``flagged``, ``unverifiable``)."""
    plans: int | None = None
    """Plans the visits were checked against (``None``: none given)."""
    beds: int = 0
    first_t: int | None = None
    last_t: int | None = None
    elapsed_s: float = 0.0

    @property
    def simulated_hours(self) -> float:
        if self.first_t is None or self.last_t is None:
            return 0.0
        return (self.last_t - self.first_t) / 3_600_000

    @property
    def bed_hours_per_s(self) -> float:
        return self.beds * self.simulated_hours / self.elapsed_s if self.elapsed_s else 0.0

    def report(self) -> list[str]:
        """A short human summary."""
        out = [f"lines: {self.lines:,} ({self.unreadable_lines:,} unreadable), accepted "
               f"{self.accepted:,}, duplicates {self.duplicates:,}, dead letters "
               f"{sum(self.dead_letters.values()):,}"
               + (" (" + ", ".join(f"{k} {v:,}" for k, v in sorted(self.dead_letters.items()))
                  + ")" if self.dead_letters else "")
               + (f", retained events {self.retained_events:,} (stored, not calls)"
                  if self.retained_events else ""),
               *self.unreadable_report(),
               f"simulated: {self.simulated_hours:,.1f} h, {self.beds} beds, {self.ticks:,} ticks "
               f"in {self.elapsed_s:.1f} s ({self.bed_hours_per_s:,.0f} bed-hours/s)"
               + (f", {self.restarts} restart{'s' if self.restarts != 1 else ''} through a "
                  "detector snapshot" if self.restarts else ""),
               f"alerts: {sum(self.alerts.values())}"
               + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(self.alerts.items())) + ")"
                  if self.alerts else ""),
               self.service_report()]
        return out

    def service_report(self) -> str:
        """What the service checks judged, against which plans, and what a replay cannot
        check."""
        judged = sum(self.visits.values())
        verdicts = (" (" + ", ".join(f"{k} {v}" for k, v in sorted(self.visits.items())) + ")"
                    if judged else "")
        plans = (f"against {self.plans:,} plan{'s' if self.plans != 1 else ''}"
                 if self.plans is not None else
                 "no plans given (--plans): no visit judged unplanned or outside its window, "
                 "no plan missed")
        return (f"service checks: {judged:,} visit{'s' if judged != 1 else ''} judged"
                f"{verdicts}, {plans}; {APP_VISITS_NOTE}")

    def unreadable_report(self) -> list[str]:
        """One line per reason a line could not be read: how many, the first line numbers."""
        out = []
        for reason, count in sorted(self.unreadable.items(), key=lambda item: -item[1]):
            at = self.unreadable_at.get(reason, [])
            more = ", ..." if count > len(at) else ""
            where = ", ".join(f"line {n}" for n in at) + more
            out.append(f"unreadable: {count:,} line{'s' if count != 1 else ''}: {reason} "
                       f"({where})")
        return out

    def skipped(self, line_number: int, reason: str) -> None:
        """Count line ``line_number`` as not read, for ``reason``."""
        self.unreadable_lines += 1
        self.unreadable[reason] += 1
        at = self.unreadable_at.setdefault(reason, [])
        if len(at) < UNREADABLE_EXAMPLES:
            at.append(line_number)


class _DiscardSpool:
    """Stands in for the on-disk spool: replay stores no time series."""

    def append(self, body: bytes, points: int) -> None:
        del body, points


class _NoPoints:
    """Stands in for the line-protocol encoder: replay formats no points (a third of the
    pipeline's time), since none would be stored."""

    retimed = 0

    def lines(self, message: object, out: list[str], received_ms: int | None = None) -> int:
        del message, out, received_ms
        return 0


def read_traffic(lines: Iterable[bytes], summary: ReplaySummary) -> Iterator[RawMessage]:
    """Received messages from traffic JSONL lines; unreadable lines are counted per reason,
    with their line numbers (:meth:`ReplaySummary.skipped`), and skipped."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        summary.lines += 1
        try:
            t, topic, payload, retain = decode_line(line)
        except ValueError as exc:  # msgspec.DecodeError, binascii.Error, UnicodeError too
            summary.skipped(number, unreadable_reason(exc))
            continue
        yield RawMessage(topic, payload, 0, 1, t, retain=retain)


class _Judgements:
    """Stands in for the gateway's service log as the service checks see it: no check-in comes
    from it (the app's are not in the traffic: :data:`APP_VISITS_NOTE`), and each judgement
    written to it is counted by verdict."""

    def __init__(self, summary: ReplaySummary) -> None:
        self.summary = summary

    def query(self, *, since: int | None = None, after_seq: int | None = None,
              newest_first: bool = True, limit: int = 100) -> Sequence[Never]:
        del since, after_seq, newest_first, limit
        return ()

    def head(self) -> tuple[int, str]:
        return 0, ""

    def record_judged(self, visits: Sequence[JudgedVisit]) -> None:
        self.summary.visits.update(str(v.measured.get("verdict")) for v in visits)


def plans_from_csv(text: str, *, settings: Settings, registry: Registry,
                   timezone: str | None = None) -> tuple[PlanStore | None, list[str]]:
    """The plans of a CSV file as ``homecare plans import`` reads it (the ``service_catalogue``
    setting's items, each site's zone, ``timezone`` for sites without one), in an in-memory
    store; or ``None`` and every problem, by row and column."""
    zones = PlanZones(lambda site: registry.timezone(site, settings.timezone), given=timezone)
    parsed = parse_plans_csv(text, catalogue=Catalogue.parse(settings.service_catalogue),
                             zone_of=zones, places=registry_places(registry))
    problems = [*zones.problems(), *map(str, parsed.problems)]
    if problems:
        return None, problems
    store = PlanStore(":memory:")
    store.import_rows(parsed.rows, actor="homecare-replay", now_ms=0)
    return store, []


class Replayer:
    """One replay run: feed traffic, then read the alerts."""

    def __init__(self, *, registry: Registry | None = None, timezone: str | None = None,
                 settings: Settings | None = None, tick_ms: int = DEFAULT_TICK_MS,
                 seed: int = 0, dispatcher_after_ms: int = DEFAULT_DISPATCHER_AFTER_MS,
                 restart_at_ms: Iterable[int] = (), snapshot_dir: Path | None = None,
                 plans: PlanStore | None = None) -> None:
        """``restart_at_ms``: simulated times (receipt clock) at which the replay restarts as a
        gateway would (:meth:`restart`), through a snapshot file in ``snapshot_dir`` (needed
        then). ``plans``: the plans the service checks take visits against (not closed
        here)."""
        if tick_ms <= 0 or dispatcher_after_ms < 0:
            raise ValueError("tick_ms must be positive, dispatcher_after_ms not negative")
        self._restarts = sorted(restart_at_ms)
        if self._restarts and snapshot_dir is None:
            raise ValueError("restarting needs a snapshot_dir")
        self.snapshot_dir = snapshot_dir
        self.dispatcher_after_ms = dispatcher_after_ms
        self.settings = settings = settings or Settings()
        self.registry = registry if registry is not None else (
            Registry.load(settings.registry_file) if settings.registry_file else Registry())
        self.timezone = timezone or settings.timezone
        self.tick_ms = tick_ms
        self.store = AlertStore(":memory:")
        self._ids = seeded_ids(seed)
        self.deadletters = DeadLetterStore(":memory:")
        self.summary = ReplaySummary()
        self.plans = plans
        if plans is not None:
            self.summary.plans = len(plans.between(-(2**62), 2**62))
        self._judgements = _Judgements(self.summary)
        self._next_tick: int | None = None
        self._batch: list[RawMessage] = []
        self._earlier_duplicates = self._earlier_retained = 0
        self._build()

    def _build(self) -> None:
        """What a gateway builds at start: the engine on the (durable) alert store, the
        detectors (the service checks with the gateway's thresholds and the plans), the
        immediate rules (resumed from the open alerts), the pipeline."""
        settings = self.settings
        self.engine = engine_from_settings(settings, self.store, id_factory=self._ids)
        clock_window = ClockWindow(behind_ms=settings.clock_window_s * 1000)
        self.detectors = build_detectors(self.registry, timezone=self.timezone,
                                         clock_window=clock_window)
        for detector in self.detectors:
            if isinstance(detector, ServiceAnomalyDetector):
                detector.configure(checks=service_checks(settings), plans=self.plans,
                                   visit_log=self._judgements)
        self.stage = AlertingStage(
            self.engine,
            rules=ImmediateRules(no_motion_ms=round(settings.alert_fall_no_motion_s * 1000)),
            detectors=self.detectors)
        self.pipeline = Pipeline(metrics=Metrics(),
                                 codec=Codec(max_payload_bytes=settings.max_payload_bytes),
                                 registry=self.registry, stages=(self.stage,),
                                 dedup_window=settings.dedup_window,
                                 clock_window=clock_window,
                                 device_budget=device_budget(settings))
        self.pipeline.encoder = cast(LineEncoder, _NoPoints())

    def restart(self) -> Restored:
        """Stop and start again as the gateway does at a clean restart: what is in hand is
        committed, the detectors are snapshotted to a file, every in-memory part is dropped
        and built anew (the alert store is durable and kept), and the detectors are restored
        from the file. The same traffic then gives the same alerts as without the restart."""
        assert self.snapshot_dir is not None
        self._flush()
        self._commit()
        path = self.snapshot_dir / SNAPSHOT_FILE
        save_snapshot(path, self.detectors, taken_at_ms=self.summary.last_t)
        self._earlier_duplicates += self.pipeline.dedup.stats.duplicates
        self._earlier_retained += self._retained_events()
        self._build()
        restored = restore_snapshot(path, self.detectors)
        if restored.fresh:
            raise RuntimeError(f"detectors not restored: {restored.fresh}")
        self.summary.restarts += 1
        return restored

    def _retained_events(self) -> int:
        return int(self.pipeline.metrics.registry.get_sample_value(
            "homecare_retained_events_total") or 0)

    def feed(self, messages: Iterable[RawMessage]) -> None:
        started = time.perf_counter()
        summary = self.summary
        tick_ms = self.tick_ms
        for raw in messages:
            t = raw.received_ms
            if summary.first_t is None:
                summary.first_t = t
                self._next_tick = (t // tick_ms + 1) * tick_ms
            summary.last_t = t if summary.last_t is None else max(summary.last_t, t)
            assert self._next_tick is not None
            if t >= self._next_tick:
                self._flush()
                while self._next_tick <= t:
                    self._tick(self._next_tick)
                    self._next_tick += tick_ms
                while self._restarts and self._restarts[0] <= t:
                    self._restarts.pop(0)
                    self.restart()
            batch = self._batch
            batch.append(raw)
            topic = raw.topic
            if len(batch) >= MAX_BATCH or is_urgent(topic):
                self._flush()
        summary.elapsed_s += time.perf_counter() - started

    def finish(self) -> list[Alert]:
        """Process what is left, tick at the last receipt time, and return every alert in its
        final state, ordered by opening time."""
        started = time.perf_counter()
        self._flush()
        if self.summary.last_t is not None:
            self._tick(self.summary.last_t)
        self._commit()
        alerts: list[Alert] = []
        cursor: str | None = None
        while True:
            page, cursor = self.store.list_alerts(cursor=cursor, limit=MAX_PAGE)
            alerts.extend(page)
            if cursor is None:
                break
        alerts.sort(key=lambda a: (a.opened_at, a.site, a.bed, a.type, a.incident))
        summary = self.summary
        summary.alerts = Counter(a.type.value for a in alerts)
        summary.duplicates = self._earlier_duplicates + self.pipeline.dedup.stats.duplicates
        summary.retained_events = self._earlier_retained + self._retained_events()
        summary.beds = sum(1 for _ in self.registry.beds())
        summary.elapsed_s += time.perf_counter() - started
        return alerts

    def _flush(self) -> None:
        if not self._batch:
            return
        raws, self._batch = self._batch, []
        pipeline = self.pipeline
        duplicates = pipeline.dedup.stats.duplicates
        pipeline.process(raws)
        batch = pipeline.take()
        self.summary.accepted += (len(raws) - len(batch.deadletters)
                                  - (pipeline.dedup.stats.duplicates - duplicates))
        for letter in batch.deadletters:
            self.summary.dead_letters[letter.reason] += 1
        commit(batch, spool=_DiscardSpool(), deadletters=self.deadletters,
               stages=pipeline.stages)

    def _tick(self, now_ms: int) -> None:
        self.stage.tick(now_ms)
        self.summary.ticks += 1
        if self.engine.staged:
            self._commit()
        if self.dispatcher_after_ms and self.engine.open_count:
            due = now_ms - self.dispatcher_after_ms
            for alert in self.engine.open_alerts():
                if alert.opened_at <= due:
                    self.engine.resolve(alert.id, actor=DISPATCHER, now_ms=now_ms,
                                        note="resolved by the replay's simulated dispatcher")

    def _commit(self) -> None:
        self.stage.commit()

    def close(self) -> None:
        self.store.close()
        self.deadletters.close()


def replay_file(traffic: Path | BinaryIO, alerts_out: BinaryIO | None, *,
                registry: Registry | None = None, timezone: str | None = None,
                settings: Settings | None = None, tick_ms: int = DEFAULT_TICK_MS,
                seed: int = 0, dispatcher_after_ms: int = DEFAULT_DISPATCHER_AFTER_MS,
                restart_after_ms: Sequence[int] = (), plans: PlanStore | None = None,
                ) -> tuple[list[Alert], ReplaySummary]:
    """Replay ``traffic`` (a path or an open binary file) and write every alert, one
    msgspec-encoded :class:`~alerts.model.Alert` per line, to ``alerts_out``.
    ``restart_after_ms``: restart (:meth:`Replayer.restart`) this long after the first
    message, each (simulated time), through a snapshot in a temporary directory.
    ``plans``: the service plans visits are checked against (:func:`plans_from_csv`)."""
    with tempfile.TemporaryDirectory(prefix="homecare-replay-") as snapshots:
        return _replay_file(traffic, alerts_out, registry=registry, timezone=timezone,
                            settings=settings, tick_ms=tick_ms, seed=seed,
                            dispatcher_after_ms=dispatcher_after_ms,
                            restart_after_ms=restart_after_ms, snapshot_dir=Path(snapshots),
                            plans=plans)


def _replay_file(traffic: Path | BinaryIO, alerts_out: BinaryIO | None, *,
                 registry: Registry | None, timezone: str | None, settings: Settings | None,
                 tick_ms: int, seed: int, dispatcher_after_ms: int,
                 restart_after_ms: Sequence[int], snapshot_dir: Path,
                 plans: PlanStore | None) -> tuple[list[Alert], ReplaySummary]:
    first_t = _first_time(traffic) if restart_after_ms else None
    replayer = Replayer(registry=registry, timezone=timezone, settings=settings,
                        tick_ms=tick_ms, seed=seed, dispatcher_after_ms=dispatcher_after_ms,
                        restart_at_ms=[first_t + after for after in restart_after_ms]
                        if first_t is not None else (), snapshot_dir=snapshot_dir,
                        plans=plans)
    try:
        if isinstance(traffic, Path):
            with traffic.open("rb") as handle:
                replayer.feed(read_traffic(handle, replayer.summary))
        else:
            replayer.feed(read_traffic(traffic, replayer.summary))
        alerts = replayer.finish()
    finally:
        replayer.close()
    if alerts_out is not None:
        encode = msgspec.json.Encoder().encode
        alerts_out.write(b"".join(encode(alert) + b"\n" for alert in alerts))
    return alerts, replayer.summary


def _first_time(traffic: Path | BinaryIO) -> int | None:
    """The receipt time of the first readable line of ``traffic`` (rewound after)."""
    if isinstance(traffic, Path):
        with traffic.open("rb") as handle:
            return _first_time(handle)
    start = traffic.tell()
    try:
        for line in traffic:
            if line.strip():
                try:
                    return decode_line(line)[0]
                except ValueError:
                    continue
        return None
    finally:
        traffic.seek(start)
