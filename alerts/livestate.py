"""Live state of beds and devices, kept in memory for the dispatcher API.

A pipeline :class:`~gateway.ingest.pipeline.Stage` that remembers, per device, the last status it
reported (state, battery, firmware, promised heartbeat), when it was last heard from and how
far its clock is from receipt time, and per bed the recent values of the metrics a dispatcher
looks at (:data:`READINGS`).

**Order.** Whether a device announced itself offline follows the one ordering rule of
:mod:`devices.devicetime`, the same as ``device_offline``'s: a last will takes effect when it
is received, unless the device spoke after it. (A will's ``ts`` is its connect time, older
than anything the device said since, so ordering statuses by device time kept the bed page
``online`` after a will.) The fields of an ``offline`` status (battery, firmware) count only
in the order of its device time: an old will marks the device offline at once but never puts
its old battery and firmware over newer ones. The other statuses' fields count in the order
they were sent: their device time when it is inside the clock window
(:class:`~devices.devicetime.ClockWindow`, the rule the line encoder stores by; never later than
its receipt), else their receipt time. So a status dated 2099 counts when it arrives and the
device's next real status replaces it, and a device whose clock was wrong and is corrected, or
right and jumps, is ordered by receipt while wrong and by its clock again once right. Readings
outside the window are kept at their receipt time too (and the ring itself keeps nothing far
ahead of receipt, :mod:`alerts.readings`), so a future-dated sample never evicts real ones. A
device whose latest message had a time outside the clock window is flagged
(:attr:`DeviceState.clock_wrong`, :meth:`LiveState.wrong_clocks`).

**Memory.** Per bed, each metric is a ring of ``window_ms / resolution_ms`` slots (by default
24 h of one-minute slots of 12 bytes, 17 KiB once full; a ring starts at 16 slots and grows as
its readings spread, so a reading heard once costs about 400 bytes; values are float32, exact
to the 7 significant digits sensors send). A slot keeps the sample with the latest time that
falls into it (the larger value on a tie), so the ring holds the same values whatever order
samples arrive in; samples older than the window behind the newest one are ignored. Across
beds, the state is held under a byte budget (``max_bytes``, the ``live_state_max_bytes``
setting), a bed count (``max_beds``) and a device count per bed (``max_devices_per_bed``). Its
size, :attr:`LiveState.nbytes`, is counted as it changes, from :func:`sys.getsizeof` of rings
and indexes and measured costs of the rest (:data:`BED_BYTES`), and follows what tracemalloc
sees within a few per cent: a bed that sent one fall-sensor sample (three readings) costs about
2.6 KiB, one with every reading for a day about 106 KiB. Past a bound the least recently
heard-from beds are forgotten, beds not in the registry (``registered``) before any registered
one, and an unregistered bed never pushes a registered one out: a flood of made-up ids evicts
only its own kind while registered beds keep their day. A forgotten bed comes back with its
next message. What memory no longer holds is said, never guessed: :meth:`LiveState.forgotten`
and :meth:`LiveState.coverage_start` send readers to the time-series database, which has
full-resolution history.

This module is over 400 lines: the stage, the accounting of its bytes and the queries on what
it holds share one set of indexes and one rule of what is held; split, each half would have to
know the other's invariants.

Everything here runs on the event loop (``accept`` in the pipeline, reads in the API), so no
locks are needed; ``commit`` has nothing to make durable.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from alerts.readings import ReadingSlots
from devices import bedkeys
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
_SIGNS_OF_LIFE: Final = ("motion", "in_bed", "heart_rate", "breathing_rate")
"""Readings that show someone at home whatever the infrared's presence says (any non-zero)."""
AWAY_MS: Final = 30 * 60_000
"""Nobody seen by the infrared for this long: nobody is home (:meth:`BedState.away_since`)."""
DEFAULT_MAX_BYTES: Final = 128 * 2**20
"""Default of the ``live_state_max_bytes`` setting: about 1,240 beds sending all six readings
all day (105 KiB each), about 48,000 heard once. Measured RSS growth is 1.11 times the budget
(142 MB), so the state stays inside the gateway's 500 MB bound beside the rest (README, Memory
under a flood of unknown devices)."""
MIN_MAX_BYTES: Final = 2**20

