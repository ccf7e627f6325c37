"""What a profile adds around the person's own day: days away, device replacements, a spouse.

These are schedules, drawn from their own random streams so that a bed's routine, visits and
incidents keep their draws: an away spell is a function of the bed and the week, a device
replacement of the bed alone (so that the registry can list the new devices before the run),
the spouse's night and outings of the bed and the day.

Nobody is labelled for any of it: a home left empty for two days, a planned device swap and a
spouse walking at night are normal life (issue #12).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import numpy as np

from simulators.activity import AWAY, DOOR, SPOUSE_OUT, SPOUSE_UP, Segment
from simulators.clock import MINUTE_MS, LocalDay
from simulators.config import BedSpec
from simulators.events import SENSOR_ROLES, Role
from simulators.profiles import Profile
from simulators.routine import SleepTimes

_AWAY_STREAM: Final = 9
_REPLACEMENT_STREAM: Final = 10
DOOR_MIN: Final = 2.0
"""Minutes at the door when leaving for days and when coming back."""


def away_windows(profile: Profile, seed: int, bed_index: int,
                 day: LocalDay) -> list[tuple[int, int]]:
    """``(leave_ms, back_ms)`` of the spells away that overlap ``day``.

    Day numbers count from the run's first day (0); every ``away_every_days`` days (a cycle)
    hold one spell of ``away_days`` days, leaving at 09:00-15:00 on day 1-3 of the cycle and
    back at 10:00-18:00. Nothing happens before the run's first day.
    """
    every = profile.away_every_days
    if not every or day.number < 0:
        return []
    cycle = day.number // every
    rng = np.random.default_rng([seed, bed_index, _AWAY_STREAM, cycle])
    longest = profile.away_days[1]
    leave_day = cycle * every + int(rng.integers(1, max(2, every - longest)))
    back_day = leave_day + int(rng.integers(profile.away_days[0], longest + 1))
    leave_min = float(rng.uniform(9 * 60, 15 * 60))
    back_min = float(rng.uniform(10 * 60, 18 * 60))
    leave = _day(day, leave_day).at(leave_min)
    back = _day(day, back_day).at(back_min)
    if back <= day.start_ms or leave >= day.end_ms:
        return []
    return [(leave, back)]


def _day(day: LocalDay, number: int) -> LocalDay:
    return LocalDay.of(day.date + dt.timedelta(days=number - day.number), day.timezone, number)


def away_segments(windows: list[tuple[int, int]], day: LocalDay) -> list[Segment]:
    """Out of the door, away, back through the door; only the parts inside ``day``."""
    door = round(DOOR_MIN * MINUTE_MS)
    out = []
    for leave, back in windows:
        for start, end, activity in ((leave - door, leave, DOOR), (leave, back, AWAY),
                                     (back, back + door, DOOR)):
            start, end = max(start, day.start_ms), min(end, day.end_ms)
            if end > start:
                out.append(Segment(start, end, activity))
    return out


@dataclass(frozen=True, slots=True)
class Replacement:
    """A planned device swap: at ``day`` (from the run's first day) and local ``minute`` the
    old device says ``offline`` and stops; ``gap_min`` later the new one starts at seq 1."""

    role: Role
    old: str
    new: str
    day: int
    minute: float
    gap_min: float


def device_id(spec: BedSpec, role: Role) -> str:
    ids: dict[Role, str] = {"button": spec.button, "infrared": spec.infrared,
                            "audio": spec.audio, "fall": spec.fall, "badge": spec.badge}
    return ids[role]


def replacements(profile: Profile, seed: int, spec: BedSpec) -> tuple[Replacement, ...]:
    """The bed's device replacements: ``profile.replacements`` devices of different kinds, the
    k-th on day 1 + 2k or the day after, between 09:00 and 17:00 (a technician's visit)."""
    if not profile.replacements:
        return ()
    rng = np.random.default_rng([seed, spec.index, _REPLACEMENT_STREAM])
    order = rng.permutation(len(SENSOR_ROLES))
    out = []
    for k in range(min(profile.replacements, len(SENSOR_ROLES))):
        role = SENSOR_ROLES[int(order[k])]
        old = device_id(spec, role)
        out.append(Replacement(role=role, old=old, new=f"{old}-r1",
                               day=1 + 2 * k + int(rng.integers(0, 2)),
                               minute=float(rng.uniform(9 * 60, 17 * 60)),
                               gap_min=float(rng.uniform(25, 35))))
    return tuple(out)


def spouse_track(profile: Profile, day: LocalDay, rng: np.random.Generator, times: SleepTimes,
                 avoid: list[tuple[int, int]]) -> list[Segment]:
    """The spouse's own moves (profile ``household`` 2): up at night for 5-25 minutes while the
    resident sleeps, and on some days out alone for one to two and a half hours in the day,
    never over ``avoid`` (the caregiver's slot, so the spouse is home at visit time)."""
    track = []
    low, high = times.asleep_ms + 30 * MINUTE_MS, times.wake_ms - 30 * MINUTE_MS
    for _ in range(min(3, int(rng.poisson(profile.spouse_night_trips)))):
        length = round(float(rng.uniform(5, 25)) * MINUTE_MS)
        if high - length <= low:
            break
        at = int(rng.integers(low, high - length))
        track.append(Segment(at, at + length, SPOUSE_UP))
    if rng.random() < profile.spouse_outing_days:
        length = round(float(rng.uniform(60, 150)) * MINUTE_MS)
        start = int(rng.integers(day.at(9 * 60 + 30), day.at(16 * 60 + 30) - length))
        if all(start + length <= a or start >= b for a, b in avoid):
            track.append(Segment(start, start + length, SPOUSE_OUT))
    return track
