"""Response times as Prometheus histograms: time to acknowledge and time to resolve of every
alert, measured as :mod:`alerts.reports` measures them (the first answer by a person: the
first acknowledgement, or a resolution without one; critical: critical at any time).

``homecare_alert_acknowledge_seconds{type,severity}`` and
``homecare_alert_resolve_seconds{type,severity,by}`` (``by``: ``person`` or ``system``), from
the engine's committed changes (:meth:`ResponseMetrics.observe` is an engine listener). The
buckets put the telecare norm's 60 s on a bucket edge, so
``homecare_alert_acknowledge_seconds_bucket{le="60.0",severity="critical"}`` over ``_count``
is the share of critical alerts answered in time.
"""

from __future__ import annotations

import threading
from typing import Final

from prometheus_client import CollectorRegistry, Histogram

from alerts.model import Alert, AlertChange, Severity
from alerts.store import AlertStore

ACK_BUCKETS: Final = (5, 10, 15, 30, 45, 60, 90, 120, 180, 300, 600, 1800, 3600)
RESOLVE_BUCKETS: Final = (60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
SYSTEM: Final = "system"


class ResponseMetrics:
    """Time to acknowledge (first answer by a person) and time to resolve of every alert, as
    histograms, from committed changes (an engine listener). Remembers, for unresolved alerts
    only, whether they were answered and whether they were critical, so a call acknowledged
    again after it came again is not measured twice; restarted, it learns that from the
    store."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 store: AlertStore | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.acknowledge = Histogram(
            "homecare_alert_acknowledge_seconds", "From an alert's opening to its first answer "
            "by a person (the first acknowledgement, or its resolution without one), by type "
            "and severity (critical: critical at any time)", ["type", "severity"],
            registry=r, buckets=ACK_BUCKETS)
        self.resolve = Histogram(
            "homecare_alert_resolve_seconds", "From an alert's opening to its resolution, by "
            "type, severity and who resolved it (person or system)",
            ["type", "severity", "by"], registry=r, buckets=RESOLVE_BUCKETS)
        self._lock = threading.Lock()
        self._answered: set[str] = set()
        self._critical: set[str] = set()
        if store is not None:
            for alert in store.open_alerts():
                history = store.history(alert.id)
                if any(c.action == "acknowledged" for c in history):
                    self._answered.add(alert.id)
                if any(c.alert.severity is Severity.CRITICAL for c in history):
                    self._critical.add(alert.id)

    def observe(self, changes: list[AlertChange]) -> None:
        with self._lock:
            for change in changes:
                self._observe(change)

    def _observe(self, change: AlertChange) -> None:
        alert = change.alert
        if alert.severity is Severity.CRITICAL:
            self._critical.add(alert.id)
        severity = self._severity(alert)
        answered = alert.id in self._answered
        if change.action == "acknowledged" and not answered:
            self._answered.add(alert.id)
            self.acknowledge.labels(alert.type.value, severity).observe(
                max(0, change.at - alert.opened_at) / 1000)
        elif change.action in ("resolved", "auto_resolved"):
            person = change.action == "resolved"
            if person and not answered:
                self.acknowledge.labels(alert.type.value, severity).observe(
                    max(0, change.at - alert.opened_at) / 1000)
            self.resolve.labels(alert.type.value, severity,
                                "person" if person else SYSTEM).observe(
                max(0, change.at - alert.opened_at) / 1000)
            self._answered.discard(alert.id)
            self._critical.discard(alert.id)

    def _severity(self, alert: Alert) -> str:
        return Severity.CRITICAL.value if alert.id in self._critical else alert.severity.value
