"""The beds and devices the detectors know, as dense indices, with per-bed settings and zones.

Detectors keep their state in numpy arrays indexed by bed (or device) number; the fleet hands
out those numbers on first sight, in order of arrival, and never reuses them. It also buffers
the batches handed to its detectors until their next evaluation round; ``update`` may be
called (event loop) while one other thread evaluates (a worker thread), not more. It also holds
what every detector needs about a bed (its :class:`~devices.registry.BedSettings` as arrays,
its time zone) and answers local-time questions for whole arrays at once, DST included.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import zoneinfo
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from devices.codec import Message
from devices.devicetime import ClockWindow
from devices.registry import BedSettings, Registry
from devices.topics import Address, Channel, Kind
from gateway.detect._batch import Batch, Chunk, Infrared, concatenate, extract, sorted_round

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

NONE: Final = np.iinfo(np.int64).min // 4
"""'No time yet' in int64 time arrays: far below any epoch ms, so ``max`` ignores it."""

KIND_CODES: Final[dict[Kind, int]] = {k: i for i, k in enumerate(Kind)}
KINDS_BY_CODE: Final[tuple[Kind, ...]] = tuple(Kind)
_TELEMETRY_CODES: Final[dict[Kind, int]] = {Kind.INFRARED: 0, Kind.AUDIO: 1, Kind.FALL: 2}

_OFFSET_BUCKET_MS: Final = 15 * 60_000
"""UTC offsets are cached per zone and quarter hour: every DST change in use falls on one."""

EVALUATE_INTERVAL_MS: Final = 60_000
"""Detectors fold in their buffered batches and evaluate at most this often (message clock),
all on the same grid, so one round's columns are extracted once for all of them and numpy
works on a round's worth of samples at a time. Conditions here last minutes or hours; the
emergency path (buttons, falls) does not go through the detectors."""
MAX_PENDING_MESSAGES: Final = 4_000
"""Buffered messages beyond which they are extracted into columns at once, by the caller of
``update``: message objects do not pile up for a minute (memory, garbage-collector passes),
and each extraction is a few milliseconds of work, done in the flow of intake instead of in
one long block that would hold up the event loop or, in a worker thread, compete with it for
the interpreter lock. The extracted parts are joined into one round at evaluation."""
PRESENCE_MEMORY_MS: Final = 5 * 60_000
"""On a bed with several infrared sensors, a sensor that sees nobody is overruled by another
that saw the person within this long (see :meth:`Fleet.reconcile_presence`)."""
ROUND_MAX_MESSAGES: Final = 200_000
"""A round is sealed early once it holds this many messages (bounded memory without ticks)."""

_SETTING_FIELDS: Final = (
    "bed_exit_return_min", "inactivity_factor", "inactivity_min_minutes", "heart_rate_min",
    "heart_rate_max", "breathing_rate_min", "breathing_rate_max", "sound_db_above_baseline",
    "low_battery_pct",
)


def local_zone() -> zoneinfo.ZoneInfo:
    """The machine's zone (``TZ``, else ``/etc/localtime``), UTC when neither is usable."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with Path("/etc/localtime").open("rb") as handle:
            return zoneinfo.ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def _grow(array: npt.NDArray[np.generic], size: int, fill: object) -> npt.NDArray[np.generic]:
    if len(array) >= size:
        return array
    capacity = max(size, 2 * len(array), 16)
    grown = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class Fleet:
    """Bed and device numbering shared by a set of detectors (one per alerting stage)."""

    def __init__(self, registry: Registry | None = None, *, timezone: str | None = None,
                 round_messages: int = MAX_PENDING_MESSAGES,
                 clock_window: ClockWindow | None = None) -> None:
        if round_messages < 1:
            raise ValueError("round_messages must be positive")
        self.round_messages = round_messages
        self.registry = registry if registry is not None else Registry()
        self.clock_window = clock_window or ClockWindow()
        """The gateway's clock window (the ``clock_window_s`` setting): a device time outside
        it is stored at receipt time and is a wrong clock (``sensor_fault``)."""
        self._fallback = (zoneinfo.ZoneInfo(timezone) if timezone
                          else None)
        self._beds: dict[tuple[str, str], int] = {}
        self.bed_keys: list[tuple[str, str]] = []
        self._devices: dict[tuple[str, str, str], int] = {}
        self.address_cache: dict[int, int] = {}
        """``id(address) -> device * 4 + kind code`` (0 infrared, 1 audio, 2 fall telemetry,
        3 anything else): the codec's topic cache hands out the same Address object for
        every message of a topic, so a message's device is found by identity, in C."""
        self._cached_addresses: list[Address] = []
        """Keeps every cached Address alive, so that its id cannot be reused meanwhile."""
        self.device_keys: list[tuple[str, str, str]] = []
        self.device_bed_list: list[int] = []
        self.device_kind_list: list[int] = []
        self.device_bed: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        self.device_kind: npt.NDArray[np.int8] = np.zeros(0, np.int8)
        self.device_heartbeat_ms: F64 = np.zeros(0, np.float64)
        self.offline_factor = float(self.registry.defaults.offline_factor)
        self.zones: list[zoneinfo.ZoneInfo] = []
        self._zone_ids: dict[str, int] = {}
        self.bed_zone: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        self._site_ids: dict[str, int] = {}
        self.bed_site: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        self.settings: dict[str, F64] = {name: np.zeros(0) for name in _SETTING_FIELDS}
        self.night_start_min: F64 = np.zeros(0)
        self.night_end_min: F64 = np.zeros(0)
        self._offsets: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()
        """Guards the buffer: ``update`` (event loop) may run while another thread evaluates."""
        self._cutting = threading.Lock()
        """One extraction at a time (it numbers new beds and devices), rounds in order."""
        self._parts: list[Batch] = []
        """Extracted, not yet sealed into a round (guarded by ``_cutting``)."""
        self._parts_messages = 0
        self._pending: list[Chunk] = []
        self._pending_messages = 0
        self._last_fed: tuple[object, object, set[int]] | None = None
        self._rounds: list[tuple[int, Batch]] = []
        self._presence_t: dict[int, int] = {}
        self._presence_device: dict[int, int] = {}
        """Per bed with several infrared sensors: the latest presence seen, and by which."""
        self._round = 0
        self._consumers: dict[int, int] = {}
        for bed in self.registry.beds():
            index = self.bed_index(bed.site, bed.id)
            for device in bed.devices.values():
                self.device_index(bed.site, bed.id, device.id, device.kind)
            del index

    # --- batches, shared by the detectors ------------------------------------------------------

    def register(self) -> int:
        """A new consumer of rounds (one per detector); returns its id."""
        consumer = len(self._consumers)
        self._consumers[consumer] = self._round
        return consumer

    def feed(self, consumer: int, messages: Sequence[Message],
             received_ms: Sequence[int]) -> None:
        """Buffer a batch. The same batch objects handed to several detectors in turn (as the
        alerting stage does) are buffered once; a detector handing the same objects again
        means a new batch."""
        if len(messages) != len(received_ms):
            raise ValueError("messages and received_ms differ in length")
        with self._lock:
            last = self._last_fed
            if last is not None and last[0] is messages and last[1] is received_ms \
                    and consumer not in last[2]:
                last[2].add(consumer)
                return
            self._last_fed = (messages, received_ms, {consumer})
            self._pending.append((messages, received_ms))
            self._pending_messages += len(messages)
            full = self._pending_messages > self.round_messages
        if full:
            self.extract_pending()

    def extract_pending(self) -> None:
        """Extract the buffered messages into columns now (a part of the next round), so that
        message objects do not pile up; the round is sealed by :meth:`cut`, or once it holds
        :data:`ROUND_MAX_MESSAGES`."""
        with self._cutting:
            with self._lock:
                # ``_last_fed`` stays: the other detectors may still hand over the same batch.
                pending, self._pending = self._pending, []
                self._pending_messages = 0
            if pending:
                self._add_part(extract(self, pending))

    def add_columns(self, batch: Batch) -> None:
        """Add messages already extracted into columns (:func:`~gateway.detect._batch.extract`
        with this fleet) to the next round, after what was fed before."""
        self.extract_pending()
        with self._cutting:
            self._add_part(batch)

    def _add_part(self, batch: Batch) -> None:
        """Under ``_cutting``."""
        self._parts.append(batch)
        self._parts_messages += len(batch.device)
        if self._parts_messages >= ROUND_MAX_MESSAGES:
            self._seal()

    def cut(self) -> None:
        """Extract everything buffered and seal it, with the parts extracted before, into the
        next round: one batch per round, whatever the number of parts, since a detector's
        ``_update`` costs the same for a small batch as for a large one at fleet scale. A
        round's samples are ordered by bed and time (:func:`~gateway.detect._batch.by_bed`):
        detectors rely on it."""
        self.extract_pending()
        with self._cutting:
            self._seal()

    def _seal(self) -> None:
        """Under ``_cutting``: the extracted parts become one round."""
        if not self._parts:
            return
        batch = sorted_round(self._parts[0] if len(self._parts) == 1
                             else concatenate(self._parts))
        self.reconcile_presence(batch.infrared)
        self._parts, self._parts_messages = [], 0
        with self._lock:
            self._round += 1
            self._rounds.append((self._round, batch))

    def reconcile_presence(self, ir: Infrared) -> None:
        """On beds with more than one infrared sensor (a room each), "nobody here" from one
        sensor says nothing of the person seen by another: such a sample's presence becomes
        unknown (NaN, and no zone) when the bed's latest presence came from another sensor
        within :data:`PRESENCE_MEMORY_MS`. Otherwise the bathroom sensor's "empty" would end
        every still run in the bedroom (no inactivity alert) and put an IR-only bed's person
        out of bed. ``ir`` is ordered by bed and time; changed in place."""
        if not len(ir.bed):
            return
        infrared = self.device_kind[: self.n_devices] == KIND_CODES[Kind.INFRARED]
        sensors = np.bincount(self.device_bed[: self.n_devices][infrared],
                              minlength=self.n_beds)
        shared = sensors[ir.bed] > 1
        if not shared.any():
            return
        last_t, last_device = self._presence_t, self._presence_device
        for i in np.flatnonzero(shared).tolist():
            bed, t, device = int(ir.bed[i]), int(ir.t[i]), int(ir.device[i])
            if ir.presence[i] == 1:
                if t >= last_t.get(bed, NONE):
                    last_t[bed], last_device[bed] = t, device
            elif ir.presence[i] == 0 and last_device.get(bed, device) != device \
                    and t - last_t[bed] <= PRESENCE_MEMORY_MS:
                ir.presence[i] = np.nan
                ir.zone[i] = 0

    def rounds_for(self, consumer: int) -> list[Batch]:
        """The rounds ``consumer`` has not seen yet, oldest first."""
        with self._lock:
            seen = self._consumers[consumer]
            batches = [batch for number, batch in self._rounds if number > seen]
            self._consumers[consumer] = self._round
            oldest = min(self._consumers.values())
            if self._rounds and self._rounds[0][0] <= oldest:
                self._rounds = [(n, b) for n, b in self._rounds if n > oldest]
        return batches

    # --- numbering ----------------------------------------------------------------------------

    @property
    def n_beds(self) -> int:
        return len(self.bed_keys)

    @property
    def n_devices(self) -> int:
        return len(self.device_keys)

    @property
    def n_sites(self) -> int:
        return len(self._site_ids)

    @property
    def site_ids(self) -> dict[str, int]:
        """Site name to site number (``bed_site``)."""
        return self._site_ids

    def bed_index(self, site: str, bed: str) -> int:
        key = (site, bed)
        index = self._beds.get(key)
        if index is not None:
            return index
        index = self._beds[key] = len(self.bed_keys)
        self.bed_keys.append(key)
        known = self.registry.bed(site, bed)
        settings = known.settings if known is not None else self.registry.defaults.settings
        self._add_settings(index, settings)
        zone_name = self.registry.timezone(site)
        zone_id = self._zone_id(zone_name)
        self.bed_zone = _grow(self.bed_zone, index + 1, 0)  # type: ignore[assignment]
        self.bed_zone[index] = zone_id
        self.bed_site = _grow(self.bed_site, index + 1, 0)  # type: ignore[assignment]
        self.bed_site[index] = self._site_ids.setdefault(site, len(self._site_ids))
        return index

    def device_index(self, site: str, bed: str, device: str, kind: Kind) -> int:
        key = (site, bed, device)
        index = self._devices.get(key)
        if index is not None:
            return index
        bed_index = self.bed_index(site, bed)
        index = self._devices[key] = len(self.device_keys)
        self.device_keys.append(key)
        self.device_bed_list.append(bed_index)
        self.device_kind_list.append(KIND_CODES[kind])
        size = index + 1
        self.device_bed = _grow(self.device_bed, size, 0)  # type: ignore[assignment]
        self.device_kind = _grow(self.device_kind, size, 0)  # type: ignore[assignment]
        self.device_heartbeat_ms = _grow(self.device_heartbeat_ms, size, 0.0)  # type: ignore[assignment]
        self.device_bed[index] = bed_index
        self.device_kind[index] = KIND_CODES[kind]
        known = self.registry.bed(site, bed)
        registered = known.devices.get(device) if known is not None else None
        heartbeat_s = (registered.heartbeat_s if registered is not None
                       else self.registry.defaults.heartbeat_s)
        self.device_heartbeat_ms[index] = heartbeat_s * 1000.0
        return index

    def message_device(self, message: Message) -> int:
        return self.address_code(message.address) >> 2

    def address_code(self, a: Address) -> int:
        """``device * 4 + kind code`` of the messages from ``a`` (see :attr:`address_cache`)."""
        index = self._devices.get((a.site, a.bed, a.device))
        if index is None:
            index = self.device_index(a.site, a.bed, a.device, a.kind)
        code = _TELEMETRY_CODES.get(a.kind, 3) if a.channel is Channel.TELEMETRY else 3
        if len(self.address_cache) >= 4 * len(self._devices) + 1024:
            # Bounded: a few topics per device, unless addresses are not reused (then the
            # cache only costs a lookup).
            self.address_cache.clear()
            self._cached_addresses.clear()
        self.address_cache[id(a)] = index * 4 + code
        self._cached_addresses.append(a)
        return index * 4 + code

    def _add_settings(self, index: int, settings: BedSettings) -> None:
        size = index + 1
        for name in _SETTING_FIELDS:
            array = self.settings[name] = _grow(self.settings[name], size, 0.0)  # type: ignore[assignment]
            array[index] = float(getattr(settings, name))
        self.night_start_min = _grow(self.night_start_min, size, 0.0)  # type: ignore[assignment]
        self.night_end_min = _grow(self.night_end_min, size, 0.0)  # type: ignore[assignment]
        self.night_start_min[index] = settings.night_start.hour * 60 + settings.night_start.minute
        self.night_end_min[index] = settings.night_end.hour * 60 + settings.night_end.minute

    def setting(self, name: str) -> F64:
        """One BedSettings field for beds ``0..n_beds`` (a view)."""
        return self.settings[name][: self.n_beds]

    # --- local time ---------------------------------------------------------------------------

    def _zone_id(self, name: str | None) -> int:
        key = name or ""
        zone_id = self._zone_ids.get(key)
        if zone_id is None:
            zone = zoneinfo.ZoneInfo(name) if name else (self._fallback or local_zone())
            zone_id = self._zone_ids[key] = len(self.zones)
            self.zones.append(zone)
        return zone_id

    def _offset_ms(self, zone_id: int, bucket: int) -> int:
        offset = self._offsets.get((zone_id, bucket))
        if offset is None:
            if len(self._offsets) > 200_000:
                self._offsets.clear()
            moment = dt.datetime.fromtimestamp(bucket * _OFFSET_BUCKET_MS / 1000, tz=dt.UTC)
            delta = moment.astimezone(self.zones[zone_id]).utcoffset()
            offset = round(delta.total_seconds() * 1000) if delta is not None else 0
            self._offsets[(zone_id, bucket)] = offset
        return offset

    def local_ms(self, beds: npt.NDArray[np.int64], times: I64) -> I64:
        """``times[i]`` as local wall-clock epoch ms in the zone of bed ``beds[i]``."""
        if len(times) == 0:
            return np.zeros(0, np.int64)
        zones = self.bed_zone[beds]
        buckets = times // _OFFSET_BUCKET_MS
        offsets = np.empty(len(times), np.int64)
        for zone_id in np.unique(zones).tolist():
            in_zone = zones == zone_id
            unique, inverse = np.unique(buckets[in_zone], return_inverse=True)
            per_bucket = np.array([self._offset_ms(zone_id, b) for b in unique.tolist()],
                                  dtype=np.int64)
            offsets[in_zone] = per_bucket[inverse]
        local: I64 = times + offsets
        return local

    def local_minutes(self, beds: npt.NDArray[np.int64], times: I64) -> F64:
        """Minutes after local midnight (0..1440) of ``times[i]`` at bed ``beds[i]``."""
        return (self.local_ms(beds, times) % 86_400_000) / 60_000.0

    def local_ms_now(self, now_ms: int) -> I64:
        """``now_ms`` as local wall-clock epoch ms for every bed."""
        bucket = now_ms // _OFFSET_BUCKET_MS
        per_zone = np.array([self._offset_ms(z, bucket) for z in range(len(self.zones))],
                            dtype=np.int64)
        local: I64 = now_ms + per_zone[self.bed_zone[: self.n_beds]]
        return local

    def local_minutes_now(self, now_ms: int) -> F64:
        """Minutes after local midnight at ``now_ms`` for every bed."""
        return (self.local_ms_now(now_ms) % 86_400_000) / 60_000.0

    def is_night(self, beds: npt.NDArray[np.int64], minutes: F64) -> npt.NDArray[np.bool_]:
        """Whether local ``minutes`` fall in each bed's night (``night_start``..``night_end``),
        windows crossing midnight included."""
        start = self.night_start_min[beds]
        end = self.night_end_min[beds]
        wraps = start > end
        inside = (minutes >= start) & (minutes < end)
        across = (minutes >= start) | (minutes < end)
        return np.where(wraps, across, inside)

