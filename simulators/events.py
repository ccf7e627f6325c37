"""Discrete things devices report (a press, a fall, a check-in) and device-level conditions.

Plans are made before sequence numbers exist, so an :class:`Event` holds its payload with
``ts=0, seq=0`` and the traffic layer stamps both when the device sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from devices import BadgeEvent, ButtonEvent, FallEvent, RecordingEvent, Status
from simulators.config import TelemetryConfig

Role: TypeAlias = Literal["button", "infrared", "audio", "fall", "badge"]
"""A device's job in the bed; the device id follows from the bed (``ir-0007``...)."""

SENSOR_ROLES: Final[tuple[Role, ...]] = ("button", "infrared", "audio", "fall")
"""Devices installed in the home (the badge travels with the caregiver)."""
BATTERY_ROLES: Final[tuple[Role, ...]] = ("button", "infrared", "fall")
"""Devices on batteries; the audio recorder is mains-powered."""



def heartbeat_s(role: Role, telemetry: TelemetryConfig) -> float:
    """The status period a device of ``role`` promises (buttons their own, longer one)."""
    return telemetry.button_heartbeat_s if role == "button" else telemetry.heartbeat_s


EventPayload: TypeAlias = ButtonEvent | RecordingEvent | FallEvent | BadgeEvent | Status


@dataclass(frozen=True, slots=True)
class Event:
    ms: int
    role: Role
    payload: EventPayload


EffectKind: TypeAlias = Literal[
    "silent", "flatline", "impossible", "clock_skew", "low_battery", "stuck_motion"]


@dataclass(frozen=True, slots=True)
class DeviceEffect:
    """A device misbehaving over ``[start_ms, end_ms)``.

    ``silent``: publishes nothing (``will``: the broker announces it offline after keep-alive);
    ``flatline``/``stuck_motion``: the same reading every sample (``values``);
    ``impossible``: physically impossible readings (``values``);
    ``clock_skew``: device timestamps off by ``offset_ms``;
    ``low_battery``: battery under 15 % until replaced at ``end_ms``.
    """

    role: Role
    kind: EffectKind
    start_ms: int
    end_ms: int
    will: bool = False
    offset_ms: int = 0
    values: tuple[float, ...] = ()
