"""Local days of a site: day/night follow the site's IANA zone, timestamps stay UTC epoch ms.

Routines are written in local wall-clock time ("asleep by 21:30"); :class:`LocalDay` turns
them into epoch milliseconds, so a daylight-saving day is 23 or 25 hours long and still has
its night at night.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@functools.lru_cache(maxsize=64)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class LocalDay:
    """One calendar day in a zone: ``[start_ms, end_ms)`` in UTC epoch milliseconds."""

    date: dt.date
    timezone: str
    number: int
    start_ms: int
    end_ms: int

    @classmethod
    def of(cls, date: dt.date, timezone: str, number: int) -> LocalDay:
        return cls(date, timezone, number, local_ms(date, 0.0, timezone),
                   local_ms(date + dt.timedelta(days=1), 0.0, timezone))

    def at(self, minutes: float) -> int:
        """Epoch ms of the local wall-clock time ``minutes`` after this day's midnight."""
        return local_ms(self.date, minutes, self.timezone)

    def next(self) -> LocalDay:
        return LocalDay.of(self.date + dt.timedelta(days=1), self.timezone, self.number + 1)

    def previous(self) -> LocalDay:
        return LocalDay.of(self.date - dt.timedelta(days=1), self.timezone, self.number - 1)


def local_ms(date: dt.date, minutes: float, timezone: str) -> int:
    """Epoch ms of local wall-clock ``date`` + ``minutes`` (wall-clock arithmetic, DST-aware)."""
    midnight = dt.datetime(date.year, date.month, date.day, tzinfo=zone(timezone))
    moment = midnight + dt.timedelta(minutes=minutes)  # aware + timedelta is wall-clock time
    return round(moment.timestamp() * 1000)


def local_date(epoch_ms: int, timezone: str) -> dt.date:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, tz=zone(timezone)).date()


def local_minutes(epoch_ms: int, timezone: str) -> float:
    """Minutes after local midnight at ``epoch_ms``."""
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=zone(timezone))
    return moment.hour * 60 + moment.minute + moment.second / 60 + moment.microsecond / 6e7
