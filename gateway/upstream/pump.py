"""From the durable logs to the outbox: what goes upstream, queued exactly once.

The alert store's change log and the hash-chained service log are read beyond the outbox's
cursor for each (``seq``); new entries, one per destination, and the moved cursor are written
in one transaction (:meth:`Outbox.enqueue <gateway.upstream.outbox.Outbox.enqueue>`), so each
is queued exactly once across crashes and restarts. Bodies are JSON: ``{"kind":
"alert_change" | "service_record", "key", "source", "change" | "record"}``; the key
(``<source>/alert/<seq>``, ``<source>/service/<seq>``) is the request's idempotency key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from gateway.upstream.outbox import Outbox

PUMP_LIMIT: Final = 1000
"""Entries read from each log per pass."""

_encoder = msgspec.json.Encoder()


def pump(outbox: Outbox, *, alert_store: AlertStore, service_log: ServiceLog, source: str,
         destinations_of: Callable[[str, str], list[str]], now_ms: int) -> int:
    """Queue what the logs hold beyond their cursors; returns how many were queued.
    ``destinations_of(site, bed)``: where that bed's entries go."""
    added = 0
    while True:
        seq = outbox.cursor("alerts")
        changes = alert_store.changes_since(seq, PUMP_LIMIT)
        if not changes:
            break
        entries = []
        for c in changes:
            key = f"{source}/alert/{c.seq}"
            body = _encoder.encode({"kind": "alert_change", "key": key,
                                    "source": source, "change": c})
            entries += [(to, key, "alert_change", body)
                        for to in destinations_of(c.alert.site, c.alert.bed)]
        added += outbox.enqueue("alerts", changes[-1].seq, entries, now_ms)
    while True:
        seq = outbox.cursor("service_log")
        records = service_log.query(after_seq=seq, newest_first=False,
                                         limit=PUMP_LIMIT)
        if not records:
            break
        entries = []
        for r in records:
            key = f"{source}/service/{r.seq}"
            body = _encoder.encode({
                "kind": "service_record", "key": key, "source": source,
                "record": {**r.body(), "prev_hash": r.prev_hash, "hash": r.hash}})
            entries += [(to, key, "service_record", body)
                        for to in destinations_of(r.site, r.bed)]
        added += outbox.enqueue("service_log", records[-1].seq, entries,
                                     now_ms)
    return added  # the pending gauge is set by deliver(), which always follows
