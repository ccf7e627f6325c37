"""A normal day for one person: sleep, getting up, bathroom, meals, nap, TV, quiet and busy
spells, sometimes going out.

Normal days are built to stay clear of every alert condition, so that a detector can reach
high precision against the labels: in bed before 22:00 and up after 06:00 local time, night
bathroom trips under 15 minutes, never more than a few minutes without movement while awake
and at home, nothing louder than the TV.
"""

from __future__ import annotations

import numpy as np

from simulators.activity import (
    ACTIVE,
    AWAY,
    BATHROOM,
    DOOR,
    LIE_AWAKE,
    MEAL,
    NAP,
    QUIET,
    SLEEP,
    TV,
    Activity,
    Segment,
)
from simulators.clock import LocalDay
from simulators.person import Person

_DAY_MIN = 24 * 60


class _Day:
    """Collects segments in local minutes for one :class:`LocalDay`."""

    def __init__(self, day: LocalDay, person: Person, rng: np.random.Generator,
                 avoid: list[tuple[float, float]]) -> None:
        self.day = day
        self.person = person
        self.rng = rng
        self.avoid = avoid
        self.segments: list[Segment] = []
        self.last_bathroom = 0.0
        self.went_out = False

    def add(self, start: float, end: float, activity: Activity) -> float:
        if end > start:
            self.segments.append(Segment(self.day.at(start), self.day.at(end), activity))
        return end

    def uniform(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def fill(self, start: float, end: float, *, evening: bool) -> None:
        """Free time: spells of quiet, busy and TV, a bathroom trip every two to three hours,
        and (for mobile persons, at most once a day) an outing."""
        person, m = self.person, start
        tv = person.tv_lover + (0.3 if evening else 0.0)
        weights = np.array([0.45, 0.35 if not evening else 0.1, tv])
        weights /= weights.sum()
        while m < end:
            if m - self.last_bathroom > self.uniform(120, 180) and end - m > 12:
                m = self.add(m, m + self.uniform(5, 10), BATHROOM)
                self.last_bathroom = m
                continue
            if (person.mobile and not evening and not self.went_out and end - m > 110
                    and self.rng.random() < 0.3 and self._free(m, m + 100)):
                self.went_out = True
                away = self.uniform(30, 90)
                m = self.add(m, m + 2, DOOR)
                m = self.add(m, m + away, AWAY)
                m = self.add(m, m + 2, DOOR)
                continue
            activity = (QUIET, ACTIVE, TV)[int(self.rng.choice(3, p=weights))]
            stop = m + self.uniform(10, 45)
            m = self.add(m, end if end - stop < 5 else stop, activity)

    def _free(self, start: float, end: float) -> bool:
        return all(end <= a or start >= b for a, b in self.avoid)


def plan_routine(day: LocalDay, person: Person, rng: np.random.Generator, *,
                 avoid: list[tuple[float, float]]) -> list[Segment]:
    """The person's normal day, ``[00:00, 24:00)`` local time, painted in order.

    ``avoid`` lists local-minute windows kept free of outings (the caregiver visit slot).
    """
    d = _Day(day, person, rng, avoid)
    wake = float(np.clip(person.wake_min + rng.normal(0, 12), 6 * 60 + 12, 7 * 60 + 50))
    bedtime = float(np.clip(person.bedtime_min + rng.normal(0, 10), 20 * 60 + 35, 21 * 60 + 50))

    d.add(0, wake, SLEEP)
    for _ in range(min(2, int(rng.poisson(person.night_trips * 0.75)))):
        at = d.uniform(30, wake - 40)
        d.add(at, at + d.uniform(4, 14), BATHROOM)

    m = d.add(wake, wake + d.uniform(0, 12), LIE_AWAKE)
    m = d.add(m, m + d.uniform(8, 18), BATHROOM)
    d.last_bathroom = m

    breakfast = max(m + d.uniform(5, 25), 7 * 60 + d.uniform(0, 45))
    d.fill(m, breakfast, evening=False)
    m = d.add(breakfast, breakfast + d.uniform(20, 35), MEAL)

    lunch = d.uniform(11 * 60 + 30, 12 * 60 + 10)
    d.fill(m, lunch, evening=False)
    m = d.add(lunch, lunch + d.uniform(25, 40), MEAL)

    if rng.random() < person.nap_probability:
        nap = m + d.uniform(10, 40)
        d.fill(m, nap, evening=False)
        m = d.add(nap, nap + d.uniform(30, 90), NAP)

    dinner = d.uniform(17 * 60 + 15, 18 * 60)
    d.fill(m, dinner, evening=False)
    m = d.add(dinner, dinner + d.uniform(25, 40), MEAL)

    wash = d.uniform(6, 12)
    d.fill(m, bedtime - wash, evening=True)
    d.add(bedtime - wash, bedtime, BATHROOM)
    d.add(bedtime, _DAY_MIN, SLEEP)
    if rng.random() < person.night_trips * 0.3:
        at = d.uniform(bedtime + 60, _DAY_MIN - 20)
        d.add(at, at + d.uniform(4, 12), BATHROOM)
    return d.segments


def sleep_window(segments: list[Segment]) -> tuple[int, int, int, int]:
    """``(wake_ms, bedtime_ms, day_start_ms, day_end_ms)`` of a routine from :func:`plan_routine`:
    the person sleeps over ``[day_start, wake)`` and ``[bedtime, day_end)``."""
    morning = segments[0]
    evening = next(s for s in reversed(segments) if s.activity is SLEEP)
    return morning.end_ms, evening.start_ms, morning.start_ms, evening.end_ms


