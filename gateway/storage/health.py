"""Storage health: one account of every store's trouble, for the log, ``/readyz`` and metrics.

The stores classify their own errors at their boundary (:func:`alerts.errors.storage_fault`,
raised as :class:`~alerts.errors.StorageError`); this module decides what the gateway says and
how soon it tries again. Per store (``spool``, ``deadletters``, ``alerts``, ``servicelog``...):

* the first failure is logged once (``storage.unavailable store=... reason=...``) with what is
  held meanwhile; repeats are only counted (``homecare_storage_errors_total{store,reason}``);
* ``/readyz`` names the store and the reason while it fails (``homecare_storage_ok{store}`` 0);
* the recovery is logged once with what happened meanwhile (how long, how many attempts).

A retryable fault (disk full, I/O error, locked) is retried every second; a permanent one
(corrupt file, read-only file system, permissions) needs an operator, so it is retried every
:data:`PERMANENT_RETRY_S` seconds, still without acknowledging anything, never by exiting.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from alerts.errors import StorageError, StorageFault, storage_fault

log = logging.getLogger("homecare.storage")

RETRY_S = 1.0
"""Retry interval for faults that heal by themselves (space freed, lock released)."""
PERMANENT_RETRY_S = 30.0
"""Retry interval for faults an operator must fix (the gateway cannot know when they do)."""


@dataclass(slots=True)
class _Outage:
    fault: StorageFault
    detail: str
    since: float
    attempts: int = 1


class StorageHealth:
    """Failures and recoveries of the gateway's stores; event loop only."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._outages: dict[str, _Outage] = {}
        self._ok = Gauge("homecare_storage_ok", "1 while a store on disk writes, 0 while it "
                         "fails (see /readyz and the storage.unavailable log line)", ["store"],
                         registry=registry)
        self._errors = Counter("homecare_storage_errors", "Failed store operations, by store "
                               "and reason (disk_full, io_error, locked, corrupt, ...)",
                               ["store", "reason"], registry=registry)

    def failed(self, store: str, exc: BaseException, *, holding: str = "") -> float:
        """Count a failure of ``store`` (log it if it starts an outage); returns how long to
        wait before retrying. Raises ``exc`` again when it is not a storage fault (a bug)."""
        if isinstance(exc, StorageError) and exc.store:
            store = exc.store
        fault = storage_fault(exc)
        if fault is None:
            raise exc
        self._errors.labels(store, fault.reason).inc()
        self._ok.labels(store).set(0)
        outage = self._outages.get(store)
        if outage is None:
            self._outages[store] = _Outage(fault, str(exc)[:300], time.monotonic())
            log.error("storage.unavailable store=%s reason=%s retryable=%s error=%s; %s"
                      "nothing is acknowledged meanwhile, retrying every %.0f s%s", store,
                      fault.reason, fault.retryable, str(exc)[:300],
                      f"holding {holding}; " if holding else "",
                      RETRY_S if fault.retryable else PERMANENT_RETRY_S,
                      "" if fault.retryable else " (an operator must fix it)")
        else:
            outage.attempts += 1
            outage.fault, outage.detail = fault, str(exc)[:300]
        return RETRY_S if fault.retryable else PERMANENT_RETRY_S

    def recovered(self, store: str, *, what: str = "") -> None:
        """``store`` wrote again: log once (with the outage's length) if it had failed."""
        outage = self._outages.pop(store, None)
        self._ok.labels(store).set(1)
        if outage is not None:
            log.info("storage.resumed store=%s reason_was=%s after_s=%.1f failed_attempts=%d%s",
                     store, outage.fault.reason, time.monotonic() - outage.since,
                     outage.attempts, f" {what}" if what else "")

    def failing(self, store: str) -> bool:
        return store in self._outages

    def reasons(self) -> dict[str, str]:
        """Why each failing store fails, for ``/readyz``."""
        return {store: f"{o.fault.reason}: {o.detail}"
                + ("" if o.fault.retryable else " (an operator must fix it)")
                for store, o in self._outages.items()}


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a store failing (to retry), not a bug (to raise)."""
    return isinstance(exc, OSError | sqlite3.Error) and storage_fault(exc) is not None
