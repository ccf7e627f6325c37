"""Disk per 1,000 beds per month: a simulated stretch of days through the stores' own code.

``python -m bench.diskuse [--beds 50] [--days 4] [--seed 1]`` (loopback only, nothing
networked; bounded: at most 500 beds and 7 days, a few minutes at the defaults):

1. ``homecare simulate`` writes the traffic of ``--beds`` beds over ``--days`` days (diverse
   profiles, scripted incidents at the default rate, device faults at the default rate) and
   their registry;
2. the traffic goes through the replay's pipeline (:class:`homecare.replay.Replayer`: the
   codec, dedup, the detectors and the alert engine, a simulated dispatcher resolving every
   alert) with its stores on files: ``alerts.sqlite3``, ``deadletters.sqlite3`` and, as in the
   gateway, the service log's recorder (``servicelog.sqlite3``);
3. what the stores then hold goes on through the gateway's own code: the upstream pump into
   ``outbox.sqlite3`` (one destination, the full share), four key-audit rows per alert (a
   dispatcher's acknowledge, assign, checklist and resolve through the API, which audits each
   write: an estimate), one used acknowledge link per alert (an upper
   bound: every alert acknowledged through a link), and housekeeping's archiving of the alert
   changes and the audit (``archive/*.jsonl.gz``).

Measured: rows written per bed-day (over the last day, after the detectors' warm-up; also the
whole run), and bytes per row (file size, WAL checkpointed, over rows). Extrapolated: rows per
bed-day x bytes per row x 1,000 beds x 30 days, and the steady state each retention policy
leaves (the live window, the archive per month). The spool is transient (points wait there
only while the time-series database is down; bounded by ``spool_max_bytes``) and the time
series live in the database, outside the data directory: neither is in the table.

Writes ``bench/results/diskuse.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from alerts.acklinks import AckLinks
from alerts.keys import KeyStore
from alerts.model import AlertChange
from alerts.servicelog import ServiceLog, ServiceLogRecorder
from alerts.store import AlertStore
from devices.registry import Registry
from gateway.config import Settings
from gateway.ingest.message import RawMessage
from gateway.storage import DeadLetterStore, Housekeeper, Policy, store_bytes
from gateway.upstream.outbox import Outbox
from gateway.upstream.pump import pump
from gateway.upstream.shares import Share
from homecare.replay import Replayer, read_traffic

RESULTS: Final = Path(__file__).parent / "results"
DAY_MS: Final = 86_400_000
MAX_BEDS: Final = 500
MAX_DAYS: Final = 7
API_WRITES: Final = ("acknowledge", "assign", "checklist", "resolve")
"""The API writes a dispatcher makes per alert, each one key-audit row (an estimate)."""


class DiskReplayer(Replayer):
    """The replay with its stores on files, and the service log recorded as in the gateway."""

    def __init__(self, data_dir: Path, **kwargs: Any) -> None:
        self.data_dir = data_dir
        self.service_log = ServiceLog(data_dir / "servicelog.sqlite3")
        super().__init__(**kwargs)
        self.store.close()
        self.deadletters.close()
        self.store = AlertStore(data_dir / "alerts.sqlite3")
        self.deadletters = DeadLetterStore(data_dir / "deadletters.sqlite3")
        self._build()

    def _build(self) -> None:
        super()._build()
        if hasattr(self, "service_log"):
            self.pipeline.stages = (*self.pipeline.stages, ServiceLogRecorder(self.service_log))

    def close(self) -> None:
        super().close()
        self.service_log.close()


def _count(path: Path, sql: str) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(path)
    try:
        return int(db.execute(sql).fetchone()[0])
    finally:
        db.close()


COUNTS: Final = {
    "alert changes": ("alerts.sqlite3", "SELECT count(*) FROM changes"),
    "alerts": ("alerts.sqlite3", "SELECT count(*) FROM alerts"),
    "service log": ("servicelog.sqlite3", "SELECT count(*) FROM service_log"),
    "dead letters": ("deadletters.sqlite3", "SELECT count(*) FROM dead_letters"),
}


def _counts(data_dir: Path) -> dict[str, int]:
    return {name: _count(data_dir / file, sql) for name, (file, sql) in COUNTS.items()}


def _checkpoint(data_dir: Path) -> None:
    for path in data_dir.glob("*.sqlite3"):
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            db.close()


def _fresh_sizes(directory: Path) -> dict[str, int]:
    """Bytes of each store created empty (schema and indexes only): not counted per row."""
    directory.mkdir()
    AlertStore(directory / "alerts.sqlite3").close()
    ServiceLog(directory / "servicelog.sqlite3").close()
    DeadLetterStore(directory / "deadletters.sqlite3").close()
    Outbox(directory / "outbox.sqlite3").close()
    KeyStore(directory / "keys.sqlite3").close()
    AckLinks(directory / "acklinks.sqlite3", secret=b"s" * 32).close()
    _checkpoint(directory)
    return store_bytes(directory)


SAMPLE_ROWS: Final = 5_000


def _audit_rows(keys: KeyStore, opened: list[AlertChange]) -> int:
    n = 0
    for c in opened:
        for action in API_WRITES:
            keys.audit(actor="dispatcher-7", action=f"alert.{action}",
                       target=f"/api/v1/alerts/{c.alert.id}/{action}", status=200,
                       detail=json.dumps({"note": "on my way" if action == "acknowledge"
                                          else ""}), now_ms=c.at)
            n += 1
    return n


def _link_rows(links: AckLinks, opened: list[AlertChange], start: int = 0) -> int:
    n = 0
    for i, c in enumerate(opened, start):
        token = links.mint(key=f"n-{i}", alert_id=c.alert.id, recipient="nurse-3", step=1,
                           channel="email", now_ms=c.at)
        claim = links.read(token, now_ms=c.at)
        if not isinstance(claim, str):
            links.use(claim, client="127.0.0.1", result="acknowledged", now_ms=c.at)
            n += 1
    return n


def _row_sizes(directory: Path, opened: list[AlertChange]) -> dict[str, float]:
    """Bytes per row of the key audit and the used links, the run's rows written again until
    :data:`SAMPLE_ROWS`: a short run writes too few of them to fill the empty files' pages."""
    directory.mkdir()
    if not opened:
        return {}
    empty = _fresh_sizes(directory / "empty")
    keys = KeyStore(directory / "keys.sqlite3")
    links = AckLinks(directory / "acklinks.sqlite3", secret=b"s" * 32)
    audit = used = 0
    while audit < SAMPLE_ROWS:
        audit += _audit_rows(keys, opened)
        used += _link_rows(links, opened, used)
    keys.close()
    links.close()
    _checkpoint(directory)
    sizes = store_bytes(directory)
    return {"keys": (sizes["keys"] - empty["keys"]) / audit,
            "acklinks": (sizes["acklinks"] - empty["acklinks"]) / used}


