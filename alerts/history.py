"""Bed metric history behind one small interface, bounded: what the bed routes read charts from.

The readers themselves (InfluxQL for 1.x, Flux for 2.x) live with the database code in
:mod:`gateway.tsdb.history`; the API sees only :class:`HistoryReader` and the errors below,
which the routes turn into answers: :class:`HistoryUnavailable` (the database cannot be
reached: 503) or :class:`HistoryFailed` (it answered with an error: 502; 401/403 say that the
credentials are refused).

Bounded and timed out (:class:`BoundedHistory`): at most ``max_concurrent`` queries run at once
(the ``history_max_concurrent`` setting), ``max_waiting`` more may wait, any further one is
refused at once (:class:`HistoryBusy`, 503 with ``Retry-After``); a query not answered within
``timeout_s`` is abandoned (:class:`HistoryTimeout`, 504). A slow database then costs a chart,
never an emergency call (the gateway's alert and ingest commits have threads of their own, see
:mod:`gateway.runtime`).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from alerts.errors import HistoryBusy, HistoryError, HistoryTimeout


class HistoryReader(Protocol):
    name: str

    async def series(self, site: str, bed: str, metric: str, *, since: int, until: int,
                     max_points: int) -> list[tuple[int, float]]:
        """``(t, value)`` in time order, ``since <= t < until``, at most ``max_points``."""

    async def close(self) -> None: ...


class BoundedHistory:
    """A :class:`HistoryReader` with a bound on queries in flight and a time-out on each."""

    def __init__(self, reader: HistoryReader, *, max_concurrent: int, max_waiting: int,
                 timeout_s: float, metrics: CollectorRegistry | None = None) -> None:
        if max_concurrent < 1 or max_waiting < 0 or timeout_s <= 0:
            raise ValueError("max_concurrent >= 1, max_waiting >= 0, timeout_s > 0")
        self.reader = reader
        self.name = reader.name
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.timeout_s = timeout_s
        self._running = asyncio.Semaphore(max_concurrent)
        self._admitted = 0
        self._queries: Counter | None = None
        self._in_flight: Gauge | None = None
        if metrics is not None:
            self._queries = Counter(
                "homecare_history_queries", "Bed history queries to the time-series database, "
                "by outcome (ok, busy: refused at once, timeout, failed)", ["outcome"],
                registry=metrics)
            self._in_flight = Gauge("homecare_history_in_flight",
                                    "History queries running or waiting", registry=metrics)

    @property
    def in_flight(self) -> int:
        """Queries running or waiting now."""
        return self._admitted

    async def series(self, site: str, bed: str, metric: str, *, since: int, until: int,
                     max_points: int) -> list[tuple[int, float]]:
        if self._admitted >= self.max_concurrent + self.max_waiting:
            self._count("busy")
            raise HistoryBusy(f"{self._admitted} history queries are in flight already (at "
                              f"most {self.max_concurrent} run at once, {self.max_waiting} "
                              "wait); retry shortly")
        self._admitted += 1
        self._gauge()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._running:
                    points = await self.reader.series(site, bed, metric, since=since,
                                                       until=until, max_points=max_points)
        except TimeoutError:
            self._count("timeout")
            raise HistoryTimeout(f"the time-series database did not answer within "
                                 f"{self.timeout_s:g} s (history_timeout_s); the query was "
                                 "abandoned") from None
        except HistoryError:
            self._count("failed")
            raise
        finally:
            self._admitted -= 1
            self._gauge()
        self._count("ok")
        return points

    async def close(self) -> None:
        await self.reader.close()

    def _count(self, outcome: str) -> None:
        if self._queries is not None:
            self._queries.labels(outcome).inc()

    def _gauge(self) -> None:
        if self._in_flight is not None:
            self._in_flight.set(self._admitted)
