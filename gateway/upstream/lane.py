"""One destination's delivery: its queue of the outbox, in order, by a task of its own.

Each entry is one ``POST`` of its body to the destination, signed with the destination's
secret, under its ``Idempotency-Key``, with the destination's own request time-out.

A 2xx answer delivers the entry. A network error, a timeout, 408, 425, 429 or a 5xx keeps it at
the head of the queue and retries it after an exponential backoff with jitter (1 s doubling to
:data:`MAX_BACKOFF_S`), so the order holds and a platform outage only delays. Any other answer
(400, 401, 403, 404, 413, 422...) is a rejection the platform will repeat: the entry is set
aside as ``rejected`` with the answer (visible in metrics and the log, kept in the outbox) and
the queue goes on.

An entry failing for longer than the retry horizon (``park_after_s``, the setting
``upstream_park_after_s``, from its first failure) no longer holds its queue for ever: after
each further failure the entry right behind it is tried once, and if that one goes through
(delivered or rejected) the failing entry is ``parked`` (kept, logged, counted in
``homecare_upstream_parked``, shown by the station's API and ``homecare upstream status``, put
back in its place by ``homecare upstream requeue``) and the queue goes on. If the one behind
fails too, the destination is at fault, not the entry: nothing is parked and the order holds,
however long the outage. The last entry of a queue is never parked (it holds up nothing). So
each destination receives its entries in queue order, except the ones set aside: the one behind
a parked entry, and everything after it, arrive before the parked one, which arrives after it is
requeued (its key and its seq say where it belongs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.upstream.outbox import Entry, Outbox
from gateway.upstream.shares import Share
from gateway.upstream.signing import signature

log = logging.getLogger("homecare.upstream")

MAX_BACKOFF_S: Final = 300.0
RETRY_STATUSES: Final = frozenset({408, 425, 429})
LANE_IDLE_S: Final = 10.0
"""How long a destination's task sleeps unwoken (the pump loop wakes it when it is due)."""
PARK_AFTER_S: Final = 3600.0
"""The retry horizon by default (setting ``upstream_park_after_s``)."""


