"""The dead-letter store is budgeted by bytes (issue #17, part 3): a flood of bad payloads
stays inside ``max_bytes`` on disk (database, log and its index, as the file system counts
them), a flooding source is shed (counted, not stored) while another source's dead letters
are still kept, a huge payload (and a huge topic) is kept as head, length and hash, and an older
gateway's row-bounded file is brought under the budget at start.

Before: the store was bounded by 1M rows of up to 64 KiB each (about 61 GiB) and its file
never shrank."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path
from unittest import mock

import pytest

from alerts.errors import StorageError
from gateway.monitoring import Metrics
from gateway.storage.deadletters import TOPIC_HEAD_BYTES, DeadLetter, DeadLetterStore
from gateway.storage.sourcebudget import MAX_SOURCES, SourceBudget

KIB = 1024
MIB = 1024 * KIB
FLOOD = 20_000
T0_MS = 1_763_884_800_000


def _topic(bed: str, device: str = "") -> str:
    return f"homecare/v1/site-dl/{bed}/fall/{device or 'fs-' + bed}/telemetry"


def _disk(path: Path) -> int:
    """What the store takes on disk: the database, its write-ahead log and the log's index."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


class _Measured(DeadLetterStore):
    """The store, its disk use measured before every checkpoint too (where it peaks: the rows
    are in the log, not yet copied into the file)."""

    peak = 0

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        self.peak = max(self.peak, _disk(self.path))
        super()._checkpoint(db)


def _flood(store: _Measured, sources: int, *, batch: int = 100) -> None:
    """20,000 malformed 60 KiB payloads, ``batch`` per write (one ingest batch), from
    ``sources`` devices, ten per millisecond of receipt time (2 s in all)."""
    payload = b"{" + bytes(range(256)) * 240  # 60 KiB + 1, not JSON
    for first in range(0, FLOOD, batch):
        store.add([DeadLetter(T0_MS + n // 10, _topic(f"bed-{n % sources:04d}"), payload,
                              "malformed_json", f"Expecting property name: flood {n}")
                   for n in range(first, first + batch)])
        store.peak = max(store.peak, _disk(store.path))


@pytest.mark.parametrize(("sources", "per_source"), [(1, 0.0), (1_000, 4096.0)],
                         ids=["one-source-unlimited", "1000-sources"])
def test_a_dead_letter_flood_stays_inside_its_byte_budget(
        tmp_path: Path, sources: int, per_source: float) -> None:
    budget = 4 * MIB
    store = _Measured(tmp_path / "deadletters.sqlite3", max_bytes=budget,
                      source_bytes_per_s=per_source)
    _flood(store, sources)
    assert store.peak <= budget, f"{store.peak:,} bytes on disk, budget {budget:,}"
    assert store.disk_bytes() == _disk(store.path)
    assert store.evicted > 0, "the flood was larger than the budget: the oldest went"
    assert store.count() + store.evicted + store.shed.total() == FLOOD
    newest = store.recent(1)[0]
    assert newest.detail == f"Expecting property name: flood {FLOOD - 1}", "the newest kept"
    assert store.count() > 0.5 * budget / (KIB + 200), "most of the budget holds letters"
    store.close()


def test_a_flooding_source_is_shed_and_counted_while_another_source_is_still_recorded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    store = DeadLetterStore(tmp_path / "deadletters.sqlite3", source_bytes_per_s=4096,
                            source_burst_bytes=256 * KIB, metrics=metrics)
    flood_payload = b"\xff" * (60 * KIB)
    quiet_sent = 0
    with caplog.at_level(logging.WARNING, logger="homecare.deadletters"):
        for first in range(0, FLOOD, 100):
            # 20,000 in 10 s of receipt time from one device; the neighbour's one a second
            letters = [DeadLetter(T0_MS + n // 2, _topic("bed-flood"), flood_payload,
                                  "invalid_utf8", "byte 0xff at 0") for n in range(first,
                                                                                 first + 100)]
            if first % 200 == 0:
                letters.insert(50, DeadLetter(T0_MS + first // 2, _topic("bed-quiet"),
                                              b'{"ts": 1, oops', "malformed_json", "bad"))
                quiet_sent += 1
            store.add(letters)
    stored = store.counts_by_reason()
    assert store.count("malformed_json") == quiet_sent == 100, "every one of the neighbour's"
    flood_stored = stored["invalid_utf8"]
    # Each costs its 1 KiB head, topic, detail and 100 bytes: the burst, then 4 KiB/s for 10 s
    cost = KIB + len(_topic("bed-flood")) + len("byte 0xff at 0") + 100
    assert flood_stored == pytest.approx((256 * KIB + 4096 * 10) / cost, abs=2)
    assert store.shed == {"invalid_utf8": FLOOD - flood_stored}
    shed_metric = metrics.registry.get_sample_value(
        "homecare_dead_letters_shed_total", {"reason": "invalid_utf8"})
    assert shed_metric == FLOOD - flood_stored
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("deadletters.shed")]
    assert len(lines) == 1, "logged at most once a minute, not per letter"
    assert "site-dl/bed-flood/fs-bed-flood" in lines[0]
    store.close()


