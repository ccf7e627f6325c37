"""Upstream delivery: alert changes and service-log records to the city platform and to
families, at least once.

The outbox (SQLite, WAL, ``data_dir/outbox.sqlite3``) is filled from the two durable logs the
gateway already keeps, by cursor: the alert store's change log (``seq``, unique and increasing;
the cursor is the last seq queued and reads what is above it, so it follows the jump after a
restore of the alert store, which numbers new changes above every seq it ever issued, never
at or below this cursor) and the hash-chained service log (``seq``). New entries and the moved
cursor are written in one transaction, so each is queued exactly once across crashes and
restarts, and the edge never waits on the network: the logs are on disk before anything is
acknowledged to the broker, the outbox catches up from them whenever it runs.

Destinations: the platform (``upstream_url``) gets everything; a bed with a ``family_webhook``
in the registry also has its own alert changes and visit records delivered there. Each
destination is a queue of its own, in order, delivered by a task of its own with its own
request deadline, so a family's service being slow or down never holds up the platform or
another family; one pump task fills the queues and wakes each destination whose head is due.
A stop starts no new request and gives those in flight :data:`STOP_GRACE_S`, then cancels
them: their entries stay queued and go after the restart under the same key. Delivery is one
entry per request (``POST`` of a JSON body), so the platform sees an alert opened before it
sees it resolved. Every request carries:

* ``Idempotency-Key``: ``<source>/alert/<seq>`` or ``<source>/service/<seq>`` (``source``: the
  gateway's :attr:`~gateway.config.Settings.upstream_source`); the same key on a retry, so the
  platform drops a duplicate delivery;
* ``X-Homecare-Signature: t=<epoch ms>,v1=<hex>``, HMAC-SHA256 over ``"<t>." + body`` with the
  shared secret (:func:`signature`, checked by :func:`verify`); for a family, with the bed's
  own secret derived from it (:func:`family_secret`, ``homecare upstream family-secret``), so
  no family holds a key that signs for the platform or for another bed.

A 2xx answer delivers the entry. A network error, a timeout, 408, 425, 429 or a 5xx keeps it at
the head of the queue and retries it after an exponential backoff with jitter (1 s doubling to
:data:`MAX_BACKOFF_S`), so the order holds and a platform outage only delays. Any other answer
(400, 401, 403, 404, 413, 422...) is a rejection the platform will repeat: the entry is set
aside as ``rejected`` with the answer (visible in metrics and the log, kept in the outbox) and
the queue goes on.

An entry failing for longer than the retry horizon (``park_after_s``, from its first failure)
no longer holds its queue for ever: after each further failure the entry right behind it is
tried once, and if that one goes through (delivered or rejected) the failing entry is
``parked`` (kept, logged, counted in ``homecare_upstream_parked``, shown by the station's API
and ``homecare upstream status``, put back in its place by ``homecare upstream requeue``) and
the queue goes on. If the one behind fails too, the destination is at fault, not the entry:
nothing is parked and the order holds, however long the outage. The last entry of a queue is
never parked (it holds up nothing). So each destination receives its entries in queue order,
except the ones set aside: the one behind a parked entry, and everything after it, arrive
before the parked one, which arrives after it is requeued (its key and its seq say where it
belongs). Identifiers in the payloads are the registry's (pseudonymous) site, bed,
device and person codes; no names, no audio or infrared content, only metadata and hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from alerts.errors import storage_fault
from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from gateway.upstream.outbox import KEEP_DELIVERED_MS, Entry, Outbox, Report
from gateway.upstream.pump import pump
from gateway.upstream.signing import PLATFORM, family_destination, family_secret, signature

log = logging.getLogger("homecare.upstream")

T = TypeVar("T")

MAX_BACKOFF_S: Final = 300.0
RETRY_STATUSES: Final = frozenset({408, 425, 429})
IDLE_S: Final = 0.5
"""How often the pump loop looks for new entries and for destinations whose head is due."""
LANE_IDLE_S: Final = 10.0
"""How long a destination's task sleeps unwoken (the pump loop wakes it when it is due)."""
PARK_AFTER_S: Final = 3600.0
"""The retry horizon by default (setting ``upstream_park_after_s``)."""
STOP_GRACE_S: Final = 2.0
"""How long a stop waits for the requests in flight before cancelling them."""
PRUNE_EVERY_S: Final = 3600.0