def run(beds: int = 50, days: int = 4, seed: int = 1, workdir: Path | None = None
        ) -> dict[str, Any]:
    if not (1 <= beds <= MAX_BEDS and 2 <= days <= MAX_DAYS):
        raise ValueError(f"beds 1..{MAX_BEDS}, days 2..{MAX_DAYS}")
    started = time.perf_counter()
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="diskuse-")) if workdir is None else workdir
    try:
        return _run(beds, days, seed, work, started)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _run(beds: int, days: int, seed: int, work: Path, started: float) -> dict[str, Any]:
    traffic, registry_file = work / "traffic.jsonl", work / "registry.toml"
    subprocess.run([sys.executable, "-m", "homecare.cli", "simulate", "--beds", str(beds),
                    "--days", str(days), "--seed", str(seed), "--profiles", "diverse",
                    "--faults", "--out", str(traffic), "--registry", str(registry_file),
                    "--quiet"], check=True)
    data_dir = work / "data"
    data_dir.mkdir()
    empty = _fresh_sizes(work / "fresh")
    registry = Registry.load(registry_file)
    replayer = DiskReplayer(data_dir, registry=registry, settings=Settings(), seed=seed)
    by_day: list[dict[str, int]] = []
    first_t: int | None = None
    with traffic.open("rb") as lines:
        chunk: list[RawMessage] = []
        for raw in read_traffic(lines, replayer.summary):
            first_t = raw.received_ms if first_t is None else first_t
            day = (raw.received_ms - first_t) // DAY_MS
            if day > len(by_day) or len(chunk) >= 10_000:
                replayer.feed(chunk)
                chunk = []
            while day > len(by_day):  # a day's end: what it caused committed, then counted
                replayer._flush()
                replayer._commit()
                by_day.append(_counts(data_dir))
            chunk.append(raw)
        replayer.feed(chunk)
    replayer.finish()
    by_day.append(_counts(data_dir))
    last_t = replayer.summary.last_t or 0
    changes = replayer.store.changes_since(0, 10**9)
    # Upstream: the pump into the outbox, one destination with the full share.
    outbox = Outbox(data_dir / "outbox.sqlite3")
    queued = pump(outbox, alert_store=replayer.store, service_log=replayer.service_log,
                  source="station-1", destinations_of=lambda site, bed: [("platform", Share())],
                  now_ms=last_t)
    outbox.close()
    # The key audit: the API writes one row per write; a dispatcher acknowledges, takes,
    # checks the response checklist and resolves: API_WRITES_PER_ALERT rows per alert.
    keys = KeyStore(data_dir / "keys.sqlite3")
    opened = [c for c in changes if c.action == "opened"]
    audited = _audit_rows(keys, opened)
    keys.close()
    # Used acknowledge links: one per alert (an upper bound).
    links = AckLinks(data_dir / "acklinks.sqlite3", secret=b"s" * 32)
    used = _link_rows(links, opened)
    links.close()
    sample = _row_sizes(work / "sample", opened)
    rows_total = {**by_day[-1], "outbox entries": queued, "key audit": audited,
                  "used links": used}
    replayer.close()
    _checkpoint(data_dir)
    sizes = store_bytes(data_dir)
    # The archive: a copy of the alert and key stores archived whole by housekeeping.
    arch = work / "archived"
    arch.mkdir()
    for name in ("alerts.sqlite3", "keys.sqlite3"):
        shutil.copy(data_dir / name, arch / name)
    report = Housekeeper(arch, Policy(alert_changes_live_months=1, audit_live_months=1,
                                      dead_letter_max_age_ms=0)).run(last_t + 70 * DAY_MS)
    archive_bytes = store_bytes(arch)["archive"]
    archived_rows = sum(report.archived.values())
    # by_day[k]: the counts at the end of day k (a few reordered messages spill past the
    # last day: the final counts are by_day[-1]).
    last_day = {k: by_day[days - 1][k] - by_day[days - 2][k] for k in by_day[-1]}
    assert first_t is not None
    opened_last_day = sum(1 for c in opened if c.at >= first_t + (days - 1) * DAY_MS)
    last_day["outbox entries"] = last_day["alert changes"] + last_day["service log"]
    last_day["key audit"] = opened_last_day * len(API_WRITES)
    last_day["used links"] = opened_last_day
    bed_days = beds * days

    def per_row(file: str, rows: int) -> float:
        if file in sample:  # too few rows in the run to fill pages: a larger sample
            return sample[file]
        return (sizes[file] - empty.get(file, 0)) / rows if rows else 0.0

    table = []

    def add(store: str, file: str, rows_name: str, per_bed_day: float, retention: str,
            live_months: float | None, note: str) -> None:
        rows = rows_total[rows_name]
        bpr = per_row(file, rows)
        month = per_bed_day * bpr * 1000 * 30
        table.append({"store": store, "file": f"{file}.sqlite3", "rows": rows,
                      "rows_per_bed_day": round(per_bed_day, 3),
                      "rows_per_bed_day_whole_run": round(rows / bed_days, 3),
                      "bytes_per_row": round(bpr),
                      "per_1000_beds_month_mb": round(month / 1e6, 2),
                      "retention": retention,
                      "steady_state_mb": None if live_months is None
                      else round(month * live_months / 1e6, 1), "note": note})

    add("alert changes and alerts", "alerts", "alert changes",
        last_day["alert changes"] / beds, "13 whole months live (then archived)", 14,
        "measured: the last simulated day")
    add("service log (hash-chained)", "servicelog", "service log",
        last_day["service log"] / beds, "kept live, never deleted", None,
        "measured: the last simulated day")
    add("dead letters", "deadletters", "dead letters", last_day["dead letters"] / beds,
        "30 days and dead_letter_max_bytes (256 MiB)", 1,
        "measured at the simulator's fault rate (0.2 % of messages)")
    add("upstream outbox", "outbox", "outbox entries", last_day["outbox entries"] / beds,
        "delivered entries pruned after 30 days", 1,
        "measured: one entry per alert change and service record, one destination")
    add("key audit", "keys", "key audit", last_day["key audit"] / beds,
        "13 whole months live (then archived)", 14,
        f"estimated: {len(API_WRITES)} API writes per alert; bytes per row measured on "
        f"{SAMPLE_ROWS:,} rows")
    add("used acknowledge links", "acklinks", "used links", last_day["used links"] / beds,
        "90 days", 3, "upper bound: every alert acknowledged through a link; bytes per row "
        f"measured on {SAMPLE_ROWS:,} rows")
    archive_per_row = archive_bytes / archived_rows if archived_rows else 0.0
    archive_rows_per_bed_day = (last_day["alert changes"] + last_day["key audit"]) / beds
    archive_month = archive_rows_per_bed_day * archive_per_row * 1000 * 30
    table.append({"store": "archive (alert changes, key audit)", "file": "archive/",
                  "rows": archived_rows, "rows_per_bed_day": round(archive_rows_per_bed_day, 3),
                  "rows_per_bed_day_whole_run": round(archived_rows / bed_days, 3),
                  "bytes_per_row": round(archive_per_row),
                  "per_1000_beds_month_mb": round(archive_month / 1e6, 2),
                  "retention": "kept (gzip JSON lines, one file per month and kind)",
                  "steady_state_mb": None,
                  "note": "measured: housekeeping's archive of this run"})
    return {"beds": beds, "days": days, "seed": seed, "messages": replayer.summary.accepted,
            "rows_by_day": by_day, "rows_total": rows_total, "bytes": sizes,
            "empty_bytes": empty, "archive_bytes": archive_bytes, "table": table,
            "seconds": round(time.perf_counter() - started, 1)}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Disk per 1,000 beds per month: {result['beds']} simulated beds, "
             f"{result['days']} days (seed {result['seed']}, {result['messages']:,} messages "
             f"accepted), `python -m bench.diskuse`.", "",
             "| store | rows per bed-day, last day (whole run) | bytes per row | "
             "MB per 1,000 beds per month | retention | steady state, MB per 1,000 beds | how |",
             "|---|---|---|---|---|---|---|"]
    for row in result["table"]:
        steady = ("grows" if row["steady_state_mb"] is None and "kept" in row["retention"]
                  else row["steady_state_mb"])
        lines.append(f"| {row['store']} | {row['rows_per_bed_day']} "
                     f"({row['rows_per_bed_day_whole_run']}) | {row['bytes_per_row']} | "
                     f"{row['per_1000_beds_month_mb']} | {row['retention']} | {steady} | "
                     f"{row['note']} |")
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any]) -> str:
    """``bench/results/diskuse.json`` and ``.md``; the Markdown."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "diskuse.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (RESULTS / "diskuse.md").write_text(text)
    return text


def bench(*, quick: bool = False) -> dict[str, Any]:
    """As ``make bench`` runs it: the defaults (``quick``: 5 beds, 2 days, nothing written)."""
    if quick:
        return run(beds=5, days=2)
    result = run()
    write(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diskuse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beds", type=int, default=50)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the work directory here")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
    result = run(args.beds, args.days, args.seed, workdir=args.keep)
    print(write(result))
    print(f"({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
