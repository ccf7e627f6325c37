"""After a SIGKILL, what the detectors raised since their snapshot still clears (issue #17, a
fresh tester, 2026-12-03).

The tester's case: devices went silent after the detectors' last snapshot (one alone, its own
``device_offline``; sixty together, a storm summary of which 50 are named), the gateway was
killed, and the devices were heard again after the restart. The restarted detectors knew
nothing of what they had raised (their snapshot was older), so nothing cleared: the device's
alert stayed open for good, and the summary, its members beyond the 50 named taken back as a
count, never reached zero. Now the gateway tells its detectors at start what the alert store
holds open, every summary member by name, and both clear.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ingest import publish, start_gateway
from tests.servers import GatewayProcess, Mosquitto, sqlite_rows, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORM, ALONE = "site-51", "site-52"
SILENT = [(STORM, f"bed-s{n:03d}", f"ir-s{n:03d}") for n in range(60)]
"""Silent together: not the whole site (the alive ones outnumber them), so a storm."""
ALIVE = [(STORM, f"bed-a{n:03d}", f"ir-a{n:03d}") for n in range(70)]
ONE = (ALONE, "bed-0001", "ir-0001")


def statuses(devices: list[tuple[str, str, str]], heartbeat_s: float, seq: int
             ) -> list[tuple[str, bytes]]:
    now = int(time.time() * 1000)
    return [(f"homecare/v1/{site}/{bed}/infrared/{device}/status",
             json.dumps({"ts": now, "seq": seq, "state": "online",
                         "heartbeat_s": heartbeat_s}).encode())
            for site, bed, device in devices]


def offline_alerts(gateway: GatewayProcess) -> list[dict[str, Any]]:
    rows = sqlite_rows(gateway.data_dir / "alerts.sqlite3", "SELECT alert FROM alerts")
    return [a for a in (json.loads(r[0]) for r in rows) if a["type"] == "device_offline"]


def the_two(gateway: GatewayProcess) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The lone device's alert and the storm's summary, once both are stored (the summary
    with every member)."""
    alerts = offline_alerts(gateway)
    alone = [a for a in alerts if a["site"] == ALONE]
    summary = [a for a in alerts if a["site"] == STORM and a["evidence"].get("summary")]
    if len(alone) == 1 and len(summary) == 1 and summary[0]["evidence"]["count"] == 60:
        return alone[0], summary[0]
    return None


def test_conditions_raised_after_the_snapshot_clear_after_a_sigkill(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    env = {"HOMECARE_DETECTOR_EVALUATE_INTERVAL_S": "1",
           # No snapshot between the devices going silent and the kill.
           "HOMECARE_DETECTOR_SNAPSHOT_INTERVAL_S": "3600",
           "HOMECARE_ALERT_CLEAR_GRACE_S": "3600",
           "HOMECARE_MQTT_CLIENT_ID": f"gw-conditions-{tmp_path.name}"[:60],
           "HOMECARE_TIMEZONE": "UTC"}
    first = start_gateway(tmp_path, mosquitto.url, None, **env)
    first.stop()  # a clean stop: the detectors' snapshot, older than what follows
    assert first.returncode == 0

    gateway = start_gateway(tmp_path, mosquitto.url, None, **env)
    try:
        # Heard once each; the silent ones promise a status every 2 s (offline after 6 s).
        publish(mosquitto.url, statuses(ALIVE, 3600, 1) + statuses([*SILENT, ONE], 2, 1))
        alone, summary = wait_for(lambda: the_two(gateway), "the lone device's alert and "
                                  "the storm's summary of 60", timeout=90)
        assert len(summary["evidence"]["members"]) == 50
    finally:
        gateway.kill()

    restarted = start_gateway(tmp_path, mosquitto.url, None, **env)
    try:
        publish(mosquitto.url, statuses([*SILENT, ONE], 3600, 2))

        def cleared() -> tuple[dict[str, Any], dict[str, Any]] | None:
            by_id = {a["id"]: a for a in offline_alerts(restarted)}
            now_alone, now_summary = by_id[alone["id"]], by_id[summary["id"]]
            done = (now_alone["cleared_at"] is not None
                    and now_summary["evidence"]["count"] == 0)
            return (now_alone, now_summary) if done else None

        # Before 2026-12-03: the lone alert never cleared, the summary stayed at 10.
        now_alone, now_summary = wait_for(cleared, "both cleared", timeout=60)
        assert "heard again" in json.dumps(now_alone["evidence"]) or now_alone["evidence"].get(
            "heard_ms")
        assert now_summary["cleared_at"] is not None
        assert "every member cleared" in now_summary["summary"]
        assert "detect.resumed" in restarted.log_tail(400)
        # Nothing raised twice: the same two alerts, no second one for any device.
        assert len(offline_alerts(restarted)) == 2
    finally:
        restarted.stop()
    assert restarted.returncode == 0
