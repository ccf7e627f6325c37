"""A sorted set of ``(site, bed)`` keys kept in order as beds come and go.

The bed list of the API pages through every bed the registry and the live state know, sorted
by site then bed. Sorting them per request costs time in proportion to all of them (1.2 s on
the event loop at 100,000 made-up beds, issue #17); kept sorted as beds are added, a page
costs a binary search and its own length. Adding or removing a key costs a binary search and
one move of the list's pointers (a ``memmove`` of 8 bytes per key: about 30 µs at 100,000).

>>> keys = BedKeys()
>>> for key in [("s2", "b1"), ("s1", "b2"), ("s1", "b1"), ("s1", "b2")]:
...     keys.add(key)
>>> keys.page(None, None, 2), keys.page(("s1", "b1"), None, 5), keys.page(None, "s2", 5)
([('s1', 'b1'), ('s1', 'b2')], [('s1', 'b2'), ('s2', 'b1')], [('s2', 'b1')])
>>> keys.discard(("s1", "b2")); len(keys), keys.has_site("s1"), keys.has_site("s3")
(2, True, False)
"""

from __future__ import annotations

import sys
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from itertools import islice


class BedKeys:
    """Sorted ``(site, bed)`` keys; each operation costs a binary search (and for a change,
    one move of the list)."""

    __slots__ = ("_keys", "_set")

    def __init__(self) -> None:
        self._keys: list[tuple[str, str]] = []
        self._set: set[tuple[str, str]] = set()

    @classmethod
    def of(cls, keys: Iterable[tuple[str, str]]) -> BedKeys:
        """The keys given, in any order (one sort)."""
        made = cls()
        made._set = set(keys)
        made._keys = sorted(made._set)
        return made

    def add(self, key: tuple[str, str]) -> None:
        if key not in self._set:
            self._set.add(key)
            insort(self._keys, key)

    def discard(self, key: tuple[str, str]) -> None:
        if key in self._set:
            self._set.remove(key)
            del self._keys[bisect_left(self._keys, key)]

    def page(self, after: tuple[str, str] | None, site: str | None,
             limit: int) -> list[tuple[str, str]]:
        """At most ``limit`` keys after ``after`` (all from the first without it), of ``site``
        only when given, in order."""
        keys = self._keys
        start = 0 if after is None else bisect_right(keys, after)
        if site is not None:
            start = max(start, bisect_left(keys, (site, "")))
            return [k for k in islice(keys, start, start + limit) if k[0] == site]
        return keys[start:start + limit]

    def has_site(self, site: str) -> bool:
        return bool(self.page(None, site, 1))

    @property
    def nbytes(self) -> int:
        """The tables' size (:func:`sys.getsizeof` of the list and the set; the keys are
        their owner's)."""
        return sys.getsizeof(self._keys) + sys.getsizeof(self._set)

    def __contains__(self, key: object) -> bool:
        return key in self._set

    def __len__(self) -> int:
        return len(self._keys)
