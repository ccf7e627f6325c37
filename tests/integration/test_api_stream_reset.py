"""No silent gaps for stream clients, end to end: the real gateway process (real mosquitto,
real uvicorn) restarted on an alert store restored from an earlier backup. The restored store
numbers new changes after every seq it ever issued, so a client that reconnects with a
Last-Event-ID the restored store lost is told to reload (``event: reset`` with the head) and
then gets every later change, instead of a stream that skips the changes that reused its
old ids."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_api_alerts import (
    ADMIN,
    ADMIN_KEY,
    EventStream,
    all_changes,
    now_ms,
    publish,
    wait_alerts,
)
from tests.servers import GatewayProcess, Mosquitto, running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path / "gateway", mosquitto.url, {
            "HOMECARE_API_KEY": ADMIN_KEY,
            # no escalation during the test: the changes are the presses' openings only
            "HOMECARE_ALERT_ESCALATION_CRITICAL_S": "3600"}) as process:
        yield process


def press(broker: Mosquitto, bed: int) -> None:
    publish(broker, [(f"homecare/v1/site-r/bed-{bed:04d}/button/btn-{bed:04d}/event",
                      {"ts": now_ms(), "seq": 1, "event": "press"})])


def test_a_client_that_saw_changes_lost_in_a_store_restore_is_told_to_reload_and_misses_nothing(
        mosquitto: Mosquitto, gateway: GatewayProcess) -> None:
    # The tester's sequence: backup at head 24, three presses (25-27) reach a client, the
    # backup is restored, four presses. Before the fix they were numbered 25-28 again and the
    # client at 27 got only 28: three emergency calls silently missing.
    stream = EventStream(f"{gateway.url}/api/v1/alerts/stream?last_event_id=0", ADMIN)
    for bed in range(1, 25):
        press(mosquitto, bed)
    assert sorted(e[0] for e in stream.take(24)) == list(range(1, 25))
    store = gateway.data_dir / "alerts.sqlite3"
    backup = gateway.workdir / "alerts-backup.sqlite3"
    with sqlite3.connect(store) as source, sqlite3.connect(backup) as copy:
        source.backup(copy)
    for bed in (25, 26, 27):
        press(mosquitto, bed)
    assert [e[0] for e in stream.take(3)] == [25, 26, 27]
    stream.close()

    gateway.stop()
    for suffix in ("-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    backup.replace(store)
    gateway.start()
    gateway.wait_connected()
    assert "alerts.store_restored restored_head=24 high_water=27" in gateway.log_path.read_text()
    for bed in (28, 29, 30, 31):
        press(mosquitto, bed)
    wait_alerts(gateway, 28)
    assert all_changes(gateway) == [(seq, "opened") for seq in (*range(1, 25), 28, 29, 30, 31)]

    resumed = EventStream(f"{gateway.url}/api/v1/alerts/stream", {**ADMIN, "Last-Event-ID": "27"})
    assert resumed.status == 200
    [(seq, event, data)] = resumed.take(1)
    assert (seq, event, data["reason"], data["head"]) == (31, "reset", "store_restored", 31)
    # reloading, as the reset says, shows every call made since the restore
    beds = {a["bed"] for a in wait_alerts(gateway, 28, limit=1000)}
    assert {f"bed-{bed:04d}" for bed in (28, 29, 30, 31)} <= beds
    press(mosquitto, 32)
    [(seq, event, data)] = resumed.take(1)
    assert (seq, event, data["alert"]["bed"]) == (32, "opened", "bed-0032")
    resumed.close()
