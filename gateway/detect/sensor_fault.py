"""``sensor_fault``: a sensor that reports what cannot be true.

Three symptoms, one episode per device:

* **stuck**: the same heart rate, breathing rate or sound level for
  :data:`STUCK_MIN_SAMPLES` samples spanning :data:`STUCK_MIN_MS`, or the same non-zero
  movement count for :data:`STUCK_MOTION_MIN_SAMPLES` spanning :data:`STUCK_MOTION_MIN_MS`;
  live readings always jitter. (Zero movement repeats legitimately: sleep, an empty home;
  small counts repeat by chance for a while, hence the longer run.)
* **impossible**: heart rate above 230 or negative, breathing rate above 80 or negative, sound
  below 0 or above 140 dB, at least :data:`IMPOSSIBLE_MIN` times within
  :data:`IMPOSSIBLE_GAP_MS` of each other.
* **clock skew**: :data:`SKEW_MIN_MESSAGES` consecutive messages whose device time is more
  than :data:`SKEW_MS` from the receipt time, all by the same offset (within
  :data:`SKEW_CONSISTENT_MS` of the first) or all further than :data:`SKEW_FAR_MS` from it,
  received over at least :data:`SKEW_MIN_SPAN_MS`. A single corrupted timestamp is not a
  faulty clock, and neither is a backlog: a device uploading hours of held-back messages at
  once sends old times with offsets that shrink as it catches up, within seconds of receipt
  time. A clock counting seconds or microseconds instead of milliseconds drifts from receipt
  time by about a second every second, so its offset is never consistent, but it is never
  near receipt time either: one episode while it is wrong (before, a seconds clock raised a
  new one every 16 minutes, as its drift outgrew the consistency bound, and a batch whose
  sample times were in seconds went unseen). A time outside the gateway's clock window
  (:class:`~devices.devicetime.ClockWindow`, the ``clock_window_s`` setting the line encoder
  stores by, handed in through the :class:`~gateway.detect.Fleet`) is a fault from its first
  message (``started_at``) once nothing contradicts it: a second such message in a row, or no
  sane one within the device's heartbeat (+ :data:`OUTSIDE_GRACE_MS`), by which a device that
  sent one corrupted time has said something sane. The device is flagged ``clock_wrong`` from
  that message on, and a button with a clock reset to 2000 may press once a week, never
  showing a run over 3 minutes. A time in the wrong unit (it reads as receipt time once
  scaled by 1000, :func:`~devices.devicetime.wrong_unit`, named in the evidence) is a fault at
  once: nothing else lands there by chance. Offsets within the window keep the run rule
  above. Sample times count as well as ``ts``. Last-will statuses carry
  their connect time and are exempt. Such a clock's points are stored at receipt time
  (:mod:`devices.devicetime`), which also flags the device on the bed page and in metrics.

Each clears when the symptom is gone: the value changes, no impossible reading for
:data:`IMPOSSIBLE_GAP_MS`, a message with a sane timestamp.

For example, a status whose ``ts`` counts seconds, not milliseconds (a fault at once):

>>> import json
>>> from devices import decode
>>> from gateway.detect.sensor_fault import SensorFaultDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = SensorFaultDetector(timezone="UTC")
>>> now = 1_793_606_400_000  # 2026-11-02 08:00 UTC
>>> status = message("fall/fs-1/status", ts=now // 1000, seq=1, state="online")
>>> detector.update([status], [now])
>>> [finding] = detector.evaluate(now)
>>> print(finding.type, finding.severity, finding.summary)
sensor_fault medium fall fs-1: clock_skew
>>> finding.evidence["clock_unit"]
's'
"""

from __future__ import annotations

from typing import Final

import numpy as np

from alerts.model import AlertType, Finding, Severity
from devices.devicetime import wrong_unit
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import Batch, groups
from gateway.detect._numbering import KINDS_BY_CODE
from gateway.detect._table import NONE

MINUTE_MS: Final = 60_000
MOTION, LEVEL, HEART, BREATHING = 0, 1, 2, 3
METRICS: Final = ("motion", "level_db", "heart_rate", "breathing_rate")

