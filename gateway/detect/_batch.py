"""A batch of messages as column arrays: one pass over the messages, shared by every detector.

The fleet collects the batches handed to its detectors and extracts them together, once per
evaluation round, for all of them (see :class:`~gateway.detect._rounds.RoundBuffer`).

Sample times: a sample keeps its device time ``t`` when the device clock agrees with the
receipt time (within :data:`~devices.devicetime.CLOCK_TRUST_MS`); otherwise the message is
placed at its receipt time and its samples keep their spacing. A device whose clock jumped
to 2000-01-01, or one message with a corrupted ``ts``, so never shifts a window by days. A
sample whose ``t`` is further from its message's ``ts`` than a batch can span
(:data:`~devices.devicetime.MAX_BATCH_SPAN_MS`: ``t`` in seconds, say) is placed at its
message's time, and the message's ``clock_offset`` is that sample's. No sample is placed after
its receipt (beyond :data:`LEAD_TOLERANCE_MS`): a message whose samples would be is moved back
whole (its latest sample at its receipt, its spacing kept), and its ``clock_offset`` is at
least how far ahead they ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from itertools import chain
from operator import attrgetter, is_, itemgetter
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from devices.codec import Message
from devices.devicetime import CLOCK_TRUST_MS, MAX_BATCH_SPAN_MS
from devices.schemas import (
    BadgeEvent,
    ButtonEvent,
    FallEvent,
    RecordingEvent,
    Status,
    Telemetry,
)
from devices.topics import Address

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


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
    sent: I64
    """The sample's device time, not moved to its receipt when its message came more than
    :data:`~devices.devicetime.CLOCK_TRUST_MS` late (a backlog), never after its message's
    ``ts`` (as ``t`` is, ahead of receipt); equal to ``t`` for a message on time. For a reader
    that places a late backlog by device time itself (the service checks)."""


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


@dataclass(slots=True)
class Statuses:
    """Status messages, in arrival order."""

    device: I64
    bed: I64
    received: I64
    ts: I64
    """The device's time (its ``ts``; whether it is trusted is for the reader to judge)."""
    offline: npt.NDArray[np.bool_]
    goodbye: npt.NDArray[np.bool_]
    """An ``offline`` the device said itself (``seq`` above 0), not its last will."""
    battery: F32
    """NaN where not reported (the same for ``heartbeat_s``)."""
    heartbeat_s: F32


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
    """Columns of one batch. Per message: ``device``, ``received``, ``ts``, ``is_will``,
    ``clock_offset``."""

    device: I64
    received: I64
    ts: I64
    is_will: npt.NDArray[np.bool_]
    clock_offset: I64
    """Device time minus receipt time: of ``ts``, or of a sample whose ``t`` disagrees with
    ``ts`` by more than a batch can span (see the module docstring)."""
    infrared: Infrared
    audio: Audio
    vitals: Vitals
    statuses: Statuses
    events: list[EventRecord] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return len(self.infrared.t) + len(self.audio.t) + len(self.vitals.t)


class DeviceNumbers(Protocol):
    """What extraction needs of the fleet: its device numbers
    (:class:`~gateway.detect._numbering.Numbering`; a :class:`~gateway.detect.Fleet` answers
    for its own)."""

    @property
    def address_cache(self) -> dict[int, int]: ...

    @property
    def device_bed(self) -> I64: ...

    @property
    def device_bed_list(self) -> list[int]: ...

    def address_code(self, a: Address) -> int: ...


def _telemetry_columns(numbering: DeviceNumbers, telemetry: Sequence[Telemetry], devices: I64,
                       received: I64, ts: I64, offset: I64
                       ) -> tuple[list[object], I64, I64, I64, I64, I64]:
    """The samples of ``telemetry``, and per sample: bed, device, time (see the module
    docstring), receipt time, device time (:attr:`Infrared.sent`). ``offset`` (per message,
    ``ts - received``) is changed in place for messages with a sample time far from their
    ``ts``."""
    if not telemetry:
        empty = np.zeros(0, np.int64)
        return [], empty, empty, empty, empty, empty
    counts = np.fromiter(map(len, map(_SAMPLES, telemetry)), np.int64, len(telemetry))
    shift = np.where(np.abs(ts - received) > CLOCK_TRUST_MS, received - ts, 0)
    samples: list[object] = list(chain.from_iterable(map(_SAMPLES, telemetry)))
    raw = np.fromiter(map(_T, samples), np.int64, len(samples))
    message_ts = np.repeat(ts, counts)
    t = raw + np.repeat(shift, counts)
    astray = np.abs(message_ts - raw) > MAX_BATCH_SPAN_MS
    if astray.any():
        t[astray] = (message_ts + np.repeat(shift, counts))[astray]
        owner = np.repeat(np.arange(len(telemetry)), counts)[astray]
        offset[owner] = (raw - np.repeat(received, counts))[astray]
    sample_received = np.repeat(received, counts)
    ahead = t - sample_received
    if len(ahead) and ahead.max() > 0:
        # No sample is placed after its receipt: a message whose samples run ahead of it
        # (a clock a few minutes fast, or a batch dated into the next hour) is moved back
        # whole, its latest sample at its receipt, its spacing kept. Else one batch dated an
        # hour ahead held a bed's windows there, and real samples after it were older than
        # the window's newest: a heart rate of 180 raised nothing (a fresh verifier's case).
        owner = np.repeat(np.arange(len(telemetry)), counts)
        lead = np.zeros(len(telemetry), np.int64)
        np.maximum.at(lead, owner, ahead)
        lead[lead <= LEAD_TOLERANCE_MS] = 0
        t -= lead[owner]
        offset[:] = np.maximum(offset, lead)  # the clock ahead shows as skew (sensor_fault)
    device = np.repeat(devices, counts)
    sent = t - np.repeat(shift, counts)
    return samples, numbering.device_bed[device], device, t, sample_received, sent


