"""Field case F3 (``../shared/field-cases``), live: a last will really published by mosquitto.

A fall sensor connects with a last will on its status topic (retained, QoS 1, ``ts`` = connect
time, seq 0, ``offline``), announces itself online (retained, seq 1, heartbeat 300 s), sends
another online status (seq 2) and one vitals sample, then loses power: its TCP connection
drops without DISCONNECT and the broker publishes the will. Before, a ``device_offline`` alert
opened while the bed page said ``online`` for 15 minutes (it ordered statuses by device time,
and a will's is always older). Now the bed page says ``offline`` within seconds, and agrees
with the alert: one ordering rule (:mod:`devices.devicetime`) for both.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.broker import BrokerUrl
from devices.mqttwire import Will
from simulators.mqtt import Publisher
from tests.ingest import start_gateway
from tests.servers import GatewayProcess, Mosquitto, sqlite_rows, wait_for

pytestmark = [pytest.mark.integration]

KEY = secrets.token_urlsafe(32)  # a bootstrap key must be a random secret
SITE, BED, DEVICE = "site-f3", "bed-f3", "fs-f3"
STATUS = f"homecare/v1/{SITE}/{BED}/fall/{DEVICE}/status"
TELEMETRY = f"homecare/v1/{SITE}/{BED}/fall/{DEVICE}/telemetry"


def _now() -> int:
    return time.time_ns() // 1_000_000


async def _sensor_loses_power(url: str) -> None:
    connected = _now()
    will = Will(STATUS, json.dumps({"ts": connected, "seq": 0, "state": "offline"}).encode(),
                qos=1, retain=True)
    sensor = Publisher(BrokerUrl.parse(url), client_id=DEVICE, will=will, keepalive=60,
                       reconnect=False)
    await sensor.connect()
    await sensor.publish(STATUS, json.dumps({"ts": _now(), "seq": 1, "state": "online",
                                             "heartbeat_s": 300}).encode(), retain=True)
    await sensor.publish(STATUS, json.dumps({"ts": _now(), "seq": 2,
                                             "state": "online"}).encode(), retain=True)
    await sensor.publish(TELEMETRY, json.dumps({"ts": _now(), "seq": 3, "in_bed": True,
                                                "heart_rate": 64}).encode())
    async with asyncio.timeout(10):
        await sensor.drain()
    sensor.abort()  # power lost: no DISCONNECT, the broker publishes the will


def _sensor(gateway: GatewayProcess) -> dict[str, Any]:
    bed = httpx.get(f"{gateway.url}/api/v1/beds/{SITE}/{BED}", timeout=10,
                    headers={"Authorization": f"Bearer {KEY}"})
    if bed.status_code != 200:
        return {}
    return next((d for d in bed.json()["devices"] if d["device"] == DEVICE), {})


def _offline_alerts(gateway: GatewayProcess) -> list[dict[str, Any]]:
    rows = sqlite_rows(gateway.data_dir / "alerts.sqlite3", "SELECT alert FROM alerts")
    return [a for a in (json.loads(r[0]) for r in rows)
            if a["type"] == "device_offline" and a["bed"] == BED]


def test_field_case_f3_the_bed_page_shows_a_last_will_at_once_as_the_alert_does(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, mosquitto.url, None, HOMECARE_API_KEY=KEY,
                            HOMECARE_DETECTOR_EVALUATE_INTERVAL_S="5")
    try:
        asyncio.run(_sensor_loses_power(mosquitto.url))
        # Not a timing test: a silent sensor would only be called offline after its promised
        # heartbeat (300 s) times the offline factor, so "offline" within a minute with
        # reported_state "offline" is the will itself, not the silence.
        try:
            wait_for(lambda: _sensor(gateway).get("state") == "offline",
                     "the bed page shows the sensor offline", timeout=60)
        except TimeoutError:
            raise AssertionError(f"bed page: {_sensor(gateway)}\n{gateway.log_tail()}") from None
        sensor = _sensor(gateway)
        assert sensor["reported_state"] == "offline"
        assert sensor["clock_wrong"] is False, "a will's old ts is not a clock fault"
        [alert] = wait_for(lambda: _offline_alerts(gateway), "a device_offline alert",
                           timeout=150)
        assert alert["evidence"]["reason"] == "last_will"
        assert alert["status"] == "open"
        # Both still agree once the alert is open.
        assert _sensor(gateway)["state"] == "offline"
    finally:
        gateway.stop()
    assert gateway.returncode == 0
