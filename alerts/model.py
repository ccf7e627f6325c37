"""The alert vocabulary shared by rules, detectors, the alert engine, the API and upstream.

* A :class:`Finding` is what a rule or detector says about one bed at one moment: a condition
  is present (``active=True``) or has cleared (``active=False``). Findings are cheap and may
  repeat; they never reach a dispatcher directly.
* An :class:`Alert` is what a dispatcher handles. The alert engine folds findings into alerts
  by *incident key* (site, bed, type, episode), so a condition that keeps being observed updates
  one alert instead of flooding the queue.
* An :class:`AlertChange` is one transition of one alert, numbered by a gap-free sequence: the
  API stream and the upstream outbox read changes in that order, each exactly once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

import msgspec


class AlertType(StrEnum):
    EMERGENCY_BUTTON = "emergency_button"
    FALL = "fall"
    INACTIVITY = "inactivity"
    NIGHT_BED_EXIT = "night_bed_exit"
    ABNORMAL_SOUND = "abnormal_sound"
    VITAL_SIGNS = "vital_signs"
    DEVICE_OFFLINE = "device_offline"
    LOW_BATTERY = "low_battery"
    SENSOR_FAULT = "sensor_fault"
    SERVICE_ANOMALY = "service_anomaly"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for critical .. 3 for low: sort ascending to put the most severe first."""
        return _RANK[self]


_RANK: Final = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One observation of a condition on one bed (from a rule or a detector)."""

    type: AlertType
    site: str
    bed: str
    at: int
    """Event time (device/simulated clock, epoch ms) at which the condition was observed."""
    severity: Severity
    episode: str = ""
    """Separates concurrent incidents of one type on one bed (a device id for device_offline,
    a visit id for service_anomaly); empty for one incident per bed and type at a time."""
    active: bool = True
    """False: the condition has cleared (the engine may auto-resolve, never a critical alert)."""
    started_at: int | None = None
    """When the condition began, if earlier than ``at`` (e.g. the first silent moment)."""
    summary: str = ""
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    """Small JSON-ready facts: values, thresholds, device ids, clip hashes. No raw audio."""


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """An alert as stored, served by the API and sent upstream."""

    id: str
    incident: str
    """``site/bed/type/episode#n``: stable key of the incident this alert is about."""
    type: AlertType
    severity: Severity
    site: str
    bed: str
    opened_at: int
    updated_at: int
    status: AlertStatus
    summary: str = ""
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    occurrences: int = 1
    """How many findings were folded into this alert."""
    acknowledged_by: str | None = None
    acknowledged_at: int | None = None
    resolved_by: str | None = None
    resolved_at: int | None = None
    note: str | None = None
    escalation_level: int = 0
    next_escalation_at: int | None = None
    cleared_at: int | None = None
    """When the condition was last seen clearing (the alert may stay open for acknowledgement)."""


class AlertChange(msgspec.Struct, frozen=True, kw_only=True):
    """One transition of one alert; ``seq`` is gap-free and increasing across all alerts."""

    seq: int
    at: int
    action: str
    """opened, updated, escalated, downgraded, acknowledged, resolved, auto_resolved, cleared"""
    actor: str | None = None
    note: str | None = None
    alert: Alert