def _column(samples: Sequence[object], name: str) -> F32:
    """One optional field of every sample: 1.0/0.0 for flags, NaN where absent."""
    if not samples:
        return np.zeros(0, np.float32)
    return np.array(list(map(attrgetter(name), samples)), dtype=np.float32)


def _pick(items: list[object], at: I64) -> list[object]:
    """``items`` at the positions ``at`` (gathered in C)."""
    if len(at) == 0:
        return []
    if len(at) == 1:
        return [items[int(at[0])]]
    return list(itemgetter(*at.tolist())(items))


_SAMPLES = attrgetter("samples")
_STATE = attrgetter("state")
_OFFLINE = "offline"
_TS = attrgetter("ts")
_T = attrgetter("t")
_ZONE = attrgetter("zone")
_PAYLOAD = attrgetter("payload")
_ADDRESS = attrgetter("address")
LEAD_TOLERANCE_MS: Final = 1_000
"""Samples up to this after their receipt keep their time (a clock's jitter, a sample taken
the moment a check-in was answered); further ahead, their message is moved back."""
OTHER: Final = 3
"""Kind code of a message that is not telemetry (0 infrared, 1 audio, 2 fall telemetry)."""


Chunk = tuple[Sequence[Message], Sequence[int]]


def extract(numbering: DeviceNumbers, chunks: Sequence[Chunk]) -> Batch:
    """The columns of the messages of ``chunks`` (each a batch with its receipt times), their
    beds and devices numbered by ``numbering`` (a fleet's: ``extract(fleet, chunks)``).

    No Python-level loop per message or per sample: devices are found through the fleet's
    address cache (:attr:`~gateway.detect._numbering.Numbering.address_cache`) with ``map``,
    samples are unpacked per kind with ``map``/``attrgetter``, and every derived column is
    computed with numpy. Only statuses and events (a few per device and hour) and first-seen
    addresses are handled one by one."""
    messages: list[Message] = []
    received_all: list[int] = []
    for batch_messages, received_ms in chunks:
        if len(batch_messages) != len(received_ms):
            raise ValueError("messages and received_ms differ in length")
        messages.extend(batch_messages)
        received_all.extend(received_ms)
    addresses = list(map(_ADDRESS, messages))
    payloads: list[object] = list(map(_PAYLOAD, messages))
    packed = list(map(numbering.address_cache.get, map(id, addresses)))
    if None in packed:
        for i, value in enumerate(packed):
            if value is None:
                packed[i] = numbering.address_code(addresses[i])
    code_of = np.array(packed, dtype=np.int64)
    device = code_of >> 2
    code = code_of & 3
    received = np.array(received_all, dtype=np.int64)
    ts = np.fromiter(map(_TS, payloads), np.int64, len(payloads))
    other = np.flatnonzero(code == OTHER)
    kinds = list(map(type, _pick(payloads, other)))
    is_status = np.fromiter(map(partial(is_, Status), kinds), np.bool_, len(kinds))
    at = other[is_status]
    status: list[Status] = _pick(payloads, at)  # type: ignore[assignment]
    offline = np.array(list(map(_OFFLINE.__eq__, map(_STATE, status))), dtype=np.bool_) \
        if status else np.zeros(0, np.bool_)
    is_will = np.zeros(len(payloads), np.bool_)
    is_will[at] = offline
    goodbye = offline & np.array([item.seq > 0 for item in status], dtype=np.bool_) \
        if status else np.zeros(0, np.bool_)
    statuses = Statuses(device[at], numbering.device_bed[device[at]], received[at], ts[at],
                        offline,
                        goodbye, _column(status, "battery"), _column(status, "heartbeat_s"))
    events: list[EventRecord] = []
    bed_of = numbering.device_bed_list
    for index in other[~is_status].tolist():
        payload = payloads[index]
        got, owner = received_all[index], int(device[index])
        event_ts: int = payload.ts
        skewed = abs(event_ts - got) > CLOCK_TRUST_MS
        events.append(EventRecord(owner, bed_of[owner], got, got if skewed else event_ts,
                                  payload))

    clock_offset = ts - received

    def sort(kind: int) -> tuple[list[object], I64, I64, I64, I64, I64]:
        at = np.flatnonzero(code == kind)
        telemetry: list[Telemetry] = _pick(payloads, at)  # type: ignore[assignment]
        offset = clock_offset[at]
        columns = _telemetry_columns(numbering, telemetry, device[at], received[at], ts[at],
                                     offset)
        clock_offset[at] = offset
        return columns

    s, s_bed, s_device, s_t, s_received, s_sent = sort(0)
    infrared = Infrared(
        s_bed, s_t, s_device, s_received, _column(s, "presence"), _column(s, "motion"),
        _column(s, "people"),
        np.array(list(map(ZONE_CODES.get, map(_ZONE, s))), dtype=np.int8)
        if s else np.zeros(0, np.int8), s_sent)
    s, s_bed, s_device, s_t, s_received, _ = sort(1)
    audio = Audio(s_bed, s_t, s_device, s_received, _column(s, "level_db"),
                  _column(s, "voice"))
    s, s_bed, s_device, s_t, s_received, _ = sort(2)
    vitals = Vitals(s_bed, s_t, s_device, s_received, _column(s, "in_bed"),
                    _column(s, "heart_rate"), _column(s, "breathing_rate"))
    return Batch(device=device, received=received, ts=ts, is_will=is_will,
                 clock_offset=clock_offset, infrared=infrared, audio=audio, vitals=vitals,
                 statuses=statuses, events=events)


