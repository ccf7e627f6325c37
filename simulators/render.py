"""Paint day plans into per-minute arrays: what the home looks like, minute by minute.

Arrays, not objects, because the sensors sample them tens of thousands of times per
bed-week; numpy fancy indexing turns sample times into readings in one step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.activity import ROOM_ZONE, Segment
from simulators.clock import MINUTE_MS
from simulators.person import Person
from simulators.plan import DayPlan


@dataclass(slots=True)
class Frame:
    """The home from ``start_ms`` (minute-aligned) for ``len(zone)`` minutes."""

    start_ms: int
    zone: npt.NDArray[np.int8]
    in_bed: npt.NDArray[np.bool_]
    asleep: npt.NDArray[np.bool_]
    people: npt.NDArray[np.int8]
    motion: npt.NDArray[np.float64]
    """Expected movements per minute."""
    sound: npt.NDArray[np.float64]
    """Mean sound level, dB."""
    voice: npt.NDArray[np.float64]
    heart_rate: npt.NDArray[np.float64]
    """Incident target, NaN where the person's own baseline applies."""
    breathing_rate: npt.NDArray[np.float64]

    def index(self, times_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Minute index of each time, clipped into the frame."""
        return np.clip((times_ms - self.start_ms) // MINUTE_MS, 0, len(self.zone) - 1)


def render(plans: Iterable[DayPlan], start_ms: int, end_ms: int, person: Person) -> Frame:
    """The frame covering ``[start_ms, end_ms)``: all routines first, then all overlays, so an
    incident running past midnight is not painted over by the next day's routine."""
    first = start_ms - start_ms % MINUTE_MS
    n = max(1, -(-(end_ms - first) // MINUTE_MS))
    # Routines cover every minute; the quiet-room default is only a safety net.
    frame = Frame(
        start_ms=first,
        zone=np.full(n, ROOM_ZONE, np.int8), in_bed=np.zeros(n, np.bool_),
        asleep=np.zeros(n, np.bool_), people=np.ones(n, np.int8),
        motion=np.full(n, person.activity), sound=np.full(n, person.room_db), voice=np.zeros(n),
        heart_rate=np.full(n, np.nan), breathing_rate=np.full(n, np.nan),
    )
    plans = list(plans)
    for plan in plans:
        _paint(frame, plan.routine, person)
    for plan in plans:
        _paint(frame, plan.overlays, person)
    return frame


def _paint(frame: Frame, segments: list[Segment], person: Person) -> None:
    n = len(frame.zone)
    base = frame.start_ms
    for segment in segments:
        # Round to the nearest minute so that a segment of a minute or more always shows.
        i0 = max(0, (segment.start_ms - base + MINUTE_MS // 2) // MINUTE_MS)
        i1 = min(n, (segment.end_ms - base + MINUTE_MS // 2) // MINUTE_MS)
        if i1 <= i0:
            continue
        a = segment.activity
        frame.zone[i0:i1] = a.zone
        frame.in_bed[i0:i1] = a.in_bed
        frame.asleep[i0:i1] = a.asleep
        frame.people[i0:i1] = a.people
        frame.motion[i0:i1] = a.motion * person.activity
        frame.sound[i0:i1] = person.room_db + a.sound + segment.sound_extra
        frame.voice[i0:i1] = a.voice
        frame.heart_rate[i0:i1] = np.nan if segment.heart_rate is None else segment.heart_rate
        frame.breathing_rate[i0:i1] = (np.nan if segment.breathing_rate is None
                                       else segment.breathing_rate)
