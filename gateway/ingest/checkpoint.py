"""The checkpoint: where received messages become durable, and only then are acknowledged.

This module is the no-loss guarantee (DESIGN.md, "Guarantees"). For every batch, in this
order (:meth:`Checkpoint.flush`):

1. **Take** the batch the pipeline built on the event loop (:meth:`Pipeline.take
   <gateway.ingest.pipeline.Pipeline.take>`): its line-protocol points, its dead letters and
   the raw messages it came from.
2. **Spool** the points: appended to the on-disk spool and fsynced (:func:`commit`, on the
   ingest thread, never the event loop). The database writer drains the spool later.
3. **Dead letters**: every message set aside, with its reason, into the dead-letter store.
4. **Stages**: each stage commits what it took (the alert changes, the service log). The alert
   stage is the first stage, so an alert is on disk before its message is acknowledged.
5. **Acknowledge**: only now do the PUBACKs go out, in receipt order, one write for the batch
   (:meth:`MqttSource.ack <gateway.ingest.connection.MqttSource.ack>`); then the database
   writer is woken.

A failure in 2-4 holds the batch, and with it intake, unacknowledged: the store's trouble is
reported once (:class:`~gateway.storage.health.StorageHealth`) and the commit retried until it
passes, never given up, never fatal; meanwhile the inbox sheds all but urgent messages, so an
emergency call still comes in (the broker keeps and re-sends what was shed). :func:`commit` is
retry-safe: each part that succeeded empties its list, so nothing is stored twice. A crash
anywhere before 5 loses nothing: the broker sends the unacknowledged messages again, and the
deduplicator and the stages take a message twice without effect.

The urgent lane (an emergency call opening its alert ahead of the telemetry queued before
it) never waits for this: it commits alert changes on its own thread; its messages are still
stored and acknowledged here, in their turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from gateway.errors import SpoolFull
from gateway.ingest.connection import MqttSource
from gateway.ingest.inbox import Inbox
from gateway.ingest.pipeline import Batch, Pipeline, Stage
from gateway.monitoring import Metrics
from gateway.storage.deadletters import DeadLetter
from gateway.storage.health import StorageHealth, is_storage_error

log = logging.getLogger("homecare.checkpoint")


class SpoolLike(Protocol):
    def append(self, body: bytes, points: int) -> None: ...


class DeadLetterSink(Protocol):
    def add(self, letters: Sequence[DeadLetter]) -> object: ...


def commit(batch: Batch, *, spool: SpoolLike, deadletters: DeadLetterSink,
           stages: Sequence[Stage]) -> None:
    """Steps 2-4: spool the points (fsync), store the dead letters, commit every stage.
    Blocking: run it on a thread. Retry-safe: a part that succeeded empties its list, so
    calling again with the same batch after a failure stores nothing twice."""
    if batch.lines:
        spool.append("\n".join(batch.lines).encode(), batch.points)
        batch.lines.clear()
    if batch.deadletters:
        deadletters.add(batch.deadletters)
        batch.deadletters.clear()
    for stage in stages:
        stage.commit()


class Checkpoint:
    """Commit-then-acknowledge for the gateway's ingest task (see the module docstring)."""

    def __init__(self, pipeline: Pipeline, *, spool: SpoolLike, deadletters: DeadLetterSink,
                 source: MqttSource, inbox: Inbox, storage: StorageHealth, metrics: Metrics,
                 thread: ThreadPoolExecutor, stopping: asyncio.Event,
                 on_spooled: Callable[[], None] | None = None) -> None:
        self.pipeline = pipeline
        self.spool = spool
        self.deadletters = deadletters
        self.source = source
        self.inbox = inbox
        self.storage = storage
        self.metrics = metrics
        self.thread = thread
        self.stopping = stopping
        self.on_spooled = on_spooled
        self.recall_pending = False
        """Storage came back after the inbox shed messages: once everything held is committed
        and acknowledged, the ingest task has the broker send those again."""

    async def flush(self) -> None:
        """Steps 1-5 for the batch in hand; returns once it is acknowledged, or, when shutting
        down with a store still failing, left to the broker (unacknowledged)."""
        batch = self.pipeline.take()
        started = time.perf_counter()
        failing: list[str] = []
        """Every store that failed while this batch was held, in order: each is marked
        recovered once the batch is committed (a disk full fails one store, then the next one
        in the commit: only the last was marked recovered, and /readyz said the first one was
        still failing until a restart)."""
        shed_before = self.inbox.shed
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self.thread, self._commit, batch)
                break
            except SpoolFull:
                # Overflow policy "block": hold this batch (and so intake) until there is room.
                await asyncio.sleep(0.2)
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                store = getattr(exc, "store", "") or "spool"
                if store not in failing:
                    failing.append(store)
                delay = self.storage.failed(
                    store, exc, holding=f"a batch of {len(batch.raws)} messages "
                    f"({batch.points} points, {len(batch.deadletters)} dead letters)")
                self.inbox.shed_when_full(True)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()
                if self.stopping.is_set():
                    # Shutting down with the disk still failing: the batch stays with the
                    # broker (unacknowledged), which sends it again after the restart.
                    log.warning("shutdown.batch_not_committed messages=%d; the broker keeps "
                                "them", len(batch.raws))
                    return
        if failing:
            self.inbox.shed_when_full(False)
            shed = self.inbox.shed - shed_before
            for store in failing:
                self.storage.recovered(store, what=f"committed_messages={len(batch.raws)} "
                                       f"shed_messages={shed} (the broker sends those again)")
            self.recall_pending = shed > 0
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.points_spooled.inc(batch.points)
        self.source.ack(batch.raws)
        if self.on_spooled is not None and batch.points:
            self.on_spooled()

    def _commit(self, batch: Batch) -> None:
        commit(batch, spool=self.spool, deadletters=self.deadletters,
               stages=self.pipeline.stages)