# What the parts of the state cost, measured with tracemalloc (CPython 3.11, 64-bit);
# ``tests/unit/test_livestate_budget.py`` checks LiveState.nbytes against tracemalloc.
BED_BYTES: Final = 420
"""A bed besides its devices and rings: the object, its dicts, its key, its id strings (plus
their length). The indexes of beds and wrong clocks count at their :func:`sys.getsizeof`,
twice against the budget: a dict that resizes holds its old and new tables for a moment."""
DEVICE_BYTES: Final = 460
"""A device's state: the object, its numbers, its id string (plus its length), its place in
its bed."""
RING_BYTES: Final = 100
"""A reading's place in its bed, besides the ring's own :attr:`~ReadingSlots.nbytes`."""
FW_BYTES: Final = 50
"""A firmware string besides its length."""
WRONG_CLOCK_BYTES: Final = 90
"""A device's entry among the wrong clocks."""


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
    status_order: int = -1
    """When the latest ``online`` status counts as sent (the order of their fields): its device
    time inside the clock window (at most its receipt time), else its receipt time."""
    status_untrusted_at: int | None = None
    """Receipt time of the status shown, when its device time was outside the clock window."""
    heard_at: int | None = None
    """Latest sign of life: when the device last said anything but ``offline``
    (:func:`~devices.devicetime.sent_ms`)."""
    offline_at: int | None = None
    """Receipt time of the latest ``offline`` status (a last will or a goodbye)."""
    offline_later: bool = False
    """The ``offline`` status at :attr:`offline_at` arrived after the sign of life at
    :attr:`heard_at`: decides their tie in one millisecond (:mod:`devices.devicetime`)."""
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

    __slots__ = ("bed", "devices", "last_seen", "nbytes", "registered", "rings", "since_ms",
                 "site")

    def __init__(self, site: str, bed: str, *, registered: bool = True,
                 since_ms: int = 0) -> None:
        self.site = site
        self.bed = bed
        self.rings: dict[str, ReadingSlots] = {}
        self.devices: dict[str, DeviceState] = {}
        self.last_seen = 0
        self.registered = registered
        """Listed in the registry when first seen: kept before unlisted beds when memory is
        short."""
        self.since_ms = since_ms
        """Since when this bed's readings are all in memory (when it was first seen, if beds
        have been forgotten before)."""
        self.nbytes = BED_BYTES + len(site) + len(bed)
        """The bed's share of :attr:`LiveState.nbytes` (devices and rings included)."""

    def away_since(self) -> int | None:
        """Since when nobody has been home, if nobody is (issue #12: "away since" on the bed
        page): the infrared presence readings of the last :data:`AWAY_MS` are all "nobody",
        and away began with the first "nobody" after the last time someone was seen (the
        oldest reading in memory if nobody was seen all day). None: someone is home, or the
        bed has no presence readings. A bed with sensors in several rooms is away only when
        none of them saw anyone for that long. The infrared's "nobody" alone is not enough
        (a person out of its view, or still under a sensor that sees presence by movement):
        since then no other reading may show someone, movement, in bed or a heart or
        breathing rate (the detectors weigh more, door and sound included:
        :class:`gateway.detect` ``HomeWatch``)."""
        ring = self.rings.get("presence")
        latest = ring.latest() if ring is not None else None
        if ring is None or latest is None or latest[1] != 0.0:
            return None
        points = ring.points()
        last_present = max((t for t, v in points if v != 0.0), default=None)
        absent = [t for t, v in points if v == 0.0 and (last_present is None or t > last_present)]
        if not absent or latest[0] - absent[0] < AWAY_MS:
            return None
        for name in _SIGNS_OF_LIFE:
            signs = self.rings.get(name)
            if signs is not None and any(v != 0.0 for _, v in signs.points(absent[0])):
                return None
        return absent[0]

    def latest(self) -> dict[str, tuple[int, float]]:
        out = {}
        for name in READINGS:
            ring = self.rings.get(name)
            if ring is not None and (value := ring.latest()) is not None:
                out[name] = value
        return out


