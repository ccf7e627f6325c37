"""A normal day for one person: sleep, getting up, bathroom, meals, nap, TV, quiet and busy
spells, sometimes going out; and, by the person's profile (:mod:`simulators.profiles`), other
sleep and wake times, more naps, sleepless spells at night, a loud TV or radio, family visits.

For the ``standard`` profile, normal days are built to stay clear of every alert condition, so
that a detector can reach high precision against the labels: in bed before 22:00 and up after
06:00 local time, night bathroom trips under 15 minutes, never more than a few minutes without
movement while awake and at home, nothing louder than the TV. The other profiles are ordinary
lives that cross those lines on purpose (up at 05:00, a TV at 70 dB, up for half an hour at
night), and still carry no label.
"""

from __future__ import annotations

from typing import NamedTuple

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
    RADIO,
    SLEEP,
    TV,
    Activity,
    Segment,
    family,
)
from simulators.clock import LocalDay
from simulators.person import Person
from simulators.profiles import STANDARD, Profile

_DAY_MIN = 24 * 60


class _Day:
    """Collects segments in local minutes for one :class:`LocalDay`."""

    def __init__(self, day: LocalDay, person: Person, rng: np.random.Generator,
                 avoid: list[tuple[float, float]], profile: Profile,
                 life: np.random.Generator) -> None:
        self.day = day
        self.person = person
        self.rng = rng
        self.avoid = avoid
        self.profile = profile
        self.life = life
        """Draws of the profile's additions (the standard person's draws stay as they were)."""
        self.segments: list[Segment] = []
        self.last_bathroom = 0.0
        self.went_out = False

    def add(self, start: float, end: float, activity: Activity, extra_db: float = 0.0) -> float:
        if end > start:
            self.segments.append(Segment(self.day.at(start), self.day.at(end), activity,
                                         sound_extra=extra_db))
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
            extra = 0.0
            if activity is TV and self.profile.radio_db is not None and not evening \
                    and m < 12 * 60:
                activity, extra = RADIO, self.level(self.profile.radio_db, RADIO)
            elif activity is TV and self.profile.tv_db is not None:
                extra = self.level(self.profile.tv_db, TV)
            m = self.add(m, end if end - stop < 5 else stop, activity, extra)

    def level(self, absolute_db: tuple[float, float], activity: Activity) -> float:
        """``sound_extra`` that puts ``activity`` at a level drawn from ``absolute_db``."""
        return float(self.life.uniform(*absolute_db)) - self.person.room_db - activity.sound

    def _free(self, start: float, end: float) -> bool:
        return all(end <= a or start >= b for a, b in self.avoid)


def plan_routine(day: LocalDay, person: Person, rng: np.random.Generator, *,
                 avoid: list[tuple[float, float]], profile: Profile = STANDARD,
                 life: np.random.Generator | None = None) -> list[Segment]:
    """The person's normal day, ``[00:00, 24:00)`` local time, painted in order.

    ``avoid`` lists local-minute windows kept free of outings and family visits (the caregiver
    visit slot). ``life`` draws what the profile adds; a ``standard`` day draws nothing from it.
    """
    d = _Day(day, person, rng, avoid, profile,
             life if life is not None else np.random.default_rng(0))
    shift = profile.weekend_shift_min if day.date.weekday() >= 5 else 0.0
    wake_low, wake_high = profile.wake_clip_min
    bed_low, bed_high = profile.bedtime_clip_min
    wake = float(np.clip(person.wake_min + shift + rng.normal(0, 12), wake_low + shift,
                         wake_high + shift))
    bedtime = float(np.clip(person.bedtime_min + shift + rng.normal(0, 10), bed_low + shift,
                            bed_high + shift))
    late = profile.sleeps_after_midnight
    asleep = 0.0
    if late:
        # Up since yesterday: the evening goes on past midnight, then to bed.
        asleep = bedtime - _DAY_MIN
        wash = d.uniform(6, 12)
        d.fill(0.0, asleep - wash, evening=True)
        d.add(asleep - wash, asleep, BATHROOM)

    d.add(asleep, wake, SLEEP)
    for _ in range(min(2, int(rng.poisson(person.night_trips * 0.75)))):
        at = d.uniform(asleep + 30, wake - 40)
        d.add(at, at + d.uniform(4, 14), BATHROOM)
    if profile.insomnia_nights:
        _sleepless(d, asleep, wake)

    m = d.add(wake, wake + d.uniform(0, 12), LIE_AWAKE)
    m = d.add(m, m + d.uniform(8, 18), BATHROOM)
    d.last_bathroom = m

    breakfast = max(m + d.uniform(5, 25), 7 * 60 + d.uniform(0, 45))
    d.fill(m, breakfast, evening=False)
    m = d.add(breakfast, breakfast + d.uniform(20, 35), MEAL)

    lunch = max(d.uniform(11 * 60 + 30, 12 * 60 + 10), m + 45)
    if profile.morning_nap:
        nap = m + float(d.life.uniform(30, 60))
        length = float(d.life.uniform(30, 60))
        if nap + length < lunch - 20:
            d.fill(m, nap, evening=False)
            m = d.add(nap, nap + length, NAP)
    d.fill(m, lunch, evening=False)
    m = d.add(lunch, lunch + d.uniform(25, 40), MEAL)

    if rng.random() < person.nap_probability:
        nap = m + d.uniform(10, 40)
        d.fill(m, nap, evening=False)
        m = d.add(nap, nap + d.uniform(*profile.nap_length_min), NAP)

    dinner = max(d.uniform(17 * 60 + 15, 18 * 60), m + 20)
    d.fill(m, dinner, evening=False)
    m = d.add(dinner, dinner + d.uniform(25, 40), MEAL)

    wash = d.uniform(6, 12)
    if late:
        d.fill(m, _DAY_MIN, evening=True)
    else:
        d.fill(m, bedtime - wash, evening=True)
        d.add(bedtime - wash, bedtime, BATHROOM)
        d.add(bedtime, _DAY_MIN, SLEEP)
    if rng.random() < person.night_trips * 0.3 and bedtime + 60 < _DAY_MIN - 35:
        at = d.uniform(bedtime + 60, _DAY_MIN - 20)
        d.add(at, at + d.uniform(4, 12), BATHROOM)
    if profile.family_visit_days:
        _family_visit(d, wake, bedtime)
    return d.segments


