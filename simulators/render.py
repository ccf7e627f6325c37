"""Paint day plans into per-minute arrays: what the home looks like, minute by minute.

Arrays, not objects, because the sensors sample them tens of thousands of times per
bed-week; numpy fancy indexing turns sample times into readings in one step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.activity import AWAY_ZONE, BED_ZONE, ROOM_ZONE, SPOUSE_OUT, SPOUSE_UP, Segment
from simulators.clock import MINUTE_MS
from simulators.person import Person
from simulators.plan import DayPlan
from simulators.profiles import STANDARD, Profile


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


_SPOUSE_AWAKE_MOTION = 1.5
_SPOUSE_ASLEEP_MOTION = 0.15


def render(plans: Iterable[DayPlan], start_ms: int, end_ms: int, person: Person, *,
           profile: Profile = STANDARD) -> Frame:
    """The frame covering ``[start_ms, end_ms)``: all routines first, then all overlays, so an
    incident running past midnight is not painted over by the next day's routine; then, for a
    couple (``profile.household`` 2), the spouse."""
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
    if profile.asleep_motion is not None:
        frame.motion[frame.asleep] = profile.asleep_motion
    routine_away = frame.zone == AWAY_ZONE
    routine_asleep = frame.asleep.copy()
    for plan in plans:
        _paint(frame, plan.overlays, person)
    if profile.household == 2:
        _spouse(frame, plans, routine_away, routine_asleep)
    return frame


def _spouse(frame: Frame, plans: list[DayPlan], routine_away: npt.NDArray[np.bool_],
            routine_asleep: npt.NDArray[np.bool_]) -> None:
    """The spouse lives the resident's routine alongside (out together, asleep together),
    except on the companion track: up at night (walking in the room while the resident stays
    in bed) or out alone. People count one more, motion and a little talk added; the bed
    sensor is the resident's and does not change. When an incident takes the resident out at
    night, the infrared sees the spouse asleep in bed."""
    home = ~routine_away
    up = np.zeros(len(home), np.bool_)
    for plan in plans:
        for segment in plan.companion:
            i0, i1 = _span(frame, segment)
            if segment.activity is SPOUSE_OUT:
                home[i0:i1] = False
            elif segment.activity is SPOUSE_UP:
                up[i0:i1] = True
    up &= home
    alone = home & (frame.zone == AWAY_ZONE)
    frame.zone[alone] = np.where(routine_asleep[alone], BED_ZONE, ROOM_ZONE)
    frame.people[home] += 1
    frame.motion[home] += np.where(routine_asleep[home], _SPOUSE_ASLEEP_MOTION,
                                   _SPOUSE_AWAKE_MOTION)
    frame.motion[up] += SPOUSE_UP.motion
    frame.zone[up & (frame.zone == BED_ZONE)] = ROOM_ZONE
    awake = home & ~routine_asleep
    frame.sound[awake] += 1.0
    frame.voice[awake] = np.maximum(frame.voice[awake], 0.15)


def _span(frame: Frame, segment: Segment) -> tuple[int, int]:
    """Minute indices ``[i0, i1)`` of a segment, rounded to the nearest minute."""
    base, n = frame.start_ms, len(frame.zone)
    i0 = max(0, (segment.start_ms - base + MINUTE_MS // 2) // MINUTE_MS)
    i1 = min(n, (segment.end_ms - base + MINUTE_MS // 2) // MINUTE_MS)
    return i0, max(i0, i1)


def _paint(frame: Frame, segments: list[Segment], person: Person) -> None:
    for segment in segments:
        # Round to the nearest minute so that a segment of a minute or more always shows.
        i0, i1 = _span(frame, segment)
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