def kind(destination: str) -> str:
    """``platform``, ``institution`` or ``family`` (logs and metrics never name a bed's
    destination)."""
    return destination.split(":", 1)[0]


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pending = Gauge("homecare_upstream_pending", "Entries waiting to go upstream",
                             registry=registry)
        self.parked = Gauge("homecare_upstream_parked",
                            "Entries parked after failing past the retry horizon (put back "
                            "with `homecare upstream requeue`)", registry=registry)
        self.delivered = Counter("homecare_upstream_delivered", "Entries delivered upstream",
                                 registry=registry)
        self.rejected = Counter("homecare_upstream_rejected",
                                "Entries the platform refused for good (kept in the outbox)",
                                registry=registry)
        self.failures = Counter("homecare_upstream_failures",
                                "Delivery attempts to retry (network error or status)",
                                ["reason"], registry=registry)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one queue of the outbox goes."""

    name: str
    url: str
    secret: bytes
    timeout_s: float
    share: Share


class Lane:
    """One destination's delivery task (:meth:`run`), woken by the pump loop when its head is
    due (:attr:`wake`)."""

    def __init__(self, destination: Destination, *, outbox: Outbox,
                 io: Callable[..., Awaitable[Any]], now_ms: Callable[[], int],
                 rng: random.Random, metrics: Metrics | None, park_after_ms: int) -> None:
        """``io(fn, *args)``: runs an outbox call off the event loop."""
        self.destination = destination
        self.outbox = outbox
        self._io = io
        self._now_ms = now_ms
        self._rng = rng
        self._metrics = metrics
        self.park_after_ms = park_after_ms
        self.wake = asyncio.Event()

    async def run(self, client: httpx.AsyncClient, stopping: asyncio.Event) -> None:
        """Its due entries in order, whenever the pump loop says its head is due, until
        ``stopping``; never raises for upstream trouble."""
        wake, destination = self.wake, self.destination
        failing = False
        while not stopping.is_set():
            wake.clear()
            try:
                await self.deliver_due(client, stopping)
                if failing:
                    log.info("upstream.resumed destination=%s", kind(destination.name))
                    failing = False
            except (sqlite3.Error, OSError) as exc:
                if not failing:
                    log.error("upstream.error destination=%s %s: %s; retrying",
                              kind(destination.name), type(exc).__name__, exc)
                failing = True
            except Exception:
                log.exception("upstream.failed destination=%s; retrying",
                              kind(destination.name))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LANE_IDLE_S):
                    await wake.wait()

    async def deliver_due(self, client: httpx.AsyncClient, stopping: asyncio.Event) -> int:
        """Send the due entries in order until the queue is empty, its head must wait or the
        gateway stops; returns how many were delivered or set aside."""
        destination = self.destination
        done = 0
        while not stopping.is_set():
            entry = await self._io(self.outbox.head, destination.name)
            if entry is None or entry.next_at > self._now_ms():
                break
            if await self._send(client, destination, entry) is not None \
                    or (not stopping.is_set() and await self._park(client, destination, entry)):
                done += 1
            # else its next_at moved on: the head now waits
        return done

    async def _park(self, client: httpx.AsyncClient, destination: Destination,
                    entry: Entry) -> bool:
        """Park ``entry``, which just failed again, if it has been failing past the retry
        horizon and the entry behind it goes through (so the fault is the entry's, not the
        destination's); returns whether it was parked. The entry behind is delivered (or
        rejected) ahead of it: that is the one place where a queue's order gives way."""
        since = entry.failing_since
        if since is None or self._now_ms() - since < self.park_after_ms:
            return False
        behind = await self._io(self.outbox.behind, entry)
        if behind is None:
            return False  # it blocks nothing: it keeps its place
        if await self._send(client, destination, behind, out_of_turn=True) is None:
            return False  # the destination fails too, not only this entry
        await self._io(self.outbox.park, entry, self._now_ms())
        log.warning("upstream.parked key=%s destination=%s attempts=%d failing_s=%.0f; the "
                    "entry behind it went through, the queue goes on (homecare upstream "
                    "requeue puts it back)", entry.key, kind(entry.destination),
                    entry.attempts + 1, (self._now_ms() - since) / 1000)
        if self._metrics is not None:
            self._metrics.parked.inc()
        return True

    async def _send(self, client: httpx.AsyncClient, destination: Destination,
                    entry: Entry, *, out_of_turn: bool = False) -> str | None:
        """Post ``entry``; returns ``delivered``, ``rejected``, or ``None`` when it is to be
        retried (``out_of_turn``: it is not the head, and its failure only counts)."""
        sent_ms = self._now_ms()
        headers = {"Content-Type": "application/json", "Idempotency-Key": entry.key,
                   "X-Homecare-Signature": signature(destination.secret, entry.body, sent_ms)}
        try:
            response = await client.post(destination.url, content=entry.body, headers=headers,
                                         timeout=destination.timeout_s)
        except httpx.HTTPError as exc:
            await self._io(self._retry, entry, None, f"{type(exc).__name__}: {exc}"[:300],
                           out_of_turn)
            return None
        status = response.status_code
        if 200 <= status < 300:
            await self._io(self.outbox.delivered, entry, status, self._now_ms())
            if self._metrics is not None:
                self._metrics.delivered.inc()
            return "delivered"
        if status in RETRY_STATUSES or status >= 500:
            await self._io(self._retry, entry, status, response.text[:300], out_of_turn)
            return None
        await self._io(self.outbox.rejected, entry, status, response.text[:300],
                       self._now_ms())
        log.error("upstream.rejected key=%s destination=%s status=%d detail=%r; set aside, "
                  "the queue goes on", entry.key, kind(entry.destination), status,
                  response.text[:200])
        if self._metrics is not None:
            self._metrics.rejected.inc()
        return "rejected"

    def _retry(self, entry: Entry, status: int | None, error: str, out_of_turn: bool) -> None:
        if self._metrics is not None:
            self._metrics.failures.labels("network" if status is None else str(status)).inc()
        if out_of_turn:
            self.outbox.attempted(entry, status, error)
            return
        backoff = min(MAX_BACKOFF_S, 2.0 ** min(entry.attempts, 16))
        backoff *= 0.8 + 0.4 * self._rng.random()
        now = self._now_ms()
        self.outbox.retry(entry, now + int(backoff * 1000), status, error, now)
        level = logging.WARNING if entry.attempts in (0, 5, 10) or entry.attempts % 50 == 0 \
            else logging.DEBUG
        log.log(level, "upstream.retry key=%s destination=%s attempt=%d status=%s error=%r "
                "wait_s=%.1f", entry.key, kind(entry.destination), entry.attempts + 1, status,
                error[:120], backoff)
