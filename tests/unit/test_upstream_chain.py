"""The service log's chain in custody upstream (issue #14, 3): every service record goes to
every destination with the chain's head as of it; the platform's receiver keeps the heads and
checks that each new record continues the chain; and an edited record, a removed record, a
removed tail with the head fixed, or a chain re-hashed after an edit are each found by
``homecare verify-log --head`` with the heads the platform kept and by the receiver, both
naming the first bad record."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from alerts.servicelog import GENESIS, ServiceLog, chain_hash
from alerts.store import AlertStore
from gateway.upstream import (
    INSTITUTION,
    PLATFORM,
    Outbox,
    Upstream,
    family_destination,
    family_secret,
    institution_secret,
)
from homecare.cli import app
from tests.unit.test_servicelog import event, tamper
from tests.unit.test_upstream import SECRET
from tests.upstream_receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    r.start()
    yield r
    r.stop()


def test_the_platform_and_institution_receive_each_record_with_the_chains_head_as_of_it(
        tmp_path: Path) -> None:
    log = ServiceLog(tmp_path / "servicelog.sqlite3")
    log.append([event(i) for i in range(6)], now_ms=1)  # beds bed-0, bed-1, bed-2
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    upstream = Upstream(outbox, url="http://127.0.0.1:9/p", secret=SECRET, source="gw-1",
                        alert_store=AlertStore(tmp_path / "alerts.sqlite3"), service_log=log,
                        institution_url="http://127.0.0.1:9/i",
                        families={("site-01", "bed-1"): "http://127.0.0.1:9/f"})
    assert upstream.pump() == 6 + 6 + 2
    records = {r.seq: r for r in log.query(newest_first=False, limit=10)}
    outbox.close()
    db = sqlite3.connect(tmp_path / "outbox.sqlite3")
    for name in (PLATFORM, INSTITUTION, family_destination("site-01", "bed-1")):
        bodies = [msgspec.json.decode(body) for (body,) in db.execute(
            "SELECT body FROM outbox WHERE destination = ? AND kind = 'service_record'",
            (name,))]
        assert bodies, name
        for body in bodies:
            if name.startswith("family:"):  # no log-wide number (test_upstream_shares.py)
                assert "head" not in body
                assert "seq" not in body["record"]
                continue
            seq = body["record"]["seq"]
            assert body["head"] == {"seq": seq, "hash": records[seq].hash}, name
    db.close()
    log.close()


def _wire(log: ServiceLog) -> list[dict[str, Any]]:
    """The gateway's log as the platform reads it back (``GET /api/v1/service-logs``)."""
    return [{**r.body(), "prev_hash": r.prev_hash, "hash": r.hash}
            for r in log.query(newest_first=False, limit=1000)]


class Station:
    """A gateway's service log delivering to the platform's receiver."""

    def __init__(self, tmp_path: Path, receiver: Receiver) -> None:
        self.path = tmp_path / "servicelog.sqlite3"
        self.receiver = receiver
        self.log = ServiceLog(self.path)
        self.upstream = Upstream(Outbox(tmp_path / "outbox.sqlite3"), url=receiver.url,
                                 secret=SECRET, source="gw-1",
                                 alert_store=AlertStore(tmp_path / "alerts.sqlite3"),
                                 service_log=self.log, timeout_s=2.0)
        self.appended = 0

    def append(self, count: int) -> None:
        self.log.append([event(self.appended + i) for i in range(count)])
        self.appended += count

    async def deliver(self, accepted: int) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(self.upstream.run(stop))
        try:
            assert await asyncio.to_thread(self.receiver.wait_for, accepted, 30.0)
        finally:
            stop.set()
            await task


def _rewrite_from(station: Station, seq: int) -> None:
    records = station.log.query(newest_first=False, limit=1000)
    prev = records[seq - 2].hash if seq > 1 else GENESIS
    statements = []
    for record in records[seq - 1:]:
        body = record.body() | ({"caregiver": "c-9"} if record.seq == seq else {})
        digest = chain_hash(prev, body)
        statements.append(f"UPDATE service_log SET caregiver = '{body['caregiver']}', "
                          f"prev_hash = '{prev}', hash = '{digest}' WHERE seq = {record.seq}")
        prev = digest
    tamper(station.path, *statements, f"UPDATE chain_head SET hash = '{prev}'")


def _cut_tail_from(station: Station, seq: int) -> None:
    before = station.log.query(newest_first=False, limit=seq - 1)[-1]
    tamper(station.path, f"DELETE FROM service_log WHERE seq >= {seq}",
           f"UPDATE chain_head SET seq = {before.seq}, hash = '{before.hash}'")


