"""Caregiver visits against the institution's plans, with service anomalies of every kind
injected, and the truth to score the gateway's service cross-checks with (issue #14).

A run is an ordinary offline simulation (:func:`simulators.stream.offline`) whose days are
planned first, so that each bed's visits and its caregiver's other homes are known, then
changed where an anomaly is injected and replayed into the traffic: the sensors, recorders and
badges then show the anomaly consistently (a caregiver who never came is not sensed, one who
left early is sensed only while there). Alongside come the plans as the institution's CSV (one
planned visit per bed and day, in the bed's visit slot), the check-ins and check-outs made
through the caregiver app instead of a badge (for the gateway's API or service log), and the
truth: every visit with the reason injected, or none for an honest one, and every planned
visit that never happened.

The kinds (:data:`SERVICE_KINDS`): ``nobody_sensed`` (checked in and out, nobody came),
``too_short`` (left after 15-35 % of the stay, checked out at the end), ``no_checkout``,
``no_recording`` (no recording, an item that must be recorded billed), ``outside_window``
(the plan's window two and a half hours later than the visit), ``unplanned`` (no plan that
day), ``overlap`` (checked in at the caregiver's next home 20 minutes before leaving the
previous one) and ``missed`` (no visit at all). Badge visit ids repeat across caregivers
(``v1102-0``: the day and the slot), as apps that number their own visits do. Besides, about
one honest visit in :data:`SUBSTITUTE_EVERY` is made by a substitute caregiver (``substitute``:
its visit is unplanned, the plan it stood in for missed). On a bed of a
couple (profile ``couple``) the third visit is a caregiver who never came and the fourth
planned one never happens, whatever the draw.

Days on which the simulated person has no visit anyway (about one in eight) are planned too,
so they are planned visits that never happened as well.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Final, Literal

import msgspec
import numpy as np

from devices import BadgeEvent
from simulators.activity import VISIT, VISIT_BATH, Segment
from simulators.clock import MINUTE_MS, LocalDay, local_date
from simulators.config import BedSpec, SimConfig
from simulators.events import Event
from simulators.plan import DayPlan
from simulators.stream import Simulation, offline
from simulators.visits import SLOT_LENGTH_MIN, SLOT_STARTS

SERVICE_KINDS: Final = ("nobody_sensed", "too_short", "no_checkout", "no_recording",
                         "outside_window", "unplanned", "overlap", "missed")
SUBSTITUTE_EVERY: Final = 37
"""One honest visit in about this many (by day and bed, not drawn: the other kinds' draws stay
as they were) is made by a substitute caregiver instead of the planned one."""
INJECTED_KINDS: Final = (*SERVICE_KINDS, "substitute")
EXPECTED_REASON: Final = {"substitute": "unplanned"}
"""The reason a kind should be flagged with, where it is not the kind's own name (a
substitute's visit is unplanned for them; the plan they stood in for is missed)."""
RECORDED: Final = ("bathing", "medication", "rehab")
"""Items the default catalogue wants recorded."""
WINDOW_SHIFT_MIN: Final = 150.0
EARLY_MAX_MIN: Final = 150.0
"""An overlapping check-in comes at most this long before its window (the gateway matches a
visit to a plan within three hours)."""
Path = Literal["badge", "app"]


@dataclass(frozen=True, slots=True)
class VisitTruth:
    """One visit that happened (a check-in at least), honest when ``reason`` is None."""

    site: str
    bed: str
    caregiver: str
    visit: str
    check_in_ms: int
    path: Path
    reason: str | None
    couple: bool


@dataclass(frozen=True, slots=True)
class MissedTruth:
    """A planned visit that never happened; ``injected`` False: the person had no visit that
    day anyway."""

    site: str
    bed: str
    plan: str
    start_ms: int
    injected: bool
    couple: bool


@dataclass(frozen=True, slots=True)
class AppEvent:
    """A check-in or check-out made through the caregiver app (the API), not a badge."""

    at: int
    site: str
    bed: str
    caregiver: str
    visit: str
    event: Literal["check_in", "check_out"]
    services: tuple[str, ...] | None = None


