"""Scripted incidents: what happens, how the sensors show it, and the ground-truth label.

Each incident type has one placer that picks a time in its plausible window (falls while
awake, night bed-exits at night, inactivity in daytime...), keeps clear of other incidents
and visits, and returns the activity overlay, device events and device conditions that make
it visible, plus its :class:`~devices.labels.Label`. Incidents are built to be
unambiguous: a night fall is always recovered quickly (so it is not also a night bed-exit),
a day fall without recovery is found within 80 minutes (so it is not also inactivity),
vital signs leave the person's range by far and for at least 15 minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from devices import ButtonEvent, FallEvent
from devices.labels import Label
from devices.schemas import ButtonAction, FallAction, Posture
from simulators.activity import (
    ACTIVE,
    AWAY,
    BATHROOM,
    DISTRESS,
    DOOR,
    HELP,
    LIE_AWAKE,
    ON_BATHROOM_FLOOR,
    ON_FLOOR,
    QUIET,
    SLEEP,
    STILL,
    UNWELL,
    WANDER,
    Segment,
)
from simulators.clock import HOUR_MS, MINUTE_MS, LocalDay
from simulators.config import BedSpec, TelemetryConfig
from simulators.events import BATTERY_ROLES, SENSOR_ROLES, DeviceEffect, Event, heartbeat_s
from simulators.visits import Variant, VisitPlan, plan_visit, slot_window

BUFFER_MS: Final = 45 * MINUTE_MS
"""Quiet time kept between two incidents, and between an incident and a visit."""

ASAP_BUFFER_MS: Final = 5 * MINUTE_MS
"""Between incidents injected on demand: they are meant to come soon, one after another."""

_EPOCH_2000_MS: Final = 946_684_800_000


@dataclass(slots=True)
class Incident:
    label: Label
    busy: tuple[int, int]
    """Window kept free of other incidents and visits."""
    segments: list[Segment] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    effects: list[DeviceEffect] = field(default_factory=list)
    visit: VisitPlan | None = None
    """A service anomaly replaces the day's visit with this one."""


