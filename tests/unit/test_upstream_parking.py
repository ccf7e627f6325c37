"""An entry that keeps failing is parked after the retry horizon, so it no longer blocks its
queue; a destination that is down parks nothing. Against a real HTTP server on loopback
(tests/upstream_receiver.py); the parked entry is seen in the metrics, the CLI and the API and
put back with ``homecare upstream requeue``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from alerts.model import Alert, AlertChange, AlertStatus, AlertType, Severity
from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from gateway.upstream import Outbox, Upstream
from homecare.cli import app
from tests.unit.test_api_app import build
from tests.upstream_receiver import Receiver

SECRET = b"a-test-secret-of-some-length"
HORIZON_S = 0.5
"""The retry horizon of these tests: the second failure of an entry is past it (the first
retry comes after about a second)."""


def _alert(n: int) -> Alert:
    return Alert(id=f"id-{n:04d}", incident=f"s1/bed-{n:04d}/emergency_button/#1",
                 type=AlertType.EMERGENCY_BUTTON, severity=Severity.CRITICAL, site="s1",
                 bed=f"bed-{n:04d}", opened_at=1_000 + n, updated_at=1_000 + n,
                 status=AlertStatus.OPEN)


def _opened(store: AlertStore, *numbers: int) -> None:
    seq = store.last_seq()
    store.write([AlertChange(seq=seq + i + 1, at=1_000 + n, action="opened", alert=_alert(n))
                 for i, n in enumerate(numbers)])


def _poll(done: Callable[[], bool], deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    r.start()
    yield r
    r.stop()


class World:
    def __init__(self, tmp_path: Path, receiver: Receiver) -> None:
        self.tmp_path = tmp_path
        self.receiver = receiver
        self.alerts = AlertStore(tmp_path / "alerts.sqlite3")
        self.metrics = CollectorRegistry()
        self.upstream = self.open()

    def open(self) -> Upstream:
        """The gateway (again, after a restart: the same files, new metrics)."""
        self.metrics = CollectorRegistry()
        return Upstream(Outbox(self.tmp_path / "outbox.sqlite3"), url=self.receiver.url,
                        secret=SECRET, source="gw-1", alert_store=self.alerts,
                        service_log=ServiceLog(self.tmp_path / "servicelog.sqlite3"),
                        timeout_s=2.0, park_after_s=HORIZON_S, metrics=self.metrics)

    async def run_until(self, done: Callable[[], bool], what: str,
                        deadline_s: float = 30.0) -> None:
        """Run the delivery loop until ``done()`` (polled; the deadline only against a hang)."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.upstream.run(stop))
        try:
            reached = await asyncio.to_thread(_poll, done, deadline_s)
        finally:
            stop.set()
            await task
        assert reached, (f"{what}: not after {deadline_s} s; accepted {self.receiver.keys()}, "
                         f"attempts {self.receiver.attempts}")

    def parked_gauge(self) -> float | None:
        return self.metrics.get_sample_value("homecare_upstream_parked")


