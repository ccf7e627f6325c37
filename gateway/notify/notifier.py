"""From an escalation step to the people on call: queued durably, delivered, recorded.

The notifier reads the alert store's change log beyond its cursor, like the upstream pump
(:mod:`gateway.upstream.pump`). A change that takes a step of the alert's chain (``opened``:
step 1; ``escalated``: the next; ``repeated`` after an acknowledgement: step 1 again) while
the alert is still open and at that step becomes that step's notifications
(:func:`alerts.plan_step`: the roster's people on duty at the alert's site, in its zone, on each
channel), first recorded in the alert's history as ``notified`` (the step, its recipients and
channels, what could not be sent and why), then queued in their own outbox
(``data_dir/notify.sqlite3``, :class:`gateway.upstream.Outbox`: one queue per channel and
recipient) together with the moved cursor, in one transaction. A step is so never lost and
never queued twice; a crash between the record and the queueing records the step twice.
Nothing of this runs on the alert path: the alert is committed and on the stream first, and the
notifier is only woken by the commit; it works on a thread of its own.

Each queue is delivered in order by a task of its own while its head is due. Before a
notification is sent, the alert is looked at: once it is acknowledged or resolved, what is
still queued for it is not sent (``notification_cancelled``). Each result goes into the alert's
history (and so on the stream and upstream) before the outbox is told:
``notification_delivered``, ``notification_failed`` (the first failure of a notification,
``retrying``, and a refusal, ``not retried``). A failing notification is retried after 1 s,
doubling to ``retry_max_s`` (30 s by default, jittered): a page must not wait minutes once the
mail server is back. The channels themselves are :mod:`gateway.notify.channels`.
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
from zoneinfo import ZoneInfo

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from alerts import (
    AckLinks,
    Alert,
    AlertChange,
    AlertEngine,
    AlertStatus,
    AlertStore,
    NotifyChannels,
    Resident,
    ResidentStore,
    RosterStore,
    StepPlan,
    StoreUnavailable,
    call_started,
    envelope,
    plan_step,
)
from gateway.notify.channels import Channel, Outcome
from gateway.upstream import Entry, Outbox

log = logging.getLogger("homecare.notify")

T = TypeVar("T")

SOURCE: Final = "alerts"
"""The notify outbox's cursor: the last alert change seq it read."""
STEP_ACTIONS: Final = frozenset({"opened", "escalated", "repeated"})
PUMP_LIMIT: Final = 500
IDLE_S: Final = 0.5
STOP_GRACE_S: Final = 2.0
PRUNE_EVERY_S: Final = 3600.0
KEEP_DELIVERED_MS: Final = 30 * 86_400_000


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "homecare_notifications", "On-call notifications by channel and what became of "
            "them (queued, delivered, retried, refused, cancelled)", ["channel", "result"],
            registry=registry)
        self.pending = Gauge("homecare_notifications_pending",
                             "Notifications queued and not yet delivered", registry=registry)


