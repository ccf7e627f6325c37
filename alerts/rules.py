"""Immediate rules: device events that raise an alert at once, never waiting for a window.

* Emergency button ``press``/``long_press`` -> ``emergency_button``, critical. While that alert
  is unresolved, further presses update it (one alert per call, however often the person
  presses). ``cancel`` is reported with ``cancelled_at``; the engine downgrades the call to
  ``high`` if the cancel came within its cancel window, and keeps it open for acknowledgement.
* ``fall_detected`` -> ``fall``, critical. If no movement is seen afterwards (no infrared
  sample with ``motion > 0`` after the fall) for ``no_motion_ms``, urgency is raised (evidence
  ``urgent``, ``no_motion_since``; the engine takes an escalation step at once). Movement seen
  later is added to the evidence (``motion_after_fall_at``). Neither opens an alert on its
  own. ``fall_cleared`` clears the condition: the alert stays open for acknowledgement with
  ``cleared_at`` set.
* A cancel or a ``fall_cleared`` counts only from a device whose call stands, and ends the
  call only once each such device has sent one (:data:`alerts.engine.CALLING`): a device
  that did not make the call cannot soften or silence it.

Every button and fall finding carries its message as :attr:`Finding.event
<alerts.model.Finding.event>` (device, ``seq``, device time, SHA-256 of the decoded event): the
engine ignores one it has already handled (a retained, re-sent or redelivered message), and
:attr:`ImmediateRules.is_replay` (the engine's, set by the alerting stage) keeps such a replay
from arming or ending a fall watch.

Same API as the detectors (``update`` a batch, ``evaluate`` at a moment). The clock is the
receipt time of the messages (the simulated clock in replay); device times are kept in the
evidence as ``device_ts``, and a batched sample's time is carried over to the receipt clock by
its offset from the message's ``ts``, so device clock skew does not matter. State: one small
record per bed with a fall under watch.

>>> from devices import Codec
>>> m = Codec().decode("homecare/v1/s1/bed-1/button/btn-1/event",
...                    b'{"ts":1000,"seq":7,"event":"press"}')
>>> [(f.type, f.severity) for f in ImmediateRules().update([m], [1005])]
[(<AlertType.EMERGENCY_BUTTON: 'emergency_button'>, <Severity.CRITICAL: 'critical'>)]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from alerts.engine import CALLING, CANCELLED_AT, PRESSED_AT, UPDATE_ONLY, URGENT
from alerts.model import Alert, AlertStatus, AlertType, EventRef, Finding, Severity
from devices.codec import Message
from devices.schemas import ButtonEvent, FallEvent, InfraredSample, Telemetry
from devices.topics import Address, Kind

CALLS = frozenset({"press", "long_press", "fall_detected"})
"""Events that are a call (a repeat on an unresolved alert), not a cancel or a recovery."""
DEFAULT_NO_MOTION_MS = 5 * 60_000
WATCH_LIMIT_MS = 24 * 3_600_000
"""A fall is watched for movement at most this long (the alert is long handled by then)."""


@dataclass(slots=True)
class _FallWatch:
    at: int
    """Receipt time of ``fall_detected``."""
    urgent: bool = False
    samples: int = 0
    """Infrared samples seen since the fall."""
    devices: frozenset[str] = frozenset()
    """The fall sensors whose ``fall_detected`` stands: only their ``fall_cleared`` ends the
    watch, once each has sent one (another device's cannot silence the urgency; see
    :data:`alerts.engine.CALLING`). Empty: not known (a watch resumed from an old alert)."""


class ImmediateRules:
    """Emergency button and fall rules; see the module docstring."""

    name = "immediate"

    def __init__(self, *, no_motion_ms: int = DEFAULT_NO_MOTION_MS) -> None:
        if no_motion_ms <= 0:
            raise ValueError("no_motion_ms must be positive")
        self.no_motion_ms = no_motion_ms
        self._falls: dict[tuple[str, str], _FallWatch] = {}
        self.is_replay: Callable[[str, str, EventRef, int], bool] | None = None
        """``(site, bed, event, received_ms)`` -> True for a replay of an event already handled
        (the alert engine's :meth:`~alerts.engine.AlertEngine.is_replay`); None: every event
        is taken as new."""

    def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> list[Finding]:
        """Findings raised by this batch (in arrival order)."""
        findings: list[Finding] = []
        falls = self._falls
        for message, received in zip(messages, received_ms, strict=True):
            payload = message.payload
            if isinstance(payload, ButtonEvent):
                findings.append(self._button(message.address, payload, received))
            elif isinstance(payload, FallEvent):
                findings.append(self._fall(message.address, payload, received))
            elif (falls and isinstance(payload, Telemetry)
                  and message.address.kind is Kind.INFRARED):
                watch = falls.get((message.address.site, message.address.bed))
                if watch is not None:
                    found = self._motion(message.address, payload, received, watch)
                    if found is not None:
                        findings.append(found)
        return findings

    def evaluate(self, now_ms: int) -> list[Finding]:
        """Urgency raised for falls without movement for ``no_motion_ms`` by ``now_ms``."""
        findings = []
        for key in [k for k, w in self._falls.items() if now_ms - w.at > WATCH_LIMIT_MS]:
            del self._falls[key]
        for (site, bed), watch in self._falls.items():
            if watch.urgent or now_ms - watch.at < self.no_motion_ms:
                continue
            watch.urgent = True
            minutes = round((now_ms - watch.at) / 60_000, 1)
            findings.append(Finding(
                type=AlertType.FALL, site=site, bed=bed, at=now_ms, severity=Severity.CRITICAL,
                summary=f"Fall: no movement for {minutes:g} min",
                evidence={UPDATE_ONLY: True, URGENT: True, "no_motion_since": watch.at,
                          "no_motion_minutes": minutes,
                          "infrared_samples_since_fall": watch.samples}))
        return findings

    def resume(self, alerts: Sequence[Alert]) -> None:
        """Watch again the falls of unresolved alerts (after a restart), so that urgency is
        still raised for a fall that happened before it."""
        for alert in alerts:
            if (alert.type is not AlertType.FALL or alert.status is AlertStatus.RESOLVED
                    or alert.cleared_at is not None):
                continue
            fall_at = alert.evidence.get("fall_at")
            if not isinstance(fall_at, int) or "motion_after_fall_at" in alert.evidence:
                continue
            calling = alert.evidence.get(CALLING)
            devices = (frozenset(d for d in calling if isinstance(d, str))
                       if isinstance(calling, list) else frozenset())
            self._falls[(alert.site, alert.bed)] = _FallWatch(
                at=fall_at, urgent=bool(alert.evidence.get(URGENT)), devices=devices)

    @property
    def watched_falls(self) -> int:
        return len(self._falls)

    # --- rules --------------------------------------------------------------------------------

    def _button(self, a: Address, event: ButtonEvent, received: int) -> Finding:
        message = {"event": event.event, "device": a.device, "seq": event.seq,
                   "device_ts": event.ts}
        ref = _ref(a, event)
        if event.event == "cancel":
            return Finding(
                type=AlertType.EMERGENCY_BUTTON, site=a.site, bed=a.bed, at=received,
                severity=Severity.HIGH, summary="Emergency call cancelled by the person",
                evidence={**message, CANCELLED_AT: received}, event=ref)
        long = event.event == "long_press"
        return Finding(
            type=AlertType.EMERGENCY_BUTTON, site=a.site, bed=a.bed, at=received,
            severity=Severity.CRITICAL,
            summary="Emergency call: button held" if long else "Emergency call: button pressed",
            evidence={**message, PRESSED_AT: received, CANCELLED_AT: None,
                      "cancel_outside_window": None}, event=ref)

    def _fall(self, a: Address, event: FallEvent, received: int) -> Finding:
        message = {"event": event.event, "device": a.device, "seq": event.seq,
                   "device_ts": event.ts, "confidence": event.confidence,
                   "posture": event.posture}
        key = (a.site, a.bed)
        ref = _ref(a, event)
        # A replay changes no watch (the engine ignores its finding, and counts it).
        new = self.is_replay is None or not self.is_replay(a.site, a.bed, ref, received)
        watch = self._falls.get(key)
        if event.event == "fall_cleared":
            if new and watch is not None:
                if not watch.devices or watch.devices == {a.device}:
                    del self._falls[key]
                elif a.device in watch.devices:
                    watch.devices -= {a.device}
            return Finding(
                type=AlertType.FALL, site=a.site, bed=a.bed, at=received,
                severity=Severity.CRITICAL, active=False,
                summary=f"Fall: person up again ({event.posture or 'posture unknown'})",
                evidence={**message, "recovered_at": received}, event=ref)
        if new:
            self._falls[key] = _FallWatch(at=received, devices=(
                watch.devices if watch is not None else frozenset()) | {a.device})
        return Finding(
            type=AlertType.FALL, site=a.site, bed=a.bed, at=received,
            severity=Severity.CRITICAL, summary="Fall detected",
            evidence={**message, "fall_at": received, "recovered_at": None, URGENT: None,
                      "no_motion_since": None, "no_motion_minutes": None,
                      "infrared_samples_since_fall": None, "motion_after_fall_at": None},
            event=ref)

    def _motion(self, a: Address, telemetry: Telemetry, received: int,
                watch: _FallWatch) -> Finding | None:
        moved_at = None
        for sample in telemetry.samples:
            # The sample's time on the receipt clock: device clock offsets cancel out.
            at = received - (telemetry.ts - sample.t)
            if at <= watch.at:
                continue
            watch.samples += 1
            if (moved_at is None and isinstance(sample, InfraredSample) and sample.motion
                    and sample.motion > 0):
                moved_at = at
        if moved_at is None:
            return None
        del self._falls[(a.site, a.bed)]  # moving: nothing left to watch for
        return Finding(
            type=AlertType.FALL, site=a.site, bed=a.bed, at=received,
            severity=Severity.CRITICAL, summary="Fall: movement seen since",
            evidence={UPDATE_ONLY: True, "motion_after_fall_at": moved_at,
                      "motion_device": a.device})


def _ref(a: Address, event: ButtonEvent | FallEvent) -> EventRef:
    """The event's identity: device, ``seq``, device time and a digest of its content (the
    decoded event canonically encoded, unknown fields left out)."""
    return EventRef(device=a.device, seq=event.seq, device_ts=event.ts,
                    digest=hashlib.sha256(msgspec.json.encode(event)).hexdigest(),
                    call=event.event in CALLS)
