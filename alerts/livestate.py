"""Live state of beds and devices, kept in memory for the dispatcher API.

A pipeline :class:`~gateway.ingest.pipeline.Stage` that remembers, per device, the last status it
reported (state, battery, firmware, promised heartbeat), when it was last heard from and how
far its clock is from receipt time, and per bed the recent values of the metrics a dispatcher
looks at (:data:`READINGS`).

Whether a device announced itself offline follows the one ordering rule of
:mod:`devices.devicetime`, the same as ``device_offline``'s: a last will takes effect when it
is received, unless the device spoke after it. (A will's ``ts`` is its connect time, older
than anything the device said since, so ordering statuses by device time kept the bed page
``online`` after a will.) A device whose latest message had a time outside the clock window is
flagged (:attr:`DeviceState.clock_wrong`, :meth:`LiveState.wrong_clocks`).

Memory is bounded per bed, whatever the devices send: each metric of a bed is a ring of
``window_ms / resolution_ms`` slots (by default 24 h of one-minute slots: 1,440 slots of 12
bytes, about 17 KiB per metric and 104 KiB per bed with all six metrics; values are kept as
float32, which is exact to the 7 significant digits sensors send). A slot keeps the sample
with the latest device time that falls into it (the larger value on a tie), so the ring holds
the same values whatever order samples arrive in (batches, retransmissions and late messages
included); samples older than the window behind the newest one are ignored. The number of beds
and devices is bounded too (``max_beds``, ``max_devices_per_bed``); past it the least recently
heard-from are forgotten (they come back with their next message). Full-resolution history is
in the time-series database.

Everything here runs on the event loop (``accept`` in the pipeline, reads in the API), so no
locks are needed; ``commit`` has nothing to make durable.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from alerts.readings import ReadingSlots
from devices.codec import Message
from devices.devicetime import ClockWindow, announced_offline, is_offline, sent_ms
from devices.schemas import AudioSample, InfraredSample, Status, Telemetry, VitalsSample
from devices.topics import Kind

READINGS: Final = ("heart_rate", "breathing_rate", "in_bed", "presence", "motion", "level_db")
"""The readings kept per bed for the API (the ``metric`` of its series route; "metrics" in this
project otherwise means the gateway's own Prometheus metrics); booleans are kept as 0.0/1.0."""

BOOLEAN_READINGS: Final = frozenset({"in_bed", "presence"})

_FIELDS_BY_SAMPLE: Final[dict[type, tuple[str, ...]]] = {
    VitalsSample: ("heart_rate", "breathing_rate", "in_bed"),
    InfraredSample: ("presence", "motion"),
    AudioSample: ("level_db",),
}

DAY_MS: Final = 86_400_000


@dataclass(slots=True)
class DeviceState:
    """What is known about one device from its messages (times are gateway receipt, ms)."""

    site: str
    bed: str
    device: str
    kind: Kind
    last_seen: int = 0
    """Receipt time of the device's latest message of any kind."""
    last_ts: int = 0
    """Device time of that message."""
    reported_state: str | None = None
    """``online``/``offline`` as the device (or its last will) last said, by the ordering rule
    of :mod:`devices.devicetime`; None before any status."""
    status_at: int | None = None
    """Receipt time of the latest status."""
    status_ts: int = -1
    """Device time of the latest ``online`` status (the order of their fields)."""
    heard_at: int | None = None
    """Latest sign of life: when the device last said anything but ``offline``
    (:func:`~devices.devicetime.sent_ms`)."""
    offline_at: int | None = None
    """Receipt time of the latest ``offline`` status (a last will or a goodbye)."""
    clock_offset_ms: int | None = None
    """Device time minus receipt time of the latest message (``offline`` statuses excepted:
    a will carries its connect time)."""
    clock_wrong: bool = False
    """The latest message had a time outside the clock window, so it was stored at receipt
    time (:class:`~devices.devicetime.ClockWindow`)."""
    battery: float | None = None
    fw: str | None = None
    heartbeat_s: float | None = None


class BedState:
    """The devices and metric rings of one bed (rings created on first use of a metric)."""

    __slots__ = ("bed", "devices", "last_seen", "rings", "site")

    def __init__(self, site: str, bed: str) -> None:
        self.site = site
        self.bed = bed
        self.rings: dict[str, ReadingSlots] = {}
        self.devices: dict[str, DeviceState] = {}
        self.last_seen = 0

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.rings.values())

    def latest(self) -> dict[str, tuple[int, float]]:
        out = {}
        for name in READINGS:
            ring = self.rings.get(name)
            if ring is not None and (value := ring.latest()) is not None:
                out[name] = value
        return out


