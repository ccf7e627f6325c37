"""Per-bed sample rings and slot baselines, as columns of a per-bed :class:`Table`.

:class:`SampleRing`: the last ``width`` samples of each bed's stream of ``metrics`` values
taken together (one time column, one value column per metric; NaN where a sample lacks a
metric).
A batch is scattered in with numpy indexing: its samples come ordered by bed and time (as a
round's are, :func:`~gateway.detect._batch.by_bed`), each gets its rank within its bed, and
lands at ``(written + rank) % width``. With a ``spacing_ms``, a bed keeps at most one sample per
``spacing_ms`` of time (the first), so that ``width`` samples always reach back far enough,
whatever the rate a device reports at.

:class:`SlotBaseline`: a person's own long-term level of each metric. Samples are averaged
per slot (10 minutes); the last ``slots`` slot means (a day) are kept, and their 5 %, 50 %
and 95 % quantiles are recomputed only when a slot closes, so reading the baseline costs
nothing. Slots in which many samples were abnormal are stored as missing, so an incident
does not become the person's normal.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from gateway.detect._batch import groups
from gateway.detect._table import NONE, Table

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
Bool = npt.NDArray[np.bool_]

SLOT_MS: Final = 10 * 60_000
"""Baseline slot: samples are averaged over this long before entering the baseline."""
BASELINE_SLOTS: Final = 144
"""Slots kept per bed: a day of 10-minute means."""
BAD_SLOT_SHARE: Final = 0.3
"""A slot with more abnormal samples than this share is left out of the baseline."""
QUANTILES: Final = (0.05, 0.5, 0.95)


_BYTES: Final = np.uint64(0x0101010101010101)


def count_true(mask: Bool) -> I64:
    """The number of True values in each row of a 2-D boolean array (``mask.sum(axis=1)``).

    A ring's rows are short (32 or 64 samples), and numpy reduces along a short axis one row
    at a time. So rows whose width is a multiple of 8 and below 256 are read as 64-bit words,
    the words of a row added (each byte counts one of its eight columns), and the eight byte
    counts of the sum added by one multiplication: about four times faster.

    >>> count_true(np.array([[True, False] * 4, [True] * 8, [False] * 8]))
    array([4, 8, 0])
    """
    width = mask.shape[1]
    if width % 8 or width > 255 or not mask.flags.c_contiguous or not width:
        counts: I64 = mask.sum(axis=1, dtype=np.int64)
        return counts
    words = mask.view(np.uint64)
    total = words[:, 0].copy()
    for column in range(1, width // 8):
        total += words[:, column]
    counted: I64 = ((total * _BYTES) >> np.uint64(56)).astype(np.int64)
    return counted


def row_quantile(values: F32, q: float) -> F32:
    """The ``q`` quantile of each row, NaN ignored (NaN for an all-NaN row); nearest rank.

    ``np.nanquantile`` along an axis loops over the rows in Python: this sorts once."""
    ordered = np.sort(values, axis=1)  # NaN sorts last
    valid = (~np.isnan(ordered)).sum(axis=1)
    pick = np.floor(q * np.maximum(valid - 1, 0) + 0.5).astype(np.int64)
    picked: F32 = ordered[np.arange(len(ordered)), pick]
    return picked


class SampleRing:
    """Per bed, the last ``width`` samples: time and ``metrics`` values."""

    __slots__ = ("_n", "_t", "_v", "metrics", "spacing_ms", "table", "width")

    def __init__(self, table: Table, name: str, *, metrics: int, width: int,
                 spacing_ms: int = 0) -> None:
        self.table = table
        self.metrics = metrics
        self.width = width
        self.spacing_ms = spacing_ms
        self._v, self._t, self._n = f"{name}.v", f"{name}.t", f"{name}.n"
        table.column(self._v, np.float32, np.nan, (metrics, width))
        table.column(self._t, np.int64, NONE, (width,))
        table.column(self._n, np.int64, 0)

    def push(self, bed: I64, t: I64, values: F32) -> None:
        """Add samples ordered by bed (then time); ``values`` is ``len(t) x metrics``."""
        if not len(t):
            return
        if (bed[1:] < bed[:-1]).any():
            raise ValueError("samples must be ordered by bed")
        w = self.width
        written = self.table[self._n]
        if self.spacing_ms:
            keep = self._spaced(bed, t, written)
            if not keep.all():
                bed, t, values = bed[keep], t[keep], values[keep]
        heads, starts, _, lengths = groups(bed)
        rank = np.arange(len(bed)) - np.repeat(starts, lengths)
        keep = rank >= np.repeat(lengths - w, lengths)  # only the newest `width` per bed
        if not keep.all():
            bed, t, values, rank = bed[keep], t[keep], values[keep], rank[keep]
        position = (written[bed] + rank) % w
        # Flat indices into the (contiguous) columns: cheaper than indexing by row and slot.
        self.table[self._t].reshape(-1)[bed * w + position] = t
        stored = self.table[self._v].reshape(-1)
        at = bed * (self.metrics * w) + position
        for m in range(self.metrics):
            stored[at + m * w] = values[:, m]
        written[heads] += lengths

    def _spaced(self, bed: I64, t: I64, written: I64) -> Bool:
        """The first sample of each bed in each ``spacing_ms`` of time, unless the bed's
        newest stored sample is already in it."""
        slot = t // self.spacing_ms
        first = np.concatenate(([True], bed[1:] != bed[:-1]))
        keep = first | np.concatenate(([True], slot[1:] != slot[:-1]))
        at = np.flatnonzero(first)
        heads = bed[at]
        stored = written[heads]
        newest = self.table[self._t][heads, (stored - 1) % self.width]
        keep[at] = (stored == 0) | (newest // self.spacing_ms != slot[at])
        return keep

    def kth_newest(self, beds: I64, k: int) -> I64:
        """Per bed, the time of the ``k``-th most recently stored sample (``NONE`` if fewer
        are stored): how far back a window must reach to hold ``k`` samples."""
        stored = self.table[self._n][beds]
        times: I64 = self.table[self._t][beds, (stored - k) % self.width]
        times[stored < k] = NONE
        return times

    def recent(self, beds: I64, times: I64, *, span_ms: int, min_samples: int,
               longest_ms: int) -> tuple[Bool, I64]:
        """Which samples of ``times`` (the window of ``beds``) are recent, and each bed's
        newest time. Recent: those of the last ``span_ms`` before the newest or, for a bed that
        reports too rarely to have ``min_samples`` in that time, its last ``min_samples``,
        reaching back at most ``longest_ms``."""
        newest: I64 = times.max(axis=1)
        reach = np.maximum(self.kth_newest(beds, min_samples) - 1, newest - longest_ms)
        cutoff = np.minimum(newest - span_ms, reach)
        return times > cutoff[:, None], newest

    def recent_values(self, bed: int, metric: int, *, span_ms: int, min_samples: int,
                      longest_ms: int) -> F32:
        """One bed's recent values of ``metric`` (see :meth:`recent`), missing ones left out:
        the evidence of a finding."""
        beds = np.array([bed])
        times, values = self.window(beds)
        mask, _ = self.recent(beds, times, span_ms=span_ms, min_samples=min_samples,
                              longest_ms=longest_ms)
        recent: F32 = values[0, metric][mask[0]]
        return recent[~np.isnan(recent)]

    def window(self, beds: I64) -> tuple[I64, F32]:
        """Times (``len(beds) x width``) and values (``len(beds) x metrics x width``) of
        ``beds`` (sorted, distinct): views, not copies, when they are all the first beds."""
        n = len(beds)
        if n and int(beds[0]) == 0 and int(beds[-1]) == n - 1:
            return self.table[self._t][:n], self.table[self._v][:n]
        return self.table[self._t][beds], self.table[self._v][beds]


class SlotBaseline:
    """Per bed and metric: slot means over a day and their 5/50/95 % quantiles."""

    __slots__ = ("_name", "metrics", "slots", "table")

    def __init__(self, table: Table, name: str, *, metrics: int,
                 slots: int = BASELINE_SLOTS) -> None:
        self.table = table
        self._name = name
        self.metrics = metrics
        self.slots = slots
        table.column(f"{name}.slot", np.int64, NONE)
        table.column(f"{name}.sum", np.float64, 0.0, (metrics,))
        table.column(f"{name}.count", np.int64, 0, (metrics,))
        table.column(f"{name}.bad", np.int64, 0, (metrics,))
        table.column(f"{name}.means", np.float32, np.nan, (metrics, slots))
        table.column(f"{name}.pushed", np.int64, 0)
        table.column(f"{name}.q", np.float32, np.nan, (metrics, len(QUANTILES)))
        table.column(f"{name}.valid", np.int64, 0, (metrics,))

    def _col(self, column: str) -> npt.NDArray[Any]:
        return self.table[f"{self._name}.{column}"]

    def add(self, bed: I64, t: I64, values: F32, bad: Bool) -> None:
        """Add samples (``len(t) x metrics``; NaN values are ignored), ordered by bed and
        time; ``bad`` marks the abnormal ones."""
        if not len(t):
            return
        heads, _, ends, _ = groups(bed)
        newest = t[ends] // SLOT_MS
        current = self._col("slot")
        closing = newest > current[heads]
        if closing.any():
            self._close(heads[closing], newest[closing])
        present = ~np.isnan(values)
        total, count, abnormal = self._col("sum"), self._col("count"), self._col("bad")
        size = len(total)
        for m in range(self.metrics):
            has = present[:, m]
            total[:, m] += np.bincount(bed, np.where(has, values[:, m], 0.0), size)
            count[:, m] += np.bincount(bed[has], minlength=size)
            abnormal[:, m] += np.bincount(bed[has & bad[:, m]], minlength=size)

    def _close(self, beds: I64, new_slot: I64) -> None:
        total, count, bad = self._col("sum"), self._col("count"), self._col("bad")
        had = beds[(count[beds] > 0).any(axis=1)]
        if len(had):
            n = count[had]
            mean = (total[had] / np.maximum(n, 1)).astype(np.float32)
            mean[(n == 0) | (bad[had] > BAD_SLOT_SHARE * n)] = np.nan
            pushed = self._col("pushed")
            self._col("means")[had, :, pushed[had] % self.slots] = mean
            pushed[had] += 1
            self._refresh(had)
        self._col("slot")[beds] = new_slot
        total[beds] = 0.0
        count[beds] = 0
        bad[beds] = 0

    def _refresh(self, beds: I64) -> None:
        ordered = np.sort(self._col("means")[beds], axis=2)  # NaN sorts last
        valid = count_true((~np.isnan(ordered)).reshape(-1, self.slots)).reshape(
            len(beds), self.metrics)
        self._col("valid")[beds] = valid
        top = np.maximum(valid - 1, 0)
        quantiles = self._col("q")
        for j, q in enumerate(QUANTILES):
            pick = np.floor(q * top + 0.5).astype(np.int64)
            quantiles[beds, :, j] = np.take_along_axis(ordered, pick[:, :, None], axis=2)[:, :, 0]

    def quantiles(self, beds: I64, metric: int) -> tuple[F32, F32, F32, I64]:
        """``(q05, median, q95, valid_slots)`` per bed; NaN where no slot is valid."""
        q = self._col("q")[beds, metric]
        valid: I64 = self._col("valid")[beds, metric]
        return q[:, 0], q[:, 1], q[:, 2], valid
