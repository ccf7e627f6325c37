"""Detector throughput and tick cost at 10,000 beds, against a per-sample pure-Python baseline.

Traffic: every bed, every minute, one infrared sample (presence, motion, people, zone), one
audio sample (level, voice) and one fall-sensor message with six samples (in bed, heart and
breathing rate), plus a status from every device every five minutes. A *sample* here is one
value of one of the six metrics of a bed (motion, presence, sound level, voice, heart rate,
breathing rate): 16 per bed-minute. Measured in the steady state: 30 minutes of warm-up (the
people's own baselines are learnt: sound needs three 10-minute slots), then 10 minutes timed,
one baseline slot closing among them, as every 10 minutes.

* ``samples_per_s``, the detector: :func:`gateway.detect.build_detectors` (all eight
  detectors, sharing their work) given each minute's messages as columns (extracted
  beforehand, the way the fleet extracts them at intake) and evaluated once a minute;
* ``baseline_samples_per_s``: :class:`PerSampleBaseline`, the same rules written the
  straightforward way: per-bed dicts and deques, every sample handled on its own, windows
  scanned per sample, time-based rules checked bed by bed; given the same messages with their
  fields read off into plain values beforehand (:func:`rows`);
* ``from_messages_*``: both again from the decoded message objects, as the pipeline hands them
  over: ours extracts the columns (in the fleet, here a minute's messages at a time), the
  baseline reads the fields off the objects. Reading the fields costs both sides alike, some
  microseconds per message (the objects are scattered in memory), so this ratio is lower;
  ``extraction_ms_per_minute`` is ours;
* ``tick_ms_10k_beds``: one evaluation of all eight detectors at 10,000 beds with nothing new
  to fold in (the time-based rules: inactivity, bed exit, offline...), median of 20; the
  baseline's tick is beside it.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from devices import (
    Address,
    AudioSample,
    InfraredSample,
    Kind,
    Message,
    Registry,
    Status,
    Telemetry,
    VitalsSample,
)
from devices.schemas import Zone
from devices.topics import Channel
from gateway.detect import DetectorBase, build_detectors, extract

MINUTE = 60_000
T0 = 1_793_548_800_000  # 2026-11-02 00:00 Asia/Shanghai
METRIC_VALUES_PER_BED_MINUTE = 2 + 2 + 6 * 2
ZONES: tuple[Zone, ...] = ("bed", "room", "bathroom")


# --- traffic ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Fleet:
    beds: int
    addresses: list[tuple[Address, Address, Address, Address, Address, Address]] = field(
        default_factory=list)

    def __post_init__(self) -> None:
        for n in range(self.beds):
            bed = f"bed-{n:05d}"
            self.addresses.append((
                Address("site-01", bed, Kind.INFRARED, f"ir-{n}", Channel.TELEMETRY),
                Address("site-01", bed, Kind.AUDIO, f"au-{n}", Channel.TELEMETRY),
                Address("site-01", bed, Kind.FALL, f"fs-{n}", Channel.TELEMETRY),
                Address("site-01", bed, Kind.INFRARED, f"ir-{n}", Channel.STATUS),
                Address("site-01", bed, Kind.AUDIO, f"au-{n}", Channel.STATUS),
                Address("site-01", bed, Kind.FALL, f"fs-{n}", Channel.STATUS),
            ))

    def minute(self, k: int, rng: np.random.Generator) -> tuple[list[Message], list[int]]:
        """Every bed's messages of minute ``k``, in receipt order."""
        n = self.beds
        start = T0 + k * MINUTE
        offsets = rng.integers(0, MINUTE, size=(n, 3))
        motion = rng.poisson(1.5, n).tolist()
        level = np.round(rng.normal(35.0, 1.3, n), 1).tolist()
        voice = (rng.random(n) < 0.1).tolist()
        heart = np.round(rng.normal(64.0, 1.5, (n, 6)), 1).tolist()
        breathing = np.round(rng.normal(14.5, 0.6, (n, 6)), 1).tolist()
        zone = rng.integers(0, 3, n).tolist()
        out: list[tuple[int, Message]] = []
        seq = k * 10
        for b in range(n):
            ir, au, fs, ir_s, au_s, fs_s = self.addresses[b]
            t_ir, t_au, t_fs = (start + int(x) for x in offsets[b])
            out.append((t_ir, Message(ir, Telemetry(t_ir, seq, (InfraredSample(
                t_ir, presence=True, motion=motion[b], people=1, zone=ZONES[zone[b]]),)))))
            out.append((t_au, Message(au, Telemetry(t_au, seq, (AudioSample(
                t_au, level_db=level[b], voice=voice[b]),)))))
            out.append((t_fs, Message(fs, Telemetry(t_fs, seq, tuple(VitalsSample(
                t_fs - (5 - i) * 10_000, in_bed=True, heart_rate=heart[b][i],
                breathing_rate=breathing[b][i]) for i in range(6))))))
            if (k + b) % 5 == 0:
                for address, battery in ((ir_s, 80.0), (au_s, None), (fs_s, 75.0)):
                    out.append((start + 1, Message(address, Status(
                        start, seq + 1, "online", battery=battery, heartbeat_s=300.0))))
        out.sort(key=lambda pair: pair[0])
        return [m for _, m in out], [t + 40 for t, _ in out]


