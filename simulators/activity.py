"""What the person is doing, minute by minute, as the sensors would see it.

A day is a list of :class:`Segment` s; later segments paint over earlier ones, so a caregiver
visit or an incident simply overlays the routine. Each :class:`Activity` fixes what the
sensors observe: where (infrared zone), in bed or not, asleep or not, how much movement,
how many people, how loud, how much voice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ZONES: Final[tuple[str | None, ...]] = (None, "bed", "room", "bathroom", "door")
"""Zone codes used in the minute arrays; code 0 means nobody is home."""
AWAY_ZONE: Final = 0
BED_ZONE: Final = 1
ROOM_ZONE: Final = 2
BATHROOM_ZONE: Final = 3
DOOR_ZONE: Final = 4


@dataclass(frozen=True, slots=True)
class Activity:
    name: str
    zone: int
    in_bed: bool = False
    asleep: bool = False
    motion: float = 1.0
    """Expected movements per minute (scaled by the person's activity level)."""
    people: int = 1
    sound: float = 0.0
    """Sound level above the person's quiet-room level, dB."""
    voice: float = 0.0
    """Probability that a sample has voice activity."""


SLEEP: Final = Activity("sleep", BED_ZONE, in_bed=True, asleep=True, motion=0.15, sound=-2.0)
NAP: Final = Activity("nap", BED_ZONE, in_bed=True, asleep=True, motion=0.3, sound=-1.0)
LIE_AWAKE: Final = Activity("lie_awake", BED_ZONE, in_bed=True, motion=0.8, sound=0.0, voice=0.02)
BATHROOM: Final = Activity("bathroom", BATHROOM_ZONE, motion=4.0, sound=5.0)
MEAL: Final = Activity("meal", ROOM_ZONE, motion=3.0, sound=8.0, voice=0.1)
QUIET: Final = Activity("quiet", ROOM_ZONE, motion=1.0, sound=2.0, voice=0.03)
ACTIVE: Final = Activity("active", ROOM_ZONE, motion=6.0, sound=6.0, voice=0.08)
TV: Final = Activity("tv", ROOM_ZONE, motion=1.3, sound=15.0, voice=0.75)
RADIO: Final = Activity("radio", ROOM_ZONE, motion=1.5, sound=12.0, voice=0.6)
DOOR: Final = Activity("door", DOOR_ZONE, motion=5.0, sound=4.0)
AWAY: Final = Activity("away", AWAY_ZONE, motion=0.0, people=0, sound=-3.0)
VISIT: Final = Activity("visit", ROOM_ZONE, motion=5.0, people=2, sound=13.0, voice=0.85)
VISIT_BATH: Final = Activity("visit_bath", BATHROOM_ZONE, motion=6.0, people=2, sound=12.0,
                             voice=0.7)
# The other resident of a couple (profile ``couple``): markers on the companion track, not
# what the resident does. Up at night (walking in the room while the resident lies in bed), or
# out alone (the resident is home alone).
SPOUSE_UP: Final = Activity("spouse_up", ROOM_ZONE, motion=4.0)
SPOUSE_OUT: Final = Activity("spouse_out", AWAY_ZONE, motion=0.0, people=0)
# Incident activities: never part of a normal day.
ON_FLOOR: Final = Activity("on_floor", ROOM_ZONE, motion=0.0, sound=0.0)
ON_BATHROOM_FLOOR: Final = Activity("on_bathroom_floor", BATHROOM_ZONE, motion=0.0, sound=0.0)
HELP: Final = Activity("help", ROOM_ZONE, motion=6.0, people=2, sound=14.0, voice=0.9)
STILL: Final = Activity("still", ROOM_ZONE, motion=0.0, sound=-1.0)
DISTRESS: Final = Activity("distress", ROOM_ZONE, motion=3.0, sound=45.0, voice=1.0)
WANDER: Final = Activity("wander", ROOM_ZONE, motion=3.0, sound=2.0)
UNWELL: Final = Activity("unwell", BED_ZONE, in_bed=True, motion=0.6, sound=0.0, voice=0.05)


def family(people: int) -> Activity:
    """Family visiting (profile ``frequent_visitors``): ``people`` in the room in all, talking;
    its loudness is set per segment (``Segment.sound_extra``)."""
    return Activity("family", ROOM_ZONE, motion=6.0, people=people, sound=0.0, voice=0.9)


@dataclass(frozen=True, slots=True)
class Segment:
    """``activity`` from ``start_ms`` to ``end_ms``; optional vital-sign targets override the
    person's baseline (only incidents set them), ``sound_extra`` adds dB on top."""

    start_ms: int
    end_ms: int
    activity: Activity
    heart_rate: float | None = None
    breathing_rate: float | None = None
    sound_extra: float = 0.0