STUCK_MIN_SAMPLES: Final = 10
STUCK_MIN_MS: Final = 10 * MINUTE_MS
STUCK_MOTION_MIN_SAMPLES: Final = 20
STUCK_MOTION_MIN_MS: Final = 15 * MINUTE_MS
"""A movement count is a small integer: a count of 1 repeats ten times by chance about once
in 20,000 samples, twenty times about once in 400 million."""
STUCK_GAP_MS: Final = 30 * MINUTE_MS
"""A run of identical values does not continue across a data gap this long."""
STUCK_STALE_MS: Final = 30 * MINUTE_MS
"""A stuck stream that stopped reporting this long ago no longer counts as stuck."""
PLAUSIBLE: Final = {LEVEL: (0.0, 140.0), HEART: (0.0, 230.0), BREATHING: (0.0, 80.0)}
IMPOSSIBLE_MIN: Final = 3
IMPOSSIBLE_GAP_MS: Final = 15 * MINUTE_MS
SKEW_MS: Final = 30 * MINUTE_MS
SKEW_MIN_MESSAGES: Final = 2
SKEW_CONSISTENT_MS: Final = 15 * MINUTE_MS
"""Offsets of a run of skewed messages must agree with its first within this (network delay,
bursts)."""
SKEW_MIN_SPAN_MS: Final = 3 * MINUTE_MS
SKEW_FAR_MS: Final = 30 * 24 * 60 * MINUTE_MS
"""Offsets this large are a wrong clock whatever their drift: no backlog is that old (the
broker keeps queued messages 7 days by default), no network that slow."""
"""A run of skewed messages must span this much receipt time to count (not a backlog flush)."""
OUTSIDE_GRACE_MS: Final = MINUTE_MS
"""Slack on a device's heartbeat before one time outside the clock window, not followed by a
sane one, counts as a wrong clock."""
_MAX = np.iinfo(np.int64).max
_UNIT_CODES: Final[dict[str | None, int]] = {"s": 1, "us": 2}
_UNITS: Final = ("", "s", "us")


