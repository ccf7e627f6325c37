"""Person profiles: the kinds of lives a detector has to live with, as data.

A profile says how one kind of person lives: when they sleep and wake (and how much later at
weekends), their naps, night trips and sleepless spells, how loud and how long their TV or
radio is, how often family comes and how loud it gets, whether a spouse lives with them,
whether they go away for days, and whether their devices get replaced. Every bed has one
profile (``SimConfig.profiles``, assigned to the beds in turn); the person of the bed is drawn
as before and then fitted to it (:meth:`Profile.fit`).

``standard`` is the simulator's original person (in bed 20:35-21:50, up 06:12-07:50, short
night trips, TV 15 dB over the quiet room, only the caregiver visits): a run of standard beds
is byte-identical to one made before profiles existed. Every other profile is ordinary life
that today's fixed-window detectors mistake for incidents (issue #12), so no profile ever adds
a ground-truth label; incidents are placed and labelled as for everyone else. Everything a
profile does stays within the device contract.

>>> parse_profiles("diverse") == tuple(PROFILES)
True
>>> parse_profiles("couple, insomnia")
('couple', 'insomnia')
>>> PROFILES["couple"].household, PROFILES["standard"].household
(2, 1)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

import numpy as np

from devices.errors import ConfigError
from simulators.person import Person

DAY_MIN: Final = 24 * 60


@dataclass(frozen=True, kw_only=True, slots=True)
class Profile:
    """One kind of life. Times are local minutes after midnight; a bedtime of 1440 or more is
    after midnight (a night owl), and then every bedtime of the profile is."""

    name: str
    summary: str
    wake_min: tuple[float, float] | None = None
    """Range the person's usual wake time is drawn from (None: the standard person's)."""
    wake_clip_min: tuple[float, float] = (6 * 60 + 12, 7 * 60 + 50)
    """A day's wake time (usual time +- about 12 minutes) stays inside this."""
    bedtime_min: tuple[float, float] | None = None
    bedtime_clip_min: tuple[float, float] = (20 * 60 + 35, 21 * 60 + 50)
    weekend_shift_min: float = 0.0
    """Saturday and Sunday: wake and bedtime this much later."""
    morning_nap: bool = False
    """A second nap, in the morning (the afternoon one follows ``nap_probability``)."""
    nap_probability: float | None = None
    nap_length_min: tuple[float, float] = (30.0, 90.0)
    night_trips: float | None = None
    """Expected bathroom trips a night (None: the person's own)."""
    asleep_motion: float | None = None
    """Movements a minute the infrared sees while the person sleeps or naps (None: the
    standard 0.15-0.3 scaled by the person's activity; a still sleeper's sensor shows 0 for
    an hour and more)."""
    tv_share: float | None = None
    """Share of free time with the TV on (None: the person's own)."""
    tv_db: tuple[float, float] | None = None
    """Absolute TV level, dB (None: 15 dB over the person's quiet room)."""
    radio_db: tuple[float, float] | None = None
    """A radio instead of the TV in the morning, at this absolute level."""
    family_visit_days: float = 0.0
    """Share of days on which family visits (one to three hours, never in the caregiver's
    slot)."""
    family_people: tuple[int, int] = (3, 5)
    """People in the room during a family visit, the resident included."""
    family_db: tuple[float, float] = (55.0, 70.0)
    family_shouts_per_hour: float = 0.0
    """A child shouting now and then: one-minute peaks 8-16 dB over the talk."""
    household: int = 1
    """2: a couple; the spouse is home with the resident (people 2), moves at night and is
    there when the caregiver does not come, and is out during falls and inactivity."""
    spouse_night_trips: float = 0.0
    spouse_outing_days: float = 0.0
    away_every_days: int = 0
    """Once in every this many days, nobody is home for ``away_days`` days (0: never)."""
    away_days: tuple[int, int] = (1, 3)
    replacements: int = 0
    """Devices replaced (one each of this many kinds) in the first days of the run."""
    insomnia_nights: float = 0.0
    """Share of nights with one or two sleepless spells out of bed."""
    insomnia_spell_min: tuple[float, float] = (20.0, 45.0)

    def __post_init__(self) -> None:
        late = self.bedtime_clip_min[0] >= DAY_MIN
        top = self.bedtime_clip_min[1] + self.weekend_shift_min
        if late and self.bedtime_clip_min[0] < DAY_MIN + 5:
            raise ConfigError(f"profile {self.name}: a bedtime after midnight starts at 00:05")
        if not late and top > DAY_MIN - 5:
            raise ConfigError(f"profile {self.name}: bedtimes stay before or after midnight")
        if self.household not in (1, 2):
            raise ConfigError(f"profile {self.name}: household is 1 or 2")

    @property
    def sleeps_after_midnight(self) -> bool:
        return self.bedtime_clip_min[0] >= DAY_MIN

    def fit(self, person: Person, rng: np.random.Generator) -> Person:
        """``person`` living this profile's life (unchanged for ``standard``)."""
        if self.wake_min is not None:
            person = dataclasses.replace(person, wake_min=float(rng.uniform(*self.wake_min)))
        if self.bedtime_min is not None:
            person = dataclasses.replace(person,
                                         bedtime_min=float(rng.uniform(*self.bedtime_min)))
        if self.nap_probability is not None:
            person = dataclasses.replace(person, nap_probability=self.nap_probability)
        if self.night_trips is not None:
            person = dataclasses.replace(person, night_trips=self.night_trips)
        if self.tv_share is not None:
            person = dataclasses.replace(person, tv_lover=self.tv_share)
        return person


