"""The service log's pipeline stage: badge visits recorded within their budget; the rest
dead-lettered, counted, logged and told.

:class:`BudgetedServiceLog` holds the service log's recorder
(:class:`alerts.servicelog.ServiceLogRecorder`) and gives it the badges' budget
(:class:`gateway.ingest.badgebudget.BadgeBudget`): the recorder writes what the budget admits,
in its commit, before the batch is acknowledged. An event over budget is:

* **dead-lettered** as ``badge_rate_exceeded`` (:data:`~gateway.ingest.badgebudget.REASON`),
  as received, its detail naming the badge and its budget, once the service log's commit is
  done (kept until stored: a failure of either is retried with the same events and letters;
  the dead-letter store's per-source budget then bounds what it keeps of a flood);
* **counted** in ``homecare_service_badge_events_over_budget_total{registry}`` (``listed``,
  ``unlisted``) and ``homecare_messages_rejected_total{reason="badge_rate_exceeded"}``;
* **logged** as ``servicelog.badge_over_budget`` at most once a minute per listed badge, and
  ``servicelog.unlisted_badges_over_budget`` at most once a minute for all the others (site and
  device ids only: pseudonymous);
* **told**: a ``sensor_fault`` finding for the badge (episode its device id; at the bed the
  registry lists it at, else where it was seen; evidence ``faults`` and ``reasons``
  ``["badge_rate_exceeded"]``, ``events_over_budget``), updated at most once a minute while
  more come, cleared an hour after the last. It goes through the alert storms as any device's
  fault: the badges a registry does not list are one summary alert per site. Findings are
  handed to the alert engine with the next batch the stage takes (the budget decides in the
  commit thread; the engine is the event loop's), so the alert opens with the traffic that
  follows the flood's first commit.

The detectors, which come before this stage, still see every badge event, and the time series
stores it as any message: only the service log is held to the budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import msgspec
from prometheus_client import CollectorRegistry, Counter

from alerts import AlertType, Finding, ServiceLogRecorder, Severity, badge_origin
from devices.codec import Message
from devices.registry import Registry
from devices.schemas import BadgeEvent
from gateway.config import Settings
from gateway.ingest.badgebudget import ANYWHERE, REASON, REPORT_INTERVAL_MS, BadgeBudget, Report
from gateway.ingest.checkpoint import DeadLetterSink
from gateway.ingest.message import RawMessage
from gateway.monitoring import Metrics
from gateway.storage.deadletters import DeadLetter

log = logging.getLogger("homecare.servicelog")


def badge_budget(settings: Settings, registry: Registry) -> BadgeBudget:
    """The station's budget (the ``service_*badge*`` settings), listed badges as ``registry``
    lists them. A registry that lists no device at all (a station run without one) leaves
    nothing outside it: every badge then has its own budget, none the shared one of made-up
    ids, which a station's real caregivers together would exceed (as for emergency calls,
    :meth:`~devices.registry.Registry.lists_topic`).

    >>> budget = badge_budget(Settings(), Registry())
    >>> budget.place("badge-07")
    ('', '')
    """
    lists_none = next(registry.placements(), None) is None

    def place(device: str) -> tuple[str, str] | None:
        if lists_none:
            return ANYWHERE
        found = registry.place(device)
        return None if found is None else (found.site, found.bed)

    return BadgeBudget(events_per_day=settings.service_badge_events_per_day,
                       burst_events=settings.service_badge_burst_events,
                       unlisted_events_per_day=settings.service_unlisted_badge_events_per_day,
                       unlisted_burst_events=settings.service_unlisted_badge_burst_events,
                       place=place)


class BudgetedServiceLog:
    """The pipeline stage in front of the service log's recorder: the recorder writes what the
    badges' :class:`BadgeBudget` admits, and this stage dead-letters, counts, logs and
    reports what it does not (module docstring)."""

    name = "servicelog"

    def __init__(self, recorder: ServiceLogRecorder, budget: BadgeBudget, *,
                 deadletters: DeadLetterSink, metrics: Metrics | None = None,
                 on_findings: Callable[[list[Finding], int], object] | None = None) -> None:
        """``on_findings``: the alert engine's way in (the alerting stage's ``apply``), on
        the event loop."""
        self.recorder = recorder
        self.budget = budget
        recorder.budget = budget
        self.deadletters = deadletters
        self.metrics = metrics
        self.on_findings = on_findings
        self.counted = Counter(
            "homecare_service_badge_events_over_budget", "Badge check-ins and check-outs not "
            "written to the service log (dead-lettered as badge_rate_exceeded): their badge "
            "was over service_badge_events_per_day, or, for badges the registry does not list, "
            "they together over service_unlisted_badge_events_per_day", ["registry"],
            registry=metrics.registry if metrics is not None else CollectorRegistry())
        self._sources: dict[str, tuple[str, bytes, int]] = {}
        """Topic, payload and receipt time of each badge event not committed yet, by origin
        (its dead letter keeps what was received)."""
        self._letters: list[DeadLetter] = []
        self._unlisted_logged_ms: int | None = None
        self._unlisted_unlogged = 0

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        self.accept_sources(messages, received_ms, None)

    def accept_sources(self, messages: Sequence[Message], received_ms: Sequence[int],
                       sources: Sequence[RawMessage] | None) -> None:
        for i, message in enumerate(messages):
            if isinstance(message.payload, BadgeEvent):
                raw = sources[i] if sources is not None else None
                topic = (message.address.topic if raw is None else raw.topic
                         if isinstance(raw.topic, str) else raw.topic.decode("utf-8", "replace"))
                payload = (msgspec.json.encode(message.payload) if raw is None
                           else raw.payload)
                self._sources[badge_origin(message)] = (topic, payload, received_ms[i])
        self.recorder.accept(messages, received_ms)
        if received_ms:
            self._report(max(received_ms))

    def commit(self) -> None:
        """The recorder's commit, then the dead letters of what it left out (kept until
        stored: a failure of either is retried with the same events and letters)."""
        self.recorder.commit()
        refused = self.budget.take_refused()
        b = self.budget
        for event in refused:
            topic, payload, received = self._sources.get(event.origin, ("", b"", 0))
            shared = ("" if b.place(event.device or "") is not None else
                      f"; badges the registry does not list, together: "
                      f"{b.unlisted_burst_events} at once, then "
                      f"{b.unlisted_events_per_day:g} a day")
            self._letters.append(DeadLetter(
                received, topic, payload, REASON,
                f"badge {event.device} at {event.site} over its service-log budget "
                f"({b.burst_events} check-ins/outs at once, then {b.events_per_day:g} a day"
                f"{shared}): {event.event} of visit {event.visit} not recorded"))
        self._sources.clear()
        if refused:
            listed = sum(self.budget.place(e.device or "") is not None for e in refused)
            for registry, n in (("listed", listed), ("unlisted", len(refused) - listed)):
                if n:
                    self.counted.labels(registry).inc(n)
            if self.metrics is not None:
                self.metrics.rejected.labels(REASON).inc(len(refused))
        if self._letters:
            self.deadletters.add(self._letters)
            self._letters.clear()

    def _report(self, now_ms: int) -> None:
        """Findings and log lines of what the budget says is due (event loop)."""
        due = self.budget.reports(now_ms)
        if not due:
            return
        findings: list[Finding] = []
        unlisted_last = ""
        for report in due:
            flag = report.flag
            findings.append(_finding(report, now_ms))
            if not report.active or not flag.unlogged:
                continue
            if flag.listed:
                if flag.logged_ms is None or now_ms - flag.logged_ms >= REPORT_INTERVAL_MS:
                    log.warning("servicelog.badge_over_budget site=%s device=%s events=%d "
                                "total=%d; dead-lettered as %s, not recorded",
                                flag.site, flag.device, flag.unlogged, flag.over, REASON)
                    flag.logged_ms, flag.unlogged = now_ms, 0
            else:
                self._unlisted_unlogged += flag.unlogged
                flag.unlogged = 0
                unlisted_last = f"{flag.site}/{flag.device}"
        if self._unlisted_unlogged and (self._unlisted_logged_ms is None or
                                        now_ms - self._unlisted_logged_ms >= REPORT_INTERVAL_MS):
            log.warning("servicelog.unlisted_badges_over_budget events=%d last=%s; "
                        "dead-lettered as %s, not recorded (badges the registry does not list)",
                        self._unlisted_unlogged, unlisted_last or "-", REASON)
            self._unlisted_logged_ms, self._unlisted_unlogged = now_ms, 0
        if self.on_findings is not None and findings:
            self.on_findings(findings, now_ms)


def _finding(report: Report, now_ms: int) -> Finding:
    flag = report.flag
    if not report.active:
        return Finding(type=AlertType.SENSOR_FAULT, site=flag.site, bed=flag.bed, at=now_ms,
                       severity=Severity.MEDIUM, episode=flag.device, active=False,
                       started_at=report.started_at,
                       summary=f"badge {flag.device}: within its service-log budget again",
                       evidence={"device": flag.device, "kind": "badge"})
    return Finding(
        type=AlertType.SENSOR_FAULT, site=flag.site, bed=flag.bed, at=now_ms,
        severity=Severity.MEDIUM, episode=flag.device, started_at=report.started_at,
        summary=(f"badge {flag.device}: {REASON} ({flag.over} check-ins/outs over its "
                 f"service-log budget, not recorded)"),
        evidence={"device": flag.device, "kind": "badge", "faults": [REASON],
                  "reasons": [REASON], "events_over_budget": flag.over,
                  "registry": "listed" if flag.listed else "unlisted"})
