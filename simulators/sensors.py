"""What each sensor reads from the home: the samples of a device's telemetry messages.

The infrared sensor counts movements (Poisson around the expected motion) and reports zone and
people; the audio recorder reports the level with noise, and voice activity; the fall/vital-sign
sensor reports in-bed and rates that wander inside the person's own range (incidents set
targets outside it). Device conditions of incidents (flat lines, impossible readings, stuck
motion) are applied here. Draws come from the bed's generator in a fixed order, so the bytes of
a seed never change.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from devices import AudioSample, InfraredSample, Sample, VitalsSample
from simulators.activity import ROOM_ZONE, ZONES
from simulators.clock import HOUR_MS, MINUTE_MS
from simulators.events import DeviceEffect, Role
from simulators.person import Person
from simulators.render import Frame

_Windows: TypeAlias = list[tuple[DeviceEffect, npt.NDArray[np.bool_]]]
"""Each device condition with the samples it covers."""


def sensor_samples(*, role: Role, batch: int, period_ms: int, clock_ms: int, drift_phase: float,
                   message_ts: npt.NDArray[np.int64], frame: Frame, effects: list[DeviceEffect],
                   person: Person, rng: np.random.Generator) -> list[tuple[Sample, ...]]:
    """The samples of each telemetry message of a device (``batch`` per message, spread over
    its period), stamped by the device clock (clock skew is added later)."""
    k = batch
    spacing = period_ms // k
    times = (message_ts[:, None] - np.arange(k - 1, -1, -1, dtype=np.int64)[None, :] * spacing)
    flat = times.ravel()
    idx = frame.index(flat)
    windows = [(e, (flat >= e.start_ms) & (flat < e.end_ms)) for e in effects]
    stamps = np.maximum(flat + clock_ms, 0).tolist()
    if role == "infrared":
        built: list[Sample] = _infrared(rng, stamps, idx, spacing, frame, windows)
    elif role == "audio":
        built = _audio(rng, stamps, idx, frame, windows)
    else:
        built = _vitals(rng, person, drift_phase, stamps, flat, idx, frame, windows)
    return [tuple(built[i:i + k]) for i in range(0, len(built), k)]

def _infrared(rng: np.random.Generator, stamps: list[int], idx: npt.NDArray[np.int64],
              spacing: int, frame: Frame, windows: _Windows) -> list[Sample]:
    zone = frame.zone[idx].copy()
    people = frame.people[idx].copy()
    motion = rng.poisson(frame.motion[idx] * (spacing / MINUTE_MS))
    for effect, mask in windows:
        if effect.kind == "stuck_motion":
            motion[mask] = int(effect.values[0])
            zone[mask] = ROOM_ZONE
            people[mask] = 1
    zones = [ZONES[z] for z in zone.tolist()]
    return [InfraredSample(t=t, presence=z is not None, motion=m, people=p, zone=z)
            for t, z, m, p in zip(stamps, zones, motion.tolist(), people.tolist(),
                                  strict=True)]

def _audio(rng: np.random.Generator, stamps: list[int], idx: npt.NDArray[np.int64],
           frame: Frame, windows: _Windows) -> list[Sample]:
    n = len(stamps)
    level = np.round(frame.sound[idx] + rng.normal(0.0, 1.3, n), 1)
    voice = rng.random(n) < frame.voice[idx]
    for effect, mask in windows:
        if effect.kind == "flatline":
            level[mask] = effect.values[0]
            voice[mask] = False
        elif effect.kind == "impossible":
            level[mask] = np.round(rng.choice([-40.0, 185.0], int(mask.sum()))
                                   + rng.normal(0, 3, int(mask.sum())), 1)
    return [AudioSample(t=t, level_db=lv, voice=v)
            for t, lv, v in zip(stamps, level.tolist(), voice.tolist(), strict=True)]

def _vitals(rng: np.random.Generator, p: Person, drift_phase: float, stamps: list[int],
            flat: npt.NDArray[np.int64], idx: npt.NDArray[np.int64], frame: Frame,
            windows: _Windows) -> list[Sample]:
    n = len(flat)
    asleep = frame.asleep[idx]
    in_bed = frame.in_bed[idx].copy()
    hours = flat / HOUR_MS
    heart = _within(p.heart_rate_low, p.heart_rate_high, asleep, hours, drift_phase,
                    rng.normal(0.0, 1.0, n))
    breath = _within(p.breathing_low, p.breathing_high, asleep, hours,
                     drift_phase + 1.0, rng.normal(0.0, 1.0, n))
    target = frame.heart_rate[idx]
    has = ~np.isnan(target)
    heart[has] = target[has] + rng.normal(0.0, 2.0, int(has.sum()))
    target = frame.breathing_rate[idx]
    has = ~np.isnan(target)
    breath[has] = target[has] + rng.normal(0.0, 0.7, int(has.sum()))
    heart, breath = np.round(heart, 1), np.round(breath, 1)
    for effect, mask in windows:
        if effect.kind == "flatline":
            in_bed[mask] = True
            heart[mask], breath[mask] = effect.values[0], effect.values[1]
        elif effect.kind == "impossible":
            m = int(mask.sum())
            in_bed[mask] = True
            heart[mask] = np.round(rng.uniform(250.0, 400.0, m), 1)
            breath[mask] = np.round(rng.choice([0.0, 95.0], m)
                                    + rng.uniform(0.0, 40.0, m), 1)
    return [VitalsSample(t=t, in_bed=True, breathing_rate=br, heart_rate=hr) if bed
            else VitalsSample(t=t, in_bed=False)
            for t, bed, br, hr in zip(stamps, in_bed.tolist(), breath.tolist(),
                                      heart.tolist(), strict=True)]


def _within(low: float, high: float, asleep: npt.NDArray[np.bool_], hours: npt.NDArray[np.float64],
            phase: float, noise: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A rate that wanders inside ``(low, high)`` and never touches the edges: lower asleep,
    slow cycles (about 90 minutes and a day), sample noise, squashed with tanh."""
    mid, half = (low + high) / 2, (high - low) / 2
    base = np.where(asleep, mid - 0.45 * half, mid + 0.3 * half)
    drift = (0.2 * np.sin(2 * np.pi * hours / 1.5 + phase)
             + 0.15 * np.sin(2 * np.pi * hours / 24 + 2 * phase))
    x = base + half * (drift + 0.12 * noise)
    return mid + 0.97 * half * np.tanh((x - mid) / half)
