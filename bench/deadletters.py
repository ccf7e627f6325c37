"""A dead-letter flood: 20,000 malformed 60 KiB payloads written to the dead-letter store.

(a) from one source, default settings (256 MiB budget, 4 KiB/s per source): most are shed;
(b) from 1,000 sources, each within its own budget, into a 4 MiB budget: the oldest rotate
    out, and the peak disk use (database, log and its index, measured before every log
    truncation and after every write) is reported beside the budget;
(c) the baseline: the same flood stored whole (64 KiB kept, no budgets), as the row-bounded
    store of before kept it.

Writes are of 100 letters (one ingest batch), on this thread, fsynced as in the gateway.
Figures: letters per second and bytes on disk, in the same run.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.storage.deadletters import DeadLetter, DeadLetterStore

PAYLOAD = b"{" + b"x" * 60 * 1024
START_MS = 1_763_884_800_000


class _Measured(DeadLetterStore):
    peak_bytes = 0

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        self.peak_bytes = max(self.peak_bytes, self.disk_bytes_unlocked())
        super()._checkpoint(db)

    def disk_bytes_unlocked(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))


def _flood(store: _Measured, letters: int, sources: int) -> dict[str, Any]:
    started = time.perf_counter()
    for first in range(0, letters, 100):
        store.add([DeadLetter(START_MS + n // 10,
                              f"homecare/v1/site-b/bed-{n % sources}/fall/fs-{n % sources}"
                              "/telemetry", PAYLOAD, "malformed_json", "Expecting property name")
                   for n in range(first, min(letters, first + 100))])
        store.peak_bytes = max(store.peak_bytes, store.disk_bytes_unlocked())
    elapsed = time.perf_counter() - started
    figures = {"letters_per_s": round(letters / elapsed), "stored": store.count(),
               "shed": store.shed.total(), "evicted": store.evicted,
               "peak_disk_bytes": store.peak_bytes, "budget_bytes": store.max_bytes}
    store.close()
    return figures


def run(*, quick: bool = False) -> dict[str, Any]:
    letters = 2_000 if quick else 20_000
    with tempfile.TemporaryDirectory(prefix="bench-deadletters-") as tmp:
        root = Path(tmp)
        one = _flood(_Measured(root / "one" / "dl.sqlite3"), letters, 1)
        many = _flood(_Measured(root / "many" / "dl.sqlite3", max_bytes=4 * 1024 * 1024),
                      letters, 1_000)
        whole = _flood(_Measured(root / "whole" / "dl.sqlite3", max_bytes=4 * 1024**3,
                                 head_bytes=64 * 1024, source_bytes_per_s=0), letters, 1)
    return {"letters": letters, "payload_bytes": len(PAYLOAD), "one_source": one,
            "many_sources_4mib": many,
            "baseline_whole": {k: whole[k] for k in ("letters_per_s", "peak_disk_bytes")}}
