"""Per-bed (or per-device) state arrays: preallocated, grown by doubling, saved by key.

A detector declares its columns once (name, dtype, fill, trailing shape); rows are the
fleet's bed or device numbers. Growth doubles the capacity, so registering beds one by one
costs amortised O(1). ``dump``/``load`` write the used rows with the keys they belong to, so a
state restores correctly into a fleet that numbered the beds differently. :func:`grow` does
the same for a single array (the fleet's own per-bed and per-device arrays).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

NONE: Final = np.iinfo(np.int64).min // 4
"""'No time yet' in int64 time arrays: far below any epoch ms, so ``max`` ignores it."""


def grow(array: npt.NDArray[Any], size: int, fill: object) -> npt.NDArray[Any]:
    """``array`` with room for at least ``size`` rows (itself if it has them): capacity
    doubles, new rows hold ``fill``."""
    if len(array) >= size:
        return array
    capacity = max(size, 2 * len(array), 16)
    grown = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class Table:
    __slots__ = ("_arrays", "_columns", "capacity")

    def __init__(self) -> None:
        self._columns: dict[str, tuple[np.dtype[Any], tuple[int, ...], object]] = {}
        self._arrays: dict[str, npt.NDArray[Any]] = {}
        self.capacity = 0

    def column(self, name: str, dtype: npt.DTypeLike, fill: object,
               shape: tuple[int, ...] = ()) -> None:
        if name in self._columns:
            raise ValueError(f"column {name!r} declared twice")
        self._columns[name] = (np.dtype(dtype), shape, fill)
        self._arrays[name] = np.full((self.capacity, *shape), fill, dtype=dtype)

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self._arrays[name]

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def ensure(self, rows: int) -> None:
        if rows <= self.capacity:
            return
        capacity = max(rows, 2 * self.capacity, 16)
        for name, (dtype, shape, fill) in self._columns.items():
            grown = np.full((capacity, *shape), fill, dtype=dtype)
            grown[: self.capacity] = self._arrays[name]
            self._arrays[name] = grown
        self.capacity = capacity

    def dump(self, rows: int) -> dict[str, list[Any]]:
        return {name: [array.dtype.str, list(array.shape[1:]), array[:rows].tobytes()]
                for name, array in self._arrays.items()}

    def load(self, saved: dict[str, list[Any]], rows: Sequence[int]) -> None:
        """Put saved row ``i`` into row ``rows[i]``; columns not in ``saved`` keep their fill."""
        if rows:
            self.ensure(max(rows) + 1)
        target = np.asarray(rows, dtype=np.int64)
        for name, (dtype_str, shape, raw) in saved.items():
            if name not in self._arrays:
                continue
            dtype = np.dtype(dtype_str)
            values = np.frombuffer(raw, dtype=dtype).reshape(len(rows), *shape)
            array = self._arrays[name]
            if values.shape[1:] != array.shape[1:]:
                continue  # a column whose shape changed between versions starts afresh
            array[target] = values.astype(array.dtype, copy=False)