class LiveState:
    """The pipeline stage; see the module docstring for what is kept and its bounds.

    ``registered(site, bed)``: whether a bed is in the registry (asked when a bed is first
    seen); None counts every bed alike. ``max_bytes``: the byte budget (None: only the counts).
    """

    name = "livestate"

    def __init__(self, *, window_ms: int = DAY_MS, resolution_ms: int = 60_000,
                 max_beds: int = 50_000, max_devices_per_bed: int = 32,
                 max_bytes: int | None = DEFAULT_MAX_BYTES,
                 registered: Callable[[str, str], bool] | None = None,
                 started_ms: int | None = None, clock_window: ClockWindow | None = None
                 ) -> None:
        if window_ms < resolution_ms or resolution_ms < 1:
            raise ValueError("need 1 <= resolution_ms <= window_ms")
        if max_beds < 1 or max_devices_per_bed < 1:
            raise ValueError("max_beds and max_devices_per_bed must be positive")
        if max_bytes is not None and max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES} (1 MiB)")
        self.window_ms = window_ms
        self.resolution_ms = resolution_ms
        self.max_beds = max_beds
        self.max_devices_per_bed = max_devices_per_bed
        self.max_bytes = max_bytes
        self._max_bytes = max_bytes if max_bytes is not None else sys.maxsize
        self._registered = registered
        # Two least-recently-heard orders: unregistered beds are evicted first.
        self._listed: OrderedDict[tuple[str, str], BedState] = OrderedDict()
        self._unlisted: OrderedDict[tuple[str, str], BedState] = OrderedDict()
        self._keys = bedkeys.BedKeys()
        """Every bed held, sorted (the API's pages, :meth:`bed_keys`)."""
        self.clock_window = clock_window or ClockWindow()
        self._wrong_clocks: dict[tuple[str, str, str], int] = {}
        self._index_bytes = 0
        self._over = False
        self.nbytes = 0
        """Bytes held by the beds, their devices and readings, and the indexes over them (see
        :data:`BED_BYTES`)."""
        self._count_indexes()
        self.evicted_beds = 0
        self.evicted_registered_beds = 0
        """Of :attr:`evicted_beds`, those in the registry (a budget too small for the fleet)."""
        self.evicted_devices = 0
        self.started_ms = time.time_ns() // 1_000_000 if started_ms is None else started_ms
        """Since when this state has been watching: memory cannot answer for earlier times."""

    # --- Stage ------------------------------------------------------------------------------

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        listed, unlisted = self._listed, self._unlisted
        for message, received in zip(messages, received_ms, strict=True):
            a = message.address
            payload = message.payload
            key = (a.site, a.bed)
            bed = listed.get(key)
            if bed is not None:
                listed.move_to_end(key)
            elif (bed := unlisted.get(key)) is not None:
                unlisted.move_to_end(key)
            else:
                bed = self._new_bed(key, received)
            if received > bed.last_seen:
                bed.last_seen = received
            device = bed.devices.get(a.device)
            if device is None:
                device = self._new_device(bed, message)
            if received >= device.last_seen:
                device.last_seen = received
                device.last_ts = payload.ts
            if is_offline(payload):
                self._offline(bed, device, payload, received)  # type: ignore[arg-type]
            else:
                said = sent_ms(payload.ts, received)
                if device.heard_at is None or said >= device.heard_at:
                    device.heard_at = said
                    device.offline_later = False
                trusted = self._clock(bed, device, payload, received)
                if type(payload) is Telemetry:
                    grown = self._samples(bed, payload, received, None if trusted else
                                          self.clock_window.times(
                                              payload.ts, [s.t for s in payload.samples],
                                              received))
                    if grown:
                        self._charge(bed, grown)
                elif type(payload) is Status:
                    order = min(payload.ts, received) if trusted else received
                    # A status ordered by receipt (its clock was wrong: 2099, say) gives way to
                    # any trusted status received after it, even from a clock running late.
                    if order >= device.status_order or (
                            trusted and device.status_untrusted_at is not None
                            and received >= device.status_untrusted_at):
                        device.status_order = order
                        device.status_untrusted_at = None if trusted else received
                        self._fields(bed, device, payload)
                    device.status_at = received
                if device.reported_state is not None or type(payload) is Status:
                    device.reported_state = ("offline" if announced_offline(
                        device.offline_at, device.heard_at,
                        offline_later=device.offline_later) else "online")
            if self._over:
                self._shrink(bed)

    def commit(self) -> None:
        """Nothing to make durable: live state is rebuilt from traffic after a restart."""

    def _new_bed(self, key: tuple[str, str], received: int) -> BedState:
        registered = self._registered is None or self._registered(*key)
        bed = BedState(*key, registered=registered,
                       since_ms=self.started_ms if not self.evicted_beds else received)
        (self._listed if registered else self._unlisted)[key] = bed
        self._keys.add(key)
        self.nbytes += bed.nbytes
        self._count_indexes()
        return bed

    def _check(self) -> None:
        """Whether a bound is passed (:meth:`accept` then forgets beds); the indexes count
        twice (see :data:`BED_BYTES`)."""
        self._over = (self.nbytes + self._index_bytes > self._max_bytes
                      or len(self._listed) + len(self._unlisted) > self.max_beds)

    def _count_indexes(self) -> None:
        """Follow the indexes' tables (they grow in steps, and never shrink)."""
        held = (sys.getsizeof(self._listed) + sys.getsizeof(self._unlisted)
                + sys.getsizeof(self._wrong_clocks) + self._keys.nbytes)
        self.nbytes += held - self._index_bytes
        self._index_bytes = held
        self._check()

    def _shrink(self, current: BedState) -> None:
        """Forget the least recently heard-from beds until the bounds hold again: beds not in
        the registry first (``current``, the bed just updated, last of them), then registered
        ones, but only for a registered ``current`` (never itself): an unregistered bed never
        pushes a registered one out."""
        orders = (self._unlisted, self._listed) if current.registered else (self._unlisted,)
        for beds in orders:
            while beds and self._over:
                key, gone = next(iter(beds.items()))
                if gone is current and current.registered:
                    break  # only the bed being updated is left
                del beds[key]
                self._forget(gone)

    def _forget(self, gone: BedState) -> None:
        self._keys.discard((gone.site, gone.bed))
        for device in gone.devices.values():
            self._wrong_clocks.pop((device.site, device.bed, device.device), None)
        self.nbytes -= gone.nbytes
        self._check()
        self.evicted_beds += 1
        if gone.registered:
            self.evicted_registered_beds += 1

    def _new_device(self, bed: BedState, message: Message) -> DeviceState:
        a = message.address
        if len(bed.devices) >= self.max_devices_per_bed:
            stale = min(bed.devices.values(), key=lambda d: d.last_seen)
            del bed.devices[stale.device]
            self._wrong_clocks.pop((stale.site, stale.bed, stale.device), None)
            self.evicted_devices += 1
            self._charge(bed, -(DEVICE_BYTES + len(stale.device)
                                + (FW_BYTES + len(stale.fw) if stale.fw is not None else 0)
                                + (WRONG_CLOCK_BYTES if stale.clock_wrong else 0)))
        device = bed.devices[a.device] = DeviceState(a.site, a.bed, a.device, a.kind)
        self._charge(bed, DEVICE_BYTES + len(a.device))
        return device

    def _charge(self, bed: BedState, nbytes: int) -> None:
        bed.nbytes += nbytes
        self.nbytes += nbytes
        self._check()

    def _clock(self, bed: BedState, device: DeviceState, payload: object,
               received: int) -> bool:
        """Note the device's clock offset; whether the message's times are trusted."""
        device.clock_offset_ms = payload.ts - received  # type: ignore[attr-defined]
        wrong = not self.clock_window.trusts_message(payload, received)
        if wrong or device.clock_wrong:
            key = (device.site, device.bed, device.device)
            if wrong:
                self._wrong_clocks[key] = device.clock_offset_ms
            else:
                self._wrong_clocks.pop(key, None)
            if wrong != device.clock_wrong:
                self._charge(bed, WRONG_CLOCK_BYTES if wrong else -WRONG_CLOCK_BYTES)
                self._count_indexes()
            device.clock_wrong = wrong
        return not wrong

    def _offline(self, bed: BedState, device: DeviceState, status: Status,
                 received: int) -> None:
        """A last will or a goodbye: effective at receipt (:mod:`devices.devicetime`)."""
        if device.offline_at is None or received >= device.offline_at:
            device.offline_at = received
            device.offline_later = True
        device.status_at = received
        device.reported_state = ("offline" if announced_offline(
            device.offline_at, device.heard_at, offline_later=device.offline_later)
            else "online")
        # Its other fields (battery, firmware) count in the order of its device time, never
        # its receipt: a will's ts is its connect time, and a will stored an hour or six days
        # ago must not put back the battery and firmware of then over newer ones.
        order = min(status.ts, received)
        if order >= device.status_order:
            device.status_order = order
            device.status_untrusted_at = None
            self._fields(bed, device, status)

    def _fields(self, bed: BedState, device: DeviceState, status: Status) -> None:
        if status.battery is not None:
            device.battery = status.battery
        if status.fw is not None:
            if device.fw is None:
                self._charge(bed, FW_BYTES + len(status.fw))
            elif len(status.fw) != len(device.fw):
                self._charge(bed, len(status.fw) - len(device.fw))
            device.fw = status.fw
        if status.heartbeat_s is not None:
            device.heartbeat_s = status.heartbeat_s

    def _samples(self, bed: BedState, telemetry: Telemetry, received: int,
                 times: list[int] | None) -> int:
        """Put the samples in their rings; the bytes the rings grew by (new rings are charged
        to the bed already). ``times``: where the samples go when their device times are not
        trusted (the times they are stored at, :class:`~devices.devicetime.ClockWindow`)."""
        samples = telemetry.samples
        rings = bed.rings
        fields = _FIELDS_BY_SAMPLE[type(samples[0])]
        grown = 0
        if len(samples) == 1:
            sample = samples[0]
            t = sample.t if times is None else times[0]
            for name in fields:
                value = getattr(sample, name)
                if value is not None:
                    grown += (rings.get(name) or self._ring(bed, name)).add(t, value, received)
            return grown
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
                    grown += ring.add(best_t, best_v, received)
                slot, best_t, best_v = t // res, t, value
            if slot >= 0:
                ring = ring or rings.get(name) or self._ring(bed, name)
                grown += ring.add(best_t, best_v, received)
        return grown

    def _ring(self, bed: BedState, name: str) -> ReadingSlots:
        ring = bed.rings[name] = ReadingSlots(window_ms=self.window_ms,
                                              resolution_ms=self.resolution_ms,
                                              ahead_ms=self.clock_window.ahead_ms)
        self._charge(bed, ring.nbytes + RING_BYTES)
        return ring

    # --- queries ----------------------------------------------------------------------------

    def _get(self, site: str, bed: str) -> BedState | None:
        state = self._listed.get((site, bed))
        return state if state is not None else self._unlisted.get((site, bed))

    def bed(self, site: str, bed: str) -> BedState | None:
        return self._get(site, bed)

    def beds(self) -> Iterator[BedState]:
        return iter([*self._listed.values(), *self._unlisted.values()])

    def bed_keys(self) -> bedkeys.BedKeys:
        """The ``(site, bed)`` of every bed held, sorted (read only)."""
        return self._keys

    def forgotten(self, site: str, bed: str) -> bool:
        """Whether memory may have held this bed and forgotten it (no state for it, and beds
        have been evicted since start): its devices' state is then not known, rather than
        never heard from."""
        return self.evicted_beds > 0 and self._get(site, bed) is None

    def device(self, site: str, bed: str, device: str) -> DeviceState | None:
        state = self._get(site, bed)
        return state.devices.get(device) if state is not None else None

    def devices_of(self, site: str, bed: str) -> list[DeviceState]:
        state = self._get(site, bed)
        if state is None:
            return []
        return [state.devices[d] for d in sorted(state.devices)]

    def series(self, site: str, bed: str, metric: str, *, since: int | None = None,
               until: int | None = None) -> list[tuple[int, float]]:
        if metric not in READINGS:
            raise ValueError(f"unknown metric {metric!r}")
        state = self._get(site, bed)
        ring = state.rings.get(metric) if state is not None else None
        return ring.points(since, until) if ring is not None else []

    def coverage_start(self, site: str, bed: str, metric: str, *, now_ms: int) -> int:
        """The earliest time memory can answer for: a range starting earlier needs the
        time-series database. Memory starts when this state started watching (or, once beds
        have been forgotten, when the bed was last first seen: for a bed not held, now) and
        reaches back at most one window (from the newest sample, or from now without
        samples)."""
        state = self._get(site, bed)
        if state is None:
            if self.evicted_beds:
                return now_ms  # perhaps forgotten: memory cannot answer for it
            return max(self.started_ms, now_ms - self.window_ms)
        start = max(self.started_ms, state.since_ms)
        ring = state.rings.get(metric)
        if ring is None or ring.newest < 0:
            return max(start, now_ms - self.window_ms)
        return max(start, ring.oldest_possible)

    def wrong_clocks(self) -> list[tuple[str, str, str, int]]:
        """``(site, bed, device, clock offset ms)`` of the devices whose clock is wrong now.
        Safe to call from another thread (a metrics scrape)."""
        return [(*key, offset) for key, offset in list(self._wrong_clocks.items())]

    def __len__(self) -> int:
        return len(self._listed) + len(self._unlisted)


def connectivity(device: DeviceState, *, now_ms: int, heartbeat_s: float,
                 offline_factor: float) -> Literal["online", "offline", "unknown"]:
    """``online``, ``offline`` or ``unknown``: what the device said (a last will or a goodbye
    counts unless the device spoke after it, :mod:`devices.devicetime`), unless it has been
    silent for longer than its promised heartbeat times ``offline_factor`` (then ``offline``).
    The same rule as ``device_offline``'s."""
    if device.last_seen <= 0:
        return "unknown"
    if announced_offline(device.offline_at, device.heard_at,
                         offline_later=device.offline_later):
        return "offline"
    promised = device.heartbeat_s or heartbeat_s
    heard = device.heard_at if device.heard_at is not None else device.last_seen
    if now_ms - heard > promised * offline_factor * 1000:
        return "offline"
    return "online"
