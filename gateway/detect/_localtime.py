"""Local wall-clock time at each bed, in its site's time zone (DST included), and its night.

Day and night rules (night bed exit, the usual stillness per hour of day) work on local time
for whole arrays of samples at once. Each bed has a zone: its site's in the registry, else the
gateway's fallback (the ``timezone`` setting), else the machine's (:func:`local_zone`). UTC
offsets are looked up per zone and quarter hour (every DST change in use falls on one) and
cached, so converting a column of times costs one lookup per distinct quarter hour. Each bed's
night window (BedSettings ``night_start``..``night_end``, local) may cross midnight.

>>> import datetime as dt
>>> import numpy as np
>>> clock = LocalClock()
>>> clock.add_bed(0, zone="Europe/Berlin", night_start=dt.time(22), night_end=dt.time(6))
>>> beds = np.array([0, 0])
>>> noon_utc = np.array([1_782_907_200_000, 1_768_478_400_000])  # 2026-07-01, 2026-01-15
>>> clock.local_minutes(beds, noon_utc) / 60  # summer time, then winter time
array([14., 13.])
>>> clock.is_night(beds, np.array([23 * 60, 12 * 60]))
array([ True, False])
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from gateway.detect._table import grow

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_OFFSET_BUCKET_MS: Final = 15 * 60_000
"""UTC offsets are cached per zone and quarter hour: every DST change in use falls on one."""
DAY_MS: Final = 86_400_000
_TABLE_LOOKUPS: Final = 400
"""Times spanning at most this many quarter hours x zones are converted through a table of
the offsets in between (:meth:`LocalClock._offsets_over`); longer spans sort their times."""


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


class LocalClock:
    """Each bed's zone and night window, by bed number; local time for arrays of times."""

    def __init__(self, *, fallback: str | None = None) -> None:
        self._fallback = zoneinfo.ZoneInfo(fallback) if fallback else None
        """The zone of beds whose site has none (``None``: the machine's)."""
        self.zones: list[zoneinfo.ZoneInfo] = []
        self._zone_ids: dict[str, int] = {}
        self.bed_zone: I64 = np.zeros(0, np.int64)
        """Index into :attr:`zones` of each bed."""
        self.night_start_min: F64 = np.zeros(0)
        self.night_end_min: F64 = np.zeros(0)
        """Each bed's night window, in minutes after local midnight."""
        self.n_beds = 0
        self._offsets: dict[tuple[int, int], int] = {}

    def add_bed(self, index: int, *, zone: str | None, night_start: dt.time,
                night_end: dt.time) -> None:
        """Fill in new bed number ``index``: its zone (IANA name; ``None``: the fallback) and
        night window."""
        size = index + 1
        self.night_start_min = grow(self.night_start_min, size, 0.0)
        self.night_end_min = grow(self.night_end_min, size, 0.0)
        self.night_start_min[index] = night_start.hour * 60 + night_start.minute
        self.night_end_min[index] = night_end.hour * 60 + night_end.minute
        zone_id = self._zone_id(zone)
        self.bed_zone = grow(self.bed_zone, size, 0)
        self.bed_zone[index] = zone_id
        self.n_beds = max(self.n_beds, size)

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

    def local_ms(self, beds: I64, times: I64) -> I64:
        """``times[i]`` as local wall-clock epoch ms in the zone of bed ``beds[i]``."""
        if len(times) == 0:
            return np.zeros(0, np.int64)
        buckets = times // _OFFSET_BUCKET_MS
        low, high = int(buckets.min()), int(buckets.max())
        if self.zones and (high - low + 1) * len(self.zones) <= _TABLE_LOOKUPS:
            fast: I64 = times + self._offsets_over(beds, buckets, low, high)
            return fast
        zones = self.bed_zone[beds]
        offsets = np.empty(len(times), np.int64)
        for zone_id in np.unique(zones).tolist():
            in_zone = zones == zone_id
            unique, inverse = np.unique(buckets[in_zone], return_inverse=True)
            per_bucket = np.array([self._offset_ms(zone_id, b) for b in unique.tolist()],
                                  dtype=np.int64)
            offsets[in_zone] = per_bucket[inverse]
        local: I64 = times + offsets
        return local

    def _offsets_over(self, beds: I64, buckets: I64, low: int, high: int) -> I64 | int:
        """The UTC offset of each time (or one for all), from a table of every zone's offset
        in every quarter hour from ``low`` to ``high``: a round's times span a few, so this
        costs a few look-ups instead of sorting the times. The same offsets as looking each
        time up on its own."""
        n_zones = len(self.zones)
        table = np.array([[self._offset_ms(z, b) for b in range(low, high + 1)]
                          for z in range(n_zones)], dtype=np.int64).reshape(n_zones, -1)
        if (table == table[:, :1]).all():  # no offset changes in the span (nearly always)
            if n_zones == 1:
                return int(table[0, 0])
            constant: I64 = table[:, 0][self.bed_zone[beds]]
            return constant
        if n_zones == 1:
            one: I64 = table[0][buckets - low]
            return one
        offsets: I64 = table[self.bed_zone[beds], buckets - low]
        return offsets

    def local_minutes(self, beds: I64, times: I64) -> F64:
        """Minutes after local midnight (0..1440) of ``times[i]`` at bed ``beds[i]``."""
        return (self.local_ms(beds, times) % DAY_MS) / 60_000.0

    def local_ms_now(self, now_ms: int) -> I64:
        """``now_ms`` as local wall-clock epoch ms for every bed."""
        bucket = now_ms // _OFFSET_BUCKET_MS
        per_zone = np.array([self._offset_ms(z, bucket) for z in range(len(self.zones))],
                            dtype=np.int64)
        local: I64 = now_ms + per_zone[self.bed_zone[: self.n_beds]]
        return local

    def local_minutes_now(self, now_ms: int) -> F64:
        """Minutes after local midnight at ``now_ms`` for every bed."""
        return (self.local_ms_now(now_ms) % DAY_MS) / 60_000.0

    def is_night(self, beds: I64, minutes: F64) -> npt.NDArray[np.bool_]:
        """Whether local ``minutes`` fall in each bed's night (``night_start``..``night_end``),
        windows crossing midnight included."""
        start = self.night_start_min[beds]
        end = self.night_end_min[beds]
        wraps = start > end
        inside = (minutes >= start) & (minutes < end)
        across = (minutes >= start) | (minutes < end)
        return np.where(wraps, across, inside)