@dataclass(slots=True)
class ServiceRun:
    simulation: Simulation
    plans_csv: str
    visits: list[VisitTruth] = field(default_factory=list)
    missed: list[MissedTruth] = field(default_factory=list)
    app_events: list[AppEvent] = field(default_factory=list)


@dataclass(slots=True)
class _Visit:
    spec: BedSpec
    plan: DayPlan
    check_in: Event
    check_out: Event | None
    leave_ms: int
    slot: int
    kind: str | None = None
    path: Path = "badge"
    partner: _Visit | None = None
    """For an overlap: the caregiver's honest visit just before, still under way at the
    check-in."""


class _Replanned:
    """Stands in for a bed's planner: the days planned beforehand, changed, in order."""

    def __init__(self, plans: dict[int, DayPlan]) -> None:
        self.plans = plans

    def plan(self, day: LocalDay) -> DayPlan:
        return self.plans[day.number]


def service_simulation(config: SimConfig, *, start: dt.date, days: float,
                       anomaly_share: float = 0.15, app_share: float = 0.2,
                       seed: int = 0) -> ServiceRun:
    """A run of ``config`` over ``days`` from ``start`` with plans and injected anomalies: a
    visit is an anomaly with probability ``anomaly_share`` (the kinds in turn), and is made
    through the app with probability ``app_share``. Iterate ``run.simulation.messages()``
    once, as for any simulation."""
    simulation = offline(config, start=start, days=days)
    rng = np.random.default_rng([seed, config.seed, 0x5E21])
    visits: list[_Visit] = []
    planned_days: list[tuple[BedSpec, DayPlan]] = []
    for bed in simulation.beds:
        traffic = bed.traffic
        assert traffic.end_ms is not None
        stored: dict[int, DayPlan] = {}
        day = LocalDay.of(local_date(traffic.start_ms, traffic.spec.timezone),
                          traffic.spec.timezone, 0).previous()
        while day.start_ms < traffic.end_ms:
            plan = traffic.planner.plan(day)
            stored[day.number] = plan
            if day.number >= 0:
                planned_days.append((traffic.spec, plan))
                found = _visit_of(traffic.spec, plan)
                if found is not None:
                    visits.append(found)
            day = day.next()
        traffic.planner = _Replanned(stored)  # type: ignore[assignment]
    couples = {spec.bed for spec in (b.traffic.spec for b in simulation.beds)
               if config.profile(spec.index).name == "couple"}
    _choose(visits, rng, anomaly_share, app_share, couples)
    _substitute(visits, couples)
    run = ServiceRun(simulation=simulation, plans_csv="")
    rows = ["site,bed,plan,caregiver,date,start,end,services"]
    taken = {(v.spec.bed, v.plan.day.number): v for v in visits}
    for spec, plan in planned_days:
        visit = taken.get((spec.bed, plan.day.number))
        plan_id = f"p{plan.day.date:%Y%m%d}-{spec.bed}"
        slot_start = float(SLOT_STARTS[spec.visit_slot])
        if visit is not None and visit.kind == "outside_window":
            slot_start += WINDOW_SHIFT_MIN
        services: tuple[str, ...] = ("medication",)
        if visit is not None and visit.check_out is not None:
            payload = visit.check_out.payload
            assert isinstance(payload, BadgeEvent)
            services = payload.services or services
        if visit is None or visit.kind != "unplanned":
            rows.append(f"{spec.site},{spec.bed},{plan_id},{spec.caregiver},"
                        f"{plan.day.date.isoformat()},{_hhmm(slot_start)},"
                        f"{_hhmm(slot_start + SLOT_LENGTH_MIN)},{';'.join(services)}")
        if visit is None or visit.kind in ("missed", "substitute"):
            run.missed.append(MissedTruth(site=spec.site, bed=spec.bed, plan=plan_id,
                                          start_ms=plan.day.at(slot_start),
                                          injected=visit is not None,
                                          couple=spec.bed in couples))
    for visit in visits:
        _apply(visit, rng)
        if visit.kind == "missed":
            continue
        payload = visit.check_in.payload
        assert isinstance(payload, BadgeEvent)
        visit_id = payload.visit
        if visit.path == "app":
            made = list(_to_app(visit))
            run.app_events.extend(made)
            visit_id = made[0].visit
        run.visits.append(VisitTruth(
            site=visit.spec.site, bed=visit.spec.bed, caregiver=payload.caregiver,
            visit=visit_id, check_in_ms=visit.check_in.ms, path=visit.path,
            reason=visit.kind, couple=visit.spec.bed in couples))
    for _, plan in planned_days:
        plan.events.sort(key=lambda e: e.ms)
    run.app_events.sort(key=lambda e: (e.at, e.event != "check_in"))
    run.plans_csv = "\n".join(rows) + "\n"
    return run


