"""All beds' traffic as one stream in receipt-time order, generated lazily chunk by chunk.

Each bed yields its messages sorted by receipt time ``t``; :func:`merge` interleaves the beds
with :func:`heapq.merge`. A bed generates its traffic chunk by chunk (device moments in
``[a, b)``); messages received after ``b`` (latency, reordering, bursts) are carried into the
next chunk, which is correct because nothing generated later can arrive before ``b``.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from devices.labels import Label, label_sort_key
from simulators.clock import HOUR_MS, local_ms
from simulators.config import BedSpec, SimConfig, bed_specs
from simulators.faults import FaultInjector
from simulators.plan import Deck
from simulators.traffic import BedTraffic, Emission


@dataclass(slots=True)
class BedStream:
    """One bed's messages over ``[start_ms, end_ms)`` (open-ended when ``end_ms`` is None)."""

    traffic: BedTraffic
    faults: FaultInjector | None
    start_ms: int
    end_ms: int | None
    chunk_ms: int

    def __iter__(self) -> Iterator[Emission]:
        carry: list[Emission] = []
        a = self.start_ms
        while self.end_ms is None or a < self.end_ms:
            b = a + self.chunk_ms if self.end_ms is None else min(a + self.chunk_ms, self.end_ms)
            items = self.traffic.chunk(a, b)
            if self.faults is not None:
                items = self.faults.apply(items)
            items.extend(carry)
            items.sort()
            cut = next((i for i, e in enumerate(items) if e.t >= b), len(items))
            carry = items[cut:]
            yield from items[:cut]
            a = b
        yield from carry


@dataclass(slots=True)
class Simulation:
    """Every bed of a run; iterate :meth:`messages` once, then read :meth:`labels`."""

    config: SimConfig
    beds: list[BedStream]

    def messages(self) -> Iterator[Emission]:
        return merge(self.beds)

    def labels(self) -> list[Label]:
        """Labels of every day planned so far, in start order."""
        labels = [label for bed in self.beds for label in bed.traffic.labels]
        return sorted(labels, key=label_sort_key)

    def fault_injectors(self) -> list[FaultInjector]:
        return [bed.faults for bed in self.beds if bed.faults is not None]

    @property
    def specs(self) -> list[BedSpec]:
        return [bed.traffic.spec for bed in self.beds]


def merge(beds: list[BedStream]) -> Iterator[Emission]:
    return heapq.merge(*beds)


def offline(config: SimConfig, *, start: dt.date, days: float,
            chunk_ms: int = 6 * HOUR_MS) -> Simulation:
    """A run from local midnight of ``start`` in each site's zone, for ``days`` local days."""
    if not 0 < days <= 366:
        raise ValueError("days: must be more than 0 and at most 366")
    beds = []
    for spec in bed_specs(config):
        start_ms = local_ms(start, 0.0, spec.timezone)
        end_ms = local_ms(start, days * 24 * 60, spec.timezone)
        beds.append(_bed(config, spec, start_ms, end_ms, start_ms, chunk_ms))
    return Simulation(config, beds)


def live(config: SimConfig, *, start_ms: int, lead_ms: int = 2 * 60_000,
         chunk_ms: int = 10 * 60_000) -> Simulation:
    """An open-ended run from ``start_ms`` (the simulated now); incidents start after
    ``lead_ms`` so that subscribers are in place when the first one happens."""
    beds = [_bed(config, spec, start_ms, None, start_ms + lead_ms, chunk_ms)
            for spec in bed_specs(config)]
    return Simulation(config, beds)


def _bed(config: SimConfig, spec: BedSpec, start_ms: int, end_ms: int | None, earliest_ms: int,
         chunk_ms: int) -> BedStream:
    traffic = BedTraffic(spec, config, start_ms=start_ms, end_ms=end_ms, earliest_ms=earliest_ms,
                         deck=Deck(config.seed))
    faults = None
    if config.faults:
        faults = FaultInjector(np.random.default_rng([config.seed, spec.index, 6]),
                               rate=config.fault_rate, must_cover=spec.index == 0)
    return BedStream(traffic, faults, start_ms, end_ms, chunk_ms)
