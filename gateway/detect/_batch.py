"""A batch of messages as column arrays: one pass over the messages, shared by every detector.

The fleet collects the batches handed to its detectors and extracts them together, once per
evaluation round, for all of them (see :meth:`~gateway.detect._fleet.Fleet.cut`).

Sample times: a sample keeps its device time ``t`` when the device clock agrees with the
receipt time (within :data:`CLOCK_TRUST_MS`); otherwise the message is placed at its receipt
time and its samples keep their spacing. A device whose clock jumped to 2000-01-01, or one
message with a corrupted ``ts``, so never shifts a window by days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from devices.codec import Message
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

if TYPE_CHECKING:
    from gateway.detect._fleet import Fleet

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

CLOCK_TRUST_MS: Final = 15 * 60_000
"""Device time is trusted for sample placement when within this of the receipt time (covers
network latency, reordering and a home network that held messages for minutes)."""

ZONE_BED: Final = 1
ZONE_CODES: Final[dict[str | None, int]] = {None: 0, "bed": ZONE_BED, "room": 2,
                                            "bathroom": 3, "door": 4}


@dataclass(slots=True)
class Infrared:
    bed: I64
    t: I64
    device: I64
    received: I64
    presence: F32
    """1.0 present, 0.0 nobody, NaN not reported (same convention for the other flags)."""
    motion: F32
    people: F32
    zone: npt.NDArray[np.int8]
    """:data:`ZONE_CODES`; 0 when absent or not reported."""


@dataclass(slots=True)
class Audio:
    bed: I64
    t: I64
    device: I64
    received: I64
    level: F32
    voice: F32


@dataclass(slots=True)
class Vitals:
    bed: I64
    t: I64
    device: I64
    received: I64
    in_bed: F32
    heart: F32
    breathing: F32


@dataclass(frozen=True, slots=True)
class StatusRecord:
    device: int
    bed: int
    received: int
    status: Status


@dataclass(frozen=True, slots=True)
class EventRecord:
    device: int
    bed: int
    received: int
    t: int
    """Event time: device ``ts`` when trusted, else the receipt time."""
    event: ButtonEvent | FallEvent | BadgeEvent | RecordingEvent


@dataclass(slots=True)
class Batch:
    """Columns of one batch. Per message: ``device``, ``received``, ``ts``, ``is_will``."""

    device: I64
    received: I64
    ts: I64
    is_will: npt.NDArray[np.bool_]
    infrared: Infrared
    audio: Audio
    vitals: Vitals
    statuses: list[StatusRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return len(self.infrared.t) + len(self.audio.t) + len(self.vitals.t)


class _Columns:
    __slots__ = ("bed", "count", "device", "received", "samples", "shift")

    def __init__(self) -> None:
        self.samples: list[object] = []
        self.bed: list[int] = []
        self.device: list[int] = []
        self.count: list[int] = []
        self.shift: list[int] = []
        self.received: list[int] = []

    def add(self, samples: tuple[object, ...], bed: int, device: int, shift: int,
            received: int) -> None:
        self.samples.extend(samples)
        self.received.append(received)
        self.bed.append(bed)
        self.device.append(device)
        self.count.append(len(samples))
        self.shift.append(shift)

    def expand(self) -> tuple[I64, I64, I64, I64]:
        counts = np.array(self.count, dtype=np.int64)
        received = np.repeat(np.array(self.received, dtype=np.int64), counts)
        bed = np.repeat(np.array(self.bed, dtype=np.int64), counts)
        device = np.repeat(np.array(self.device, dtype=np.int64), counts)
        shift = np.repeat(np.array(self.shift, dtype=np.int64), counts)
        t = np.fromiter((s.t for s in self.samples), np.int64,  # type: ignore[attr-defined]
                        len(self.samples)) + shift
        return bed, device, t, received


def _flags(values: list[object]) -> F32:
    return np.array(values, dtype=np.float32) if values else np.zeros(0, np.float32)


Chunk = tuple[Sequence[Message], Sequence[int]]


def extract(fleet: Fleet, chunks: Sequence[Chunk]) -> Batch:
    """The columns of the messages of ``chunks`` (each a batch with its receipt times)."""
    device_of = fleet.message_device
    bed_of = fleet.device_bed_list
    ir, au, vi = _Columns(), _Columns(), _Columns()
    devices: list[int] = []
    tss: list[int] = []
    wills: list[bool] = []
    statuses: list[StatusRecord] = []
    events: list[EventRecord] = []
    trust = CLOCK_TRUST_MS
    received_all: list[int] = []
    for messages, received_ms in chunks:
        if len(messages) != len(received_ms):
            raise ValueError("messages and received_ms differ in length")
        received_all.extend(received_ms)
        for message, received in zip(messages, received_ms, strict=True):
            device = device_of(message)
            bed = bed_of[device]
            payload = message.payload
            ts = payload.ts
            devices.append(device)
            tss.append(ts)
            skewed = not -trust <= ts - received <= trust
            kind = type(payload)
            if kind is Telemetry:
                wills.append(False)
                samples = payload.samples  # type: ignore[union-attr]
                if not samples:
                    continue
                first = type(samples[0])
                shift = received - ts if skewed else 0
                if first is VitalsSample:
                    vi.add(samples, bed, device, shift, received)
                elif first is AudioSample:
                    au.add(samples, bed, device, shift, received)
                elif first is InfraredSample:
                    ir.add(samples, bed, device, shift, received)
            elif kind is Status:
                status: Status = payload  # type: ignore[assignment]
                wills.append(status.state == "offline")
                statuses.append(StatusRecord(device, bed, received, status))
            else:
                wills.append(False)
                events.append(EventRecord(device, bed, received, received if skewed else ts,
                                          payload))  # type: ignore[arg-type]
    s_bed, s_device, s_t, s_received = ir.expand()
    s = ir.samples
    infrared = Infrared(
        s_bed, s_t, s_device, s_received,
        _flags([x.presence for x in s]),  # type: ignore[attr-defined]
        _flags([x.motion for x in s]),  # type: ignore[attr-defined]
        _flags([x.people for x in s]),  # type: ignore[attr-defined]
        np.array([ZONE_CODES.get(x.zone, 0) for x in s], dtype=np.int8),  # type: ignore[attr-defined]
    )
    s_bed, s_device, s_t, s_received = au.expand()
    s = au.samples
    audio = Audio(s_bed, s_t, s_device, s_received,
                  _flags([x.level_db for x in s]),  # type: ignore[attr-defined]
                  _flags([x.voice for x in s]))  # type: ignore[attr-defined]
    s_bed, s_device, s_t, s_received = vi.expand()
    s = vi.samples
    vitals = Vitals(s_bed, s_t, s_device, s_received,
                    _flags([x.in_bed for x in s]),  # type: ignore[attr-defined]
                    _flags([x.heart_rate for x in s]),  # type: ignore[attr-defined]
                    _flags([x.breathing_rate for x in s]))  # type: ignore[attr-defined]
    return Batch(
        device=np.array(devices, dtype=np.int64),
        received=np.array(received_all, dtype=np.int64),
        ts=np.array(tss, dtype=np.int64),
        is_will=np.array(wills, dtype=np.bool_),
        infrared=infrared, audio=audio, vitals=vitals, statuses=statuses, events=events,
    )