STANDARD: Final = Profile(
    name="standard",
    summary="in bed 20:35-21:50, up 06:12-07:50, short night trips, TV 15 dB over the quiet "
            "room, only the caregiver visits")

PROFILES: Final[dict[str, Profile]] = {p.name: p for p in (
    STANDARD,
    Profile(name="early_riser", summary="up at 04:45-06:00 every day, in bed by 19:45-21:00",
            wake_min=(4 * 60 + 50, 5 * 60 + 30), wake_clip_min=(4 * 60 + 45, 6 * 60),
            bedtime_min=(20 * 60, 20 * 60 + 40), bedtime_clip_min=(19 * 60 + 45, 21 * 60)),
    Profile(name="late_sleeper", summary="in bed 22:20-23:25, up 08:20-10:15, half an hour "
            "later at weekends; sleeps still (the infrared sees a movement about once an hour)",
            asleep_motion=0.02,
            wake_min=(8 * 60 + 45, 9 * 60 + 30), wake_clip_min=(8 * 60 + 20, 10 * 60 + 15),
            bedtime_min=(22 * 60 + 40, 23 * 60 + 10),
            bedtime_clip_min=(22 * 60 + 20, 23 * 60 + 25), weekend_shift_min=30.0),
    Profile(name="napper", summary="a morning nap and a long afternoon nap (1-2.5 h) in bed "
            "every day, sleeping still",
            morning_nap=True, asleep_motion=0.02, nap_probability=1.0,
            nap_length_min=(60.0, 150.0)),
    Profile(name="night_owl", summary="TV for hours at 50-66 dB, in bed 00:05-01:45, up "
            "08:00-10:00",
            wake_min=(8 * 60 + 30, 9 * 60 + 15), wake_clip_min=(8 * 60, 10 * 60),
            bedtime_min=(DAY_MIN + 20, DAY_MIN + 80),
            bedtime_clip_min=(DAY_MIN + 5, DAY_MIN + 105), weekend_shift_min=20.0,
            tv_share=0.6, tv_db=(50.0, 66.0)),
    Profile(name="hard_of_hearing", summary="TV for hours at 62-76 dB, radio in the morning "
            "at 58-68 dB",
            tv_share=0.65, tv_db=(62.0, 76.0), radio_db=(58.0, 68.0)),
    Profile(name="frequent_visitors", summary="family on most days: 3-5 people talking at "
            "55-70 dB for 1-3 hours, a child shouting now and then",
            family_visit_days=0.6, family_shouts_per_hour=1.5),
    Profile(name="couple", summary="lives with a spouse (people 2), who gets up at night, "
            "sometimes goes out alone, and is home when the caregiver does not come",
            household=2, spouse_night_trips=1.5, spouse_outing_days=0.3),
    Profile(name="away_days", summary="away from home for 1-3 days once a week (hospital, "
            "family): no presence, no motion, nobody in bed, then back; TV at 50-66 dB",
            away_every_days=7, tv_db=(50.0, 66.0)),
    Profile(name="device_replacement", summary="two devices replaced in the first days: the "
            "old one says offline, a new id of the same kind starts at seq 1 about 30 min "
            "later",
            replacements=2),
    Profile(name="insomnia", summary="on most nights up for 20-45 minutes, once or twice, "
            "then back to bed",
            insomnia_nights=0.6),
)}
"""Every profile, ``standard`` first."""

MIXES: Final[dict[str, tuple[str, ...]]] = {"diverse": tuple(PROFILES)}
"""Names for populations: ``diverse`` is every profile, in turn over the beds."""


def parse_profiles(text: str) -> tuple[str, ...]:
    """Profile names from ``standard``, ``diverse`` or a comma list of profiles and mixes."""
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if name in MIXES:
            names.extend(MIXES[name])
        elif name in PROFILES:
            names.append(name)
        elif name:
            known = ", ".join([*MIXES, *PROFILES])
            raise ConfigError(f"profiles: unknown profile {name!r}; one of {known}")
    if not names:
        raise ConfigError("profiles: name at least one profile")
    return tuple(names)