def _hhmm(minutes: float) -> str:
    whole = round(minutes)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def _visit_of(spec: BedSpec, plan: DayPlan) -> _Visit | None:
    badges = [e for e in plan.events if e.role == "badge"]
    check_in = next((e for e in badges if isinstance(e.payload, BadgeEvent)
                     and e.payload.event == "check_in"), None)
    if check_in is None:
        return None
    check_out = next((e for e in badges if isinstance(e.payload, BadgeEvent)
                      and e.payload.event == "check_out"), None)
    leave = max((s.end_ms for s in plan.overlays if s.activity is VISIT), default=None)
    if leave is None:
        return None
    visit = _Visit(spec=spec, plan=plan, check_in=check_in, check_out=check_out, leave_ms=leave,
                   slot=spec.visit_slot)
    _rename(visit, f"v{plan.day.date:%m%d}-{spec.visit_slot}")
    return visit


def _rename(visit: _Visit, visit_id: str) -> None:
    """Give the visit's badge events ``visit_id``."""
    for attribute in ("check_in", "check_out"):
        event = getattr(visit, attribute)
        if event is None:
            continue
        renamed = replace(event, payload=msgspec.structs.replace(event.payload, visit=visit_id))
        visit.plan.events[visit.plan.events.index(event)] = renamed
        setattr(visit, attribute, renamed)


def _choose(visits: list[_Visit], rng: np.random.Generator, anomaly_share: float,
            app_share: float, couples: set[str]) -> None:
    """Each visit's kind (None: honest) and path; the kinds in turn, overlap only where the
    caregiver's previous home that day had an honest visit."""
    by_caregiver_day: dict[tuple[str, int], list[_Visit]] = {}
    for visit in visits:
        by_caregiver_day.setdefault((visit.spec.caregiver, visit.plan.day.number),
                                    []).append(visit)
    turn = 0
    for visit in sorted(visits, key=lambda v: (v.plan.day.number, v.spec.caregiver, v.slot)):
        visit.path = "app" if rng.random() < app_share else "badge"
        if visit.spec.bed in couples and visit.plan.day.number in (2, 3):
            visit.kind = "nobody_sensed" if visit.plan.day.number == 2 else "missed"
            continue
        if rng.random() >= anomaly_share:
            continue
        for _ in range(len(SERVICE_KINDS)):
            kind = SERVICE_KINDS[turn % len(SERVICE_KINDS)]
            turn += 1
            if kind == "overlap" and not _has_partner(visit, by_caregiver_day):
                continue
            if kind == "too_short" and visit.leave_ms - visit.check_in.ms < 30 * MINUTE_MS:
                continue
            visit.kind = kind
            break


def _substitute(visits: list[_Visit], couples: set[str]) -> None:
    """Make about one honest visit in :data:`SUBSTITUTE_EVERY` a substitute's (none that an
    overlap was built on, none at a couple's)."""
    partners = {id(v.partner) for v in visits if v.partner is not None}
    for visit in visits:
        day = visit.plan.day.number
        if (visit.kind is None and id(visit) not in partners and visit.spec.bed not in couples
                and day >= 1 and (day * 7 + visit.spec.index) % SUBSTITUTE_EVERY == 0):
            visit.kind = "substitute"


def _partner(visit: _Visit, by_caregiver_day: dict[tuple[str, int], list[_Visit]]
             ) -> _Visit | None:
    """The caregiver's visit just before this one that day."""
    same_day = by_caregiver_day[(visit.spec.caregiver, visit.plan.day.number)]
    earlier = [v for v in same_day if v.slot == visit.slot - 1]
    return earlier[0] if earlier else None


