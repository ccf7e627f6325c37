"""The alert vocabulary shared by rules, detectors, the alert engine, the API and upstream.

* A :class:`Finding` is what a rule or detector says about one bed at one moment: a condition
  is present (``active=True``) or has cleared (``active=False``). Findings are cheap and may
  repeat; they never reach a dispatcher directly.
* An :class:`Alert` is what a dispatcher handles. The alert engine folds findings into alerts
  by *incident key* (site, bed, type, episode), so a condition that keeps being observed updates
  one alert instead of flooding the queue.
* An :class:`AlertChange` is one transition of one alert, numbered by a unique, increasing
  sequence, gap-free except that it skips the numbers of changes lost when the alert store is
  restored from a backup (never reusing them): the API stream and the upstream outbox read
  changes in that order, each exactly once.
* An :class:`EventRef` names the device message a finding comes from (button and fall
  events). It is a typed field of the finding, not part of its evidence, because the engine
  acts on it: it remembers, durably, every call handled per device (and the last cancel or
  recovery) and ignores a replay (a call: the very same message as one handled; a cancel or
  recovery: also one not newer than the last call while both device clocks are trusted), so
  a handled call never comes back as a new one, and a call from a device that rebooted is
  never taken for a replay.
* What dispatchers do while handling an alert is part of it and of its history: who it is
  assigned to, the response checklist items done, the calls to the resident and their contacts
  (:class:`ContactCall`: which one, by position, and whether they answered, never their name
  or number, which stay at the hub in :mod:`alerts.residents`), comments, and the outcome code
  it was resolved with.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

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
    SITE_OFFLINE = "site_offline"
    GATEWAY_HEALTH = "gateway_health"


SITE_TYPES: Final = frozenset({AlertType.SITE_OFFLINE, AlertType.GATEWAY_HEALTH})
"""Alert types about a whole site or the gateway itself, not one bed: ``bed`` is empty.
``site_offline``: every device of a site silent at once (its link, its power); episode empty
(sites the registry does not list share one summary, :mod:`alerts.storms`).
``gateway_health``: the gateway's own broker connection, database or storage failing, on the
site :data:`GATEWAY_SITE`, one episode per check (``mqtt_connected``, ``tsdb_writable``...).
The types of ground-truth labels (:data:`devices.labels.ALERT_TYPES`) are the others."""
GATEWAY_SITE: Final = "_gateway"
"""The site of ``gateway_health`` alerts: the gateway serves several sites, and its own health
is none of theirs (as ``_unregistered`` in :mod:`alerts.storms`, a name no registry uses)."""


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


class EventRef(msgspec.Struct, frozen=True, kw_only=True):
    """The device message a finding comes from: what tells a new call from a replayed one.

    Events of one device are remembered in two lanes, calls (``press``, ``long_press``,
    ``fall_detected``) and the rest (``cancel``, ``fall_cleared``), so a cancel that overtook
    its own press in the network never makes the press look old.
    """

    device: str
    seq: int
    device_ts: int
    """The device's ``ts`` (epoch ms, its own clock)."""
    digest: str
    """SHA-256 (hex) of the decoded event, canonically encoded: equal for a replay."""
    call: bool = False
    """A new call (press, long_press, fall_detected): rung again on an acknowledged alert."""

    def newer_than(self, other: EventRef) -> bool:
        """A higher ``seq``, or a later device time (a device that reset its counter has a
        newer clock, if its clock is right). Neither: a replay (identical) or an old message
        delivered late, when both device times are trusted; with a wrong clock (reset to
        2000, a far-future glitch) this orders nothing (see :mod:`alerts.engine`)."""
        return self.seq > other.seq or self.device_ts > other.device_ts

    def same_as(self, other: EventRef) -> bool:
        """The very same message (``seq``, device time and content)."""
        return (self.seq == other.seq and self.device_ts == other.device_ts
                and self.digest == other.digest)


class HandledEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The last event of one device and lane that the engine handled (a row of the store)."""

    site: str
    bed: str
    event: EventRef
    at: int
    """When it was received (receipt clock, epoch ms): its device time is trusted to order
    later events only if within the engine's clock window around this."""


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
    event: EventRef | None = None
    """The device event behind this finding (button and fall rules); None for detectors and
    timed findings. The engine ignores a finding whose event replays one it handled from
    that device (see :mod:`alerts.engine`)."""


CallResult = Literal["answered", "no_answer"]


class ContactCall(msgspec.Struct, frozen=True, kw_only=True):
    """One call a dispatcher made while handling an alert, by the contact's place in the
    resident's profile: 0 the resident's own phone, 1.. the emergency contacts in order."""

    contact: int
    result: CallResult
    at: int
    by: str
    """The API key's name of the dispatcher who called."""


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
    repeats: int = 0
    """New calls on this alert after it opened (another press, another fall, no movement
    after the fall). One on an acknowledged alert puts it back to ``open``."""
    assigned_to: str | None = None
    """The dispatcher (API key name) handling it; None: nobody in particular."""
    assigned_at: int | None = None
    checklist: tuple[str, ...] = ()
    """The response checklist items done, in the order they were checked."""
    contact_calls: tuple[ContactCall, ...] = ()
    """Every call made while handling it, oldest first."""
    outcome: str | None = None
    """How it ended (``false_alarm``, ``ambulance_called``, ...): required when a person
    resolves it; None while unresolved and when the system resolved it."""


class AlertChange(msgspec.Struct, frozen=True, kw_only=True):
    """One transition of one alert; ``seq`` is unique and increasing across all alerts,
    gap-free except for a range skipped after a restore of the alert store (never reused)."""

    seq: int
    at: int
    action: str
    """opened, updated, repeated, escalated, downgraded, acknowledged, resolved, auto_resolved,
    cleared; and what dispatchers do while handling it: assigned, unassigned, commented,
    checklist_checked, checklist_unchecked, contact_called"""
    actor: str | None = None
    note: str | None = None
    alert: Alert


# --- caregiver visits (the service log, alerts.servicelog) ---------------------------------

VisitAction = Literal["check_in", "check_out"]
Source = Literal["badge", "api"]
RefusalReason = Literal["no_check_in", "already_checked_in", "already_checked_out",
                        "other_bed", "other_caregiver", "visit_id_reused"]


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitEvent:
    """A check-in or check-out to record (before it has a place in the chain)."""

    origin: str
    """Idempotency key: the same origin is recorded once (:func:`alerts.servicelog.repeats`)."""
    at: int
    """When it happened (device time for badges, gateway time for the API), epoch ms."""
    site: str
    bed: str
    caregiver: str
    visit: str
    event: VisitAction
    source: Source
    method: str | None = None
    services: tuple[str, ...] | None = None
    device: str | None = None
    actor: str | None = None
    """The API key's name for API records; ``None`` for device records."""
