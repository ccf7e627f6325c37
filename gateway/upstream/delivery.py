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

Destinations: the platform (``upstream_url``), the care institution
(``upstream_institution_url``) and, for a bed with a ``family_webhook`` in the registry, that
bed's family; each gets its share of every alert change and service record
(:mod:`gateway.upstream.shares`, decided when the pump queues it). Each
destination is a queue of its own, in order, delivered by a task of its own with its own
request deadline, so a family's service being slow or down never holds up the platform or
another family; one pump task fills the queues and wakes each destination whose head is due.
A stop starts no new request and gives those in flight :data:`STOP_GRACE_S`, then cancels
them: their entries stay queued and go after the restart under the same key. Delivery is one
entry per request (``POST`` of a JSON body), so the platform sees an alert opened before it
sees it resolved. Every request carries:

* ``Idempotency-Key``: ``<source>/alert/<seq>`` or ``<source>/service/<seq>`` (``source``: the
  gateway's :attr:`~gateway.config.Settings.upstream_source`; a family's names no log-wide
  number: :meth:`Share.key <gateway.upstream.shares.Share.key>`); the same key on a retry, so
  the platform drops a duplicate delivery;
* ``X-Homecare-Signature: t=<epoch ms>,v1=<hex>``, HMAC-SHA256 over ``"<t>." + body`` with the
  shared secret (:func:`signature`, checked by :func:`verify`); for a family, with the bed's
  own secret derived from it (:func:`family_secret`, ``homecare upstream family-secret``), so
  no family holds a key that signs for the platform or for another bed; for the institution,
  with its own (:func:`institution_secret`).

What happens to a failing entry (retried, rejected, parked) is :mod:`gateway.upstream.lane`'s.
Identifiers in the payloads are the registry's (pseudonymous) site, bed, device and person
codes; no names, no audio or infrared content, only metadata and hashes.
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
from typing import Any, Final, TypeVar

import httpx
from prometheus_client import CollectorRegistry

from alerts.errors import storage_fault
from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from gateway.upstream.lane import PARK_AFTER_S, Destination, Lane, Metrics, kind
from gateway.upstream.outbox import KEEP_DELIVERED_MS, Outbox, Report
from gateway.upstream.pump import pump
from gateway.upstream.shares import Share, Shares
from gateway.upstream.signing import (
    INSTITUTION,
    PLATFORM,
    family_destination,
    family_secret,
    institution_secret,
)

log = logging.getLogger("homecare.upstream")

T = TypeVar("T")

IDLE_S: Final = 0.5
"""How often the pump loop looks for new entries and for destinations whose head is due."""
STOP_GRACE_S: Final = 2.0
"""How long a stop waits for the requests in flight before cancelling them."""
PRUNE_EVERY_S: Final = 3600.0


class Upstream:
    """Fills the outbox from the alert store and the service log and delivers it: one task
    pumps, and each destination has a delivery task of its own."""

    def __init__(self, outbox: Outbox, *, url: str | None, secret: bytes, source: str,
                 alert_store: AlertStore, service_log: ServiceLog,
                 families: Mapping[tuple[str, str], str] | None = None,
                 institution_url: str | None = None, shares: Shares | None = None,
                 timeout_s: float = 10.0, park_after_s: float = PARK_AFTER_S,
                 stop_grace_s: float = STOP_GRACE_S,
                 metrics: CollectorRegistry | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 ) -> None:
        """``url``: the platform's endpoint (``None``: none); ``families``: the family webhook
        of each ``(site, bed)`` that has one; ``institution_url``: the care institution's
        endpoint; ``shares``: what each kind of destination receives (by default the platform
        everything, the institution no staff names or notes, a family
        :data:`~gateway.upstream.shares.FAMILY_ACTIONS` of its chosen types and its visit
        records, :class:`~gateway.upstream.shares.Shares`); ``park_after_s``: the retry
        horizon (see the module docstring); ``stop_grace_s``: how long a stop waits for the
        requests in flight (then they are cancelled: sent again after the restart)."""
        if not secret:
            raise ValueError("upstream delivery needs a signing secret")
        self.outbox = outbox
        # Its own thread for the outbox and the logs it reads: upstream work never takes a
        # thread of the default pool, and is one at a time by construction.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="upstream")
        self._store_failing = False
        shares = shares or Shares()
        self.destinations: dict[str, Destination] = {}
        if url:
            self.destinations[PLATFORM] = Destination(PLATFORM, url, secret, timeout_s,
                                                      shares.platform)
        if institution_url:
            self.destinations[INSTITUTION] = Destination(
                INSTITUTION, institution_url, institution_secret(secret), timeout_s,
                shares.institution)
        for (site, bed), webhook in (families or {}).items():
            name = family_destination(site, bed)
            self.destinations[name] = Destination(name, webhook, family_secret(secret, site, bed),
                                                  timeout_s, shares.family)
        if not self.destinations:
            raise ValueError("upstream delivery needs the platform's or the institution's URL "
                             "or a family webhook")
        self.source = source
        self.alert_store = alert_store
        self.service_log = service_log
        self.timeout_s = timeout_s
        self.stop_grace_s = stop_grace_s
        self.park_after_ms = int(park_after_s * 1000)
        self._metrics = Metrics(metrics) if metrics is not None else None
        self._transport = transport
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._lanes: dict[str, Lane] = {}

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

    def _destinations_of(self, site: str, bed: str) -> list[tuple[str, Share]]:
        names = (PLATFORM, INSTITUTION, family_destination(site, bed))
        return [(name, to.share) for name in names
                if (to := self.destinations.get(name)) is not None]

    # --- delivery -----------------------------------------------------------------------------

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
            self._lanes = {name: Lane(destination, outbox=self.outbox, io=self._io,
                                      now_ms=self._now_ms, rng=self._rng,
                                      metrics=self._metrics, park_after_ms=self.park_after_ms)
                           for name, destination in self.destinations.items()}
            lanes = [asyncio.create_task(lane.run(client, stopping),
                                         name=f"upstream[{kind(name)}]")
                     for name, lane in self._lanes.items()]
            try:
                await self._pump_loop(stopping)
            finally:
                for lane in self._lanes.values():
                    lane.wake.set()
                if not stopping.is_set():  # cancelled from outside
                    for task in lanes:
                        task.cancel()
                _, late = await asyncio.wait(lanes, timeout=self.stop_grace_s)
                for task in late:
                    task.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)
                if late:
                    log.info("upstream.stopped in_flight=%d; sent again after the restart",
                             len(late))

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
                    if (due := self._lanes.get(name)) is not None:
                        due.wake.set()
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
