"""A gateway SIGKILL between the two copies of an emergency call: the urgent session's copy
has opened the alert (and may have been acknowledged), the main session's copy, queued behind
a backlog, is not stored yet. After the restart the broker delivers the main copy again: the
call is stored once and opens no second alert."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ingest import start_gateway
from tests.servers import GatewayProcess, Mosquitto, wait_for
from tests.urgent import alerts_of, press_behind_backlog, sessions_connected, stored

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "site-urgent-kill"
BACKLOG = 30_000


def test_a_kill_between_the_urgent_copy_and_the_main_copy_leaves_one_alert_and_one_point(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, mosquitto.url, None, HOMECARE_INBOX_MAX_MESSAGES="1000")
    db = gateway.data_dir / "alerts.sqlite3"
    spool = gateway.data_dir / "spool"
    try:
        wait_for(lambda: sessions_connected(gateway.metrics()), "both sessions connected")
        press_behind_backlog(gateway, mosquitto.url, SITE, "bed-kill", BACKLOG)
        wait_for(lambda: alerts_of(db, SITE, "bed-kill"), "the urgent copy opens the alert",
                 timeout=120)
    finally:
        gateway.kill()
    before = stored(spool)
    assert before["button_event/btn-bed-kill"] == 0, "killed before the main copy was stored"
    assert before["infrared/ir-backlog"] < BACKLOG, "killed with the backlog half read"
    opened = alerts_of(db, SITE, "bed-kill")
    assert len(opened) == 1

    restarted = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=gateway.env,
                               port=gateway.port)
    restarted.start()
    try:
        restarted.wait_connected()
        wait_for(lambda: stored(spool)["button_event/btn-bed-kill"] >= 1,
                 "the main copy is stored after the restart", timeout=120)
        wait_for(lambda: restarted.metric("homecare_inbox_depth") == 0
                 and stored(spool)["infrared/ir-backlog"] >= BACKLOG,
                 "the rest of the backlog is stored", timeout=120)
    finally:
        restarted.stop()
    assert restarted.returncode == 0, restarted.log_tail()
    after = stored(spool)
    assert after["button_event/btn-bed-kill"] == 1, "the call is stored once"
    calls = alerts_of(db, SITE, "bed-kill")
    assert [a["id"] for a in calls] == [opened[0]["id"]], "no second alert"
    assert calls[0]["type"] == "emergency_button"