def _kind(destination: str) -> str:
    """``platform`` or ``family`` (logs and metrics never name a bed's destination)."""
    return destination.split(":", 1)[0]


class _Metrics:
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


class Upstream:
    """Fills the outbox from the alert store and the service log and delivers it: one task
    pumps, and each destination has a delivery task of its own."""

    def __init__(self, outbox: Outbox, *, url: str | None, secret: bytes, source: str,
                 alert_store: AlertStore, service_log: ServiceLog,
                 families: Mapping[tuple[str, str], str] | None = None,
                 timeout_s: float = 10.0, park_after_s: float = PARK_AFTER_S,
                 stop_grace_s: float = STOP_GRACE_S,
                 metrics: CollectorRegistry | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 ) -> None:
        """``url``: the platform's endpoint (``None``: families only); ``families``: the
        family webhook of each ``(site, bed)`` that has one; ``park_after_s``: the retry
        horizon (see the module docstring); ``stop_grace_s``: how long a stop waits for the
        requests in flight (then they are cancelled: sent again after the restart)."""
        if not secret:
            raise ValueError("upstream delivery needs a signing secret")
        self.outbox = outbox
        # Its own thread for the outbox and the logs it reads: upstream work never takes a
        # thread of the default pool, and is one at a time by construction.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="upstream")
        self._store_failing = False
        self.destinations: dict[str, Destination] = {}
        if url:
            self.destinations[PLATFORM] = Destination(PLATFORM, url, secret, timeout_s)
        for (site, bed), webhook in (families or {}).items():
            name = family_destination(site, bed)
            self.destinations[name] = Destination(name, webhook,
                                                  family_secret(secret, site, bed), timeout_s)
        if not self.destinations:
            raise ValueError("upstream delivery needs the platform's URL or a family webhook")
        self.source = source
        self.alert_store = alert_store
        self.service_log = service_log
        self.timeout_s = timeout_s
        self.stop_grace_s = stop_grace_s
        self.park_after_ms = int(park_after_s * 1000)
        self._metrics = _Metrics(metrics) if metrics is not None else None
        self._transport = transport
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._lanes: dict[str, asyncio.Event] = {}
        """Each destination's wake-up: its head is due."""

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # --- from the logs to the outbox ----------------------------------------------------------

    def pump(self) -> int:
        """Queue what the logs hold beyond their cursors; returns how many were queued."""
        return pump(self.outbox, alert_store=self.alert_store, service_log=self.service_log,
                    source=self.source, destinations_of=self._destinations_of,
                    now_ms=self._now_ms())

    def _destinations_of(self, site: str, bed: str) -> list[str]:
        family = family_destination(site, bed)
        return [to for to in (PLATFORM, family) if to in self.destinations]

    # --- delivery -----------------------------------------------------------------------------

    async def _deliver_due(self, client: httpx.AsyncClient, destination: Destination,
                           stopping: asyncio.Event) -> int:
        """Send ``destination``'s due entries in order until its queue is empty, its head must
        wait or the gateway stops; returns how many were delivered or set aside."""
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
                    "requeue puts it back)", entry.key, _kind(entry.destination),
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
                  "the queue goes on", entry.key, _kind(entry.destination), status,
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
                "wait_s=%.1f", entry.key, _kind(entry.destination), entry.attempts + 1, status,
                error[:120], backoff)

    def report(self) -> Report:
        """Each destination's queue and the entries set aside (for the station's API; blocks
        on SQLite: call it from a thread)."""
        return self.outbox.report()

    def wake(self) -> None:
        """New entries are in the logs (an alert commit, a service record): look now."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Pump and deliver until ``stopping`` is set; never raises for upstream trouble.

        Once ``stopping`` is set no request starts; the ones in flight get ``stop_grace_s``
        to be answered and are then cancelled (their entries stay queued, sent again after
        the restart under the same key)."""
        async with httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport,
                                     follow_redirects=False) as client:
            with contextlib.suppress(sqlite3.Error):
                await self._io(self.outbox.retry_now)
            with contextlib.suppress(sqlite3.Error):
                orphaned = await self._io(self.outbox.reject_elsewhere, list(self.destinations),
                                          "destination no longer configured", self._now_ms())
                if orphaned:
                    log.error("upstream.rejected entries=%d: their destination is no longer "
                              "configured; set aside", orphaned)
            self._lanes = {name: asyncio.Event() for name in self.destinations}
            lanes = [asyncio.create_task(self._lane(client, destination, stopping),
                                         name=f"upstream[{_kind(destination.name)}]")
                     for destination in self.destinations.values()]
            try:
                await self._pump_loop(stopping)
            finally:
                for wake in self._lanes.values():
                    wake.set()
                if not stopping.is_set():  # cancelled from outside
                    for lane in lanes:
                        lane.cancel()
                _, late = await asyncio.wait(lanes, timeout=self.stop_grace_s)
                for lane in late:
                    lane.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)
                if late:
                    log.info("upstream.stopped in_flight=%d; sent again after the restart",
                             len(late))

    async def _lane(self, client: httpx.AsyncClient, destination: Destination,
                    stopping: asyncio.Event) -> None:
        """One destination's delivery task: its due entries in order, whenever the pump loop
        says its head is due."""
        wake = self._lanes[destination.name]
        failing = False
        while not stopping.is_set():
            wake.clear()
            try:
                await self._deliver_due(client, destination, stopping)
                if failing:
                    log.info("upstream.resumed destination=%s", _kind(destination.name))
                    failing = False
            except (sqlite3.Error, OSError) as exc:
                if not failing:
                    log.error("upstream.error destination=%s %s: %s; retrying",
                              _kind(destination.name), type(exc).__name__, exc)
                failing = True
            except Exception:
                log.exception("upstream.failed destination=%s; retrying",
                              _kind(destination.name))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LANE_IDLE_S):
                    await wake.wait()

    async def _pump_loop(self, stopping: asyncio.Event) -> None:
        """Queue what the logs hold and wake each destination whose head is due, whenever an
        alert commit says so and at least every :data:`IDLE_S`."""
        pruned_at = 0.0
        while not stopping.is_set():
            self._wake.clear()
            try:
                if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                    await self._io(self.outbox.prune, self._now_ms() - KEEP_DELIVERED_MS)
                    pruned_at = time.monotonic()
                await self._io(self.pump)
                for name in await self._io(self.outbox.due, self._now_ms()):
                    if (wake := self._lanes.get(name)) is not None:
                        wake.set()
                if self._metrics is not None:
                    self._metrics.pending.set(await self._io(self.outbox.count, "pending"))
                    self._metrics.parked.set(await self._io(self.outbox.count, "parked"))
                if self._store_failing:
                    log.info("upstream.store_resumed")
                    self._store_failing = False
            except (sqlite3.Error, OSError) as exc:
                # Storage trouble (classified once, alerts.errors): logged once per outage.
                fault = storage_fault(exc)
                if not self._store_failing or fault is None:
                    log.error("upstream.error %s: %s (%s); retrying", type(exc).__name__,
                              exc, fault.reason if fault else "not a storage fault")
                self._store_failing = fault is not None
            except Exception:
                # Upstream trouble of any kind must never take the gateway down with it.
                log.exception("upstream.failed; retrying")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_S):
                    waiters = {asyncio.ensure_future(stopping.wait()),
                               asyncio.ensure_future(self._wake.wait())}
                    try:
                        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for waiter in waiters:
                            waiter.cancel()