@dataclass(slots=True)
class Context:
    """What a placer may look at: the day, the bed, the routine's sleep times, what is taken."""

    day: LocalDay
    spec: BedSpec
    telemetry: TelemetryConfig
    rng: np.random.Generator
    wake_ms: int
    bedtime_ms: int
    earliest_ms: int
    asap: bool
    """Place at the first free moment (an incident injected on demand) instead of at random."""
    busy: list[tuple[int, int]]
    asleep_ms: int | None = None  # when the night's sleep began, if after midnight (night owl)

    def free(self, start: int, end: int) -> bool:
        gap = ASAP_BUFFER_MS if self.asap else BUFFER_MS
        return all(end + gap <= a or start - gap >= b for a, b in self.busy)

    def start_in(self, low_ms: int, high_ms: int, length_ms: int) -> int | None:
        """A start in ``[low, high]`` (and not before ``earliest``) whose incident window
        ``[start, start + length]`` is free; ``None`` when there is none."""
        low_ms = -(-max(low_ms, self.earliest_ms) // MINUTE_MS) * MINUTE_MS
        if high_ms < low_ms:
            return None
        if self.asap:
            for start in range(low_ms, high_ms + 1, 5 * MINUTE_MS):
                if self.free(start, start + length_ms):
                    return start
            return None
        for _ in range(16):
            # Whole minutes, so that activity overlays and labels line up with the minute grid.
            minute = int(self.rng.integers(low_ms // MINUTE_MS, high_ms // MINUTE_MS + 1))
            start = minute * MINUTE_MS
            if start >= low_ms and self.free(start, start + length_ms):
                return start
        return None

    def at(self, minutes: float) -> int:
        return self.day.at(minutes)

    def asleep_for(self, minutes: int) -> int:
        """``minutes`` after midnight, or after a bedtime past midnight when that is later."""
        at = self.at(minutes)
        return at if self.asleep_ms is None else max(at, self.asleep_ms + minutes * MINUTE_MS)

    def window(self, low_min: float, high_min: float) -> tuple[int, int]:
        """Start window in local minutes; on demand (``asap``) any time of this day."""
        if self.asap:
            return self.day.start_ms, self.day.end_ms
        return self.at(low_min), self.at(high_min)

    def asleep_at(self, moment: int) -> bool:
        return moment < self.wake_ms or moment >= self.bedtime_ms

    def minutes(self, low: float, high: float) -> int:
        """A random duration of whole minutes between ``low`` and ``high``, in ms."""
        return round(float(self.rng.uniform(low, high))) * MINUTE_MS

    def label(self, type_: str, start: int, end: int) -> Label:
        return Label(site=self.spec.site, bed=self.spec.bed, type=type_, start=start, end=end)

    def night_starts(self, length_ms: int) -> int | None:
        """A moment the person is asleep, late evening or after midnight, from which
        ``length_ms`` still ends well before getting up."""
        evening = self.start_in(max(self.at(22 * 60 + 15), self.bedtime_ms + 30 * MINUTE_MS),
                                self.at(23 * 60 + 30), length_ms)
        morning = self.start_in(self.asleep_for(30), min(self.at(3 * 60),
                                                 self.wake_ms - length_ms - 30 * MINUTE_MS),
                                length_ms)
        options = [s for s in (morning, evening) if s is not None]
        if not options:
            return None
        return min(options) if self.asap else options[int(self.rng.integers(0, len(options)))]


Placer = Callable[[Context], Incident | None]


def _emergency_button(ctx: Context) -> Incident | None:
    window = 10 * MINUTE_MS
    start = ctx.start_in(ctx.at(0), ctx.at(24 * 60) - window, window)
    if start is None:
        return None
    start += int(ctx.rng.integers(0, MINUTE_MS))
    action: ButtonAction = "press" if ctx.rng.random() < 0.8 else "long_press"
    events = [Event(start, "button", ButtonEvent(ts=0, seq=0, event=action))]
    end = start + window
    if ctx.rng.random() < 0.35:
        end = start + int(ctx.rng.integers(8_000, 90_000))
        events.append(Event(end, "button", ButtonEvent(ts=0, seq=0, event="cancel")))
    return Incident(ctx.label("emergency_button", start, end), (start, start + window),
                    events=events)


def _fall_event(ms: int, event: FallAction, confidence: float, posture: Posture) -> Event:
    return Event(ms, "fall", FallEvent(ts=0, seq=0, event=event,
                                       confidence=round(confidence, 2), posture=posture))


def _fall(ctx: Context) -> Incident | None:
    rng = ctx.rng
    night = rng.random() < 0.2
    if ctx.asap:
        start = ctx.start_in(ctx.day.start_ms, ctx.day.end_ms, 150 * MINUTE_MS)
        if start is None:
            return None
        night = ctx.asleep_at(start)
    if night:
        # At night: on a bathroom trip, up again within minutes (never also a bed-exit).
        length = 20 * MINUTE_MS
        start = ctx.start_in(ctx.asleep_for(60), ctx.wake_ms - 60 * MINUTE_MS, length)
        if ctx.asap:
            start = ctx.start_in(ctx.day.start_ms, ctx.day.end_ms, length)
        if start is None:
            return None
        up = start - ctx.minutes(2, 4)
        cleared = start + ctx.minutes(1, 6)
        segments = [Segment(up, start, BATHROOM), Segment(start, cleared, ON_BATHROOM_FLOOR),
                    Segment(cleared, cleared + 3 * MINUTE_MS, BATHROOM)]
        events = [_fall_event(start, "fall_detected", rng.uniform(0.85, 0.99), "lying"),
                  _fall_event(cleared, "fall_cleared", rng.uniform(0.8, 0.95), "standing")]
        return Incident(ctx.label("fall", start, cleared), (up, cleared + 3 * MINUTE_MS),
                        segments, events)
    length = 150 * MINUTE_MS
    start = ctx.start_in(*ctx.window(8 * 60, 19 * 60 + 30), length)
    if start is None:
        return None
    floor = ON_BATHROOM_FLOOR if rng.random() < 0.5 else ON_FLOOR
    segments = [Segment(start - 2 * MINUTE_MS, start, ACTIVE)]
    events = [_fall_event(start, "fall_detected", rng.uniform(0.85, 0.99), "lying")]
    if rng.random() < 0.45:
        cleared = start + ctx.minutes(1, 8)
        segments += [Segment(start, cleared, floor), Segment(cleared, cleared + 15 * MINUTE_MS,
                                                              QUIET)]
        posture: Posture = "sitting" if rng.random() < 0.5 else "standing"
        events.append(_fall_event(cleared, "fall_cleared", rng.uniform(0.8, 0.95), posture))
        end = cleared
    else:
        # No recovery: no movement on the floor until help arrives, no fall_cleared.
        helped = start + ctx.minutes(25, 80)
        end = helped + ctx.minutes(20, 40)
        segments += [Segment(start, helped, floor), Segment(helped, end, HELP),
                     Segment(end, end + 30 * MINUTE_MS, LIE_AWAKE)]
    return Incident(ctx.label("fall", start, end), (start - 2 * MINUTE_MS, end + 30 * MINUTE_MS),
                    segments, events)


def _inactivity(ctx: Context) -> Incident | None:
    length = ctx.minutes(180, 300)
    latest = min(ctx.at(13 * 60 + 30), ctx.bedtime_ms - length - 90 * MINUTE_MS)
    start = ctx.start_in(max(ctx.at(9 * 60), ctx.wake_ms + 60 * MINUTE_MS), latest, length)
    if start is None:
        return None
    end = start + length
    segments = [Segment(start, end, STILL), Segment(end, end + 10 * MINUTE_MS, QUIET)]
    return Incident(ctx.label("inactivity", start, end), (start, end + 10 * MINUTE_MS), segments)


def _night_bed_exit(ctx: Context) -> Incident | None:
    length = ctx.minutes(50, 150)
    start = ctx.night_starts(length)
    if start is None:
        return None
    end = start + length
    if ctx.rng.random() < 0.4:
        out = start + 3 * MINUTE_MS
        back = end - 3 * MINUTE_MS
        segments = [Segment(start, out, DOOR), Segment(out, back, AWAY), Segment(back, end, DOOR)]
    else:
        segments, m = [], start
        while m < end:
            step = min(end, m + ctx.minutes(5, 20))
            segments.append(Segment(m, step, WANDER if len(segments) % 3 != 2 else DOOR))
            m = step
    return Incident(ctx.label("night_bed_exit", start, end), (start, end), segments)


def _abnormal_sound(ctx: Context) -> Incident | None:
    length = ctx.minutes(6, 20)
    start = ctx.start_in(*ctx.window(8 * 60, 20 * 60), length)
    if start is None:
        return None
    end = start + length
    extra = float(ctx.rng.uniform(-5.0, 5.0))
    return Incident(ctx.label("abnormal_sound", start, end), (start, end),
                    [Segment(start, end, DISTRESS, sound_extra=extra)])


_VITALS: Final = (  # (heart rate, breathing rate) ranges far outside any person's range
    ((135.0, 155.0), None),
    ((36.0, 42.0), None),
    (None, (30.0, 38.0)),
    (None, (5.0, 7.0)),
)


def _vital_signs(ctx: Context) -> Incident | None:
    rng = ctx.rng
    length = ctx.minutes(15, 60)
    hr_range, br_range = _VITALS[int(rng.integers(0, len(_VITALS)))]
    hr = float(rng.uniform(*hr_range)) if hr_range else None
    br = float(rng.uniform(*br_range)) if br_range else None
    at_night = rng.random() < 0.5
    if ctx.asap:
        start = ctx.start_in(ctx.day.start_ms, ctx.day.end_ms, length + 30 * MINUTE_MS)
        if start is None:
            return None
        at_night = ctx.asleep_at(start) and ctx.asleep_at(start + length)
    if at_night:
        if ctx.asap:
            start = ctx.start_in(ctx.day.start_ms, ctx.day.end_ms, length)
        else:
            start = ctx.start_in(ctx.asleep_for(30), ctx.wake_ms - length - 20 * MINUTE_MS, length)
        if start is None:
            return None
        end = start + length
        segments = [Segment(start, end, SLEEP, heart_rate=hr, breathing_rate=br)]
        busy = (start, end)
    else:
        # Feeling unwell in the day: lies down, vital signs go out of range, recovers.
        start = ctx.start_in(*ctx.window(9 * 60, 19 * 60), length + 30 * MINUTE_MS)
        if start is None:
            return None
        end = start + length
        segments = [Segment(start - 10 * MINUTE_MS, start, UNWELL),
                    Segment(start, end, UNWELL, heart_rate=hr, breathing_rate=br),
                    Segment(end, end + 20 * MINUTE_MS, UNWELL)]
        busy = (start - 10 * MINUTE_MS, end + 20 * MINUTE_MS)
    return Incident(ctx.label("vital_signs", start, end), busy, segments)


def _device_offline(ctx: Context) -> Incident | None:
    role = SENSOR_ROLES[int(ctx.rng.integers(0, len(SENSOR_ROLES)))]
    least = 4 * heartbeat_s(role, ctx.telemetry) * 1000
    length = max(round(least), ctx.minutes(60, 360))
    start = ctx.start_in(*ctx.window(0, 22 * 60), length)
    if start is None:
        return None
    end = start + length
    effect = DeviceEffect(role, "silent", start, end, will=bool(ctx.rng.random() < 0.6))
    return Incident(ctx.label("device_offline", start, end), (start, end), effects=[effect])


def _low_battery(ctx: Context) -> Incident | None:
    role = BATTERY_ROLES[int(ctx.rng.integers(0, len(BATTERY_ROLES)))]
    length = ctx.minutes(3 * 60, 12 * 60)
    start = ctx.start_in(ctx.at(0), ctx.at(23 * 60), length)
    if start is None:
        return None
    end = start + length
    effect = DeviceEffect(role, "low_battery", start, end)
    return Incident(ctx.label("low_battery", start, end), (start, end), effects=[effect])


def _sensor_fault(ctx: Context) -> Incident | None:
    rng = ctx.rng
    length = ctx.minutes(30, 240)
    start = ctx.start_in(*ctx.window(0, 22 * 60), length)
    if start is None:
        return None
    end = start + length
    variant = int(rng.integers(0, 6))
    effect: DeviceEffect
    if variant == 0:
        values = (round(float(rng.uniform(60, 75)), 1), round(float(rng.uniform(13, 17)), 1))
        effect = DeviceEffect("fall", "flatline", start, end, values=values)
    elif variant == 1:
        effect = DeviceEffect("audio", "flatline", start, end,
                              values=(round(float(rng.uniform(35, 50)), 1),))
    elif variant == 2:
        effect = DeviceEffect("infrared", "stuck_motion", start, end,
                              values=(float(rng.integers(5, 16)),))
    elif variant == 3:
        effect = DeviceEffect("fall", "impossible", start, end)
    elif variant == 4:
        effect = DeviceEffect("audio", "impossible", start, end)
    else:
        role = SENSOR_ROLES[int(rng.integers(0, len(SENSOR_ROLES)))]
        if rng.random() < 0.3:
            offset = _EPOCH_2000_MS - start  # clock reset to 2000-01-01
        else:
            sign = 1 if rng.random() < 0.5 else -1
            offset = sign * round(float(rng.uniform(2, 72)) * HOUR_MS)
        effect = DeviceEffect(role, "clock_skew", start, end, offset_ms=offset)
    return Incident(ctx.label("sensor_fault", start, end), (start, end), effects=[effect])


_ANOMALIES: Final[tuple[Variant, ...]] = ("ghost", "short", "no_checkout")


def _service_anomaly(ctx: Context) -> Incident | None:
    rng = ctx.rng
    variant = _ANOMALIES[int(rng.integers(0, len(_ANOMALIES)))]
    if ctx.asap:
        start = ctx.start_in(ctx.earliest_ms, ctx.earliest_ms + 6 * HOUR_MS, 2 * HOUR_MS)
        if start is None:
            return None
        visit = plan_visit(ctx.spec, ctx.day, rng, variant, start_ms=start)
    else:
        low, _ = slot_window(ctx.spec)
        visit = plan_visit(ctx.spec, ctx.day, rng, variant)
        if visit.check_in_ms < max(ctx.earliest_ms, ctx.at(low)):
            return None
    if not ctx.free(visit.check_in_ms, visit.leave_ms + 30 * MINUTE_MS):
        return None
    if visit.check_out_ms is None:
        end = visit.leave_ms + 60 * MINUTE_MS
    else:
        end = visit.check_out_ms
    return Incident(ctx.label("service_anomaly", visit.check_in_ms, end),
                    (visit.check_in_ms, max(end, visit.leave_ms + 30 * MINUTE_MS)),
                    segments=visit.segments, events=visit.events, visit=visit)


PLACERS: Final[dict[str, Placer]] = {
    "emergency_button": _emergency_button,
    "fall": _fall,
    "inactivity": _inactivity,
    "night_bed_exit": _night_bed_exit,
    "abnormal_sound": _abnormal_sound,
    "vital_signs": _vital_signs,
    "device_offline": _device_offline,
    "low_battery": _low_battery,
    "sensor_fault": _sensor_fault,
    "service_anomaly": _service_anomaly,
}


def place(type_: str, ctx: Context) -> Incident | None:
    """Place one incident of ``type_`` on ``ctx.day``; ``None`` when the day has no room."""
    return PLACERS[type_](ctx)

