"""``inactivity``: someone is home, but has not moved for far longer than usual at this hour.

>>> from gateway.detect.inactivity import InactivityDetector
>>> detector = InactivityDetector(timezone="UTC")
>>> detector.evaluate(0)
[]

Per bed, the *still run* is the time since the infrared sensor last saw movement or saw
nobody home (or, after a gap in its data, since data resumed: a sensor that was silent says
nothing about stillness). Per bed and local hour of day, the longest still run of each hour
is folded into an exponentially weighted average over days (the person's usual stillness at
that hour: long at night, short in the morning). The condition holds when the still run
exceeds ``max(inactivity_min_minutes, inactivity_factor x usual)`` (BedSettings) and the
sensor is still reporting; it clears with the next movement or absence.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from alerts.model import AlertType, Finding, Severity
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import Batch
from gateway.detect._fleet import NONE

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000

DATA_GAP_MS: Final = 10 * MINUTE_MS
"""Infrared samples further apart than this break the still run (stillness is not known
across the gap)."""
STALE_MS: Final = 15 * MINUTE_MS
"""No infrared data received for this long: the condition is not raised (device_offline is)."""
USUAL_ALPHA: Final = 0.2
"""Weight of today's longest still run in an hour's usual value (about a week of memory)."""
PRIOR_DAY_MIN: Final = 20.0
PRIOR_NIGHT_MIN: Final = 40.0
"""Usual longest still run (minutes) assumed for an hour not yet observed."""


class InactivityDetector(DetectorBase):
    name = "inactivity"
    alert_type = AlertType.INACTIVITY
    severity = Severity.HIGH

    def _declare(self) -> None:
        b = self.beds
        b.column("still_since", np.int64, NONE)
        b.column("last_t", np.int64, NONE)
        b.column("last_received", np.int64, NONE)
        b.column("usual_min", np.float32, np.nan, (24,))
        b.column("hour", np.int64, NONE)
        """Local epoch hour whose longest still run is being tracked."""
        b.column("hour_max_min", np.float32, 0.0)
        b.column("active", np.bool_, False)
        b.column("active_since", np.int64, NONE)

    def _update(self, batch: Batch) -> None:
        ir = batch.infrared
        known = ~(np.isnan(ir.presence) & np.isnan(ir.motion))
        if not known.any():
            return
        bed, t = ir.bed[known], ir.t[known]
        presence, motion = ir.presence[known], ir.motion[known]
        order = np.lexsort((t, bed))
        bed, t, presence, motion = bed[order], t[order], presence[order], motion[order]
        b = self.beds
        still_since, last_t = b["still_since"], b["last_t"]
        first = np.concatenate(([True], bed[1:] != bed[:-1]))
        previous = np.where(first, last_t[bed], np.concatenate(([NONE], t[:-1])))
        gap = t - previous > DATA_GAP_MS
        moved = (motion > 0) | (presence == 0)
        reset = moved | gap
        old_since = still_since.copy()
        # A run that ended (movement seen, not a gap): how long it was, for the usual value.
        ended = np.zeros(len(still_since), np.float64)
        ends = moved & ~gap
        if ends.any():
            first_end = np.full(len(still_since), np.iinfo(np.int64).max, np.int64)
            np.minimum.at(first_end, bed[ends], t[ends])
            touched = np.flatnonzero(first_end != np.iinfo(np.int64).max)
            ok = old_since[touched] != NONE
            ended[touched[ok]] = (first_end[touched[ok]] - old_since[touched[ok]]) / MINUTE_MS
        np.maximum.at(still_since, bed[reset], t[reset])
        np.maximum.at(last_t, bed, t)
        np.maximum.at(b["last_received"], bed, ir.received[known][order])
        self._track_hours(np.unique(bed), ended)

    def _track_hours(self, beds: np.ndarray, ended: np.ndarray) -> None:
        b = self.beds
        last_t, still_since = b["last_t"][beds], b["still_since"][beds]
        hour = self.fleet.local_ms(beds, last_t) // HOUR_MS
        tracked = b["hour"][beds]
        hour_max = b["hour_max_min"]
        moved_on = (hour != tracked) & (tracked != NONE)
        fold = beds[moved_on & ~b["active"][beds]]
        if len(fold):
            of_day = (b["hour"][fold] % 24).astype(np.int64)
            usual = b["usual_min"]
            old = usual[fold, of_day]
            seen = hour_max[fold]
            usual[fold, of_day] = np.where(np.isnan(old), seen,
                                           (1 - USUAL_ALPHA) * old + USUAL_ALPHA * seen)
        reset = beds[hour != tracked]
        hour_max[reset] = 0.0
        b["hour"][beds] = hour
        ongoing = np.where(still_since != NONE, (last_t - still_since) / MINUTE_MS, 0.0)
        hour_max[beds] = np.maximum(hour_max[beds], np.maximum(ongoing, ended[beds]))

    def _evaluate(self, now_ms: int) -> list[Finding]:
        n = self.fleet.n_beds
        if not n:
            return []
        b = self.beds
        since = b["still_since"][:n]
        active = b["active"][:n]
        active_since = b["active_since"][:n]
        minimum = self.fleet.setting("inactivity_min_minutes")
        fresh = b["last_received"][:n] >= now_ms - STALE_MS
        candidate = np.flatnonzero((since != NONE) & fresh & ~active
                                   & (now_ms - since >= minimum * MINUTE_MS))
        desired = active & (since == active_since)
        threshold = np.zeros(n)
        usual = np.zeros(n)
        if len(candidate):
            usual_now = self._usual(candidate, np.full(len(candidate), now_ms, np.int64))
            usual_start = self._usual(candidate, since[candidate])
            usual[candidate] = np.maximum(usual_now, usual_start)
            factor = self.fleet.setting("inactivity_factor")[candidate]
            threshold[candidate] = np.maximum(minimum[candidate], factor * usual[candidate])
            desired[candidate] = now_ms - since[candidate] >= threshold[candidate] * MINUTE_MS
        on, off = transitions(active, desired)
        findings: list[Finding] = []
        for i in on.tolist():
            active_since[i] = since[i]
            still = (now_ms - int(since[i])) / MINUTE_MS
            findings.append(self._finding(
                i, at=now_ms, active=True, started_at=int(since[i]),
                summary=f"no movement for {still:.0f} min (usual here {usual[i]:.0f} min)",
                evidence={"still_minutes": rounded(still), "threshold_minutes":
                          rounded(threshold[i]), "usual_minutes": rounded(usual[i]),
                          "last_movement_ms": int(since[i])}))
        for i in off.tolist():
            findings.append(self._finding(
                i, at=now_ms, active=False, started_at=int(active_since[i]),
                summary="movement seen again",
                evidence={"still_minutes": rounded((int(since[i]) - int(active_since[i]))
                                                   / MINUTE_MS)}))
            active_since[i] = NONE
        return findings

    def _usual(self, beds: np.ndarray, times: np.ndarray) -> np.ndarray:
        local = self.fleet.local_ms(beds, times)
        of_day = ((local // HOUR_MS) % 24).astype(np.int64)
        usual = self.beds["usual_min"][beds, of_day].astype(np.float64)
        night = self.fleet.is_night(beds, (local % 86_400_000) / MINUTE_MS)
        prior = np.where(night, PRIOR_NIGHT_MIN, PRIOR_DAY_MIN)
        return np.where(np.isnan(usual), prior, usual)
