"""``inactivity``: someone is home, but has not moved for far longer than usual at this hour.

Per bed, the *still run* is the time since the infrared sensor last saw movement or saw
nobody home (or, after a gap in its data, since data resumed: a sensor that was silent says
nothing about stillness). Per bed and local hour of day, the longest still run that covered
the hour each day (counting runs that ended, never one that raised this alert) is folded into
an exponentially weighted average over days: the person's usual stillness at that hour, long
at night or at nap time, short in the morning. The condition holds when the still run exceeds
``max(inactivity_min_minutes, inactivity_factor x usual)`` (BedSettings), ``usual`` being the
longest of the hours the run covers, and the sensor is still reporting; it clears with the
next movement or absence. A person whose naps are routinely longer than the minimum needs a
higher ``inactivity_min_minutes``: a run that raised the alert is never learned as usual.

For example, someone at home and still from 08:00 to 10:00, on a bed with nothing learnt
yet (a usual 20 minutes in the day, so the default minimum of 120 minutes decides):

>>> import json
>>> from devices import decode
>>> from gateway.detect.inactivity import InactivityDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = InactivityDetector(timezone="UTC")
>>> eight_am = 1_793_606_400_000  # 2026-11-02 08:00 UTC
>>> times = [eight_am + m * 60_000 for m in range(0, 121, 5)]
>>> still = [message("infrared/ir-1/telemetry", ts=t, seq=i, presence=True, motion=0)
...          for i, t in enumerate(times)]
>>> detector.update(still, times)
>>> [finding] = detector.evaluate(times[-1])
>>> print(finding.type, finding.severity, finding.summary)
inactivity high no movement for 120 min (usual here 20 min)
"""

from __future__ import annotations

from typing import Final

import numpy as np

from alerts.model import AlertType, Finding, Severity
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import Batch, groups
from gateway.detect._table import NONE

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
_MAX = np.iinfo(np.int64).max

