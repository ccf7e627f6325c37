"""No silent gaps for stream clients, end to end: the real gateway process (real mosquitto,
real uvicorn) restarted on an alert store restored from an earlier backup. A client that
reconnects with a Last-Event-ID the restored store never reached is told to reload (``event:
reset`` with the head) and then gets every later change, instead of a stream that stays
silent until the store catches up with its old id."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_api_alerts import ADMIN, ADMIN_KEY, EventStream, now_ms, publish
from tests.servers import GatewayProcess, Mosquitto

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env={
        "HOMECARE_API_KEY": ADMIN_KEY,
        # no escalation during the test: the changes are the presses' openings only
        "HOMECARE_ALERT_ESCALATION_CRITICAL_S": "3600"})
    process.start()
    try:
        process.wait_connected()
        yield process
    finally:
        process.stop()
    assert process.returncode == 0, process.log_tail()


def press(broker: Mosquitto, bed: int) -> None:
    publish(broker, [(f"homecare/v1/site-r/bed-{bed:04d}/button/btn-{bed:04d}/event",
                      {"ts": now_ms(), "seq": 1, "event": "press"})])


def test_a_client_ahead_of_a_restored_alert_store_is_told_to_reload_and_misses_nothing(
        mosquitto: Mosquitto, gateway: GatewayProcess) -> None:
    stream = EventStream(f"{gateway.url}/api/v1/alerts/stream?last_event_id=0", ADMIN)
    for bed in (1, 2):
        press(mosquitto, bed)
    assert [e[0] for e in stream.take(2)] == [1, 2]
    store = gateway.data_dir / "alerts.sqlite3"
    backup = gateway.workdir / "alerts-backup.sqlite3"
    with sqlite3.connect(store) as source, sqlite3.connect(backup) as copy:
        source.backup(copy)
    for bed in (3, 4):
        press(mosquitto, bed)
    assert [e[0] for e in stream.take(2)] == [3, 4]
    stream.close()

    gateway.stop()
    for suffix in ("-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    backup.replace(store)
    gateway.start()
    gateway.wait_connected()

    resumed = EventStream(f"{gateway.url}/api/v1/alerts/stream", {**ADMIN, "Last-Event-ID": "4"})
    assert resumed.status == 200
    [(seq, event, data)] = resumed.take(1)
    assert (seq, event, data["reason"], data["head"]) == (2, "reset", "ahead_of_store", 2)
    press(mosquitto, 5)
    [(seq, event, data)] = resumed.take(1)
    assert (seq, event, data["alert"]["bed"]) == (3, "opened", "bed-0005")
    resumed.close()
