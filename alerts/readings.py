"""A bed's recent readings in fixed time slots: what the bed page charts without a database.

By default 24 h of one-minute slots per reading (1,440 float32 values and their times), the
newest value of a slot winning; a late reading lands in its own slot, one older than the window
is dropped.
"""

from __future__ import annotations

from array import array


def _decimal(value: float) -> float:
    """A float32 slot value back as the decimal the device sent (7 significant digits)."""
    return float(f"{value:.7g}")


class ReadingSlots:
    """One reading of one bed: fixed slots of ``resolution_ms``, newest ``window_ms`` only.

    >>> ring = ReadingSlots(window_ms=60_000, resolution_ms=10_000)
    >>> ring.add(25_000, 70.0); ring.add(21_000, 99.0); ring.add(31_000, 72.0)
    >>> ring.points()
    [(25000, 70.0), (31000, 72.0)]
    """

    __slots__ = ("_slots", "_t", "_v", "newest", "resolution_ms")

    def __init__(self, *, window_ms: int, resolution_ms: int) -> None:
        if resolution_ms < 1 or window_ms < resolution_ms:
            raise ValueError("need 1 <= resolution_ms <= window_ms")
        self.resolution_ms = resolution_ms
        self._slots = window_ms // resolution_ms
        self._t = array("q", [-1]) * self._slots
        self._v = array("f", [0.0]) * self._slots
        self.newest = -1
        """Device time of the newest sample kept, or -1."""

    @property
    def capacity(self) -> int:
        return self._slots

    @property
    def nbytes(self) -> int:
        return self._t.itemsize * len(self._t) + self._v.itemsize * len(self._v)

    def add(self, t: int, value: float) -> None:
        res = self.resolution_ms
        slot = t // res
        newest = self.newest
        if newest >= 0 and slot <= newest // res - self._slots:
            return  # older than the window behind the newest sample
        i = slot % self._slots
        held = self._t[i]
        if held >= 0 and held // res == slot and (
                held > t or (held == t and self._v[i] >= value)):
            return  # the slot already holds a later sample (or, at the same time, a larger one)
        self._t[i] = t
        self._v[i] = value
        if t > newest:
            self.newest = t

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
        t_arr, v_arr, n = self._t, self._v, self._slots
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
        i = (self.newest // self.resolution_ms) % self._slots
        return self.newest, _decimal(self._v[i])

    @property
    def oldest_possible(self) -> int:
        """The earliest device time this ring can still hold (its coverage starts here)."""
        if self.newest < 0:
            return 0
        return (self.newest // self.resolution_ms - self._slots + 1) * self.resolution_ms
