"""``service_anomaly``: a caregiver visit whose badge record disagrees with the sensors.

A visit opens with a badge ``check_in`` and closes with its ``check_out`` (same ``visit``
id); the episode is the visit id. Three cross-checks:

* **nobody sensed**: checked in and out while the infrared sensor, reporting throughout,
  never saw more people than live there (the household's usual count, below).
* **too short**: checked out after less than :data:`SHORT_SHARE` of the time the billed
  services take (:data:`devices.SERVICE_MINUTES`), and at least :data:`SHORT_MIN_MS` less.
* **no check-out**: the visit is over (nobody but the resident for
  :data:`NO_CHECKOUT_GRACE_MS`) or has lasted :data:`MAX_VISIT_MS`, and no check-out came.
  A late check-out clears it.

The first two are decided :data:`SETTLE_MS` after the check-out, so that sensor data held up
by the home network is in.

**The household.** The caregiver is the one person more than usual. How many people usually
are at home is learnt per bed from the infrared ``people`` count outside visits, with someone
home (a time-weighted average over :data:`HOUSEHOLD_TAU_MS` of the share of samples with at
least two, and at least three, people; over one half counts): an elderly couple is two, so the
spouse is never taken for the caregiver. It starts as a household of one (the safe default of
a new bed: a couple's second person counts as a visitor for the first hours, as before) and
follows a change (a spouse moving in or away) within a day. Evidence names the count used.

For example, a visit checked out after 5 minutes that bills bathing and rehab (30 minutes
each):

>>> import json
>>> from devices import decode
>>> from gateway.detect.service_anomaly import ServiceAnomalyDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = ServiceAnomalyDetector(timezone="UTC")
>>> ten_am = 1_793_613_600_000  # 2026-11-02 10:00 UTC
>>> visit = {"caregiver": "c-1", "visit": "v-1", "method": "nfc"}
>>> badge = [message("badge/bg-1/event", ts=ten_am, seq=1, event="check_in", **visit),
...          message("badge/bg-1/event", ts=ten_am + 300_000, seq=2, event="check_out",
...                  services=["bathing", "rehab"], **visit)]
>>> detector.update(badge, [ten_am, ten_am + 300_000])
>>> [finding] = detector.evaluate(ten_am + 360_000)
>>> print(finding.type, finding.severity, finding.summary)
service_anomaly medium checked out after 5 min; services claim 60 min
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import numpy as np

from alerts.model import AlertType, Finding, Severity
from devices import SERVICE_MINUTES, BadgeEvent
from gateway.detect._base import DetectorBase, rounded
from gateway.detect._batch import Batch
from gateway.detect._table import NONE

MINUTE_MS: Final = 60_000

UNKNOWN_SERVICE_MINUTES: Final = 15.0
SHORT_SHARE: Final = 0.5
SHORT_MIN_MS: Final = 15 * MINUTE_MS
SETTLE_MS: Final = 60_000
MIN_SENSED_SAMPLES: Final = 5
"""Infrared samples needed during a visit before "nobody sensed" can be claimed."""
NO_CHECKOUT_GRACE_MS: Final = 20 * MINUTE_MS
MAX_VISIT_MS: Final = 4 * 60 * MINUTE_MS
FRESH_MS: Final = 10 * MINUTE_MS
"""Infrared data received within this counts as the sensor still reporting."""
KEEP_MS: Final = 24 * 60 * MINUTE_MS
"""Visits are forgotten this long after they were decided."""
HOUSEHOLD_TAU_MS: Final = 12 * 60 * MINUTE_MS
"""Time constant of the household's usual people count."""


class _Visit(msgspec.Struct, kw_only=True):
    visit: str
    bed: int
    caregiver: str
    check_in: int
    people_before: int
    samples_before: int
    check_out: int | None = None
    services: list[str] = msgspec.field(default_factory=list)
    decided_at: int | None = None
    anomaly: str | None = None
    """``nobody_sensed``, ``too_short`` or ``no_checkout`` once raised."""