DATA_GAP_MS: Final = 10 * MINUTE_MS
"""Infrared samples further apart than this break the still run (stillness is not known
across the gap), or :data:`GAP_FACTOR` times the sensor's usual spacing if that is longer."""
STALE_MS: Final = 15 * MINUTE_MS
"""No infrared data received for this long (or :data:`GAP_FACTOR` times the sensor's usual
spacing): the condition is not raised (device_offline is)."""
GAP_FACTOR: Final = 2.5
SPACING_MAX_MS: Final = 60 * MINUTE_MS
"""A sensor's usual spacing (moving average of the time between its samples) is learnt from
spacings up to this: a longer pause is an outage, not its rate."""
SPACING_ALPHA: Final = 0.2
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
        b.column("spacing_ms", np.float64, 0.0)
        """Usual time between the bed's infrared samples (0 until learnt)."""
        b.column("last_t", np.int64, NONE)
        b.column("last_received", np.int64, NONE)
        b.column("usual_min", np.float32, np.nan, (24,))
        b.column("day_max_min", np.float32, 0.0, (24,))
        """Longest ended still run covering each local hour, today so far."""
        b.column("day", np.int64, NONE)
        """Local day (epoch days) that ``day_max_min`` belongs to."""
        b.column("active", np.bool_, False)
        b.column("active_since", np.int64, NONE)

    def _update(self, batch: Batch) -> None:
        ir = batch.infrared
        known = ~(np.isnan(ir.presence) & np.isnan(ir.motion))
        if not known.any():
            return
        bed, t = ir.bed[known], ir.t[known]
        presence, motion = ir.presence[known], ir.motion[known]
        beds, _, _, _ = groups(bed)  # a round's samples are ordered by bed and time
        b = self.beds
        still_since, last_t = b["still_since"], b["last_t"]
        first = np.concatenate(([True], bed[1:] != bed[:-1]))
        previous = np.where(first, last_t[bed], np.concatenate(([NONE], t[:-1])))
        spacing = b["spacing_ms"]
        gap = t - previous > np.maximum(DATA_GAP_MS, GAP_FACTOR * spacing[bed])
        self._learn_spacing(bed, t - previous, previous != NONE)
        moved = (motion > 0) | (presence == 0)
        reset = moved | gap
        # The first run to end in this batch (by movement or absence, not by a data gap).
        ended_at = np.full(len(still_since), _MAX, np.int64)
        ends = moved & ~gap
        np.minimum.at(ended_at, bed[ends], t[ends])
        ended = np.flatnonzero((ended_at != _MAX) & (still_since != NONE))
        ended = ended[~(b["active"][ended] & (still_since[ended] == b["active_since"][ended]))]
        run_start, run_end = still_since[ended].copy(), ended_at[ended]
        np.maximum.at(still_since, bed[reset], t[reset])
        np.maximum.at(last_t, bed, t)
        np.maximum.at(b["last_received"], bed, ir.received[known])
        self._new_day(beds)
        self._learn(ended, run_start, run_end)

    def _learn_spacing(self, bed: np.ndarray, step: np.ndarray, known: np.ndarray) -> None:
        """Fold this round's mean spacing of each bed's samples into its usual spacing, so a
        sensor that reports every 20 or 30 minutes is not one long series of data gaps."""
        use = known & (step > 0) & (step <= SPACING_MAX_MS)
        if not use.any():
            return
        size = self.beds.capacity
        count = np.bincount(bed[use], minlength=size)
        total = np.bincount(bed[use], step[use].astype(np.float64), minlength=size)
        rows = np.flatnonzero(count)
        mean = total[rows] / count[rows]
        spacing = self.beds["spacing_ms"]
        old = spacing[rows]
        spacing[rows] = np.where(old > 0, (1 - SPACING_ALPHA) * old + SPACING_ALPHA * mean, mean)

    def _new_day(self, beds: np.ndarray) -> None:
        """At a bed's local day change, fold yesterday's per-hour maxima into the usual."""
        b = self.beds
        day = self.fleet.local_ms(beds, b["last_t"][beds]) // DAY_MS
        changed = beds[(day != b["day"][beds]) & (b["day"][beds] != NONE)]
        if len(changed):
            seen = b["day_max_min"][changed]
            usual = b["usual_min"][changed]
            folded = np.where(np.isnan(usual), seen, (1 - USUAL_ALPHA) * usual + USUAL_ALPHA * seen)
            b["usual_min"][changed] = np.where(seen > 0, folded, usual)
            b["day_max_min"][changed] = 0.0
        b["day"][beds] = day

    def _learn(self, beds: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        """Count each ended still run for every local hour it covered."""
        if not len(beds):
            return
        minutes = ((end - start) / MINUTE_MS).astype(np.float32)
        first = self.fleet.local_ms(beds, start) // HOUR_MS
        spanned = np.clip(self.fleet.local_ms(beds, end) // HOUR_MS - first, 0, 23)
        day_max = self.beds["day_max_min"]
        for k in range(int(spanned.max()) + 1):
            inside = k <= spanned
            hours = ((first[inside] + k) % 24).astype(np.int64)
            rows = beds[inside]
            day_max[rows, hours] = np.maximum(day_max[rows, hours], minutes[inside])

    def _evaluate(self, now_ms: int) -> list[Finding]:
        n = self.fleet.n_beds
        if not n:
            return []
        b = self.beds
        since = b["still_since"][:n]
        active = b["active"][:n]
        active_since = b["active_since"][:n]
        minimum = self.fleet.setting("inactivity_min_minutes")
        fresh = b["last_received"][:n] >= now_ms - np.maximum(
            STALE_MS, GAP_FACTOR * b["spacing_ms"][:n])
        candidate = np.flatnonzero((since != NONE) & fresh & ~active
                                   & (now_ms - since >= minimum * MINUTE_MS))
        desired = active & (since == active_since)
        threshold = np.zeros(n)
        usual = np.zeros(n)
        if len(candidate):
            usual[candidate] = self._usual(candidate, since[candidate], now_ms)
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

    def _usual(self, beds: np.ndarray, since: np.ndarray, now_ms: int) -> np.ndarray:
        """The longest usual still run (minutes) of the local hours from ``since`` to now."""
        first = self.fleet.local_ms(beds, since) // HOUR_MS
        last = self.fleet.local_ms(beds, np.full(len(beds), now_ms, np.int64)) // HOUR_MS
        spanned = np.clip(last - first, 0, 23)
        usual = np.zeros(len(beds))
        learned = self.beds["usual_min"]
        for k in range(int(spanned.max()) + 1):
            of_day = ((first + k) % 24).astype(np.int64)
            value = learned[beds, of_day].astype(np.float64)
            night = self.fleet.is_night(beds, (of_day * 60 + 30).astype(np.float64))
            value = np.where(np.isnan(value), np.where(night, PRIOR_NIGHT_MIN, PRIOR_DAY_MIN),
                             value)
            usual = np.where(k <= spanned, np.maximum(usual, value), usual)
        return usual
