"""A bed's recent readings in fixed time slots: what the bed page charts without a database.

By default 24 h of one-minute slots per reading (1,440 float32 values and their times), the
newest value of a slot winning; a late reading lands in its own slot, one older than the window
is dropped.

Two bounds hold whatever the device sends:

* **Time.** A reading timed more than ``ahead_ms`` after its receipt (a clock in 2099, one
  counting microseconds) is kept at its receipt time, the rule of
  :class:`~devices.devicetime.ClockWindow` for what is stored: so the newest slot never runs
  ahead of the latest receipt by more than ``ahead_ms``, and a future-dated reading can never
  push the real ones that follow it out of the window. (The live state retimes untrusted
  messages before they get here; the ring holds the bound on its own too.)
* **Memory.** The arrays start at :data:`FIRST_CAPACITY` slots and double when two readings
  inside the window would share a place, up to one place per slot of the window: a bed heard
  from once costs about 400 bytes per reading, one heard all day what a full ring costs (17 KiB
  by default). :attr:`ReadingSlots.nbytes` is what the ring holds (:func:`sys.getsizeof` of its
  parts) and :meth:`ReadingSlots.add` says what a reading newly took, so the owner keeps a
  byte budget without walking its rings.
"""

from __future__ import annotations

import sys
from array import array
from typing import Final

from devices.devicetime import AHEAD_MS

FIRST_CAPACITY: Final = 16
"""Places a ring starts with (fewer if its window has fewer slots)."""


def _decimal(value: float) -> float:
    """A float32 slot value back as the decimal the device sent (7 significant digits)."""
    return float(f"{value:.7g}")


class ReadingSlots:
    """One reading of one bed: fixed slots of ``resolution_ms``, newest ``window_ms`` only.

    >>> ring = ReadingSlots(window_ms=60_000, resolution_ms=10_000)
    >>> for t, value, received in [(25_000, 70.0, 25_000), (21_000, 99.0, 26_000),
    ...                            (31_000, 72.0, 31_000)]:
    ...     grown = ring.add(t, value, received)
    >>> ring.points()
    [(25000, 70.0), (31000, 72.0)]

    A reading from the future is kept at its receipt time; later real ones stay in view:

    >>> ring.add(4_070_908_800_000, 5.0, 41_000), ring.add(51_000, 73.0, 51_000)
    (0, 0)
    >>> ring.points()
    [(25000, 70.0), (31000, 72.0), (41000, 5.0), (51000, 73.0)]
    """

    __slots__ = ("_capacity", "_slots", "_t", "_v", "ahead_ms", "nbytes", "newest",
                 "resolution_ms")

    def __init__(self, *, window_ms: int, resolution_ms: int, ahead_ms: int = AHEAD_MS) -> None:
        if resolution_ms < 1 or window_ms < resolution_ms:
            raise ValueError("need 1 <= resolution_ms <= window_ms")
        if ahead_ms < 0:
            raise ValueError("ahead_ms must not be negative")
        self.resolution_ms = resolution_ms
        self.ahead_ms = ahead_ms
        self._slots = window_ms // resolution_ms
        self._capacity = min(FIRST_CAPACITY, self._slots)
        """Places in the arrays: slot ``s`` lives at ``s % capacity``; no two slots inside
        the window share a place."""
        self._t = array("q", [-1]) * self._capacity
        self._v = array("f", [0.0]) * self._capacity
        self.newest = -1
        """Time of the newest sample kept, or -1."""
        self.nbytes = sys.getsizeof(self) + sys.getsizeof(self._t) + sys.getsizeof(self._v)
        """Bytes held by this ring (the object and its arrays)."""

    @property
    def capacity(self) -> int:
        """Slots the ring can hold: its window."""
        return self._slots

    def add(self, t: int, value: float, received_ms: int) -> int:
        """Keep ``value`` measured at ``t`` (received at ``received_ms``) if it is the latest of
        its slot; the bytes the ring grew by to keep it (0 most of the time)."""
        if t > received_ms + self.ahead_ms:
            t = received_ms  # a clock from the future: kept at its receipt time
        res = self.resolution_ms
        slot = t // res
        newest = self.newest
        if newest >= 0 and slot <= newest // res - self._slots:
            return 0  # older than the window behind the newest sample
        i = slot % self._capacity
        held = self._t[i]
        grown = 0
        if held >= 0:
            if held // res == slot:
                if held > t or (held == t and self._v[i] >= value):
                    return 0  # the slot holds a later sample (or, at the same time, a larger)
            elif (self._capacity < self._slots
                  and held // res > max(newest, t) // res - self._slots):
                grown = self._grow(slot, max(newest, t) // res)
                i = slot % self._capacity
        self._t[i] = t
        self._v[i] = value
        if t > newest:
            self.newest = t
        return grown

    def _grow(self, slot: int, newest_slot: int) -> int:
        """Double the arrays until ``slot`` and every slot held inside the window (ending at
        ``newest_slot``) have places of their own; the bytes that took."""
        res = self.resolution_ms
        live = [(t, v) for t, v in zip(self._t, self._v, strict=True)
                if t >= 0 and t // res > newest_slot - self._slots]
        slots = [t // res for t, _ in live]
        capacity = self._capacity
        while True:
            capacity = min(2 * capacity, self._slots)
            places = {s % capacity for s in slots}
            places.add(slot % capacity)
            if len(places) == len(slots) + 1 or capacity == self._slots:
                break
        t_arr = array("q", [-1]) * capacity
        v_arr = array("f", [0.0]) * capacity
        for t, v in live:
            t_arr[(t // res) % capacity] = t
            v_arr[(t // res) % capacity] = v
        before = self.nbytes
        self._capacity, self._t, self._v = capacity, t_arr, v_arr
        self.nbytes = sys.getsizeof(self) + sys.getsizeof(t_arr) + sys.getsizeof(v_arr)
        return self.nbytes - before

    def points(self, since: int | None = None, until: int | None = None
               ) -> list[tuple[int, float]]:
        """``(t, value)`` in time order, ``since <= t < until``."""
        if self.newest < 0:
            return []
        res = self.resolution_ms
        last = self.newest // res
        first = last - self._slots + 1
        if since is not None:
            first = max(first, since // res)
        out: list[tuple[int, float]] = []
        t_arr, v_arr, n = self._t, self._v, self._capacity
        for slot in range(first, last + 1):
            t = t_arr[slot % n]
            if t < 0 or t // res != slot:
                continue
            if (since is not None and t < since) or (until is not None and t >= until):
                continue
            out.append((t, _decimal(v_arr[slot % n])))
        return out

    def latest(self) -> tuple[int, float] | None:
        if self.newest < 0:
            return None
        i = (self.newest // self.resolution_ms) % self._capacity
        return self.newest, _decimal(self._v[i])

    @property
    def oldest_possible(self) -> int:
        """The earliest device time this ring can still hold (its coverage starts here)."""
        if self.newest < 0:
            return 0
        return (self.newest // self.resolution_ms - self._slots + 1) * self.resolution_ms


__all__ = ["FIRST_CAPACITY", "ReadingSlots"]
