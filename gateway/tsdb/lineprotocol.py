"""The time-series schema: how device messages become InfluxDB line-protocol points.

One measurement per kind of reading, tags ``bed``, ``device``, ``site`` (sorted, as InfluxDB
prefers), millisecond timestamps (device time: the sample's ``t`` or the message's ``ts``,
when the device clock is within the window of :class:`~devices.devicetime.ClockWindow`;
otherwise the receipt time, with the device time kept in an integer ``device_ts`` field, see
:mod:`devices.devicetime`):

=================  ===============================  ==========================================
measurement        from                             fields
=================  ===============================  ==========================================
``infrared``       infrared/telemetry samples       presence (bool), motion (int), people
                                                    (int), zone (string)
``audio``          audio/telemetry samples          level_db (float), voice (bool)
``vitals``         fall/telemetry samples           in_bed (bool), breathing_rate (float),
                                                    heart_rate (float)
``button_event``   button/event                     event, seq
``recording``      infrared|audio/event (tag kind)  event, clip, duration_s, sha256, seq
``fall_event``     fall/event                       event, confidence, posture, seq
``badge_event``    badge/event                      event, caregiver, visit, method, services
                                                    (comma-joined), seq
``device_status``  any/status (tag kind)            state, battery, fw, heartbeat_s, seq
=================  ===============================  ==========================================

A point is identified by measurement + tags + timestamp, so writing the same message twice
(with a trusted clock) stores it once (InfluxDB overwrites; VictoriaMetrics with
deduplication keeps one): replays of the spool and redeliveries from the broker never
duplicate points. Identifiers are limited by the contract to ``[A-Za-z0-9_-]``, so tags never
need escaping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from devices.codec import Message
from devices.devicetime import ClockWindow
from devices.schemas import (
    AudioSample,
    BadgeEvent,
    ButtonEvent,
    FallEvent,
    InfraredSample,
    RecordingEvent,
    Status,
    Telemetry,
    VitalsSample,
)
from devices.topics import Address, Kind

MEASUREMENTS: Final = (
    "infrared", "audio", "vitals", "button_event", "recording", "fall_event", "badge_event",
    "device_status",
)

_TELEMETRY_MEASUREMENT: Final = {Kind.INFRARED: "infrared", Kind.AUDIO: "audio",
                                 Kind.FALL: "vitals"}


def _string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if "\n" in escaped or "\r" in escaped:
        escaped = escaped.replace("\n", " ").replace("\r", " ")
    return f'"{escaped}"'


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _infrared(s: InfraredSample) -> str:
    parts = []
    if s.presence is not None:
        parts.append(f"presence={_bool(s.presence)}")
    if s.motion is not None:
        parts.append(f"motion={s.motion}i")
    if s.people is not None:
        parts.append(f"people={s.people}i")
    if s.zone is not None:
        parts.append(f'zone="{s.zone}"')
    return ",".join(parts)


def _audio(s: AudioSample) -> str:
    if s.voice is None:
        return f"level_db={s.level_db!r}"
    if s.level_db is None:
        return f"voice={_bool(s.voice)}"
    return f"level_db={s.level_db!r},voice={_bool(s.voice)}"


def _vitals(s: VitalsSample) -> str:
    parts = []
    if s.in_bed is not None:
        parts.append(f"in_bed={_bool(s.in_bed)}")
    if s.breathing_rate is not None:
        parts.append(f"breathing_rate={s.breathing_rate!r}")
    if s.heart_rate is not None:
        parts.append(f"heart_rate={s.heart_rate!r}")
    return ",".join(parts)


_SAMPLE_FIELDS: Final[dict[type, Callable[..., str]]] = {
    InfraredSample: _infrared, AudioSample: _audio, VitalsSample: _vitals,
}


def _button(p: ButtonEvent) -> str:
    return f'event="{p.event}",seq={p.seq}i'


def _recording(p: RecordingEvent) -> str:
    parts = [f'event="{p.event}"', f"clip={_string(p.clip)}", f"seq={p.seq}i"]
    if p.duration_s is not None:
        parts.append(f"duration_s={float(p.duration_s)!r}")
    if p.sha256 is not None:
        parts.append(f'sha256="{p.sha256}"')
    return ",".join(parts)


def _fall(p: FallEvent) -> str:
    parts = [f'event="{p.event}"', f"seq={p.seq}i"]
    if p.confidence is not None:
        parts.append(f"confidence={float(p.confidence)!r}")
    if p.posture is not None:
        parts.append(f'posture="{p.posture}"')
    return ",".join(parts)


def _badge(p: BadgeEvent) -> str:
    parts = [f'event="{p.event}"', f"caregiver={_string(p.caregiver)}",
             f"visit={_string(p.visit)}", f"seq={p.seq}i"]
    if p.method is not None:
        parts.append(f'method="{p.method}"')
    if p.services is not None:
        parts.append(f"services={_string(','.join(p.services))}")
    return ",".join(parts)


def _status(p: Status) -> str:
    parts = [f'state="{p.state}"', f"seq={p.seq}i"]
    if p.battery is not None:
        parts.append(f"battery={float(p.battery)!r}")
    if p.fw is not None:
        parts.append(f"fw={_string(p.fw)}")
    if p.heartbeat_s is not None:
        parts.append(f"heartbeat_s={float(p.heartbeat_s)!r}")
    return ",".join(parts)


_EVENT_FIELDS: Final[dict[type, tuple[str, Callable[..., str]]]] = {
    ButtonEvent: ("button_event", _button),
    RecordingEvent: ("recording", _recording),
    FallEvent: ("fall_event", _fall),
    BadgeEvent: ("badge_event", _badge),
    Status: ("device_status", _status),
}


SERIES_KEYS_MAX: Final = 100_000
"""Series keys :class:`LineEncoder` keeps formatted (and series it keeps the latest retimed
time of), the oldest forgotten first: about 400 bytes each with 64-character ids, so made-up
ids cannot grow it past about 40 MB (issue 17); a forgotten key is formatted again."""


class LineEncoder:
    """Formats messages as line protocol, caching each device's series key.

    ``lines`` with a receipt time checks the message's timestamps against ``window`` and
    retimes those outside it (:mod:`devices.devicetime`); :attr:`retimed` counts the points
    stored at a time other than their device time."""

    __slots__ = ("_keys", "_last_retimed", "retimed", "window")

    def __init__(self, *, window: ClockWindow | None = None) -> None:
        self._keys: dict[tuple[str, Address], str] = {}
        self._last_retimed: dict[str, int] = {}
        """Per series key: the latest time given to a retimed point (later ones come after)."""
        self.window = window or ClockWindow()
        self.retimed = 0

    def _key(self, measurement: str, a: Address) -> str:
        key = self._keys.get((measurement, a))
        if key is None:
            if len(self._keys) >= SERIES_KEYS_MAX:
                del self._keys[next(iter(self._keys))]
            kind = f",kind={a.kind}" if measurement in ("recording", "device_status") else ""
            key = f"{measurement},bed={a.bed},device={a.device}{kind},site={a.site} "
            self._keys[(measurement, a)] = key
        return key

    def lines(self, message: Message, out: list[str], received_ms: int | None = None) -> int:
        """Append the message's points to ``out``; return how many were appended. Without
        ``received_ms`` every timestamp is taken as sent."""
        payload = message.payload
        if received_ms is None:
            low, high = 0, 1 << 63
        else:
            low, high = received_ms - self.window.behind_ms, received_ms + self.window.ahead_ms
            if not low <= payload.ts <= high:
                return self._retimed(message, out, received_ms)
        if isinstance(payload, Telemetry):
            key = self._key(_TELEMETRY_MEASUREMENT[message.address.kind], message.address)
            start = len(out)
            for sample in payload.samples:
                t = sample.t
                if not low <= t <= high:
                    del out[start:]
                    return self._retimed(message, out, received_ms)  # type: ignore[arg-type]
                out.append(f"{key}{_SAMPLE_FIELDS[type(sample)](sample)} {t}")
            return len(payload.samples)
        measurement, fields = _EVENT_FIELDS[type(payload)]
        out.append(f"{self._key(measurement, message.address)}{fields(payload)} {payload.ts}")
        return 1

    def _retimed(self, message: Message, out: list[str], received_ms: int) -> int:
        payload = message.payload
        if isinstance(payload, Telemetry):
            key = self._key(_TELEMETRY_MEASUREMENT[message.address.kind], message.address)
            device_times = [sample.t for sample in payload.samples]
            bodies = [_SAMPLE_FIELDS[type(sample)](sample) for sample in payload.samples]
        else:
            measurement, fields = _EVENT_FIELDS[type(payload)]
            key = self._key(measurement, message.address)
            device_times = [payload.ts]
            bodies = [fields(payload)]
        times = self.window.times(payload.ts, device_times, received_ms)
        last = self._last_retimed.get(key)
        if last is not None and times[0] <= last:
            shift = last + 1 - times[0]
            times = [t + shift for t in times]
        if key not in self._last_retimed and len(self._last_retimed) >= SERIES_KEYS_MAX:
            del self._last_retimed[next(iter(self._last_retimed))]
        self._last_retimed[key] = times[-1]
        for body, device_t, t in zip(bodies, device_times, times, strict=True):
            out.append(f"{key}{body}{',' if body else ''}device_ts={device_t}i {t}")
        self.retimed += len(times)
        return len(times)
