"""The alerting stage of the pipeline: immediate rules and detectors feed the alert engine.

``accept`` (event loop, per batch) runs the immediate rules first and applies their findings
before any detector runs, so an emergency call or a fall never waits for, or fails with, a
detector. ``commit`` (worker thread, before the batch is acknowledged to the broker) makes the
alert changes durable. ``tick`` (every second in the gateway; simulated time in replay) lets
the rules and detectors report what is due at that moment and the engine escalate and
auto-resolve. The clock is the receipt time of the messages, never the device clocks.

Button and fall events already handled (a retained, re-sent or redelivered message: the
engine remembers the last one per device, durably; an old one counts as handled only while
both device clocks are within the ``clock_window_s`` window) open nothing; they are counted in
``homecare_alert_replays_ignored_total`` and logged at most once a minute.

A detector that raises is logged (at most once a minute per detector) and counted in
``homecare_detector_errors_total``; the other detectors and the rules go on.

Every finding passes :class:`~alerts.storms.AlertStorms` on its way to the engine: those of
devices and beds outside the registry, and alert storms on a site, become one summary alert
per site and type (``homecare_alert_findings_summarised_total``); emergency calls and falls
are never held or folded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Protocol, TypedDict, Unpack, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alerts.engine import AlertEngine, IdFactory
from alerts.escalation import EscalationPolicy, Schedule
from alerts.model import Alert, AlertChange, AlertStatus, Finding
from alerts.rules import ImmediateRules
from alerts.store import AlertStore
from alerts.storms import AlertStorms
from devices.codec import Message
from devices.devicetime import AHEAD_MS, ClockWindow
from devices.registry import Registry
from gateway.config import Settings

log = logging.getLogger("homecare.alerting")

DETECTOR_LOG_INTERVAL_S = 60.0


class Detector(Protocol):
    """What the stage needs of a detector (``gateway.detect.Detector`` has more)."""

    name: str

    def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> object:
        """Take a batch; may return findings at once (a sequence), or None."""

    def evaluate(self, now_ms: int) -> Sequence[Finding]:
        """Findings due at ``now_ms``."""

    def state(self) -> bytes:
        """Everything learned, for :mod:`gateway.detect.snapshot`."""

    def restore(self, blob: bytes) -> None:
        """Take back what :meth:`state` gave."""


def load_detectors(registry: Registry, *, timezone: str | None,
                   clock_window: ClockWindow | None = None,
                   **limits: Unpack[DetectorLimits]) -> list[Detector]:
    """The detectors of :mod:`gateway.detect` for ``registry`` and the gateway's clock window.
    ``limits``: the keyword arguments of :func:`~gateway.detect.build_detectors` from the
    gateway's settings (:func:`detector_limits`). Any import or construction error propagates
    (a bug must not be hidden)."""
    # Imported here: this module is part of gateway.detect, whose __init__ imports it.
    from gateway.detect import build_detectors

    detectors = build_detectors(registry, timezone=timezone, clock_window=clock_window,
                                **limits)
    return cast(list[Detector], list(detectors))


class DetectorLimits(TypedDict, total=False):
    """Keyword arguments of :func:`~gateway.detect.build_detectors` set by the gateway."""

    evaluate_interval_ms: int
    device_replacement_window_ms: int
    max_unregistered_beds: int
    max_unregistered_devices: int


def detector_limits(settings: Settings) -> DetectorLimits:
    """The settings :func:`load_detectors` takes as ``limits``."""
    return {"evaluate_interval_ms": round(settings.detector_evaluate_interval_s * 1000),
            "device_replacement_window_ms": round(settings.device_replacement_window_s * 1000),
            "max_unregistered_beds": settings.unregistered_watched_beds,
            "max_unregistered_devices": settings.unregistered_watched_devices}


def storms_from_settings(settings: Settings, registry: Registry) -> AlertStorms:
    """The alert storm folding of ``registry`` with the gateway's thresholds."""
    return AlertStorms(registry, threshold=settings.alert_storm_threshold,
                       window_ms=round(settings.alert_storm_window_s * 1000))


def policy_from_settings(settings: Settings) -> EscalationPolicy:
    s = settings
    return EscalationPolicy(
        critical=Schedule.seconds(s.alert_escalation_critical_s, s.alert_repeat_critical_s),
        high=Schedule.seconds(s.alert_escalation_high_s, s.alert_repeat_high_s),
        medium=Schedule.seconds(s.alert_escalation_medium_s, s.alert_repeat_medium_s),
        low=Schedule.seconds(s.alert_escalation_low_s, s.alert_repeat_low_s))