def test_a_huge_payload_is_kept_as_its_head_length_and_hash(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "deadletters.sqlite3", head_bytes=KIB)
    huge = bytes(range(256)) * (40 * 1024)  # 10 MiB
    poison = b"[" * 5000  # a bug of ours met by this input: kept whole, to reproduce it
    store.add([DeadLetter(T0_MS, _topic("bed-a"), huge, "oversize", "10 MiB"),
               DeadLetter(T0_MS, _topic("bed-b"), poison, "internal_error", "RecursionError"),
               DeadLetter(T0_MS, _topic("bed-c"), b"{oops", "malformed_json", "bad")])
    small, bug, big = store.recent(3)
    assert (big.payload, big.size, big.sha256) == (
        huge[:KIB], len(huge), hashlib.sha256(huge).hexdigest())
    assert big.truncated
    assert (bug.payload, bug.size, bug.truncated) == (poison, 5000, False)
    assert (small.payload, small.truncated) == (b"{oops", False)
    assert store.disk_bytes() < MIB
    store.close()


def test_a_huge_topic_is_kept_as_its_head_length_and_hash(tmp_path: Path) -> None:
    """MQTT allows 64 KiB topics: a flood of them (``bad_topic``) kept its topics whole, 60 KiB
    a row (found by the fresh tester of issue 17). A head is cut at a whole character."""
    path = tmp_path / "deadletters.sqlite3"
    store = DeadLetterStore(path)
    huge = "homecare/v1/" + "é" * (30 * KIB) + "/x"  # two bytes a character: 60 KiB
    longest_valid = "homecare/v1/" + "/".join(["s" * 64, "b" * 64, "fall", "d" * 64,
                                                 "telemetry"])
    store.add([DeadLetter(T0_MS, huge, b"{}", "bad_topic", "not a topic"),
               DeadLetter(T0_MS, longest_valid, b"{", "malformed_json", "bad")])
    whole, cut = store.recent(2)
    raw = huge.encode()
    assert huge.startswith(cut.topic)
    assert TOPIC_HEAD_BYTES - 1 <= len(cut.topic.encode()) <= TOPIC_HEAD_BYTES
    assert (cut.topic_size, cut.topic_sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    assert cut.topic_truncated
    assert (whole.topic, whole.topic_size, whole.topic_sha256) == (longest_valid, None, None)
    assert not whole.topic_truncated
    store.close()
    longest = sqlite3.connect(path).execute(
        "SELECT max(length(CAST(topic AS BLOB))) FROM dead_letters").fetchone()[0]
    assert longest <= TOPIC_HEAD_BYTES


def test_an_older_gateways_file_gets_the_topic_columns(tmp_path: Path) -> None:
    path = tmp_path / "deadletters.sqlite3"
    _older_gateways_file(path, 2)
    store = DeadLetterStore(path)
    store.add([DeadLetter(T0_MS, "homecare/v1/" + "x" * 70_000, b"{}", "bad_topic", "new")])
    new, old, older = store.recent(3)
    assert (new.detail, new.topic_size) == ("new", 70_012)
    assert [(d.detail, d.topic, d.topic_size, d.topic_sha256) for d in (old, older)] == [
        ("old 1", _topic("bed-old"), None, None), ("old 0", _topic("bed-old"), None, None)]
    store.close()


def _older_gateways_file(path: Path, rows: int) -> None:
    """A dead-letter file as the row-bounded store wrote it: whole 64 KiB payloads."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript("""
        CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL,
            topic TEXT NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL,
            sha256 TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL);
        CREATE INDEX dead_letters_reason ON dead_letters (reason);""")
    payload = b"x" * (64 * KIB)
    db.executemany("INSERT INTO dead_letters (received_ms, topic, payload, size, sha256, reason,"
                   " detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(T0_MS + n, _topic("bed-old"), payload, 100 * KIB, "ab" * 32, "oversize",
                     f"old {n}") for n in range(rows)])
    db.commit()
    db.close()


def test_an_older_gateways_file_over_the_budget_is_rebuilt_within_it_at_start(
        tmp_path: Path) -> None:
    path = tmp_path / "deadletters.sqlite3"
    _older_gateways_file(path, 600)  # ~38 MiB
    assert _disk(path) > 30 * MIB
    metrics = Metrics()
    store = DeadLetterStore(path, max_bytes=4 * MIB, metrics=metrics)
    assert _disk(path) <= 4 * MIB
    kept = store.count()
    assert 0 < kept < 600
    assert store.evicted == 600 - kept
    assert metrics.registry.get_sample_value("homecare_dead_letters_evicted_total") == 600 - kept
    newest = store.recent(kept)
    assert [d.detail for d in newest] == [f"old {n}" for n in range(599, 599 - kept, -1)]
    assert all(len(d.payload) == KIB and d.size == 100 * KIB for d in newest)
    store.add([DeadLetter(T0_MS, _topic("bed-new"), b"{", "malformed_json", "new")])
    assert store.count() == kept + 1
    store.close()
    reopened = DeadLetterStore(path, max_bytes=4 * MIB)
    assert reopened.count() == kept + 1
    assert reopened.evicted == 0, "within budget now: opened as it is"
    reopened.close()


def test_a_write_that_failed_part_way_stores_nothing_twice_and_charges_its_source_once(
        tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "deadletters.sqlite3", max_bytes=MIB,
                            source_bytes_per_s=1, source_burst_bytes=200 * KIB)
    # 400 letters of ~1.2 KiB from one source: several transactions at this budget; the
    # source may store ~170 of them
    letters = [DeadLetter(T0_MS, _topic("bed-a"), b"y" * (2 * KIB), "malformed_json",
                          f"n {n}") for n in range(400)]
    real_insert = DeadLetterStore._insert
    calls = 0

    def fail_second(self: DeadLetterStore, db: sqlite3.Connection, rows: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise sqlite3.OperationalError("database or disk is full")
        real_insert(self, db, rows)  # type: ignore[arg-type]

    with mock.patch.object(DeadLetterStore, "_insert", fail_second):
        with pytest.raises(StorageError):
            store.add(letters)
        assert store.shed.total() == 0, "nothing counted for a write that failed"
        stored = store.add(letters)
    assert calls > 3, "the retry went on from the third transaction"
    details = [d.detail for d in store.recent(1000)][::-1]
    assert details == [f"n {n}" for n in range(stored)], "each once, in order"
    assert store.count() == stored
    assert store.shed == {"malformed_json": 400 - stored}
    assert store.add(letters[:1]) == 0, "the source's budget was charged: nothing left"
    store.close()


def test_made_up_sources_cost_bounded_memory() -> None:
    budget = SourceBudget(bytes_per_s=10, burst_bytes=100)
    for first in range(0, 3 * MAX_SOURCES, 1000):
        budget.apply(budget.plan((f"site/bed-{n}/dev", 50, n) for n in range(first,
                                                                          first + 1000)))
    assert len(budget) == MAX_SOURCES


def test_the_replay_store_in_memory_is_budgeted_too() -> None:
    store = DeadLetterStore(":memory:", max_bytes=MIB, source_bytes_per_s=0)
    for _ in range(50):
        store.add([DeadLetter(T0_MS, _topic("bed-a"), b"z" * 2000, "malformed_json", "")
                   for _n in range(100)])
    assert 0 < store.count() < 5000
    assert store.evicted == 5000 - store.count()
    store.close()
