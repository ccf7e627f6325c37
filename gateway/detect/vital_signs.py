"""``vital_signs``: heart or breathing rate out of range, sustained (never one spike).

A rate is abnormal when it is outside the absolute limits of the bed (BedSettings
``heart_rate_min``/``_max``, ``breathing_rate_min``/``_max``) or far outside the person's own
range: the 5-95 % band of their 10-minute means over the last day, widened by half its width
and at least :data:`MARGIN` (asleep and awake, slow drifts are inside it). The condition holds
when most samples of the last :data:`SUSTAIN_MS` are abnormal (at least :data:`MIN_SAMPLES`
of them: a sensor that reports rarely is judged on its last :data:`MIN_SAMPLES` samples, over
at most :data:`LONGEST_MS`, or on :data:`SPARSE_MIN_SAMPLES` spanning :data:`SUSTAIN_MS`; one
that reports often keeps a sample per :data:`SPACING_MS`); it clears when few are, or when no
rate has been reported for :data:`STALE_MS` (nobody in bed). Impossible readings
(a heart rate of 400) belong to ``sensor_fault`` and are ignored here.

For example, a heart rate of 150/min for five minutes (the default limit is 130/min):

>>> import json
>>> from devices import decode
>>> from gateway.detect.vital_signs import VitalSignsDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = VitalSignsDetector(timezone="UTC")
>>> start = 1_793_588_400_000  # 2026-11-02 03:00 UTC
>>> samples = [{"t": start + s * 30_000, "in_bed": True, "heart_rate": 150.0,
...             "breathing_rate": 16.0} for s in range(11)]
>>> now = start + 300_000
>>> detector.update([message("fall/fs-1/telemetry", ts=now, seq=1, samples=samples)], [now])
>>> [finding] = detector.evaluate(now)
>>> print(finding.type, finding.severity, finding.summary)
vital_signs high heart rate 150/min (normal 40-130)
"""

from __future__ import annotations

from typing import Final

import numpy as np

from alerts.model import AlertType, Finding, Severity
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import Batch, groups
from gateway.detect._ring import SampleRing, SlotBaseline, count_true
from gateway.detect._table import NONE

MINUTE_MS: Final = 60_000
HEART, BREATHING = 0, 1
METRICS: Final = ("heart_rate", "breathing_rate")
LIMITS: Final = (("heart_rate_min", "heart_rate_max"),
                 ("breathing_rate_min", "breathing_rate_max"))

SUSTAIN_MS: Final = 5 * MINUTE_MS
MIN_SAMPLES: Final = 10
LONGEST_MS: Final = 20 * MINUTE_MS
SPARSE_MIN_SAMPLES: Final = 4
WIDTH: Final = 64
SPACING_MS: Final = 5_000
"""At most one sample per this much time is kept: 60 in :data:`SUSTAIN_MS`, within
:data:`WIDTH`."""
ABNORMAL_SHARE_ON: Final = 0.7
ABNORMAL_SHARE_OFF: Final = 0.2
MARGIN: Final = (12.0, 4.0)
"""Least distance (per minute) outside the person's own band that counts as abnormal:
heart rate, breathing rate."""
MIN_SLOTS: Final = 2
"""Baseline slots (10 min each) needed before the person's own band is used; until then
only the absolute limits apply."""
PLAUSIBLE: Final = ((0.0, 230.0), (0.0, 80.0))
"""Readings outside these are impossible (sensor_fault), for heart and breathing rate."""
STALE_MS: Final = 15 * MINUTE_MS
_MAX = np.iinfo(np.int64).max


