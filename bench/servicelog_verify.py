"""Verifying the service log at 50,000 records: the whole chain, and from the checkpoint.

(a) the baseline: every record read into a :class:`~alerts.servicelog.ServiceRecord` and its
    body taken with ``dataclasses.asdict``, hashed with a new JSON encoder each time: what
    ``ServiceLog.verify`` did before it kept a checkpoint;
(b) a full pass today (``verify(full=True)``: rows hashed as read);
(c) the routine verification after 100 records were appended (``verify()``: from the
    checkpoint, every head the platform kept checked by lookup);

and, for (a), (c) and (d) the background audit (``ServiceLog.audit``: a full pass, as the
housekeeping thread runs it), how late an asyncio timer fires (p50/p99/max of 1 ms sleeps) on the
event loop while the verification runs in a worker thread, as the API runs it: the loop that
serves button alerts shares the GIL with it. Same process, same file; figures in seconds and
milliseconds, with the ratios.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alerts import ServiceLog, VisitEvent

START_MS = 1_793_613_600_000


def _events(first: int, count: int) -> list[VisitEvent]:
    events = []
    for i in range(first, first + count):
        visit = i // 2
        events.append(VisitEvent(
            origin=f"bench:{i}", at=START_MS + i * 60_000, site="site-01",
            bed=f"bed-{visit % 50:04d}", caregiver=f"c-{visit % 20:03d}", visit=f"v-{visit}",
            event="check_in" if i % 2 == 0 else "check_out", source="badge", method="nfc",
            device="bg-1", services=("bathing", "medication") if i % 2 else None))
    return events


def _baseline(log: ServiceLog) -> bool:
    """The verification of before: records, ``asdict`` bodies, an encoder per hash."""
    prev, after = "0" * 64, 0
    while True:
        records = log.query(after_seq=after, newest_first=False, limit=1000)
        if not records:
            return True
        for record in records:
            fields = dataclasses.asdict(record)
            del fields["prev_hash"], fields["hash"]
            fields.pop("detail", None)
            if record.services is not None:
                fields["services"] = list(record.services)
            text = json.dumps(fields, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False, allow_nan=False)
            if (record.prev_hash != prev or hashlib.sha256(
                    prev.encode() + text.encode()).hexdigest() != record.hash):
                return False
            prev, after = record.hash, record.seq


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _loop_lateness(work: Callable[[], object]) -> dict[str, float]:
    """How late 1 ms timers fire on an event loop while ``work`` runs in a thread."""

    async def measure() -> list[float]:
        done = threading.Event()
        def run() -> None:
            work()
            done.set()

        worker = threading.Thread(target=run)
        late: list[float] = []
        worker.start()
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            asked = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append((time.perf_counter() - asked - 0.001) * 1000)
        worker.join()
        return late or [0.0]

    late = sorted(asyncio.run(measure()))
    return {"timers": len(late), "p50_ms": round(statistics.median(late), 2),
            "p99_ms": round(late[min(len(late) - 1, int(len(late) * 0.99))], 2),
            "max_ms": round(late[-1], 2)}


def run(*, quick: bool = False) -> dict[str, Any]:
    records = 5_000 if quick else 50_000
    with tempfile.TemporaryDirectory(prefix="bench-servicelog-") as tmp:
        log = ServiceLog(Path(tmp) / "servicelog.sqlite3")
        for first in range(0, records, 1000):
            log.append(_events(first, 1000), now_ms=START_MS)
        kept = [(r.seq, r.hash) for r in log.query(newest_first=False, limit=records)]
        baseline_s = _timed(lambda: _baseline(log))
        full = log.verify(full=True)
        full_s = _timed(lambda: log.verify(full=True))
        log.append(_events(records, 100), now_ms=START_MS)
        incremental_s = _timed(lambda: log.verify(heads=kept[-1:]))
        checked = log.verify(full=True).checked
        log.append(_events(records + 100, 100), now_ms=START_MS)
        every_head_s = _timed(lambda: log.verify(heads=kept))
        lateness_baseline = _loop_lateness(lambda: _baseline(log))
        log.append(_events(records + 200, 100), now_ms=START_MS)
        lateness_incremental = _loop_lateness(lambda: log.verify(heads=kept[-1:]))
        lateness_audit = _loop_lateness(log.audit)  # the housekeeping's full pass
        log.close()
    return {
        "records": records, "full_ok": full.ok, "records_after_appends": checked,
        "baseline_full_s": round(baseline_s, 3), "full_s": round(full_s, 3),
        "full_speedup": round(baseline_s / full_s, 1),
        "incremental_100_s": round(incremental_s, 4),
        "incremental_100_with_every_head_kept_s": round(every_head_s, 4),
        "incremental_speedup": round(baseline_s / incremental_s),
        "loop_lateness_during_baseline": lateness_baseline,
        "loop_lateness_during_incremental": lateness_incremental,
        "loop_lateness_during_audit": lateness_audit,
    }
