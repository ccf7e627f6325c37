"""``night_bed_exit``: out of bed at night and not back within ``bed_exit_return_min``.

In or out of bed comes from the fall/vital-sign sensor's ``in_bed``; while that sensor is
silent, from the infrared zone (``bed`` is in bed, any other zone or nobody home is out). Per
bed the detector keeps the last moment seen in bed and the first moment seen out after it.
The condition holds when that exit happened in the bed's local night (BedSettings
``night_start``..``night_end`` in the site's time zone, so DST and zones are respected), has
lasted ``bed_exit_return_min``, and a sensor still reports; it clears when the person is seen
in bed again.

For example, a bed sensor that saw the person leave the bed at 02:05 and not come back by
02:35 (the default night is 22:00..06:00, the default return limit 30 minutes):

>>> import json
>>> from devices import decode
>>> from gateway.detect.night_bed_exit import NightBedExitDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = NightBedExitDetector(timezone="UTC")
>>> two_am = 1_793_584_800_000  # 2026-11-02 02:00 UTC
>>> minute = 60_000
>>> samples = [{"t": two_am, "in_bed": True}] + [
...     {"t": two_am + m * minute, "in_bed": False} for m in (5, 15, 25, 35)]
>>> now = two_am + 35 * minute
>>> detector.update([message("fall/fs-1/telemetry", ts=now, seq=1, samples=samples)], [now])
>>> [finding] = detector.evaluate(now)
>>> print(finding.type, finding.severity, finding.summary)
night_bed_exit high out of bed since 02:05 (local), 30 min
"""

from __future__ import annotations

from typing import Final

import numpy as np

from alerts.model import AlertType, Finding, Severity
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import ZONE_BED, Batch, groups
from gateway.detect._table import NONE

MINUTE_MS: Final = 60_000
_MAX = np.iinfo(np.int64).max

VITALS_STALE_MS: Final = 3 * MINUTE_MS
"""The infrared zone stands in for ``in_bed`` when the bed sensor has been silent this long."""
DATA_GAP_MS: Final = 15 * MINUTE_MS
"""No sample from either sensor for this long: whereabouts before the gap are forgotten."""
STALE_MS: Final = 15 * MINUTE_MS
"""No data received for this long: the condition is not raised."""


class NightBedExitDetector(DetectorBase):
    name = "night_bed_exit"
    alert_type = AlertType.NIGHT_BED_EXIT
    severity = Severity.HIGH

    def _declare(self) -> None:
        b = self.beds
        b.column("last_in", np.int64, NONE)
        b.column("out_since", np.int64, NONE)
        b.column("last_vitals_t", np.int64, NONE)
        b.column("last_t", np.int64, NONE)
        b.column("last_received", np.int64, NONE)
        b.column("active", np.bool_, False)
        b.column("active_since", np.int64, NONE)

    def _update(self, batch: Batch) -> None:
        b = self.beds
        vi, ir = batch.vitals, batch.infrared
        v_known = ~np.isnan(vi.in_bed)
        v_bed, v_t = vi.bed[v_known], vi.t[v_known]
        v_in = vi.in_bed[v_known] == 1
        vitals_t = b["last_vitals_t"]
        np.maximum.at(vitals_t, v_bed, v_t)
        i_known = (ir.zone != 0) | (ir.presence == 0)
        i_use = i_known & (vitals_t[ir.bed] < ir.t - VITALS_STALE_MS)
        i_bed, i_t = ir.bed[i_use], ir.t[i_use]
        i_in = ir.zone[i_use] == ZONE_BED
        bed = np.concatenate([v_bed, i_bed])
        if not len(bed):
            return
        t = np.concatenate([v_t, i_t])
        is_in = np.concatenate([v_in, i_in])
        received = np.concatenate([vi.received[v_known], ir.received[i_use]])
        if len(i_bed):  # else vitals alone: a round's samples are ordered by bed and time
            order = np.lexsort((t, bed))
            bed, t, is_in = bed[order], t[order], is_in[order]
        last_t = b["last_t"]
        first = np.concatenate(([True], bed[1:] != bed[:-1]))
        previous = np.where(first, last_t[bed], np.concatenate(([NONE], t[:-1])))
        gap = t - previous > DATA_GAP_MS
        last_in = b["last_in"]
        np.maximum.at(last_in, bed[is_in], t[is_in])
        # After a gap nothing is known before it: as if seen in bed just before.
        np.maximum.at(last_in, bed[gap & ~is_in], t[gap & ~is_in] - 1)
        first_out = np.full(len(last_in), _MAX, np.int64)
        out = ~is_in & (t > last_in[bed])
        np.minimum.at(first_out, bed[out], t[out])
        out_since = b["out_since"]
        beds = groups(bed)[0]
        since = out_since[beds]
        since = np.where((since != NONE) & (since <= last_in[beds]), NONE, since)
        new = first_out[beds]
        since = np.where(new == _MAX, since, np.where(since == NONE, new, np.minimum(since, new)))
        out_since[beds] = since
        np.maximum.at(last_t, bed, t)
        np.maximum.at(b["last_received"], bed, received)

    def _evaluate(self, now_ms: int) -> list[Finding]:
        n = self.fleet.n_beds
        if not n:
            return []
        b = self.beds
        since = b["out_since"][:n]
        active = b["active"][:n]
        active_since = b["active_since"][:n]
        back_ms = self.fleet.setting("bed_exit_return_min") * MINUTE_MS
        fresh = b["last_received"][:n] >= now_ms - STALE_MS
        desired = active & (since == active_since)
        candidate = np.flatnonzero((since != NONE) & ~active & fresh
                                   & (now_ms - since >= back_ms))
        if len(candidate):
            minutes = self.fleet.local_minutes(candidate, since[candidate])
            desired[candidate] = self.fleet.is_night(candidate, minutes)
        on, off = transitions(active, desired)
        findings: list[Finding] = []
        for i in on.tolist():
            active_since[i] = since[i]
            out = (now_ms - int(since[i])) / MINUTE_MS
            local = self.fleet.local_minutes(np.array([i]), since[i:i + 1])[0]
            left = f"{int(local // 60):02d}:{int(local % 60):02d}"
            findings.append(self._finding(
                i, at=now_ms, active=True, started_at=int(since[i]),
                summary=f"out of bed since {left} (local), {out:.0f} min",
                evidence={"out_minutes": rounded(out), "left_bed_ms": int(since[i]),
                          "left_bed_local": left,
                          "return_limit_minutes": rounded(back_ms[i] / MINUTE_MS)}))
        for i in off.tolist():
            back = int(b["last_in"][i])
            findings.append(self._finding(
                i, at=now_ms, active=False, started_at=int(active_since[i]),
                summary="back in bed",
                evidence={"out_minutes": rounded((back - int(active_since[i])) / MINUTE_MS)}))
            active_since[i] = NONE
        return findings