class VitalSignsDetector(DetectorBase):
    name = "vital_signs"
    alert_type = AlertType.VITAL_SIGNS
    severity = Severity.HIGH

    def _declare(self) -> None:
        b = self.beds
        self.ring = SampleRing(b, "recent", metrics=2, width=WIDTH, spacing_ms=SPACING_MS)
        self.baseline = SlotBaseline(b, "baseline", metrics=2)
        b.column("abnormal", np.bool_, False, (2,))
        b.column("abnormal_since", np.int64, NONE, (2,))
        b.column("last_received", np.int64, NONE)
        b.column("active", np.bool_, False)
        b.column("active_since", np.int64, NONE)

    def _band(self, beds: np.ndarray, metric: int) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest normal value per bed (absolute limits and own band)."""
        low_name, high_name = LIMITS[metric]
        low = self.fleet.settings[low_name][beds]
        high = self.fleet.settings[high_name][beds]
        q05, _, q95, valid = self.baseline.quantiles(beds, metric)
        margin = np.maximum(MARGIN[metric], 0.5 * (q95 - q05))
        own = valid >= MIN_SLOTS
        low = np.where(own, np.maximum(low, q05 - margin), low)
        high = np.where(own, np.minimum(high, q95 + margin), high)
        # In the readings' precision: comparing float32 readings to float64 bounds would
        # convert every reading of every window first.
        return low.astype(np.float32), high.astype(np.float32)

    def _update(self, batch: Batch) -> None:
        vi = batch.vitals
        if not len(vi.t):
            return
        values = np.stack([vi.heart, vi.breathing], axis=1)
        with np.errstate(invalid="ignore"):
            impossible = ((values[:, HEART] < PLAUSIBLE[0][0])
                          | (values[:, HEART] > PLAUSIBLE[0][1])
                          | (values[:, BREATHING] < PLAUSIBLE[1][0])
                          | (values[:, BREATHING] > PLAUSIBLE[1][1]))
        use = ~impossible & ~(np.isnan(vi.heart) & np.isnan(vi.breathing))
        if not use.any():
            return
        bed, t, received = vi.bed, vi.t, vi.received
        if not use.all():
            bed, t, values, received = bed[use], t[use], values[use], received[use]
        beds, starts, _, lengths = groups(bed)  # a round's samples are ordered by bed
        abnormal = np.zeros(values.shape, np.bool_)
        for metric in (HEART, BREATHING):
            low, high = self._band(beds, metric)
            value = values[:, metric]
            abnormal[:, metric] = ((value < np.repeat(low, lengths))
                                   | (value > np.repeat(high, lengths)))
        self.ring.push(bed, t, values)
        self.baseline.add(bed, t, values, abnormal)
        last = self.beds["last_received"]
        last[beds] = np.maximum(last[beds], np.maximum.reduceat(received, starts))
        self._sustain(beds)

    def _sustain(self, beds: np.ndarray) -> None:
        b = self.beds
        times, values = self.ring.window(beds)
        recent, newest = self.ring.recent(beds, times, span_ms=SUSTAIN_MS,
                                          min_samples=MIN_SAMPLES, longest_ms=LONGEST_MS)
        for metric in (HEART, BREATHING):
            value = values[:, metric]
            low, high = self._band(beds, metric)
            present = recent & ~np.isnan(value)
            # NaN compares False: a missing value is never abnormal.
            abnormal = recent & ((value < low[:, None]) | (value > high[:, None]))
            n = count_true(present)
            share = count_true(abnormal) / np.maximum(n, 1)
            enough = n >= MIN_SAMPLES
            sparse = np.flatnonzero(~enough & (n >= SPARSE_MIN_SAMPLES))
            if len(sparse):
                oldest = np.where(present[sparse], times[sparse], _MAX).min(axis=1)
                enough[sparse] = newest[sparse] - oldest >= SUSTAIN_MS
            on = enough & (share >= ABNORMAL_SHARE_ON)
            off = share <= ABNORMAL_SHARE_OFF
            was = b["abnormal"][beds, metric]
            now = np.where(was, ~off, on)
            started = np.flatnonzero(now & ~was)
            if len(started):
                first = np.where(abnormal[started], times[started], _MAX).min(axis=1)
                b["abnormal_since"][beds[started], metric] = first
            b["abnormal"][beds, metric] = now

    def _recent_median(self, bed: int, metric: int) -> float:
        recent = self.ring.recent_values(bed, metric, span_ms=SUSTAIN_MS,
                                         min_samples=MIN_SAMPLES, longest_ms=LONGEST_MS)
        return float(np.median(recent)) if len(recent) else float("nan")

    def _evaluate(self, now_ms: int) -> list[Finding]:
        n = self.fleet.n_beds
        if not n:
            return []
        b = self.beds
        abnormal = b["abnormal"][:n]
        stale = b["last_received"][:n] < now_ms - STALE_MS
        abnormal[stale] = False
        active = b["active"][:n]
        on, off = transitions(active, np.asarray(abnormal.any(axis=1)))
        findings: list[Finding] = []
        for i in on.tolist():
            metrics = [m for m in (HEART, BREATHING) if abnormal[i, m]]
            since = int(min(b["abnormal_since"][i, m] for m in metrics))
            b["active_since"][i] = since
            evidence: dict[str, object] = {}
            parts = []
            for m in metrics:
                low, high = self._band(np.array([i]), m)
                value = self._recent_median(i, m)
                evidence[METRICS[m]] = rounded(value)
                evidence[f"{METRICS[m]}_normal"] = [rounded(low[0]), rounded(high[0])]
                parts.append(f"{METRICS[m].replace('_', ' ')} {value:.0f}/min "
                             f"(normal {low[0]:.0f}-{high[0]:.0f})")
            findings.append(self._finding(i, at=now_ms, active=True, started_at=since,
                                          summary="; ".join(parts), evidence=evidence))
        for i in off.tolist():
            findings.append(self._finding(
                i, at=now_ms, active=False, started_at=int(b["active_since"][i]),
                summary="vital signs back in range",
                evidence={METRICS[m]: rounded(median) for m in (0, 1)
                          if not np.isnan(median := self._recent_median(i, m))}))
            b["active_since"][i] = NONE
        return findings