async def test_an_entry_failing_past_the_horizon_is_parked_and_the_queue_goes_on(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.fail = {"gw-1/alert/2"}  # the platform answers 500 to this entry, every time
    world = World(tmp_path, receiver)
    _opened(world.alerts, 1, 2, 3, 4, 5)
    await world.run_until(lambda: len(receiver.keys()) == 4, "the entries behind it delivered")
    assert receiver.keys() == ["gw-1/alert/1", "gw-1/alert/3", "gw-1/alert/4", "gw-1/alert/5"]
    outbox = world.upstream.outbox
    assert outbox.counts() == {"pending": 0, "delivered": 4, "rejected": 0, "parked": 1}
    [parked] = outbox.set_aside("parked")
    assert (parked.destination, parked.key, parked.status) == ("platform", "gw-1/alert/2", 500)
    assert parked.attempts >= 2
    assert world.parked_gauge() == 1

    # The operator sees it, the platform is fixed, and it is put back.
    outbox.close()
    runner = CliRunner()
    status = runner.invoke(app, ["upstream", "status", "--data-dir", str(tmp_path)])
    assert status.exit_code == 0, status.output
    assert "parked 1" in status.output
    assert "parked gw-1/alert/2 to platform status 500" in status.output
    receiver.fail = set()
    elsewhere = runner.invoke(app, ["upstream", "requeue", "--data-dir", str(tmp_path),
                                    "--destination", "family:s1/bed-0002"])
    assert elsewhere.exit_code == 0, elsewhere.output
    assert "requeued 0" in elsewhere.output, "another destination's: none"
    requeue = runner.invoke(app, ["upstream", "requeue", "--data-dir", str(tmp_path),
                                  "--destination", "platform"])
    assert requeue.exit_code == 0, requeue.output
    assert "requeued 1" in requeue.output
    world.upstream = world.open()
    await world.run_until(lambda: len(receiver.keys()) == 5, "the parked entry delivered")
    assert receiver.keys()[-1] == "gw-1/alert/2", "after the ones that went past it"
    assert world.upstream.outbox.counts()["parked"] == 0
    assert world.parked_gauge() == 0
    assert receiver.duplicates == 0


async def test_a_platform_down_past_the_horizon_parks_nothing_and_keeps_the_order(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.mode = "unavailable"  # 503 to everything: the platform, not an entry, is at fault
    world = World(tmp_path, receiver)
    _opened(world.alerts, 1, 2, 3, 4)
    # The head tried three times (the last two past the horizon, each with the entry behind
    # it tried as well, and failing too).
    await world.run_until(lambda: receiver.attempts.count("gw-1/alert/1") >= 3,
                          "the head retried")
    assert "gw-1/alert/2" in receiver.attempts, "the entry behind the head was tried"
    outbox = world.upstream.outbox
    assert outbox.counts()["parked"] == 0
    assert outbox.counts()["pending"] == 4
    receiver.mode = "ok"
    await world.run_until(lambda: len(receiver.keys()) == 4, "everything once it is back")
    assert receiver.keys() == [f"gw-1/alert/{n}" for n in range(1, 5)]
    assert outbox.counts()["parked"] == 0


async def test_the_last_entry_failing_is_not_parked_it_blocks_nothing(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.fail = {"gw-1/alert/2"}
    world = World(tmp_path, receiver)
    _opened(world.alerts, 1, 2)
    await world.run_until(lambda: receiver.attempts.count("gw-1/alert/2") >= 3,
                          "the last entry retried")
    assert world.upstream.outbox.counts()["parked"] == 0
    assert world.upstream.outbox.counts()["pending"] == 1


async def test_the_api_shows_each_queue_and_the_parked_entries(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.fail = {"gw-1/alert/1"}
    (tmp_path / "gw").mkdir()
    world = World(tmp_path / "gw", receiver)
    _opened(world.alerts, 1, 2)
    await world.run_until(lambda: world.upstream.outbox.counts()["parked"] == 1, "parked")
    api = build(tmp_path / "api", upstream=world.upstream.report)
    try:
        response = await api.client.get("/api/v1/station/upstream", headers=api.auth("viewer"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["configured"] is True
        assert body["queues"] == [{"destination": "platform", "pending": 0, "parked": 1,
                                   "rejected": 0}]
        [entry] = body["set_aside"]
        assert {k: entry[k] for k in ("destination", "key", "state", "status")} == {
            "destination": "platform", "key": "gw-1/alert/1", "state": "parked",
            "status": 500}
        assert entry["attempts"] >= 2
        assert entry["at"] > 0
        assert (await api.client.get("/api/v1/station/upstream")).status_code == 401
    finally:
        await api.client.aclose()

    without = build(tmp_path / "none")
    try:
        response = await without.client.get("/api/v1/station/upstream",
                                             headers=without.auth("viewer"))
        assert response.json() == {"configured": False, "queues": [], "set_aside": []}
    finally:
        await without.client.aclose()