class Notifier:
    """Queues each escalation step's notifications and delivers them (module docstring)."""

    def __init__(self, outbox: Outbox, *, engine: AlertEngine, store: AlertStore,
                 roster: RosterStore, residents: ResidentStore | None,
                 zone_of: Callable[[str], ZoneInfo | None], links: AckLinks, public_url: str,
                 channels: Mapping[str, Channel], config: NotifyChannels, source: str,
                 retry_max_s: float = 30.0, fresh: bool = False,
                 metrics: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None
                 ) -> None:
        """``fresh``: the outbox was just created; notifications start with the alert
        changes to come, not with every change the store already holds."""
        self.outbox = outbox
        self.engine = engine
        self.store = store
        self.roster = roster
        self.residents = residents
        self.zone_of = zone_of
        self.links = links
        self.public_url = public_url.rstrip("/")
        self.channels = dict(channels)
        self.config = config
        self.source = source
        self.retry_max_s = retry_max_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._metrics = _Metrics(metrics) if metrics is not None else None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="notify")
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failing = False
        if fresh:
            outbox.enqueue(SOURCE, store.last_seq(), [], self._now_ms())

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _count(self, channel: str, result: str, n: int = 1) -> None:
        if self._metrics is not None and n:
            self._metrics.notifications.labels(channel, result).inc(n)

    def wake(self, _changes: object = None) -> None:
        """New alert changes were committed (an engine listener: any thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    # --- from the change log to the outbox (the notify thread) --------------------------------

    def pump(self) -> int:
        """Queue the notifications of every step taken beyond the cursor; returns how many."""
        queued = 0
        while True:
            changes = self.store.changes_since(self.outbox.cursor(SOURCE), PUMP_LIMIT)
            if not changes:
                return queued
            for change in changes:
                plan = self._plan(change)
                if plan is None:
                    continue
                now = self._now_ms()
                self.engine.record(change.alert.id, action="notified", note=plan.note,
                                   now_ms=now)
                added = self.outbox.enqueue(SOURCE, change.seq, [
                    (n.destination, n.key, n.channel, n.body) for n in plan.notifications], now)
                queued += added
                for n in plan.notifications:
                    self._count(n.channel, "queued")
            self.outbox.enqueue(SOURCE, changes[-1].seq, [], self._now_ms())

    def _plan(self, change: AlertChange) -> StepPlan | None:
        if change.action not in STEP_ACTIONS:
            return None
        alert = self.engine.get(change.alert.id)
        if alert is None or alert.status is not AlertStatus.OPEN:
            return None  # answered meanwhile
        history = self.store.history(change.alert.id)
        call = call_started(history)
        if call is not None and change.seq < call:
            return None  # a step of an earlier call: a new call restarted the chain
        if change.action == "repeated" and not self._reopened(change):
            return None
        # Each step at its own level: steps taken at once (a catch-up after a restart) are
        # each notified, in order (issue #13).
        level = change.alert.escalation_level
        chain = self.engine.policy.chain(alert.severity, alert.type)
        step, _ = chain.step(level)
        now = self._now_ms()
        zone = self.zone_of(alert.site)

        def link(key: str, recipient: str, channel: str) -> tuple[str, int]:
            token = self.links.mint(key=key, alert_id=alert.id, recipient=recipient,
                                    step=step, channel=channel, now_ms=now)
            return f"{self.public_url}/ack/{token}", now + self.links.ttl_ms

        return plan_step(alert, seq=change.seq, chain=chain, level=level,
                         sent_for=change.action,
                         on_duty=self.roster.roster.on_duty(alert.site, now, zone),
                         resident=self._resident(alert), channels=self.config,
                         source=self.source, link=link, zone=zone, now_ms=now)

    def _reopened(self, change: AlertChange) -> bool:
        """Whether a repeat put an acknowledged alert back to open (step 1 again)."""
        before = [c for c in self.store.history(change.alert.id) if c.seq < change.seq]
        return bool(before) and before[-1].alert.status is AlertStatus.ACKNOWLEDGED

    def _resident(self, alert: Alert) -> Resident | None:
        if self.residents is None or not alert.bed:
            return None
        try:
            return self.residents.get(alert.site, alert.bed)
        except Exception as exc:  # the profile file failing never stops a notification
            log.error("notify.profile_unavailable error=%s; notified without it",
                      type(exc).__name__)
            return None

    # --- delivery (the event loop) ------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Queue and deliver until ``stopping``; never raises for a channel's trouble. A stop
        gives the sends in flight :data:`STOP_GRACE_S`, then cancels them (sent again after
        the restart, under the same key)."""
        self._loop = asyncio.get_running_loop()
        tasks: dict[str, asyncio.Task[None]] = {}
        pruned_at = 0.0
        with contextlib.suppress(sqlite3.Error):
            await self._io(self.outbox.retry_now)
        try:
            while not stopping.is_set():
                self._wake.clear()
                try:
                    if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                        await self._io(self.outbox.prune, self._now_ms() - KEEP_DELIVERED_MS)
                        pruned_at = time.monotonic()
                    await self._io(self.pump)
                    for destination in await self._io(self.outbox.due, self._now_ms()):
                        task = tasks.get(destination)
                        if task is None or task.done():
                            tasks[destination] = asyncio.create_task(
                                self._deliver(destination, stopping),
                                name=f"notify[{destination.split(':', 1)[0]}]")
                    if self._metrics is not None:
                        self._metrics.pending.set(await self._io(self.outbox.count, "pending"))
                    if self._failing:
                        log.info("notify.resumed")
                        self._failing = False
                except (sqlite3.Error, OSError, StoreUnavailable) as exc:
                    if not self._failing:
                        log.error("notify.error %s: %s; retrying", type(exc).__name__, exc)
                    self._failing = True
                except Exception:
                    log.exception("notify.failed; retrying")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_S):
                        waiters = {asyncio.ensure_future(stopping.wait()),
                                   asyncio.ensure_future(self._wake.wait())}
                        try:
                            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                        finally:
                            for waiter in waiters:
                                waiter.cancel()
        finally:
            running = [t for t in tasks.values() if not t.done()]
            if running:
                _, late = await asyncio.wait(running, timeout=STOP_GRACE_S)
                for task in late:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
            for channel in self.channels.values():
                with contextlib.suppress(Exception):
                    await channel.close()
            self._thread.shutdown(wait=True)

    async def _deliver(self, destination: str, stopping: asyncio.Event) -> None:
        """The due entries of one queue, in order, until it is empty or its head waits."""
        try:
            while not stopping.is_set():
                entry = await self._io(self.outbox.head, destination)
                if entry is None or entry.next_at > self._now_ms():
                    return
                if not await self._deliver_one(entry):
                    return
        except (sqlite3.Error, OSError, StoreUnavailable) as exc:
            log.error("notify.delivery_error destination=%s %s: %s; retrying",
                      destination.split(":", 1)[0], type(exc).__name__, exc)
        except Exception:
            log.exception("notify.delivery_failed destination=%s; retrying",
                          destination.split(":", 1)[0])

    async def _deliver_one(self, entry: Entry) -> bool:
        """Send ``entry`` (or cancel it); returns False when it is to be retried later."""
        try:
            note = envelope(entry.body)
        except msgspec.ValidationError:
            await self._io(self.outbox.rejected, entry, 0, "not a notification",
                           self._now_ms())
            return True
        what = f"step {note.step}" + (f" (repeat {note.repeat})" if note.repeat else "") + \
            f" {note.channel} to {note.recipient}"
        alert = await self._io(self.engine.get, note.alert)
        channel = self.channels.get(note.channel)
        if alert is None or alert.status is not AlertStatus.OPEN:
            by = (f" by {alert.acknowledged_by or alert.resolved_by}"
                  if alert is not None else "")
            state = alert.status.value if alert is not None else "gone"
            await self._record(note.alert, "notification_cancelled",
                               f"{what}: not sent, the alert was {state}{by} before it went")
            await self._io(self.outbox.rejected, entry, 0, f"cancelled: alert {state}",
                           self._now_ms())
            self._count(note.channel, "cancelled")
            return True
        if channel is None:
            outcome = Outcome.refused(f"the {note.channel} channel is no longer configured")
        else:
            outcome = await channel.send(entry.key, note.message)
        attempts = entry.attempts + 1
        if outcome.result == "delivered":
            after = f" after {attempts} attempts" if attempts > 1 else ""
            await self._record(note.alert, "notification_delivered",
                               f"{what}: delivered{after} ({outcome.detail})")
            await self._io(self.outbox.delivered, entry, 0, self._now_ms())
            self._count(note.channel, "delivered")
            return True
        if outcome.result == "refused":
            await self._record(note.alert, "notification_failed",
                               f"{what}: refused ({outcome.detail}); not retried")
            await self._io(self.outbox.rejected, entry, 0, outcome.detail, self._now_ms())
            self._count(note.channel, "refused")
            log.warning("notify.refused channel=%s key=%s detail=%r", note.channel, entry.key,
                        outcome.detail[:200])
            return True
        if entry.attempts == 0:
            await self._record(note.alert, "notification_failed",
                               f"{what}: failed ({outcome.detail}); retrying")
            log.warning("notify.retry channel=%s key=%s detail=%r", note.channel, entry.key,
                        outcome.detail[:200])
        backoff = min(self.retry_max_s, 2.0 ** min(entry.attempts, 16))
        backoff *= 0.8 + 0.4 * self._rng.random()
        now = self._now_ms()
        await self._io(self.outbox.retry, entry, now + int(backoff * 1000), None,
                       outcome.detail, now)
        self._count(note.channel, "retried")
        return False

    async def _record(self, alert_id: str, action: str, note: str) -> None:
        await self._io(lambda: self.engine.record(alert_id, action=action, note=note,
                                                  now_ms=self._now_ms()))