class SensorFaultDetector(DetectorBase):
    name = "sensor_fault"
    alert_type = AlertType.SENSOR_FAULT
    severity = Severity.MEDIUM

    def _declare(self) -> None:
        b, d = self.beds, self.devices
        b.column("run_value", np.float32, np.nan, (4,))
        b.column("run_start", np.int64, NONE, (4,))
        b.column("run_last", np.int64, NONE, (4,))
        b.column("run_count", np.int64, 0, (4,))
        b.column("run_device", np.int64, -1, (4,))
        d.column("impossible_first", np.int64, NONE)
        d.column("impossible_last", np.int64, NONE)
        d.column("impossible_count", np.int64, 0)
        d.column("impossible_value", np.float32, np.nan)
        d.column("skew_run", np.int64, 0)
        d.column("skew_offset", np.int64, 0)
        d.column("skew_since", np.int64, NONE)
        d.column("skew_last", np.int64, NONE)
        """Receipt time of the latest message of the run."""
        d.column("skew_unit", np.int8, 0)
        """The run's latest time is in the wrong unit: 1 seconds, 2 microseconds."""
        d.column("skew_outside", np.int64, 0)
        """Consecutive messages (the latest included) with a time outside the gateway's clock
        window."""
        d.column("active", np.bool_, False)
        d.column("active_since", np.int64, NONE)

    # --- update -------------------------------------------------------------------------------

    def _update(self, batch: Batch) -> None:
        ir, au, vi = batch.infrared, batch.audio, batch.vitals
        streams = ((MOTION, ir.bed, ir.t, ir.device, ir.motion),
                   (LEVEL, au.bed, au.t, au.device, au.level),
                   (HEART, vi.bed, vi.t, vi.device, vi.heart),
                   (BREATHING, vi.bed, vi.t, vi.device, vi.breathing))
        bad_devices, bad_times, bad_values = [], [], []
        for metric, bed, t, device, value in streams:
            has = ~np.isnan(value)
            if not has.any():
                continue
            bed, t, device, value = bed[has], t[has], device[has], value[has]
            self._runs(metric, bed, t, device, value)
            if metric in PLAUSIBLE:
                low, high = PLAUSIBLE[metric]
                bad = (value < low) | (value > high)
                if bad.any():
                    bad_devices.append(device[bad])
                    bad_times.append(t[bad])
                    bad_values.append(value[bad])
        if bad_devices:
            self._impossible(np.concatenate(bad_devices), np.concatenate(bad_times),
                             np.concatenate(bad_values))
        self._skew(batch)

    def _runs(self, metric: int, bed: np.ndarray, t: np.ndarray, device: np.ndarray,
              value: np.ndarray) -> None:
        # A round's samples are ordered by bed and time.
        rows, starts, ends, lengths = groups(bed)
        n = len(bed)
        breaks = np.concatenate(([True], (value[1:] != value[:-1]) | (bed[1:] != bed[:-1])
                                 | (t[1:] - t[:-1] > STUCK_GAP_MS)))
        last_break = np.maximum.reduceat(np.where(breaks, np.arange(n), -1), starts)
        b = self.beds
        old_value = b["run_value"][rows, metric]
        old_count = b["run_count"][rows, metric]
        old_last = b["run_last"][rows, metric]
        continues = ((last_break == starts) & (value[starts] == old_value) & (old_count > 0)
                     & (t[starts] - old_last <= STUCK_GAP_MS))
        b["run_count"][rows, metric] = np.where(continues, old_count + lengths,
                                                ends - last_break + 1)
        b["run_start"][rows, metric] = np.where(continues, b["run_start"][rows, metric],
                                                t[last_break])
        b["run_last"][rows, metric] = np.maximum(np.where(continues, old_last, NONE), t[ends])
        b["run_value"][rows, metric] = value[ends]
        b["run_device"][rows, metric] = device[ends]

    def _impossible(self, device: np.ndarray, t: np.ndarray, value: np.ndarray) -> None:
        d = self.devices
        devices, inverse = np.unique(device, return_inverse=True)
        first = np.full(len(devices), _MAX, np.int64)
        last = np.full(len(devices), NONE, np.int64)
        np.minimum.at(first, inverse, t)
        np.maximum.at(last, inverse, t)
        count = np.bincount(inverse, minlength=len(devices))
        previous = d["impossible_last"][devices]
        new = (previous == NONE) | (first - previous > IMPOSSIBLE_GAP_MS)
        d["impossible_first"][devices] = np.where(new, first, d["impossible_first"][devices])
        d["impossible_count"][devices] = np.where(new, count,
                                                  d["impossible_count"][devices] + count)
        d["impossible_last"][devices] = np.maximum(previous, last)
        d["impossible_value"][devices[inverse]] = value

    def _skew(self, batch: Batch) -> None:
        d = self.devices
        run = d["skew_run"]
        offset = batch.clock_offset
        window = self.fleet.clock_window
        outside_window = (offset < -window.behind_ms) | (offset > window.ahead_ms)
        skewed = ((np.abs(offset) > SKEW_MS) | outside_window) & ~batch.is_will
        # Every message of a device with a run going or a skewed message in this batch, in
        # arrival order: a good one after a bad one in the same batch ends the run (a replayed
        # journal brings them in one batch; before 2026-12-03 the good one was skipped and a
        # clock fault cleared before a kill -9 came back after it).
        touched = np.zeros(len(run), np.bool_)
        touched[batch.device[skewed]] = True
        relevant = np.flatnonzero(skewed | (run[batch.device] > 0) | touched[batch.device])
        if not len(relevant):
            return
        first_offset, since, last = d["skew_offset"], d["skew_since"], d["skew_last"]
        unit, outside = d["skew_unit"], d["skew_outside"]
        for i in relevant.tolist():
            device = int(batch.device[i])
            if batch.is_will[i]:
                continue
            if not skewed[i]:
                run[device] = 0
                since[device] = NONE
                unit[device] = 0
                outside[device] = 0
                continue
            off = int(offset[i])
            first = int(first_offset[device])
            if run[device] > 0 and (abs(off - first) <= SKEW_CONSISTENT_MS or (
                    abs(off) > SKEW_FAR_MS and abs(first) > SKEW_FAR_MS)):
                run[device] += 1
            else:
                run[device] = 1
                since[device] = int(batch.received[i])
                first_offset[device] = off
            last[device] = int(batch.received[i])
            got = int(batch.received[i])
            unit[device] = _UNIT_CODES.get(wrong_unit(got + off, got), 0)
            outside[device] = outside[device] + 1 if outside_window[i] else 0

    # --- evaluate -----------------------------------------------------------------------------

    def _evaluate(self, now_ms: int) -> list[Finding]:
        fleet = self.fleet
        n, n_beds = fleet.n_devices, fleet.n_beds
        if not n:
            return []
        b, d = self.beds, self.devices
        count, start = b["run_count"][:n_beds], b["run_start"][:n_beds]
        last, value = b["run_last"][:n_beds], b["run_value"][:n_beds]
        stuck = ((count >= STUCK_MIN_SAMPLES) & (last - start >= STUCK_MIN_MS)
                 & (last >= now_ms - STUCK_STALE_MS))
        stuck[:, MOTION] &= ((value[:, MOTION] > 0) & (count[:, MOTION] >= STUCK_MOTION_MIN_SAMPLES)
                             & (last[:, MOTION] - start[:, MOTION] >= STUCK_MOTION_MIN_MS))
        rows, metrics = np.nonzero(stuck)
        stuck_device = np.zeros(n, np.bool_)
        stuck_since = np.full(n, _MAX, np.int64)
        owners = b["run_device"][rows, metrics]
        stuck_device[owners] = True
        np.minimum.at(stuck_since, owners, start[rows, metrics])
        impossible = ((d["impossible_count"][:n] >= IMPOSSIBLE_MIN)
                      & (d["impossible_last"][:n] >= now_ms - IMPOSSIBLE_GAP_MS))
        skew = (((d["skew_run"][:n] >= SKEW_MIN_MESSAGES)
                 & (d["skew_last"][:n] - d["skew_since"][:n] >= SKEW_MIN_SPAN_MS))
                | ((d["skew_run"][:n] >= 1) & (d["skew_unit"][:n] > 0))
                | (d["skew_outside"][:n] >= 2)
                | ((d["skew_outside"][:n] >= 1) & (
                    now_ms - d["skew_last"][:n]
                    > fleet.device_heartbeat_ms[:n] + OUTSIDE_GRACE_MS)))
        active = d["active"][:n]
        on, off = transitions(active, stuck_device | impossible | skew)
        findings: list[Finding] = []
        for i in on.tolist():
            _, _, device = fleet.device_keys[i]
            kind = KINDS_BY_CODE[fleet.device_kind[i]].value
            faults: list[str] = []
            evidence: dict[str, object] = {"device": device, "kind": kind}
            starts: list[int] = []
            if stuck_device[i]:
                faults.append("stuck")
                mine = owners == i
                names = [METRICS[m] for m in metrics[mine].tolist()]
                evidence["stuck"] = {name: rounded(value[r, m]) for name, r, m in
                                     zip(names, rows[mine].tolist(), metrics[mine].tolist(),
                                         strict=True)}
                evidence["stuck_samples"] = int(count[rows[mine], metrics[mine]].max())
                starts.append(int(stuck_since[i]))
            if impossible[i]:
                faults.append("impossible")
                evidence["impossible_value"] = rounded(d["impossible_value"][i])
                evidence["impossible_count"] = int(d["impossible_count"][i])
                starts.append(int(d["impossible_first"][i]))
            if skew[i]:
                faults.append("clock_skew")
                evidence["clock_offset_s"] = rounded(d["skew_offset"][i] / 1000)
                if d["skew_unit"][i]:
                    evidence["clock_unit"] = _UNITS[int(d["skew_unit"][i])]
                starts.append(int(d["skew_since"][i]))
            evidence["faults"] = faults
            since = min(starts)
            d["active_since"][i] = since
            findings.append(self._finding(
                fleet.device_bed_list[i], at=now_ms, active=True, started_at=since,
                episode=device, summary=f"{kind} {device}: {', '.join(faults)}",
                evidence=evidence))
        for i in off.tolist():
            _, _, device = fleet.device_keys[i]
            kind = KINDS_BY_CODE[fleet.device_kind[i]].value
            findings.append(self._finding(
                fleet.device_bed_list[i], at=now_ms, active=False,
                started_at=int(d["active_since"][i]), episode=device,
                summary=f"{kind} {device} reports plausibly again",
                evidence={"device": device, "kind": kind}))
            d["active_since"][i] = NONE
        return findings
