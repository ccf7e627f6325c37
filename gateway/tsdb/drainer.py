"""The database writer: drains the spool into the time-series database, in order.

During an outage it logs once, counts failed attempts and retries with capped exponential
backoff while the spool absorbs new points; on recovery it logs once more with what happened
meanwhile ("resumed after 42 s; replaying 41,200 spooled points"). A body the database refuses
(HTTP 400) is split in halves until the refused lines are isolated; those go to the dead-letter
store with the database's reason and the rest is written.

A database that refuses the gateway's credentials (HTTP 401/403) is a configuration error,
not an outage: it is logged at once as such (``tsdb.credentials_refused``), shown on
``/readyz`` and in ``homecare_db_credentials_refused``, and retried only every
``auth_retry_s`` while the spool keeps the points; the first write that passes logs once more.
Disk trouble under the spool or the dead letters is held and retried
(:mod:`gateway.storage.health`), never the end of the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from gateway.errors import CredentialsRefused, RejectedWriteError, RetryableWriteError
from gateway.monitoring import Metrics
from gateway.storage.deadletters import DeadLetter, DeadLetterStore
from gateway.storage.health import StorageHealth, is_storage_error
from gateway.storage.spool import Spool
from gateway.tsdb.writers import TimeSeriesWriter

log = logging.getLogger("homecare.sink")


class SinkWriter:
    def __init__(self, spool: Spool, writer: TimeSeriesWriter, *, deadletters: DeadLetterStore,
                 metrics: Metrics, max_bytes: int = 4 * 1024 * 1024,
                 backoff_max_s: float = 30.0, auth_retry_s: float = 60.0,
                 storage: StorageHealth | None = None) -> None:
        self.spool = spool
        self.writer = writer
        self.deadletters = deadletters
        self.metrics = metrics
        metrics.database_configured()
        self.max_bytes = max_bytes
        self.backoff_max_s = backoff_max_s
        self.auth_retry_s = auth_retry_s
        self.storage = storage
        self.wake = asyncio.Event()
        self.healthy = True
        self.problem: str | None = None
        """Why writes fail, for ``/readyz`` (None while they pass)."""
        self._refused_since: float | None = None
        self._failed_stores: set[str] = set()
        self._outage_since: float | None = None
        self._outage_failures = 0
        self._replay_left = 0
        self._replayed_total = 0

    def notify(self) -> None:
        """New points are in the spool."""
        self.wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self._run()
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                # The spool's cursor or a dead letter for a refused point could not be
                # written: the batch is written again after the retry (idempotent).
                store = getattr(exc, "store", "") or "spool"
                self._failed_stores.add(store)
                delay = (self.storage.failed(store, exc, holding="the database writer's batch")
                         if self.storage is not None else 1.0)
                await asyncio.sleep(delay)

    async def _run(self) -> None:
        backoff = 0.25
        while True:
            batch = await asyncio.to_thread(self.spool.read, self.max_bytes)
            if batch is None:
                self.wake.clear()
                if self.spool.pending_records:
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.wake.wait()
                continue
            started = time.perf_counter()
            try:
                await self._write(batch.body)
            except CredentialsRefused as exc:
                self.metrics.write_errors.labels("credentials").inc()
                self._on_refused(exc)
                await asyncio.sleep(self.auth_retry_s)
                continue
            except RetryableWriteError as exc:
                self.metrics.write_errors.labels("retryable").inc()
                self._on_failure(exc)
                delay = exc.retry_after if exc.retry_after is not None else backoff
                backoff = min(backoff * 2, self.backoff_max_s)
                await asyncio.sleep(min(delay, self.backoff_max_s))
                continue
            self.metrics.write_seconds.observe(time.perf_counter() - started)
            backoff = 0.25
            await asyncio.to_thread(self.spool.commit, batch)
            self.metrics.points_written.inc(batch.points)
            self._on_success(batch.points)
            if self._failed_stores:
                for store in self._failed_stores:
                    if self.storage is not None:
                        self.storage.recovered(store, what="database writer going on")
                self._failed_stores.clear()

    async def drain(self, timeout_s: float) -> bool:
        """Write what is spooled, for at most ``timeout_s``; True if the spool is empty."""
        deadline = time.monotonic() + timeout_s
        while self.spool.pending_records and time.monotonic() < deadline:
            self.wake.set()
            await asyncio.sleep(0.05)
        return self.spool.pending_records == 0

    async def _write(self, body: bytes) -> None:
        try:
            await self.writer.write(body)
        except RejectedWriteError as exc:
            lines = body.split(b"\n")
            if len(lines) == 1:
                self.metrics.write_errors.labels("rejected").inc()
                self.metrics.points_rejected_by_db.inc()
                measurement = body.split(b",", 1)[0].decode("utf-8", "replace")[:64]
                letter = DeadLetter(int(time.time() * 1000), f"tsdb:{measurement}", body,
                                    "db_rejected", str(exc))
                await asyncio.to_thread(self.deadletters.add, [letter])
                log.warning("tsdb.point_rejected measurement=%s reason=%s", measurement, exc)
                return
            half = len(lines) // 2
            await self._write(b"\n".join(lines[:half]))
            await self._write(b"\n".join(lines[half:]))

    def _on_refused(self, exc: CredentialsRefused) -> None:
        self.metrics.db_up.set(0)
        self.metrics.db_credentials_refused.set(1)
        self.healthy = False
        self.problem = f"credentials refused: {exc}"
        self._outage_failures += 1
        if self._refused_since is None:
            self._refused_since = time.monotonic()
            self._outage_since = self._outage_since or self._refused_since
            log.error("tsdb.credentials_refused backend=%s status=%s error=%s; a configuration "
                      "error: points stay in the spool (%d now), retrying every %.0f s",
                      self.writer.name, exc.status, exc, self.spool.pending_points,
                      self.auth_retry_s)

    def _on_failure(self, exc: RetryableWriteError) -> None:
        self.metrics.db_up.set(0)
        self._outage_failures += 1
        self.problem = f"database unreachable or failing: {exc}"
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self.healthy = False
            log.warning("tsdb.outage backend=%s error=%s; spooling to disk and retrying",
                        self.writer.name, exc)

    def _on_success(self, points: int) -> None:
        self.metrics.db_up.set(1)
        cause = ""
        if self._refused_since is not None:
            self.metrics.db_credentials_refused.set(0)
            self._refused_since = None
            cause = " cause=credentials_refused"
        self.problem = None
        if self._outage_since is not None:
            took = time.monotonic() - self._outage_since
            self._replay_left = self.spool.pending_points + points
            log.info("tsdb.resumed backend=%s after_s=%.1f failed_attempts=%d "
                     "replaying_points=%d%s", self.writer.name, took, self._outage_failures,
                     self._replay_left, cause)
            self._outage_since = None
            self._outage_failures = 0
            self.healthy = True
        if self._replay_left > 0:
            replayed = min(points, self._replay_left)
            self._replay_left -= replayed
            self._replayed_total += replayed
            self.metrics.points_replayed.inc(replayed)
            if self._replay_left == 0:
                log.info("tsdb.replay_done replayed_points=%d", self._replayed_total)
                self._replayed_total = 0
