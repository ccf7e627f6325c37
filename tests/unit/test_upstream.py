"""Upstream delivery against a real HTTP server on loopback (tests/upstream_receiver.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.model import Alert, AlertChange, AlertStatus, AlertType, Severity, VisitEvent
from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from gateway.upstream import Outbox, Upstream, family_secret, signature, verify
from tests.upstream_receiver import Receiver

SECRET = b"a-test-secret-of-some-length"


def _alert(n: int, status: AlertStatus = AlertStatus.OPEN) -> Alert:
    return Alert(id=f"id-{n:04d}", incident=f"s1/bed-{n:04d}/emergency_button/#1",
                 type=AlertType.EMERGENCY_BUTTON, severity=Severity.CRITICAL, site="s1",
                 bed=f"bed-{n:04d}", opened_at=1_000 + n, updated_at=1_000 + n, status=status)


def _changes(store: AlertStore, *alerts: Alert, action: str = "opened") -> None:
    seq = store.last_seq()
    store.write([AlertChange(seq=seq + i + 1, at=a.updated_at, action=action, alert=a)
                 for i, a in enumerate(alerts)])


def _visit(n: int, event: str = "check_in") -> VisitEvent:
    return VisitEvent(origin=f"o-{n}-{event}", at=5_000 + n, site="s1", bed=f"bed-{n:04d}",
                      caregiver="c-1", visit=f"v-{n}", event=event,  # type: ignore[arg-type]
                      source="badge", method="nfc", device="bdg-1")


class World:
    def __init__(self, tmp_path: Path, receiver: Receiver) -> None:
        self.tmp_path = tmp_path
        self.receiver = receiver
        self.alerts = AlertStore(tmp_path / "alerts.sqlite3")
        self.log = ServiceLog(tmp_path / "servicelog.sqlite3")
        self.upstream = self.open()

    def open(self) -> Upstream:
        return Upstream(Outbox(self.tmp_path / "outbox.sqlite3"), url=self.receiver.url,
                        secret=SECRET, source="gw-1", alert_store=self.alerts,
                        service_log=self.log, timeout_s=2.0)

    async def deliver_until(self, accepted: int) -> None:
        """Run the delivery loop until the receiver has accepted ``accepted`` keys."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.upstream.run(stop))
        try:
            assert await asyncio.to_thread(self.receiver.wait_for, accepted, 30.0), \
                f"accepted {self.receiver.keys()}"
        finally:
            stop.set()
            await task


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    r.start()
    yield r
    r.stop()


async def test_alert_changes_and_service_records_arrive_in_order_signed(
        tmp_path: Path, receiver: Receiver) -> None:
    world = World(tmp_path, receiver)
    _changes(world.alerts, _alert(1), _alert(2))
    _changes(world.alerts, _alert(1, AlertStatus.ACKNOWLEDGED), action="acknowledged")
    world.log.append([_visit(1), _visit(1, "check_out")])
    await world.deliver_until(5)
    assert receiver.keys() == ["gw-1/alert/1", "gw-1/alert/2", "gw-1/alert/3",
                               "gw-1/service/1", "gw-1/service/2"]
    assert all(d.signed for d in receiver.accepted)
    first = receiver.accepted[0].body
    assert first["kind"] == "alert_change"
    assert first["change"]["alert"]["bed"] == "bed-0001"
    record = receiver.accepted[3].body["record"]
    assert record["visit"] == "v-1"
    assert record["hash"]
    assert record["prev_hash"]
    assert world.upstream.outbox.counts() == {"pending": 0, "delivered": 5, "rejected": 0,
                                              "parked": 0}