Samples = Infrared | Audio | Vitals


def _by_bed_then_time(bed: I64, t: I64) -> bool:
    same = bed[1:] == bed[:-1]
    return bool((bed[1:] >= bed[:-1]).all() and (t[1:][same] >= t[:-1][same]).all())


def by_bed(samples: Samples) -> Samples:
    """``samples`` ordered by bed, then time (arrival order among equal times): the order in
    which every detector folds a round in, so it is sorted once per round, for all of them."""
    bed, t = samples.bed, samples.t
    if len(bed) < 2:
        return samples
    if _by_bed_then_time(bed, t):
        return samples
    order = None
    if int(bed.max()) < 1 << 16:
        # Radix sort (linear) by bed, arrival order kept: enough when each bed's samples
        # arrived in time order, as they nearly always do.
        order = np.argsort(bed.astype(np.uint16), kind="stable")
        if not _by_bed_then_time(bed[order], t[order]):
            order = None
    if order is None:
        low = int(t.min())
        if int(bed.max()) < 1 << 22 and int(t.max()) - low < 1 << 41:
            order = np.argsort((bed << 41) + (t - low), kind="stable")  # one key: faster
        else:
            order = np.lexsort((t, bed))
    cls = type(samples)
    return cls(**{f.name: getattr(samples, f.name)[order] for f in fields(cls)})


def sorted_round(batch: Batch) -> Batch:
    """``batch`` with its samples :func:`by_bed` (messages, statuses and events keep their
    arrival order)."""
    batch.infrared = by_bed(batch.infrared)  # type: ignore[assignment]
    batch.audio = by_bed(batch.audio)  # type: ignore[assignment]
    batch.vitals = by_bed(batch.vitals)  # type: ignore[assignment]
    return batch


def groups(bed: I64) -> tuple[I64, I64, I64, I64]:
    """For ``bed`` sorted: each run's bed, first index, last index and length."""
    n = len(bed)
    if not n:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty
    starts = np.flatnonzero(np.concatenate(([True], bed[1:] != bed[:-1])))
    ends = np.append(starts[1:], n) - 1
    return bed[starts], starts, ends, ends - starts + 1


def concatenate(batches: Sequence[Batch]) -> Batch:
    """One batch of several, in order (their bed and device numbers are the fleet's, so they
    stay valid)."""

    def join(parts: Sequence[object]) -> object:
        first = parts[0]
        if isinstance(first, np.ndarray):
            return np.concatenate(parts)  # type: ignore[arg-type]
        if isinstance(first, list):
            return list(chain.from_iterable(parts))  # type: ignore[arg-type]
        cls = type(first)
        return cls(**{f.name: join([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})  # type: ignore[arg-type]

    return join(batches)  # type: ignore[return-value]
