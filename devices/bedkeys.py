"""A sorted set of ``(site, bed)`` keys kept in order as beds come and go.

The bed list of the API pages through every bed the registry and the live state know, sorted
by site then bed. Sorting them per request costs time in proportion to all of them (1.2 s on
the event loop at 100,000 made-up beds, issue #17); kept sorted as beds are added, a page
costs a binary search and its own length. The keys are a :class:`sortedcontainers.SortedList`
(sublists of about a thousand), not one list: in one list, adding or removing a key moved
every key after it (a ``memmove`` of 8 bytes per key), and during the flood of made-up beds,
each first sight adding a key to the registry's and the live state's and each eviction taking
one out, that was 10 % of the event loop's time (py-spy; 10 µs an add and a removal at 100,000
keys against 2.6 µs).

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
from collections.abc import Iterable

from sortedcontainers import SortedList

_LIST_HEADER = sys.getsizeof([])


class BedKeys:
    """Sorted ``(site, bed)`` keys; each operation costs a binary search (and for a change,
    one move within a sublist)."""

    __slots__ = ("_keys", "_set")

    def __init__(self) -> None:
        self._keys = SortedList()
        self._set: set[tuple[str, str]] = set()

    @classmethod
    def of(cls, keys: Iterable[tuple[str, str]]) -> BedKeys:
        """The keys given, in any order (one sort)."""
        made = cls()
        made._set = set(keys)
        made._keys = SortedList(made._set)
        return made

    def add(self, key: tuple[str, str]) -> None:
        if key not in self._set:
            self._set.add(key)
            self._keys.add(key)

    def discard(self, key: tuple[str, str]) -> None:
        if key in self._set:
            self._set.remove(key)
            self._keys.remove(key)

    def page(self, after: tuple[str, str] | None, site: str | None,
             limit: int) -> list[tuple[str, str]]:
        """At most ``limit`` keys after ``after`` (all from the first without it), of ``site``
        only when given, in order."""
        keys = self._keys
        start = 0 if after is None else keys.bisect_right(after)
        if site is not None:
            start = max(start, keys.bisect_left((site, "")))
            return [k for k in keys.islice(start, start + limit) if k[0] == site]
        return list(keys.islice(start, start + limit))

    def has_site(self, site: str) -> bool:
        return bool(self.page(None, site, 1))

    @property
    def nbytes(self) -> int:
        """The tables' size: the set's (:func:`sys.getsizeof`) and the sorted list's pointers,
        8 bytes a key and a list header a thousand keys (its own layout is private); the keys
        are their owner's."""
        n = len(self._keys)
        return sys.getsizeof(self._set) + 8 * n + _LIST_HEADER * (n // 1000 + 1)

    def __contains__(self, key: object) -> bool:
        return key in self._set

    def __len__(self) -> int:
        return len(self._keys)