class LiveState:
    """The pipeline stage; see the module docstring for what is kept and its bounds."""

    name = "livestate"

    def __init__(self, *, window_ms: int = DAY_MS, resolution_ms: int = 60_000,
                 max_beds: int = 50_000, max_devices_per_bed: int = 32,
                 started_ms: int | None = None, clock_window: ClockWindow | None = None
                 ) -> None:
        if window_ms < resolution_ms or resolution_ms < 1:
            raise ValueError("need 1 <= resolution_ms <= window_ms")
        if max_beds < 1 or max_devices_per_bed < 1:
            raise ValueError("max_beds and max_devices_per_bed must be positive")
        self.window_ms = window_ms
        self.resolution_ms = resolution_ms
        self.max_beds = max_beds
        self.max_devices_per_bed = max_devices_per_bed
        self._beds: OrderedDict[tuple[str, str], BedState] = OrderedDict()
        self.clock_window = clock_window or ClockWindow()
        self._wrong_clocks: dict[tuple[str, str, str], int] = {}
        self.evicted_beds = 0
        self.evicted_devices = 0
        self.started_ms = time.time_ns() // 1_000_000 if started_ms is None else started_ms
        """Since when this state has been watching: memory cannot answer for earlier times."""

    # --- Stage ------------------------------------------------------------------------------

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        beds = self._beds
        for message, received in zip(messages, received_ms, strict=True):
            a = message.address
            payload = message.payload
            key = (a.site, a.bed)
            bed = beds.get(key)
            if bed is None:
                bed = self._new_bed(key)
            else:
                beds.move_to_end(key)
            if received > bed.last_seen:
                bed.last_seen = received
            device = bed.devices.get(a.device)
            if device is None:
                device = self._new_device(bed, message)
            if received >= device.last_seen:
                device.last_seen = received
                device.last_ts = payload.ts
            if is_offline(payload):
                self._offline(device, payload, received)  # type: ignore[arg-type]
                continue
            said = sent_ms(payload.ts, received)
            if device.heard_at is None or said > device.heard_at:
                device.heard_at = said
            trusted = self._clock(device, payload, received)
            if type(payload) is Telemetry:
                self._samples(bed, payload, None if trusted else self.clock_window.times(
                    payload.ts, [sample.t for sample in payload.samples], received))
            elif type(payload) is Status:
                if payload.ts >= device.status_ts:
                    self._status(device, payload, received)
                device.status_at = received
            if device.reported_state is not None or type(payload) is Status:
                device.reported_state = ("offline" if announced_offline(
                    device.offline_at, device.heard_at) else "online")

    def commit(self) -> None:
        """Nothing to make durable: live state is rebuilt from traffic after a restart."""

    def _new_bed(self, key: tuple[str, str]) -> BedState:
        bed = self._beds[key] = BedState(*key)
        if len(self._beds) > self.max_beds:
            _, gone = self._beds.popitem(last=False)  # the least recently heard-from
            for device in gone.devices.values():
                self._wrong_clocks.pop((device.site, device.bed, device.device), None)
            self.evicted_beds += 1
        return bed

    def _new_device(self, bed: BedState, message: Message) -> DeviceState:
        a = message.address
        if len(bed.devices) >= self.max_devices_per_bed:
            stale = min(bed.devices.values(), key=lambda d: d.last_seen)
            del bed.devices[stale.device]
            self._wrong_clocks.pop((stale.site, stale.bed, stale.device), None)
            self.evicted_devices += 1
        device = bed.devices[a.device] = DeviceState(a.site, a.bed, a.device, a.kind)
        return device

    def _clock(self, device: DeviceState, payload: object, received: int) -> bool:
        """Note the device's clock offset; whether the message's times are trusted."""
        device.clock_offset_ms = payload.ts - received  # type: ignore[attr-defined]
        wrong = not self.clock_window.trusts_message(payload, received)
        if wrong or device.clock_wrong:
            key = (device.site, device.bed, device.device)
            if wrong:
                self._wrong_clocks[key] = device.clock_offset_ms
            else:
                self._wrong_clocks.pop(key, None)
            device.clock_wrong = wrong
        return not wrong

    @staticmethod
    def _offline(device: DeviceState, status: Status, received: int) -> None:
        """A last will or a goodbye: effective at receipt (:mod:`devices.devicetime`)."""
        if device.offline_at is None or received > device.offline_at:
            device.offline_at = received
        device.status_at = received
        device.reported_state = ("offline" if announced_offline(device.offline_at, device.heard_at)
                                 else "online")
        LiveState._fields(device, status)

    @staticmethod
    def _status(device: DeviceState, status: Status, received: int) -> None:
        del received
        device.status_ts = status.ts
        LiveState._fields(device, status)

    @staticmethod
    def _fields(device: DeviceState, status: Status) -> None:
        if status.battery is not None:
            device.battery = status.battery
        if status.fw is not None:
            device.fw = status.fw
        if status.heartbeat_s is not None:
            device.heartbeat_s = status.heartbeat_s

    def _samples(self, bed: BedState, telemetry: Telemetry, times: list[int] | None) -> None:
        """``times``: where the samples go when their device times are not trusted (the
        times they are stored at, :class:`~devices.devicetime.ClockWindow`)."""
        samples = telemetry.samples
        rings = bed.rings
        fields = _FIELDS_BY_SAMPLE[type(samples[0])]
        if len(samples) == 1:
            sample = samples[0]
            t = sample.t if times is None else times[0]
            for name in fields:
                value = getattr(sample, name)
                if value is not None:
                    (rings.get(name) or self._ring(bed, name)).add(t, value)
            return
        res = self.resolution_ms
        for name in fields:
            # A slot keeps only its latest sample: within one message, hand the ring one
            # sample per run of samples in the same slot (the result is the same).
            ring: ReadingSlots | None = None
            slot = -1
            best_t = -1
            best_v: float = 0.0
            for k, sample in enumerate(samples):
                value = getattr(sample, name)
                if value is None:
                    continue
                t = sample.t if times is None else times[k]
                if t // res == slot:
                    if t > best_t or (t == best_t and value > best_v):
                        best_t, best_v = t, value
                    continue
                if slot >= 0:
                    ring = ring or rings.get(name) or self._ring(bed, name)
                    ring.add(best_t, best_v)
                slot, best_t, best_v = t // res, t, value
            if slot >= 0:
                (ring or rings.get(name) or self._ring(bed, name)).add(best_t, best_v)

    def _ring(self, bed: BedState, name: str) -> ReadingSlots:
        ring = bed.rings[name] = ReadingSlots(window_ms=self.window_ms,
                                              resolution_ms=self.resolution_ms)
        return ring

    # --- queries ----------------------------------------------------------------------------

    def bed(self, site: str, bed: str) -> BedState | None:
        return self._beds.get((site, bed))

    def beds(self) -> Iterator[BedState]:
        return iter(list(self._beds.values()))

    def device(self, site: str, bed: str, device: str) -> DeviceState | None:
        state = self._beds.get((site, bed))
        return state.devices.get(device) if state is not None else None

    def devices_of(self, site: str, bed: str) -> list[DeviceState]:
        state = self._beds.get((site, bed))
        if state is None:
            return []
        return [state.devices[d] for d in sorted(state.devices)]

    def series(self, site: str, bed: str, metric: str, *, since: int | None = None,
               until: int | None = None) -> list[tuple[int, float]]:
        if metric not in READINGS:
            raise ValueError(f"unknown metric {metric!r}")
        state = self._beds.get((site, bed))
        ring = state.rings.get(metric) if state is not None else None
        return ring.points(since, until) if ring is not None else []

    def coverage_start(self, site: str, bed: str, metric: str, *, now_ms: int) -> int:
        """The earliest time memory can answer for: a range starting earlier needs the
        time-series database. Memory starts when this state started watching and reaches back
        at most one window (from the newest sample, or from now without samples)."""
        state = self._beds.get((site, bed))
        ring = state.rings.get(metric) if state is not None else None
        if ring is None or ring.newest < 0:
            return max(self.started_ms, now_ms - self.window_ms)
        return max(self.started_ms, ring.oldest_possible)

    def wrong_clocks(self) -> list[tuple[str, str, str, int]]:
        """``(site, bed, device, clock offset ms)`` of the devices whose clock is wrong now.
        Safe to call from another thread (a metrics scrape)."""
        return [(*key, offset) for key, offset in list(self._wrong_clocks.items())]

    def __len__(self) -> int:
        return len(self._beds)


def connectivity(device: DeviceState, *, now_ms: int, heartbeat_s: float,
                 offline_factor: float) -> Literal["online", "offline", "unknown"]:
    """``online``, ``offline`` or ``unknown``: what the device said (a last will or a goodbye
    counts unless the device spoke after it, :mod:`devices.devicetime`), unless it has been
    silent for longer than its promised heartbeat times ``offline_factor`` (then ``offline``).
    The same rule as ``device_offline``'s."""
    if device.last_seen <= 0:
        return "unknown"
    if announced_offline(device.offline_at, device.heard_at):
        return "offline"
    promised = device.heartbeat_s or heartbeat_s
    heard = device.heard_at if device.heard_at is not None else device.last_seen
    if now_ms - heard > promised * offline_factor * 1000:
        return "offline"
    return "online"