def engine_from_settings(settings: Settings, store: AlertStore, *,
                         id_factory: IdFactory | None = None) -> AlertEngine:
    """An :class:`AlertEngine` on ``store`` with the escalation, cancel, clear and update
    settings, and the clock window (:mod:`devices.devicetime`): the device times the engine
    trusts to tell a replay from a new call. ``id_factory``: seeded ids in replay."""
    return AlertEngine(
        store, policy=policy_from_settings(settings),
        cancel_window_ms=round(settings.alert_cancel_window_s * 1000),
        clear_grace_ms=round(settings.alert_clear_grace_s * 1000),
        update_interval_ms=round(settings.alert_update_interval_s * 1000),
        clock_window_ms=settings.clock_window_s * 1000, clock_ahead_ms=AHEAD_MS,
        id_factory=id_factory)


def _registry_of(detectors: Sequence[Detector]) -> Registry | None:
    """The registry the detectors' fleet was built from, if they have one."""
    for detector in detectors:
        registry = getattr(getattr(detector, "fleet", None), "registry", None)
        if isinstance(registry, Registry):
            return registry
    return None


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.findings = Counter("homecare_alert_findings", "Findings from rules and detectors",
                                registry=r)
        self.changes = Counter("homecare_alert_changes", "Alert transitions committed, "
                               "whoever made them (acknowledged and resolved by people too)",
                               ["action"], registry=r)
        self.open = Gauge("homecare_alerts_open", "Unresolved alerts (status open or "
                          "acknowledged), by severity, status and type",
                          ["severity", "status", "type"], registry=r)
        self.sites_dark = Gauge(
            "homecare_sites_dark", "Sites whose devices went silent all at once (a link or "
            "intake outage: no per-device alerts for them; see the detect.site_dark log)",
            registry=r)
        self.replays = Counter(
            "homecare_alert_replays_ignored",
            "Button and fall events that replay one already handled from their device "
            "(retained, re-sent or redelivered): they open, update and cancel nothing",
            registry=r)
        self.summarised = Counter(
            "homecare_alert_findings_summarised",
            "Findings folded into a summary alert (one per site and type) instead of opening "
            "their own: of devices and beds outside the registry, or in an alert storm",
            ["reason"], registry=r)
        self.summaries = Gauge("homecare_alert_summaries",
                               "Summary alerts (unregistered devices, storms) with members",
                               registry=r)
        self.unwatched = Gauge(
            "homecare_detect_unwatched_messages",
            "Messages of devices outside the registry left out of the detectors since start "
            "(beyond their cap of unregistered beds and devices; stored and alerted as usual)",
            registry=r)
        self.detector_errors = Counter("homecare_detector_errors",
                                       "Exceptions raised by detectors", ["detector"],
                                       registry=r)
        self.commit_seconds = Histogram(
            "homecare_alert_commit_seconds", "Alert store commit latency", registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
        self.open_latency = Histogram(
            "homecare_alert_open_latency_seconds",
            "From receipt of the message that opened an alert to the alert being on disk "
            "(live gateway only)", ["severity"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


class AlertingStage:
    """A pipeline :class:`~gateway.ingest.pipeline.Stage` around an :class:`AlertEngine`."""

    name = "alerts"

    def __init__(self, engine: AlertEngine, *, rules: ImmediateRules | None = None,
                 detectors: Sequence[Detector] = (),
                 metrics: CollectorRegistry | None = None,
                 storms: AlertStorms | None = None) -> None:
        """``metrics``: register the stage's Prometheus metrics there. Only the live gateway
        passes it: the receipt-to-disk latency it measures compares with the wall clock.
        ``storms``: default, on the registry the detectors were built from."""
        self.engine = engine
        self.rules = rules if rules is not None else ImmediateRules()
        self.detectors = tuple(detectors)
        self.storms = storms if storms is not None else AlertStorms(_registry_of(detectors))
        self.storms.resume(engine.open_alerts(), engine.store.summary_members())
        engine.stage_members(self.storms.take_member_changes())  # those no longer open
        self._summarised = dict(self.storms.summarised)
        self._metrics = _Metrics(metrics) if metrics is not None else None
        self._unresolved: dict[str, tuple[str, str, str]] = {}
        """Labels of every unresolved alert, for ``homecare_alerts_open``."""
        self._failure_logged: dict[str, float] = {}
        self._held: list[tuple[Sequence[Message], Sequence[int]]] | None = None
        """Batches the detectors are given only after what the journal hands back at start
        (:meth:`hold_detectors`); None: handed over at once."""
        self._held_lock = threading.Lock()
        self._replays_counted = engine.replays_ignored
        if self.rules.is_replay is None:
            self.rules.is_replay = engine.is_replay
        self.rules.resume(engine.open_alerts())
        if self._metrics is not None:
            self._observe_unresolved(engine.open_alerts())
            engine.add_listener(self._observe_committed)

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        if not messages:
            return
        now = max(received_ms)
        found = self.rules.update(messages, received_ms)
        if found:
            self._apply(found, now)
        if self._held is not None:
            with self._held_lock:
                if self._held is not None:
                    self._held.append((messages, received_ms))
                    return
        for detector in self.detectors:
            try:
                result = detector.update(messages, received_ms)
            except Exception:
                self._detector_failed(detector, "update")
                continue
            if result:
                self._apply(list(cast(Sequence[Finding], result)), now)

    def hold_detectors(self) -> None:
        """From now on the detectors are not handed new batches (the rules still are: a press
        opens its alert at once) until :meth:`release_detectors`: the gateway's start, while
        the detectors' thread hands them what the journal held (decoding it takes up to a few
        seconds), so that intake resumes at once and the detectors still see every message in
        the order it came."""
        with self._held_lock:
            if self._held is None:
                self._held = []

    def release_detectors(self) -> int:
        """Hand the detectors the batches held since :meth:`hold_detectors`, in order, and
        hand them new ones at once again; returns the messages handed over. Any thread (the
        detectors' own: their ``update`` only buffers, and returns no findings)."""
        with self._held_lock:
            held, self._held = self._held, None
            for messages, received_ms in held or ():
                for detector in self.detectors:
                    try:
                        detector.update(messages, received_ms)
                    except Exception:
                        self._detector_failed(detector, "update")
        return sum(len(messages) for messages, _ in held or ())

    def commit(self) -> None:
        started = time.perf_counter()
        self.engine.commit()
        if self._metrics is not None:
            self._metrics.commit_seconds.observe(time.perf_counter() - started)

    def tick(self, now_ms: int) -> list[AlertChange]:
        """Findings due at ``now_ms``, then escalation and auto-resolution; returns the
        changes staged (commit them with :meth:`commit`). :meth:`detect` then
        :meth:`apply_tick`, in one call (replay and tests)."""
        return self.apply_tick(self.detect(now_ms), now_ms)

    def resume_detectors(self, snapshot_ms: int | None = None) -> int:
        """Tell the detectors which of their conditions the alert store holds open (open
        alerts not cleared, every summary member; and, opened since their snapshot taken at
        ``snapshot_ms``, those a person resolved: :meth:`AlertStorms.held`), after the snapshot
        is restored and before the journal is handed back: a detector that does not know it
        raised a condition (raised after the snapshot; a ``kill -9``) never clears it, or
        raises it anew. Returns how many conditions the detectors took back."""
        held = self.storms.held(self.engine.open_alerts() + (
            [] if snapshot_ms is None else self.engine.store.resolved_opened_since(snapshot_ms)))
        if corrected := self.storms.resumed_corrections(now := int(time.time() * 1000)):
            self.engine.apply(corrected, now)
        taken = 0
        for detector in self.detectors:
            try:
                taken += int(getattr(detector, "resume", lambda _: 0)(held))
            except Exception:
                self._detector_failed(detector, "resume")
        if held:
            log.info("detect.resumed conditions=%d taken=%d", len(held), taken)
        return taken

    def intake_changed(self, *, up: bool, now_ms: int) -> None:
        """The gateway's intake (its broker connection) went down or came up: while it is down
        the detectors take no silence for a device gone, and afterwards they judge every device
        from its return (:meth:`~gateway.detect._fleet.Fleet.intake_changed`)."""
        for detector in self.detectors:
            fleet = getattr(detector, "fleet", None)
            if fleet is not None and hasattr(fleet, "intake_changed"):
                fleet.intake_changed(up=up, now_ms=now_ms)
                return  # one fleet, shared by every detector

    def detect(self, now_ms: int) -> list[Finding]:
        """The detectors' findings due at ``now_ms``.

        Thread-safe against :meth:`accept` on the event loop (the detectors' ``update`` only
        buffers, under a lock), so the live gateway runs this, the CPU-heavy part (folding a
        round of buffered messages into numpy columns and evaluating every bed), in a worker
        thread, never blocking intake or the emergency path. Not concurrently with itself.
        """
        findings: list[Finding] = []
        for detector in self.detectors:
            try:
                findings.extend(detector.evaluate(now_ms))
            except Exception:
                self._detector_failed(detector, "evaluate")
            dark = getattr(detector, "dark_sites", None)
            if dark is not None and self._metrics is not None:
                self._metrics.sites_dark.set(len(dark))
        unwatched = getattr(getattr(self.detectors[0], "fleet", None), "unwatched_messages",
                            None) if self.detectors else None
        if isinstance(unwatched, int) and self._metrics is not None:
            self._metrics.unwatched.set(unwatched)
        return findings

    def apply(self, findings: Sequence[Finding], now_ms: int) -> list[AlertChange]:
        """Findings (from :meth:`detect`) into the engine; event loop only. Returns the changes
        staged. The live gateway hands a large set over in slices, committing between them, so
        that an alert storm never holds up an emergency call behind one huge commit."""
        return self._apply(list(findings), now_ms) if findings else []

    def apply_tick(self, detected: Sequence[Finding], now_ms: int) -> list[AlertChange]:
        """The rules' timed findings and ``detected`` into the engine, then escalation and
        auto-resolution; event loop only. Returns the changes staged."""
        findings = [*self.rules.evaluate(now_ms), *detected]
        changes = self._apply(findings, now_ms) if findings else []
        ticked = self.engine.tick(now_ms)
        return changes + ticked

    def _apply(self, findings: list[Finding], now_ms: int) -> list[AlertChange]:
        received = len(findings)
        findings = self.storms.filter(findings, now_ms)
        self.engine.stage_members(self.storms.take_member_changes())
        changes = self.engine.apply(findings, now_ms)
        if self._metrics is not None:
            self._metrics.findings.inc(received)
            for reason, count in self.storms.summarised.items():
                if count != self._summarised.get(reason, 0):
                    self._metrics.summarised.labels(reason).inc(
                        count - self._summarised.get(reason, 0))
                    self._summarised[reason] = count
            self._metrics.summaries.set(self.storms.summaries)
            replays = self.engine.replays_ignored
            if replays != self._replays_counted:
                self._metrics.replays.inc(replays - self._replays_counted)
                self._replays_counted = replays
        return changes

    def _observe_committed(self, changes: list[AlertChange]) -> None:
        """Every committed change, whoever made it (the engine's listeners run serially)."""
        assert self._metrics is not None
        now_ms = time.time() * 1000
        for change in changes:
            self._metrics.changes.labels(change.action).inc()
            if change.action == "opened":
                self._metrics.open_latency.labels(change.alert.severity.value).observe(
                    max(0.0, now_ms - change.alert.opened_at) / 1000)
        self._observe_unresolved(change.alert for change in changes)

    def _observe_unresolved(self, alerts: Iterable[Alert]) -> None:
        assert self._metrics is not None
        gauge = self._metrics.open
        for alert in alerts:
            before = self._unresolved.pop(alert.id, None)
            if before is not None:
                gauge.labels(*before).dec()
            if alert.status is not AlertStatus.RESOLVED:
                after = (alert.severity.value, alert.status.value, alert.type.value)
                self._unresolved[alert.id] = after
                gauge.labels(*after).inc()

    def _detector_failed(self, detector: Detector, where: str) -> None:
        name = getattr(detector, "name", type(detector).__name__)
        if self._metrics is not None:
            self._metrics.detector_errors.labels(name).inc()
        now = time.monotonic()
        if now - self._failure_logged.get(name, -DETECTOR_LOG_INTERVAL_S) >= \
                DETECTOR_LOG_INTERVAL_S:
            self._failure_logged[name] = now
            log.exception("detector.failed detector=%s in=%s; its findings are skipped, the "
                          "rules and other detectors go on", name, where)
