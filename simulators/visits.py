"""Caregiver visits: badge check-in/out, the visit as sensors see it, and its recordings.

Each caregiver serves a fixed group of beds of one site, one slot per bed
(:data:`SLOT_STARTS`), so a caregiver is never in two homes at once and badge events of one
badge are in time order across beds. A normal visit is consistent: people=2 and voice
while it lasts, audio and infrared recordings covering it, and a services list that fits its
duration. Service anomalies break exactly one of these (see :mod:`simulators.incidents`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np

from devices import SERVICE_MINUTES, BadgeEvent, BadgeMethod, RecordingEvent
from simulators.activity import VISIT, VISIT_BATH, Segment
from simulators.clock import MINUTE_MS, LocalDay
from simulators.config import BedSpec
from simulators.events import Event, Role

SLOT_STARTS: Final = (8 * 60 + 30, 10 * 60 + 30, 14 * 60, 16 * 60)
"""Local start of each visit slot (minutes); a visit starts within 20 minutes of it and
lasts at most 100 minutes."""
SLOT_LENGTH_MIN: Final = 125.0

_METHODS: Final[tuple[BadgeMethod, ...]] = ("nfc", "qr", "app")

Variant = Literal["normal", "ghost", "short", "no_checkout"]


@dataclass(slots=True)
class VisitPlan:
    check_in_ms: int
    leave_ms: int
    check_out_ms: int | None
    segments: list[Segment] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def slot_window(spec: BedSpec) -> tuple[float, float]:
    """Local-minute window that this bed's visits fall in."""
    start = SLOT_STARTS[spec.visit_slot]
    return start, start + SLOT_LENGTH_MIN


def visit_id(spec: BedSpec, day: LocalDay) -> str:
    return f"v{day.date:%Y%m%d}-{spec.bed}"


def clip_sha256(clip: str, duration_s: float) -> str:
    """The hash a recorder would report: of synthetic bytes standing in for the recording."""
    synthetic = f"{clip}:{duration_s:.3f}".encode() * 64
    return hashlib.sha256(synthetic).hexdigest()


def _services(rng: np.random.Generator, count: int) -> tuple[str, ...]:
    names = list(SERVICE_MINUTES)
    picked = rng.choice(len(names), size=count, replace=False)
    return tuple(names[i] for i in sorted(picked))


def plan_visit(spec: BedSpec, day: LocalDay, rng: np.random.Generator,
               variant: Variant = "normal", *, start_ms: int | None = None) -> VisitPlan:
    """One visit in this bed's slot on ``day``.

    ``ghost``: check-in and check-out but nobody comes (no second person, no voice);
    ``short``: check-out minutes after check-in while the services list claims over an hour;
    ``no_checkout``: the visit happens but the badge never checks out.
    ``start_ms`` overrides the slot (an incident injected on demand).
    """
    slot_start, _ = slot_window(spec)
    drawn = day.at(slot_start + float(rng.uniform(0, 20))) + int(rng.integers(0, 60_000))
    start_ms = drawn if start_ms is None else start_ms
    if variant == "short":
        services = _services(rng, int(rng.integers(4, 7)))
        length_min = float(rng.uniform(3, 8))
    else:
        services = _services(rng, int(rng.integers(2, 4)))
        nominal = sum(SERVICE_MINUTES[s] for s in services)
        length_min = min(100.0, nominal * float(rng.uniform(1.0, 1.3)) + float(rng.uniform(3, 8)))
    leave_ms = start_ms + round(length_min * MINUTE_MS)
    plan = VisitPlan(check_in_ms=start_ms, leave_ms=leave_ms,
                     check_out_ms=None if variant == "no_checkout" else leave_ms)
    vid = visit_id(spec, day)
    method: BadgeMethod = (_METHODS[0] if rng.random() < 0.8
                           else _METHODS[int(rng.integers(0, 3))])
    if variant == "ghost":
        method = "app"  # checked in from a phone, away from the home
    plan.events.append(Event(start_ms, "badge", BadgeEvent(
        ts=0, seq=0, event="check_in", caregiver=spec.caregiver, visit=vid, method=method)))
    if plan.check_out_ms is not None:
        plan.events.append(Event(plan.check_out_ms, "badge", BadgeEvent(
            ts=0, seq=0, event="check_out", caregiver=spec.caregiver, visit=vid, method=method,
            services=services)))
    if variant != "ghost":
        plan.segments.append(Segment(start_ms, leave_ms, VISIT))
        if "bathing" in services and variant != "short":
            bath_start = start_ms + round(float(rng.uniform(5, 10)) * MINUTE_MS)
            plan.segments.append(Segment(bath_start, bath_start + 25 * MINUTE_MS, VISIT_BATH))
    recorders: tuple[tuple[Role, str], ...] = (("infrared", spec.infrared), ("audio", spec.audio))
    for role, device in recorders:
        began = start_ms + int(rng.integers(10_000, 60_000))
        stopped = max(began + 30_000, leave_ms - int(rng.integers(10_000, 60_000)))
        clip = f"{device}-{vid}"
        duration_s = round((stopped - began) / 1000, 1)
        plan.events.append(Event(began, role, RecordingEvent(
            ts=0, seq=0, event="recording_started", clip=clip)))
        plan.events.append(Event(stopped, role, RecordingEvent(
            ts=0, seq=0, event="recording_stopped", clip=clip, duration_s=duration_s,
            sha256=clip_sha256(clip, duration_s))))
    return plan