# --- the straightforward implementation of the same rules --------------------------------------


@dataclass(slots=True)
class _Bed:
    still_since: int | None = None
    last_ir: int = 0
    last_in: int = 0
    out_since: int | None = None
    last_vitals: int = 0
    sound: deque[tuple[int, float, bool]] = field(default_factory=deque)
    sound_slots: deque[float] = field(default_factory=lambda: deque(maxlen=144))
    sound_slot: tuple[int, float, int] = (0, 0.0, 0)
    sound_base: float | None = None
    loud: bool = False
    vitals: dict[str, deque[tuple[int, float]]] = field(
        default_factory=lambda: {"hr": deque(), "br": deque()})
    vital_slots: dict[str, deque[float]] = field(
        default_factory=lambda: {"hr": deque(maxlen=144), "br": deque(maxlen=144)})
    vital_slot: dict[str, tuple[int, float, int]] = field(
        default_factory=lambda: {"hr": (0, 0.0, 0), "br": (0, 0.0, 0)})
    vital_band: dict[str, tuple[float, float] | None] = field(
        default_factory=lambda: {"hr": None, "br": None})
    abnormal: dict[str, bool] = field(default_factory=lambda: {"hr": False, "br": False})
    runs: dict[str, tuple[float, int, int, int]] = field(default_factory=dict)
    people2: int = 0


@dataclass(slots=True)
class _Device:
    last_heard: int = 0
    heartbeat_ms: float = 300_000.0
    will: bool = False
    battery: float | None = None
    impossible: tuple[int, int] = (0, 0)
    skew_run: int = 0
    skew_offset: int = 0


def _quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    top = len(ordered) - 1
    return tuple(ordered[math.floor(q * top + 0.5)] for q in (0.05, 0.5, 0.95))  # type: ignore[return-value]


