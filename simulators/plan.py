"""Day plans for one bed: routine, caregiver visit, incidents and their labels.

Days are planned in order and each draws from its own random stream seeded by
``(seed, bed, day)``, so a run is reproducible, a day's routine does not change when the
incident rate does, and a live run can plan days lazily for as long as it runs.

The bed's profile (:mod:`simulators.profiles`) shapes the routine and adds days away, device
replacements and a spouse (:mod:`simulators.household`); incidents and visits keep clear of
the days away and of the swaps, and a spouse is out while an incident needs the person alone.

Incident types are dealt from one :class:`Deck` shared by all beds: the ``j``-th incident of
bed ``i`` gets deck slot ``j * beds + i``, so a run with ten incidents in total already holds
every type once, and a 50-bed week at the default rate holds each type seven times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np

from devices.labels import ALERT_TYPES, Label
from simulators.activity import SLEEP, SPOUSE_OUT, Segment
from simulators.clock import DAY_MS, MINUTE_MS, LocalDay
from simulators.config import BedSpec, SimConfig
from simulators.events import DeviceEffect, Event
from simulators.household import away_segments, away_windows, spouse_track
from simulators.incidents import Context, Incident, place
from simulators.person import Person
from simulators.routine import plan_routine, sleep_times
from simulators.visits import plan_visit, slot_window

_MAX_RETRIES = 3
"""Days an incident that found no room is carried over before it is dropped."""
_ALONE: Final = frozenset({"inactivity", "fall"})
"""Incidents during which a spouse is out: someone lying still or on the floor is alone."""
_LIFE_STREAM: Final = 7
_SPOUSE_STREAM: Final = 8


@dataclass(slots=True)
class DayPlan:
    day: LocalDay
    routine: list[Segment]
    overlays: list[Segment] = field(default_factory=list)
    """Visit and incident segments, painted over every day's routine."""
    companion: list[Segment] = field(default_factory=list)
    """A spouse's own moves (``SPOUSE_UP``, ``SPOUSE_OUT``); empty for a person living
    alone."""
    events: list[Event] = field(default_factory=list)
    effects: list[DeviceEffect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    busy: list[tuple[int, int]] = field(default_factory=list)
    last_ms: int = 0
    """Nothing of this plan happens at or after this moment."""


class Deck:
    """Incident types in deck order: every run of ten consecutive slots starting at a
    multiple of ten holds each type once, in an order shuffled per ten and per seed (so a
    bed does not get the same type every time when the bed count is a multiple of ten)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._orders: dict[int, tuple[str, ...]] = {}

    def __getitem__(self, slot: int) -> str:
        block, position = divmod(slot, len(ALERT_TYPES))
        order = self._orders.get(block)
        if order is None:
            rng = np.random.default_rng([self.seed, 0xDEC, block])
            order = tuple(ALERT_TYPES[i] for i in rng.permutation(len(ALERT_TYPES)))
            self._orders[block] = order
        return order[position]


def day_rng(seed: int, bed_index: int, stream: int, day_number: int) -> np.random.Generator:
    return np.random.default_rng([seed, bed_index, stream, day_number + 1_000_000])


class BedPlanner:
    """Plans one bed's days in order from ``first_day``.

    Incidents start no earlier than ``earliest_ms`` (the run start; a live run adds a short
    lead) and no later than ``end_ms`` when given; label ends are cut at ``end_ms``. Incidents
    and visits keep clear of ``blocked`` windows (device replacements).
    """

    def __init__(self, *, spec: BedSpec, person: Person, config: SimConfig,
                 deck: Deck, earliest_ms: int, end_ms: int | None,
                 blocked: tuple[tuple[int, int], ...] = ()) -> None:
        self.spec = spec
        self.person = person
        self.config = config
        self.profile = config.profile(spec.index)
        self.blocked = blocked
        self.deck = deck
        self.earliest_ms = earliest_ms
        self.end_ms = end_ms
        self._accumulated = float(np.random.default_rng([config.seed, spec.index, 4]).random())
        self._dealt = 0
        self._pending: list[tuple[str, int]] = []
        self._forced = [f.type for f in config.forced if f.bed == spec.bed]
        self._carried: list[tuple[int, int]] = []

    def plan(self, day: LocalDay) -> DayPlan:
        seed, index, profile = self.config.seed, self.spec.index, self.profile
        slot = slot_window(self.spec)
        routine = plan_routine(day, self.person, day_rng(seed, index, 1, day.number),
                               avoid=[slot], profile=profile,
                               life=day_rng(seed, index, _LIFE_STREAM, day.number))
        times = sleep_times(routine, day)
        away = away_windows(profile, seed, index, day)
        routine.extend(away_segments(away, day))
        plan = DayPlan(day=day, routine=routine, last_ms=day.end_ms)
        if profile.household == 2:
            plan.companion = spouse_track(
                profile, day, day_rng(seed, index, _SPOUSE_STREAM, day.number), times,
                [(day.at(slot[0]), day.at(slot[1]))])
        busy = [w for w in self._carried if w[1] > day.start_ms]
        # Days away, cut to this day (each day adds its own part); device swaps up to a day
        # ahead, so that an incident running past midnight keeps clear of them too.
        busy.extend((max(a, day.start_ms), min(b, day.end_ms)) for a, b in away)
        busy.extend(w for w in self.blocked
                    if w[0] < day.end_ms + DAY_MS and w[1] > day.start_ms and w not in busy)
        if profile.insomnia_nights:
            # Night incidents keep clear of sleepless spells, so a label's start is the moment
            # the person left a bed they had been asleep in.
            busy.extend((s.start_ms, s.end_ms) for s in routine if s.activity is not SLEEP
                        and s.start_ms < times.wake_ms and s.end_ms > times.asleep_ms)
        ctx = Context(day=day, spec=self.spec, telemetry=self.config.telemetry,
                      rng=day_rng(seed, index, 3, day.number), wake_ms=times.wake_ms,
                      bedtime_ms=times.bedtime_ms,
                      earliest_ms=max(self.earliest_ms, day.start_ms), asap=True, busy=busy,
                      asleep_ms=times.asleep_ms if times.asleep_ms > day.start_ms else None)
        has_anomaly_visit = False
        if day.end_ms > self.earliest_ms and (self.end_ms is None or day.start_ms < self.end_ms):
            for type_ in list(self._forced):
                incident = place(type_, ctx)
                if incident is not None:
                    self._forced.remove(type_)
                    has_anomaly_visit |= self._add(plan, ctx, incident)
            ctx.asap = False
            for type_, tries in self._deal(day):
                incident = place(type_, ctx)
                if incident is not None:
                    has_anomaly_visit |= self._add(plan, ctx, incident)
                elif tries < _MAX_RETRIES:
                    self._pending.append((type_, tries + 1))
        visit_rng = day_rng(seed, index, 2, day.number)
        wanted = visit_rng.random() < self.person.visit_probability
        visit = plan_visit(self.spec, day, visit_rng)
        end_ok = self.end_ms is None or visit.leave_ms < self.end_ms
        if (wanted and not has_anomaly_visit and visit.check_in_ms >= self.earliest_ms and end_ok
                and ctx.free(visit.check_in_ms, visit.leave_ms + 30 * MINUTE_MS)):
            plan.overlays[:0] = visit.segments
            plan.events.extend(visit.events)
            busy.append((visit.check_in_ms, visit.leave_ms))
        plan.events.sort(key=lambda e: e.ms)
        plan.busy = busy
        plan.last_ms = max([day.end_ms, *(b for _, b in busy),
                            *(s.end_ms for s in plan.overlays), *(e.end_ms for e in plan.effects),
                            *(e.ms + 1 for e in plan.events)])
        self._carried = [w for w in busy if w[1] > day.end_ms]
        return plan

    def _deal(self, day: LocalDay) -> list[tuple[str, int]]:
        share = (day.end_ms - max(day.start_ms, self.earliest_ms)) / (day.end_ms - day.start_ms)
        self._accumulated += self.config.incidents_per_bed_day * min(1.0, share)
        count = int(self._accumulated)
        self._accumulated -= count
        dealt = self._pending
        self._pending = []
        for _ in range(count):
            slot = self._dealt * self.config.beds + self.spec.index
            dealt.append((self.deck[slot], 0))
            self._dealt += 1
        return dealt

    def _add(self, plan: DayPlan, ctx: Context, incident: Incident) -> bool:
        label = incident.label
        if self.end_ms is not None:
            if label.start >= self.end_ms:
                return False
            if label.end > self.end_ms:
                label = Label(site=label.site, bed=label.bed, type=label.type,
                              start=label.start, end=self.end_ms)
        ctx.busy.append(incident.busy)
        if self.profile.household == 2 and label.type in _ALONE:
            plan.companion.append(Segment(*incident.busy, SPOUSE_OUT))
        plan.overlays.extend(incident.segments)
        plan.events.extend(incident.events)
        plan.effects.extend(incident.effects)
        plan.labels.append(label)
        return incident.visit is not None
