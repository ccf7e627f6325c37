"""What the detectors know survives a gateway restart, a SIGKILL included (issue #12, 4).

A registered device that spoke, then fell silent while the gateway was being restarted, must
still be reported offline: a detector that forgot it had ever heard the device would never
report it (a device that never spoke is a commissioning matter, not an outage), so this test
fails without the snapshot. The gateway snapshots every second here, is killed with SIGKILL
after one snapshot holding the device, and restarts from the file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.ingest import publish, start_gateway
from tests.servers import Mosquitto, sqlite_rows, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE, BED, DEVICE = "site-31", "bed-0001", "ir-0001"
REGISTRY = f"""
[defaults]
heartbeat_s = 600
offline_factor = 3.0
timezone = "Asia/Shanghai"

[sites.{SITE}.beds.{BED}.devices.{DEVICE}]
kind = "infrared"
heartbeat_s = 600
"""


def offline_alerts(db: Path) -> list[dict[str, object]]:
    rows = sqlite_rows(db, "SELECT alert FROM alerts")
    return [a for a in (json.loads(r[0]) for r in rows)
            if a["type"] == "device_offline" and a["bed"] == BED]


def test_a_device_that_falls_silent_across_a_sigkill_is_still_reported(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    registry = tmp_path / "sites.toml"
    registry.write_text(REGISTRY)
    env = {"HOMECARE_REGISTRY_FILE": str(registry),
           "HOMECARE_DETECTOR_SNAPSHOT_INTERVAL_S": "1",
           "HOMECARE_DETECTOR_EVALUATE_INTERVAL_S": "5"}
    # The device promises a status every 4 s: silent for 12 s, it is offline.
    status = (f"homecare/v1/{SITE}/{BED}/infrared/{DEVICE}/status",
              json.dumps({"ts": int(time.time() * 1000), "seq": 1, "state": "online",
                          "heartbeat_s": 4}).encode())
    gateway = start_gateway(tmp_path, mosquitto.url, None, **env)
    snapshot = gateway.data_dir / "detectors.snapshot"
    try:
        publish(mosquitto.url, [status])
        wait_for(lambda: gateway.metric("homecare_messages_accepted_total") >= 1, "accepted")
        # A snapshot taken after the status was folded into the detectors.
        first = wait_for(lambda: snapshot.stat().st_mtime if snapshot.exists() else None,
                         "a first snapshot")
        wait_for(lambda: snapshot.stat().st_mtime > first + 1.5 or None,
                 "a snapshot after the status")
    finally:
        gateway.kill()
    assert not offline_alerts(gateway.data_dir / "alerts.sqlite3")

    restarted = start_gateway(tmp_path, mosquitto.url, None, **env)
    try:
        wait_for(lambda: offline_alerts(restarted.data_dir / "alerts.sqlite3") or None,
                 "the silent device reported offline after the restart", timeout=150)
        assert "detect.snapshot_restored" in restarted.log_tail(400)
    finally:
        before = snapshot.stat().st_mtime
        restarted.stop()
    assert restarted.returncode == 0
    assert snapshot.stat().st_mtime >= before, "a clean stop writes the snapshot again"
    [alert] = offline_alerts(restarted.data_dir / "alerts.sqlite3")
    assert alert["status"] == "open"