def _sleepless(d: _Day, asleep: float, wake: float) -> None:
    """Insomnia: on some nights one or two spells awake, up for 20-45 minutes (bathroom, then
    sitting in the room, sometimes the TV), lying awake before and after, then asleep again."""
    life, profile = d.life, d.profile
    if life.random() >= profile.insomnia_nights:
        return
    at, latest = asleep + 60, wake - 60
    for _ in range(1 + int(life.random() < 0.4)):
        up = float(life.uniform(*profile.insomnia_spell_min))
        if latest - at < up + 30:
            return
        start = float(life.uniform(at, min(latest - up - 20, at + 180)))
        m = d.add(start, start + float(life.uniform(5, 15)), LIE_AWAKE)
        back = m + up
        m = d.add(m, m + float(life.uniform(3, 6)), BATHROOM)
        d.add(m, back, TV if life.random() < 0.3 else QUIET)
        at = d.add(back, back + float(life.uniform(5, 10)), LIE_AWAKE) + 60


def _family_visit(d: _Day, wake: float, bedtime: float) -> None:
    """Family for one to three hours on some days, never in the caregiver's slot: 3-5 people
    talking at 55-70 dB, a child shouting now and then (one-minute peaks)."""
    life, profile = d.life, d.profile
    if life.random() >= profile.family_visit_days:
        return
    length = float(life.uniform(60, 180))
    low = max(wake + 90, 10 * 60)
    high = min(bedtime - 60, 20 * 60) - length
    for _ in range(8):
        if high <= low:
            return
        start = float(life.uniform(low, high))
        end = start + length
        if not d._free(start - 30, end + 30):
            continue
        company = family(int(life.integers(profile.family_people[0],
                                           profile.family_people[1] + 1)))
        talk = d.level(profile.family_db, company)
        d.add(start, start + 2, DOOR)
        d.add(start + 2, end - 2, company, talk)
        d.add(end - 2, end, DOOR)
        for _ in range(int(life.poisson(profile.family_shouts_per_hour * length / 60))):
            at = float(life.uniform(start + 5, end - 6))
            d.add(at, at + 1, company, talk + float(life.uniform(8, 16)))
        return


class SleepTimes(NamedTuple):
    """When the person of a routine from :func:`plan_routine` sleeps (epoch ms)."""

    asleep_ms: int
    """Start of the night's sleep that ends this morning (the day's start, or after midnight
    for a night owl)."""
    wake_ms: int
    bedtime_ms: int
    """This evening's bedtime; the day's end when the person goes to bed after midnight."""


def sleep_times(segments: list[Segment], day: LocalDay) -> SleepTimes:
    """The person sleeps over ``[asleep, wake)`` and from ``bedtime`` to the day's end."""
    sleeps = [s for s in segments if s.activity is SLEEP]
    bedtime = sleeps[-1].start_ms if len(sleeps) > 1 else day.end_ms
    return SleepTimes(sleeps[0].start_ms, sleeps[0].end_ms, bedtime)