TAMPERING = {
    "edit": lambda station: tamper(
        station.path, "UPDATE service_log SET caregiver = 'c-9' WHERE seq = 5"),
    "delete": lambda station: tamper(station.path, "DELETE FROM service_log WHERE seq = 5"),
    "cut_tail_and_fix_head": lambda station: _cut_tail_from(station, 5),
    "rewrite_and_rehash": lambda station: _rewrite_from(station, 5),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
async def test_tampering_is_found_against_the_heads_the_platform_kept_naming_the_first_bad_record(
        tmp_path: Path, receiver: Receiver, kind: str) -> None:
    station = Station(tmp_path, receiver)
    station.append(8)
    await station.deliver(8)
    assert receiver.chain_problems == []
    kept = receiver.kept_heads()
    assert kept == [(r.seq, r.hash) for r in station.log.query(newest_first=False, limit=9)]

    TAMPERING[kind](station)

    # The gateway's own verification, against the last head the platform kept.
    runner = CliRunner()
    heads_file = tmp_path / "heads.txt"
    heads_file.write_text("".join(f"{seq} {digest}\n" for seq, digest in kept))
    last = runner.invoke(app, ["verify-log", "--data-dir", str(tmp_path),
                               "--head", f"{kept[-1][0]}:{kept[-1][1]}"])
    assert last.exit_code == 1, last.output
    every = runner.invoke(app, ["verify-log", "--data-dir", str(tmp_path),
                                "--heads", str(heads_file)])
    assert every.exit_code == 1, every.output
    assert "first bad record: 5" in every.output, every.output
    if kind in ("edit", "delete"):
        assert "first bad record: 5" in last.output, last.output
    else:  # one head after the edit (or beyond the log) cannot say where it was, and says
        # only what is true (a fresh verifier: "sound up to record 7" / "4" was not)
        assert ("the chain does not reach the kept head (record 8" if kind == "rewrite_and_rehash"
                else "the kept head (record 8) is gone") in last.output, last.output
        assert ("first bad record: not known (one of records 1 to "
                f"{8 if kind == 'rewrite_and_rehash' else 5}") in last.output, last.output
        assert "sound up to" not in last.output

    # The platform's receiver: reading the log back, and as new records arrive.
    assert receiver.audit(_wire(station.log))[0] == 5
    station.append(5)
    new_head = station.log.head()[0]
    if new_head > 8:
        await station.deliver(len(receiver.accepted) + new_head - 8)
    if kind in ("cut_tail_and_fix_head", "rewrite_and_rehash"):
        assert receiver.chain_problems, "a new record does not continue the chain received"
    assert receiver.audit(_wire(station.log))[0] == 5


def test_the_receiver_sees_a_record_that_does_not_continue_the_chain() -> None:
    receiver = Receiver(SECRET)
    first = {"seq": 1, "prev_hash": GENESIS, "hash": "a" * 64}
    receiver.check_record({"record": first, "head": {"seq": 1, "hash": "a" * 64}})
    assert receiver.chain_problems == []
    receiver.check_record({"record": {"seq": 2, "prev_hash": "b" * 64, "hash": "c" * 64},
                           "head": {"seq": 2, "hash": "c" * 64}})
    assert [seq for seq, _ in receiver.chain_problems] == [2]
    receiver.check_record({"record": {"seq": 1, "prev_hash": GENESIS, "hash": "d" * 64},
                           "head": {"seq": 1, "hash": "d" * 64}})
    assert [seq for seq, _ in receiver.chain_problems] == [2, 1]
    receiver.check_record({"record": {"seq": 3}})
    assert "no head" in receiver.chain_problems[-1][1]


def test_verify_log_passes_a_sound_log_and_prints_its_head(tmp_path: Path) -> None:
    log = ServiceLog(tmp_path / "servicelog.sqlite3")
    log.append([event(i) for i in range(4)])
    seq, digest = log.head()
    result = CliRunner().invoke(app, ["verify-log", "--data-dir", str(tmp_path),
                                      "--head", f"{seq}:{digest}", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["ok"], report["records"], report["head_seq"], report["head_hash"]) == (
        True, 4, 4, digest)
    bad = CliRunner().invoke(app, ["verify-log", "--data-dir", str(tmp_path), "--head", "4:xyz"])
    assert bad.exit_code == 2, "a head is SEQ:HASH with a 64-digit hex hash"
    assert family_secret(SECRET, "s", "b") != institution_secret(SECRET)