async def test_platform_down_then_back_delivers_everything_once_in_order(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.stop()  # connection refused
    world = World(tmp_path, receiver)
    _changes(world.alerts, *(_alert(n) for n in range(1, 6)))
    stop = asyncio.Event()
    task = asyncio.create_task(world.upstream.run(stop))
    await asyncio.sleep(1.5)
    assert world.upstream.outbox.counts()["pending"] == 5
    _changes(world.alerts, _alert(6))  # the edge goes on meanwhile
    receiver.mode = "unavailable"  # up, but answering 503
    receiver.start()
    await asyncio.sleep(2.5)
    assert receiver.keys() == []
    assert receiver.attempts, "the platform was tried while it answered 503"
    receiver.mode = "ok"
    try:
        assert await asyncio.to_thread(receiver.wait_for, 6, 30.0)
    finally:
        stop.set()
        await task
    assert receiver.keys() == [f"gw-1/alert/{n}" for n in range(1, 7)]
    assert receiver.duplicates == 0


async def test_a_refused_entry_is_set_aside_and_the_queue_goes_on(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.refuse = {"gw-1/alert/2"}
    world = World(tmp_path, receiver)
    _changes(world.alerts, _alert(1), _alert(2), _alert(3))
    await world.deliver_until(2)
    assert receiver.keys() == ["gw-1/alert/1", "gw-1/alert/3"]
    outbox = world.upstream.outbox
    assert outbox.entries("rejected") == [("gw-1/alert/2", "rejected", 400)]


async def test_a_restart_neither_queues_again_nor_loses_what_was_pending(
        tmp_path: Path, receiver: Receiver) -> None:
    world = World(tmp_path, receiver)
    _changes(world.alerts, _alert(1), _alert(2))
    await world.deliver_until(2)
    receiver.mode = "unavailable"
    _changes(world.alerts, _alert(3))
    world.log.append([_visit(7)])
    stop = asyncio.Event()
    task = asyncio.create_task(world.upstream.run(stop))
    await asyncio.sleep(1.0)
    stop.set()
    await task
    world.upstream.outbox.close()
    receiver.mode = "ok"
    world.upstream = world.open()  # a restarted gateway: the same files
    await world.deliver_until(4)
    assert receiver.keys() == ["gw-1/alert/1", "gw-1/alert/2", "gw-1/alert/3",
                               "gw-1/service/1"]
    assert receiver.duplicates == 0
    assert world.upstream.outbox.counts()["delivered"] == 4


async def test_changes_after_an_alert_store_restore_are_all_delivered_under_new_keys(
        tmp_path: Path, receiver: Receiver) -> None:
    # The outbox cursor (its own file) is at 3 when the alert store is restored to head 1:
    # the restored store numbers new changes from 4, so the cursor skips none of them and no
    # Idempotency-Key is reused for a different change.
    world = World(tmp_path, receiver)
    _changes(world.alerts, _alert(1))
    backup = tmp_path / "alerts-backup.sqlite3"
    with sqlite3.connect(tmp_path / "alerts.sqlite3") as source, \
            sqlite3.connect(backup) as copy:
        source.backup(copy)
    _changes(world.alerts, _alert(2), _alert(3))
    await world.deliver_until(3)
    world.upstream.outbox.close()
    world.alerts.close()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"alerts.sqlite3{suffix}").unlink(missing_ok=True)
    backup.replace(tmp_path / "alerts.sqlite3")
    world.alerts = AlertStore(tmp_path / "alerts.sqlite3")
    world.upstream = world.open()
    _changes(world.alerts, _alert(4), _alert(5), _alert(6))
    await world.deliver_until(6)
    assert receiver.keys() == [f"gw-1/alert/{n}" for n in range(1, 7)]
    assert [d.body["change"]["alert"]["bed"] for d in receiver.accepted[3:]] == [
        "bed-0004", "bed-0005", "bed-0006"]
    assert receiver.duplicates == 0


def test_signature_covers_body_and_time() -> None:
    body = b'{"kind":"alert_change"}'
    now = int(time.time() * 1000)
    header = signature(SECRET, body, now)
    assert verify(SECRET, header, body, now_ms=now)
    assert not verify(SECRET, header, body + b" ", now_ms=now)
    assert not verify(b"another secret", header, body, now_ms=now)
    assert not verify(SECRET, header, body, now_ms=now + 10 * 60_000), "a replay, later"
    assert not verify(SECRET, "garbage", body, now_ms=now)


def test_upstream_needs_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="secret"):
        Upstream(Outbox(tmp_path / "o.sqlite3"), url="http://127.0.0.1:1/", secret=b"",
                 source="gw", alert_store=AlertStore(tmp_path / "a.sqlite3"),
                 service_log=ServiceLog(tmp_path / "s.sqlite3"))


async def test_delivered_entries_are_pruned_after_their_time_and_not_queued_again(
        tmp_path: Path, receiver: Receiver) -> None:
    world = World(tmp_path, receiver)
    _changes(world.alerts, _alert(1), _alert(2))
    await world.deliver_until(2)
    outbox = world.upstream.outbox
    assert outbox.prune(int(time.time() * 1000) - 60_000) == 0, "too recent"
    assert outbox.prune(int(time.time() * 1000) + 1) == 2
    assert world.upstream.pump() == 0, "the cursor remembers them"
    assert outbox.counts() == {"pending": 0, "delivered": 0, "rejected": 0, "parked": 0}