class PerSampleBaseline:
    """The eight detectors' rules, one sample at a time, in plain Python."""

    def __init__(self) -> None:
        self.beds: dict[tuple[str, str], _Bed] = {}
        self.devices: dict[tuple[str, str, str], _Device] = {}
        self.active: set[tuple[str, ...]] = set()

    def _bed(self, key: tuple[str, str]) -> _Bed:
        bed = self.beds.get(key)
        if bed is None:
            bed = self.beds[key] = _Bed()
        return bed

    def _device(self, key: tuple[str, str, str]) -> _Device:
        device = self.devices.get(key)
        if device is None:
            device = self.devices[key] = _Device()
        return device

    def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        """From decoded messages, reading every field off the message objects."""
        for message, received in zip(messages, received_ms, strict=True):
            a = message.address
            bed = self._bed((a.site, a.bed))
            device = self._device((a.site, a.bed, a.device))
            payload = message.payload
            if isinstance(payload, Status):
                self._status(device, payload.ts, received, payload.state == "offline",
                             payload.battery, payload.heartbeat_s)
                continue
            self._heard(device, payload.ts, received)
            if not isinstance(payload, Telemetry):
                continue
            for sample in payload.samples:
                if isinstance(sample, InfraredSample):
                    self._infrared(bed, sample.t, sample.presence, sample.motion,
                                   sample.people, sample.zone)
                elif isinstance(sample, AudioSample):
                    self._audio(bed, device, sample.t, sample.level_db, sample.voice)
                elif isinstance(sample, VitalsSample):
                    self._vitals(bed, device, sample.t, sample.in_bed, sample.heart_rate,
                                 sample.breathing_rate)

    def update_rows(self, rows: Sequence[Row]) -> None:
        """From the same messages with their fields already read off (:func:`rows`)."""
        for bed_key, key, ts, received, kind, values in rows:
            bed = self._bed(bed_key)
            device = self._device(key)
            if kind == OTHER:
                if values:
                    self._status(device, ts, received, *values)
                else:
                    self._heard(device, ts, received)
                continue
            self._heard(device, ts, received)
            if kind == INFRARED:
                for t, presence, motion, people, zone in values:
                    self._infrared(bed, t, presence, motion, people, zone)
            elif kind == AUDIO:
                for t, level, voice in values:
                    self._audio(bed, device, t, level, voice)
            else:
                for t, in_bed, breathing, heart in values:
                    self._vitals(bed, device, t, in_bed, heart, breathing)

    def _status(self, device: _Device, ts: int, received: int, offline: bool,
                battery: float | None, heartbeat_s: float | None) -> None:
        self._skew(device, ts, received, offline)
        device.will = offline
        if not offline:
            device.last_heard = received
        if heartbeat_s is not None:
            device.heartbeat_ms = heartbeat_s * 1000
        if battery is not None:
            device.battery = battery

    def _heard(self, device: _Device, ts: int, received: int) -> None:
        self._skew(device, ts, received, False)
        device.last_heard = received
        device.will = False

    def _skew(self, device: _Device, ts: int, received: int, will: bool) -> None:
        offset = ts - received
        if will:
            return
        if abs(offset) > 30 * MINUTE:
            consistent = device.skew_run and abs(offset - device.skew_offset) <= 15 * MINUTE
            device.skew_run = device.skew_run + 1 if consistent else 1
            device.skew_offset = offset
        else:
            device.skew_run = 0

    def _run(self, bed: _Bed, metric: str, t: int, value: float) -> None:
        run = bed.runs.get(metric)
        if run is not None and run[0] == value and t - run[3] <= 30 * MINUTE:
            bed.runs[metric] = (value, run[1], run[2] + 1, t)
        else:
            bed.runs[metric] = (value, t, 1, t)

    def _infrared(self, bed: _Bed, t: int, presence: bool | None, motion: int | None,
                  people: int | None, zone: str | None) -> None:
        if motion is not None:
            self._run(bed, "motion", t, motion)
        if (motion or 0) > 0 or presence is False or t - bed.last_ir > 10 * MINUTE:
            bed.still_since = t if bed.still_since is None else max(bed.still_since, t)
        bed.last_ir = max(bed.last_ir, t)
        if t - bed.last_vitals > 3 * MINUTE and zone is not None:
            self._where(bed, t, zone == "bed")
        if (people or 0) >= 2:
            bed.people2 += 1

    def _where(self, bed: _Bed, t: int, in_bed: bool) -> None:
        if in_bed:
            bed.last_in = max(bed.last_in, t)
            if bed.out_since is not None and bed.out_since <= t:
                bed.out_since = None
        elif t > bed.last_in and (bed.out_since is None or t < bed.out_since):
            bed.out_since = t

    def _audio(self, bed: _Bed, device: _Device, t: int, level: float | None,
               voice: bool | None) -> None:
        if level is None:
            return
        self._run(bed, "level", t, level)
        if not 0 <= level <= 140:
            device.impossible = (device.impossible[0] + 1, t)
            return
        slot, total, count = bed.sound_slot
        if t // (10 * MINUTE) > slot:
            if count:
                bed.sound_slots.append(total / count)
                bed.sound_base = statistics.median(bed.sound_slots)
            bed.sound_slot = (t // (10 * MINUTE), level, 1)
        else:
            bed.sound_slot = (slot, total + level, count + 1)
        bed.sound.append((t, level, bool(voice)))
        while bed.sound and bed.sound[0][0] <= t - 3 * MINUTE:
            bed.sound.popleft()
        if bed.sound_base is not None:
            loud = sum(1 for _, lv, _ in bed.sound if lv >= bed.sound_base + 25)
            voiced = sum(1 for _, _, v in bed.sound if v)
            share = loud / len(bed.sound)
            bed.loud = (share > 0.25) if bed.loud else (
                len(bed.sound) >= 2 and share >= 0.75 and voiced >= len(bed.sound) / 2)

    def _vitals(self, bed: _Bed, device: _Device, t: int, in_bed: bool | None,
                heart: float | None, breathing: float | None) -> None:
        bed.last_vitals = max(bed.last_vitals, t)
        if in_bed is not None:
            self._where(bed, t, in_bed)
        for metric, value, limit in (("hr", heart, 230.0), ("br", breathing, 80.0)):
            if value is None:
                continue
            self._run(bed, metric, t, value)
            if not 0 <= value <= limit:
                device.impossible = (device.impossible[0] + 1, t)
                continue
            slot, total, count = bed.vital_slot[metric]
            if t // (10 * MINUTE) > slot:
                if count:
                    bed.vital_slots[metric].append(total / count)
                    if len(bed.vital_slots[metric]) >= 2:
                        q05, _, q95 = _quantiles(bed.vital_slots[metric])
                        margin = max(12.0 if metric == "hr" else 4.0, 0.5 * (q95 - q05))
                        bed.vital_band[metric] = (q05 - margin, q95 + margin)
                bed.vital_slot[metric] = (t // (10 * MINUTE), value, 1)
            else:
                bed.vital_slot[metric] = (slot, total + value, count + 1)
            window = bed.vitals[metric]
            window.append((t, value))
            while window and window[0][0] <= t - 5 * MINUTE:
                window.popleft()
            band = bed.vital_band[metric]
            low, high = band if band is not None else ((40.0, 130.0) if metric == "hr"
                                                         else (8.0, 30.0))
            abnormal = sum(1 for _, v in window if v < low or v > high)
            share = abnormal / len(window)
            bed.abnormal[metric] = (share > 0.2) if bed.abnormal[metric] else (
                len(window) >= 10 and share >= 0.7)

    def evaluate(self, now_ms: int) -> int:
        """The time-based rules for every bed and device; returns how many conditions hold."""
        active = 0
        for bed in self.beds.values():
            if bed.still_since is not None and now_ms - bed.still_since >= 120 * MINUTE \
                    and now_ms - bed.last_ir < 15 * MINUTE:
                active += 1
            if bed.out_since is not None and now_ms - bed.out_since >= 30 * MINUTE:
                active += 1
            active += bed.loud + bed.abnormal["hr"] + bed.abnormal["br"]
            for run in bed.runs.values():
                if run[2] >= 10 and run[3] - run[1] >= 10 * MINUTE:
                    active += 1
        for device in self.devices.values():
            if device.will or now_ms - device.last_heard > 3 * device.heartbeat_ms:
                active += 1
            if device.battery is not None and device.battery < 15:
                active += 1
            if device.skew_run >= 2 or (device.impossible[0] >= 3
                                        and now_ms - device.impossible[1] < 15 * MINUTE):
                active += 1
        return active


# --- the same traffic as rows of plain values, for the baseline ---------------------------------

Key = tuple[str, str, str]


INFRARED, AUDIO, VITALS, OTHER = 0, 1, 2, 3
_KIND_OF_SAMPLE = {InfraredSample: INFRARED, AudioSample: AUDIO, VitalsSample: VITALS}


Row = tuple[tuple[str, str], Key, int, int, int, tuple[Any, ...]]
"""Bed, device, ``ts``, receipt time, kind (:data:`OTHER` for a status or event), and the
samples' values (``t`` and the kind's fields) or, for a status, its offline flag, battery and
heartbeat (empty for an event)."""


def rows(messages: Sequence[Message], received_ms: Sequence[int]) -> list[Row]:
    """A minute's messages with every field read off into plain values."""
    out: list[Row] = []
    for message, received in zip(messages, received_ms, strict=True):
        a, payload = message.address, message.payload
        bed, key = (a.site, a.bed), (a.site, a.bed, a.device)
        if isinstance(payload, Status):
            out.append((bed, key, payload.ts, received, OTHER, (
                payload.state == "offline", payload.battery, payload.heartbeat_s)))
        elif isinstance(payload, Telemetry):
            kind = _KIND_OF_SAMPLE[type(payload.samples[0])]
            out.append((bed, key, payload.ts, received, kind,
                        tuple(msgspec.structs.astuple(s) for s in payload.samples)))
        else:
            out.append((bed, key, payload.ts, received, OTHER, ()))
    return out


# --- the measurement ----------------------------------------------------------------------------


def _measure(update: Any, evaluate: Any, traffic: Sequence[Any], first_minute: int) -> float:
    gc.collect()
    started = time.perf_counter()
    for k, minute in enumerate(traffic):
        update(minute)
        evaluate(T0 + (first_minute + k + 1) * MINUTE)
    return time.perf_counter() - started


def _ours() -> tuple[Any, Any, Any]:
    detectors = build_detectors(Registry(), timezone="Asia/Shanghai")

    def evaluate(now: int) -> None:
        for detector in detectors:
            detector.evaluate(now)

    first = detectors[0]
    assert isinstance(first, DetectorBase)
    return detectors, evaluate, first.fleet


def _warm_then_time(update: Any, evaluate: Any, traffic: Sequence[Any],
                    warmup: int) -> float:
    _measure(update, evaluate, traffic[:warmup], 0)
    return _measure(update, evaluate, traffic[warmup:], warmup)


def run(*, quick: bool = False) -> dict[str, Any]:
    beds = 1_000 if quick else 10_000
    warmup, timed = (3, 2) if quick else (30, 10)
    rng = np.random.default_rng(1)
    fleet = Fleet(beds)
    minutes = [fleet.minute(k, rng) for k in range(warmup + timed)]
    samples = beds * timed * METRIC_VALUES_PER_BED_MINUTE

    # The detector itself: ours from the minute's columns, the baseline from its rows.
    detectors, evaluate, shared = _ours()
    columns = [extract(shared, [minute]) for minute in minutes]
    ours_s = _warm_then_time(shared.add_columns, evaluate, columns, warmup)
    ticks = []
    now = T0 + (warmup + timed + 1) * MINUTE
    for _ in range(20):
        now += MINUTE
        started = time.perf_counter()
        evaluate(now)
        ticks.append((time.perf_counter() - started) * 1000)
    del columns
    baseline = PerSampleBaseline()
    baseline_s = _warm_then_time(baseline.update_rows, baseline.evaluate,
                                 [rows(*minute) for minute in minutes], warmup)
    baseline_ticks = []
    for _ in range(5):
        now += MINUTE
        started = time.perf_counter()
        baseline.evaluate(now)
        baseline_ticks.append((time.perf_counter() - started) * 1000)

    # From decoded messages, as the pipeline hands them over: ours extracts the columns (a
    # minute's messages at a time; intake extracts parts of 500), the baseline reads the
    # fields off the message objects.
    detectors, evaluate, shared = _ours()

    def update(minute: tuple[list[Message], list[int]]) -> None:
        for detector in detectors:
            detector.update(*minute)

    ours_messages_s = _warm_then_time(update, evaluate, minutes, warmup)
    baseline = PerSampleBaseline()
    baseline_messages_s = _warm_then_time(lambda minute: baseline.update(*minute),
                                          baseline.evaluate, minutes, warmup)

    ours, base = samples / ours_s, samples / baseline_s
    ours_m, base_m = samples / ours_messages_s, samples / baseline_messages_s
    return {
        "beds": beds,
        "metrics_per_bed": 6,
        "samples": samples,
        "samples_per_s": round(ours),
        "baseline_samples_per_s": round(base),
        "ratio": round(ours / base, 1),
        ("tick_ms_1k_beds" if quick else "tick_ms_10k_beds"): round(statistics.median(ticks), 2),
        "baseline_tick_ms": round(statistics.median(baseline_ticks), 2),
        "from_messages_samples_per_s": round(ours_m),
        "from_messages_baseline_samples_per_s": round(base_m),
        "from_messages_ratio": round(ours_m / base_m, 1),
        "extraction_ms_per_minute": round(1000 * (ours_messages_s - ours_s) / timed, 1),
    }