class ServiceAnomalyDetector(DetectorBase):
    name = "service_anomaly"
    alert_type = AlertType.SERVICE_ANOMALY
    severity = Severity.MEDIUM

    def _declare(self) -> None:
        b = self.beds
        b.column("people", np.int64, 0)
        """Infrared samples seen with more people than the household (cumulative)."""
        b.column("two_or_more", np.float64, 0.0)
        b.column("three_or_more", np.float64, 0.0)
        """Time-weighted share of samples outside visits with at least 2 (3) people."""
        b.column("household_at", np.int64, NONE)
        """Receipt time of the latest sample the household was learnt from."""
        b.column("samples", np.int64, 0)
        b.column("people_last", np.int64, NONE)
        b.column("last_received", np.int64, NONE)
        self._visits: dict[str, _Visit] = {}

    def _extra_state(self) -> Any:
        return msgspec.to_builtins(list(self._visits.values()))

    def _restore_extra(self, extra: Any, bed_map: Any) -> None:
        if not extra:
            return
        for visit in msgspec.convert(extra, list[_Visit]):
            visit.bed = bed_map[visit.bed]
            self._visits[visit.visit] = visit

    def _update(self, batch: Batch) -> None:
        b = self.beds
        for record in batch.events:
            event = record.event
            if isinstance(event, BadgeEvent):
                self._badge(event, record.bed, record.t)
        ir = batch.infrared
        known = ~np.isnan(ir.people)
        if known.any():
            bed = ir.bed[known]
            people = ir.people[known]
            received = ir.received[known]
            np.add.at(b["samples"], bed, 1)
            np.maximum.at(b["last_received"], bed, received)
            more = people > self.household(bed)
            np.add.at(b["people"], bed[more], 1)
            np.maximum.at(b["people_last"], bed[more], ir.t[known][more])
            self._learn_household(bed, people, received)

    def household(self, bed: np.ndarray) -> np.ndarray:
        """How many people usually are at home, per bed (1 until learnt otherwise)."""
        b = self.beds
        usual: np.ndarray = (1 + (b["two_or_more"][bed] > 0.5).astype(np.int64)
                             + (b["three_or_more"][bed] > 0.5).astype(np.int64))
        return usual

    def _learn_household(self, bed: np.ndarray, people: np.ndarray, received: np.ndarray
                         ) -> None:
        """Fold samples with someone home and no visit open into the household's count."""
        open_beds = [v.bed for v in self._visits.values() if v.check_out is None]
        home = people >= 1
        if open_beds:
            home &= ~np.isin(bed, open_beds)
        if not home.any():
            return
        b = self.beds
        n = len(b["two_or_more"])
        bed, people, received = bed[home], people[home], received[home]
        count = np.bincount(bed, minlength=n)
        beds = np.flatnonzero(count)
        latest = np.full(n, NONE, dtype=np.int64)
        np.maximum.at(latest, bed, received)
        since = b["household_at"][beds]
        span = np.where(since == NONE, 0, np.maximum(latest[beds] - since, 0))
        weight = 1.0 - np.exp(-span / HOUSEHOLD_TAU_MS)
        for column, least in (("two_or_more", 2), ("three_or_more", 3)):
            share = np.bincount(bed[people >= least], minlength=n)[beds] / count[beds]
            b[column][beds] += weight * (share - b[column][beds])
        b["household_at"][beds] = latest[beds]

    def _badge(self, event: BadgeEvent, bed: int, t: int) -> None:
        visit = self._visits.get(event.visit)
        if event.event == "check_in":
            if visit is None:
                self._visits[event.visit] = _Visit(
                    visit=event.visit, bed=bed, caregiver=event.caregiver, check_in=t,
                    people_before=int(self.beds["people"][bed]),
                    samples_before=int(self.beds["samples"][bed]))
        elif visit is not None and visit.check_out is None:
            visit.check_out = max(t, visit.check_in)
            visit.services = list(event.services or ())

    def _evaluate(self, now_ms: int) -> list[Finding]:
        if not self._visits:
            return []
        b = self.beds
        findings: list[Finding] = []
        forget: list[str] = []
        for key, visit in self._visits.items():
            if visit.decided_at is not None:
                if now_ms - visit.decided_at > KEEP_MS:
                    forget.append(key)
                continue
            bed = visit.bed
            sensed = int(b["samples"][bed]) - visit.samples_before
            people = int(b["people"][bed]) - visit.people_before
            if visit.check_out is not None:
                if visit.anomaly == "no_checkout":
                    findings.append(self._visit_finding(
                        visit, now_ms, active=False, summary="checked out late",
                        evidence={"check_out_ms": visit.check_out}))
                    visit.decided_at = now_ms
                elif now_ms >= visit.check_out + SETTLE_MS:
                    findings.extend(self._checked_out(visit, now_ms, sensed, people))
                    visit.decided_at = now_ms
                continue
            if visit.anomaly is not None:
                continue
            last_people = int(b["people_last"][bed])
            fresh = int(b["last_received"][bed]) >= now_ms - FRESH_MS
            over = (people > 0 and fresh and last_people >= visit.check_in
                    and now_ms >= last_people + NO_CHECKOUT_GRACE_MS)
            if over or now_ms >= visit.check_in + MAX_VISIT_MS:
                visit.anomaly = "no_checkout"
                minutes = (now_ms - visit.check_in) / MINUTE_MS
                evidence: dict[str, Any] = {"anomaly": "no_checkout",
                                            "minutes_since_check_in": rounded(minutes)}
                if over:
                    evidence["caregiver_last_sensed_ms"] = last_people
                findings.append(self._visit_finding(
                    visit, now_ms, active=True,
                    summary=f"no check-out {minutes:.0f} min after check-in", evidence=evidence))
        for key in forget:
            del self._visits[key]
        return findings

    def _checked_out(self, visit: _Visit, now_ms: int, sensed: int,
                     people: int) -> list[Finding]:
        assert visit.check_out is not None
        stayed_ms = visit.check_out - visit.check_in
        claimed_min = sum(SERVICE_MINUTES.get(s, UNKNOWN_SERVICE_MINUTES)
                          for s in visit.services)
        base: dict[str, Any] = {"stayed_minutes": rounded(stayed_ms / MINUTE_MS),
                                "services": visit.services,
                                "claimed_minutes": rounded(claimed_min)}
        if sensed >= MIN_SENSED_SAMPLES and people == 0:
            visit.anomaly = "nobody_sensed"
            return [self._visit_finding(
                visit, now_ms, active=True,
                summary="checked in and out, but nobody but the resident was sensed",
                evidence={"anomaly": "nobody_sensed", "infrared_samples": sensed,
                          "samples_with_visitor": 0,
                          "household_people": int(self.household(np.array([visit.bed]))[0]),
                          **base})]
        claimed_ms = claimed_min * MINUTE_MS
        if stayed_ms < SHORT_SHARE * claimed_ms and claimed_ms - stayed_ms >= SHORT_MIN_MS:
            visit.anomaly = "too_short"
            return [self._visit_finding(
                visit, now_ms, active=True,
                summary=(f"checked out after {stayed_ms / MINUTE_MS:.0f} min; services claim "
                         f"{claimed_min:.0f} min"),
                evidence={"anomaly": "too_short", **base})]
        return []

    def _visit_finding(self, visit: _Visit, now_ms: int, *, active: bool, summary: str,
                       evidence: dict[str, Any]) -> Finding:
        return self._finding(
            visit.bed, at=now_ms, active=active, started_at=visit.check_in,
            episode=visit.visit, summary=summary,
            evidence={"visit": visit.visit, "caregiver": visit.caregiver,
                      "check_in_ms": visit.check_in, **evidence})