async def test_operators_see_rejected_entries_and_queue_them_again(
        tmp_path: Path, receiver: Receiver) -> None:
    from typer.testing import CliRunner

    from homecare.cli import app

    receiver.refuse = {"gw-1/alert/1"}
    world = World(tmp_path, receiver)
    _changes(world.alerts, _alert(1), _alert(2))
    await world.deliver_until(1)
    world.upstream.outbox.close()
    runner = CliRunner()
    status = runner.invoke(app, ["upstream", "status", "--data-dir", str(tmp_path)])
    assert status.exit_code == 0, status.output
    assert "pending 0  delivered 1  rejected 1  parked 0" in status.output
    assert "rejected gw-1/alert/1 to platform status 400" in status.output
    receiver.refuse = set()  # the platform was fixed
    retry = runner.invoke(app, ["upstream", "retry", "--data-dir", str(tmp_path)])
    assert retry.exit_code == 0, retry.output
    assert "requeued 1" in retry.output
    world.upstream = world.open()
    await world.deliver_until(2)
    assert receiver.keys() == ["gw-1/alert/2", "gw-1/alert/1"]
    assert world.upstream.outbox.counts() == {"pending": 0, "delivered": 2, "rejected": 0,
                                              "parked": 0}
    missing = runner.invoke(app, ["upstream", "status", "--data-dir", str(tmp_path / "none")])
    assert missing.exit_code == 1
    assert "no outbox" in missing.output


async def test_a_bed_with_a_family_webhook_has_its_records_delivered_there_too(
        tmp_path: Path, receiver: Receiver) -> None:
    family = Receiver(family_secret(SECRET, "s1", "bed-0001"))
    family.start()
    try:
        world = World(tmp_path, receiver)
        world.upstream.outbox.close()
        world.upstream = Upstream(
            Outbox(tmp_path / "outbox.sqlite3"), url=receiver.url, secret=SECRET,
            source="gw-1", alert_store=world.alerts, service_log=world.log,
            families={("s1", "bed-0001"): family.url}, timeout_s=2.0)
        _changes(world.alerts, _alert(1), _alert(2))
        world.log.append([_visit(1), _visit(2)])
        await world.deliver_until(4)
        assert await asyncio.to_thread(family.wait_for, 2, 10.0)
        got = family.keys()
        assert [k.rsplit("/", 1)[0] for k in got] == ["gw-1/alert", "gw-1/service"], \
            "its own bed only"
        assert all(len(k.rsplit("/", 1)[1]) >= 32 for k in got), \
            "keys with no log-wide number (tests/unit/test_upstream_shares.py)"
        assert all(d.signed for d in family.accepted), "signed with the bed's own secret"
        assert receiver.keys() == ["gw-1/alert/1", "gw-1/alert/2", "gw-1/service/1",
                                   "gw-1/service/2"]
        # The family's service down holds up nothing for the platform.
        family.stop()
        _changes(world.alerts, _alert(1, AlertStatus.ACKNOWLEDGED),
                 _alert(2, AlertStatus.ACKNOWLEDGED), action="acknowledged")
        await world.deliver_until(6)
        assert world.upstream.outbox.counts()["pending"] == 1, "the family's, waiting"
    finally:
        family.stop()
    assert family_secret(SECRET, "s1", "bed-0001") != family_secret(SECRET, "s1", "bed-0002")
    assert not verify(family_secret(SECRET, "s1", "bed-0001"),
                      signature(SECRET, b"{}", int(time.time() * 1000)), b"{}")


def test_family_webhooks_without_a_secret_fail_at_start(tmp_path: Path) -> None:
    from devices.registry import Registry
    from gateway.config import Settings
    from gateway.errors import ConfigError
    from gateway.runtime import Gateway

    registry = Registry.from_mapping({"sites": {"s1": {"beds": {"bed-0001": {
        "family_webhook": "http://127.0.0.1:1/hook"}}}}})
    with pytest.raises(ConfigError, match="upstream_secret"):
        Gateway(Settings(data_dir=tmp_path), registry=registry, serve_http=False)
    gateway = Gateway(Settings(data_dir=tmp_path, upstream_secret="s" * 20),
                      registry=registry, serve_http=False)
    assert gateway.upstream is not None
    assert list(gateway.upstream.destinations) == ["family:s1/bed-0001"]
