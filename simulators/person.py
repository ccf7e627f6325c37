"""The person in a bed: baselines that differ from bed to bed but stay fixed for that bed.

A detector that learns "normal for this person" needs persons that differ: one sleeps at
20:50 with a resting heart rate of 56, another at 21:40 with 64. Normal traffic keeps every
vital sign inside the person's own range; only a ``vital_signs`` incident leaves it. A
profile (:mod:`simulators.profiles`) then fits the person to its kind of life.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True, slots=True)
class Person:
    heart_rate_low: float
    heart_rate_high: float
    breathing_low: float
    breathing_high: float
    bedtime_min: float
    """Usual local bedtime, minutes after midnight (for the ``standard`` profile always before
    22:00, the night start; after midnight, 1440 or more, for a night owl)."""
    wake_min: float
    """Usual local wake time (for the ``standard`` profile always after 06:00, the night
    end)."""
    room_db: float
    """Quiet-room sound level; TV, talk and meals sit a fixed offset above it."""
    activity: float
    """Multiplier on movement counts: a frail person moves less than a mobile one."""
    mobile: bool
    """Whether the person sometimes goes out (infrared sees nobody)."""
    tv_lover: float
    """Share of free time spent with the TV on."""
    nap_probability: float
    night_trips: float
    """Expected bathroom trips per night (each under 15 minutes)."""
    visit_probability: float
    """Share of days with a caregiver visit."""

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Person:
        hr_low = float(rng.uniform(55.0, 61.0))
        br_low = float(rng.uniform(12.0, 13.5))
        return cls(
            heart_rate_low=hr_low,
            heart_rate_high=float(min(80.0, hr_low + rng.uniform(14.0, 20.0))),
            breathing_low=br_low,
            breathing_high=float(min(20.0, br_low + rng.uniform(4.5, 6.5))),
            bedtime_min=float(rng.uniform(20 * 60 + 50, 21 * 60 + 30)),
            wake_min=float(rng.uniform(6 * 60 + 25, 7 * 60 + 10)),
            room_db=float(rng.uniform(30.0, 37.0)),
            activity=float(rng.uniform(0.7, 1.3)),
            mobile=bool(rng.random() < 0.6),
            tv_lover=float(rng.uniform(0.2, 0.6)),
            nap_probability=float(rng.uniform(0.4, 0.9)),
            night_trips=float(rng.uniform(0.3, 1.6)),
            visit_probability=float(rng.uniform(0.75, 1.0)),
        )

    @property
    def heart_rate_mid(self) -> float:
        return (self.heart_rate_low + self.heart_rate_high) / 2

    @property
    def breathing_mid(self) -> float:
        return (self.breathing_low + self.breathing_high) / 2
