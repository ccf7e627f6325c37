"""From the durable logs to the outbox: what goes upstream, queued exactly once.

The alert store's change log and the hash-chained service log are read beyond the outbox's
cursor for each (``seq``); new entries, one per destination, and the moved cursor are written
in one transaction (:meth:`Outbox.enqueue <gateway.upstream.outbox.Outbox.enqueue>`), so each
is queued exactly once across crashes and restarts. Bodies are JSON: ``{"kind":
"alert_change" | "service_record", "key", "source", "change" | "record"}``, and a service
record's also ``"head": {"seq", "hash"}``: the service log's chain head as of that record,
whatever share of the record the destination has, for the platform (and anyone it goes to) to
keep and check the log against later (``homecare verify-log --head``); the key
(``<source>/alert/<seq>``, ``<source>/service/<seq>``) is the request's idempotency key. A
family's entries carry no log-wide number (no head, no ``seq``, a key of the record's hash or
a digest: :meth:`Share.key <gateway.upstream.shares.Share.key>`). Each
destination is queued its share (:mod:`gateway.upstream.shares`), or nothing when the record
is not its share; the body of a share is encoded once for every destination that has it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from gateway.upstream.outbox import Outbox
from gateway.upstream.shares import Share

PUMP_LIMIT: Final = 1000
"""Entries read from each log per pass."""

_encoder = msgspec.json.Encoder()


def pump(outbox: Outbox, *, alert_store: AlertStore, service_log: ServiceLog, source: str,
         destinations_of: Callable[[str, str], list[tuple[str, Share]]], now_ms: int) -> int:
    """Queue what the logs hold beyond their cursors; returns how many were queued.
    ``destinations_of(site, bed)``: where that bed's entries go, each with its share."""
    added = 0
    while True:
        seq = outbox.cursor("alerts")
        changes = alert_store.changes_since(seq, PUMP_LIMIT)
        if not changes:
            break
        entries = []
        for c in changes:
            bodies: dict[Share, tuple[str, bytes] | None] = {}
            for to, share in destinations_of(c.alert.site, c.alert.bed):
                if share not in bodies:
                    part = share.alert_change(c)
                    key = None if part is None else share.key(source, "alert", c.seq, part)
                    bodies[share] = None if key is None else (key, _encoder.encode(
                        {"kind": "alert_change", "key": key, "source": source, "change": part}))
                if (queued := bodies[share]) is not None:
                    entries.append((to, queued[0], "alert_change", queued[1]))
        added += outbox.enqueue("alerts", changes[-1].seq, entries, now_ms)
    while True:
        seq = outbox.cursor("service_log")
        records = service_log.query(after_seq=seq, newest_first=False,
                                         limit=PUMP_LIMIT)
        if not records:
            break
        entries = []
        for r in records:
            shared: dict[Share, tuple[str, bytes] | None] = {}
            for to, share in destinations_of(r.site, r.bed):
                if share not in shared:
                    part = share.service_record(r)
                    if part is None:
                        shared[share] = None
                        continue
                    key = share.key(source, "service", r.seq, part)
                    body = {"kind": "service_record", "key": key, "source": source,
                            "record": part}
                    if share.log_wide:
                        body["head"] = {"seq": r.seq, "hash": r.hash}
                    shared[share] = (key, _encoder.encode(body))
                if (queued := shared[share]) is not None:
                    entries.append((to, queued[0], "service_record", queued[1]))
        added += outbox.enqueue("service_log", records[-1].seq, entries,
                                     now_ms)
    return added  # the pending gauge is set by deliver(), which always follows