def _has_partner(visit: _Visit, by_caregiver_day: dict[tuple[str, int], list[_Visit]]
                 ) -> bool:
    partner = _partner(visit, by_caregiver_day)
    if partner is None or partner.kind is not None or partner.check_out is None:
        return False
    # Checked in from the road while still at the previous home, but not so early that the
    # check-in is no longer near its own plan's window.
    window = visit.plan.day.at(SLOT_STARTS[visit.slot])
    if _early_check_in(partner) < window - EARLY_MAX_MIN * MINUTE_MS:
        return False
    visit.partner = partner
    return True


def _early_check_in(partner: _Visit) -> int:
    return max(partner.check_in.ms + 5 * MINUTE_MS, partner.leave_ms - 20 * MINUTE_MS)


def _apply(visit: _Visit, rng: np.random.Generator) -> None:
    plan, kind = visit.plan, visit.kind
    start, leave = visit.check_in.ms, visit.leave_ms
    if kind in ("nobody_sensed", "missed"):
        plan.overlays = [s for s in plan.overlays if not _of_visit(s, start, leave)]
        _drop_recordings(plan, start, leave)
        if kind == "missed":
            plan.events = [e for e in plan.events if e.role != "badge"]
            return
    elif kind == "too_short":
        cut = start + round((leave - start) * float(rng.uniform(0.15, 0.35)))
        kept: list[Segment] = []
        for s in plan.overlays:
            if _of_visit(s, start, leave):
                if s.start_ms < cut:
                    kept.append(Segment(s.start_ms, min(s.end_ms, cut), s.activity))
            else:
                kept.append(s)
        plan.overlays = kept
    elif kind == "no_checkout" and visit.check_out is not None:
        plan.events.remove(visit.check_out)
        visit.check_out = None
    elif kind == "no_recording":
        _drop_recordings(plan, start, leave)
        if visit.check_out is not None:
            payload = visit.check_out.payload
            assert isinstance(payload, BadgeEvent)
            services = tuple(payload.services or ())
            if not set(services) & set(RECORDED):
                billed = replace(visit.check_out, payload=msgspec.structs.replace(
                    payload, services=(*services, "medication")))
                plan.events[plan.events.index(visit.check_out)] = billed
                visit.check_out = billed
    elif kind == "substitute":  # a colleague with no plan at this bed comes instead
        for attribute in ("check_in", "check_out"):
            event = getattr(visit, attribute)
            if event is None:
                continue
            renamed = replace(event, payload=msgspec.structs.replace(
                event.payload, caregiver=f"sub-{visit.spec.bed}"))
            plan.events[plan.events.index(event)] = renamed
            setattr(visit, attribute, renamed)
    elif kind == "overlap":
        partner = visit.partner
        assert partner is not None
        early = replace(visit.check_in, ms=_early_check_in(partner))
        plan.events[plan.events.index(visit.check_in)] = early
        visit.check_in = early


def _of_visit(segment: Segment, start: int, leave: int) -> bool:
    return (segment.activity in (VISIT, VISIT_BATH) and segment.start_ms >= start - MINUTE_MS
            and segment.end_ms <= leave + MINUTE_MS)


def _drop_recordings(plan: DayPlan, start: int, leave: int) -> None:
    plan.events = [e for e in plan.events
                   if not (e.role in ("infrared", "audio") and start <= e.ms <= leave)]


def _to_app(visit: _Visit) -> Iterator[AppEvent]:
    """Take the visit's badge events out of the traffic: the app sends them instead."""
    spec = visit.spec
    app_id = f"a{visit.plan.day.date:%m%d}-{spec.bed}"
    for event in (visit.check_in, visit.check_out):
        if event is None:
            continue
        payload = event.payload
        assert isinstance(payload, BadgeEvent)
        visit.plan.events.remove(event)
        yield AppEvent(at=event.ms, site=spec.site, bed=spec.bed, caregiver=payload.caregiver,
                       visit=app_id, event=payload.event,
                       services=payload.services if payload.event == "check_out" else None)
