"""Beds and series end to end: real mosquitto, real gateway, real InfluxDB 1.x. Recent values
come from the gateway's memory, older history from the database, and a database that is down
is a clear 503."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ingest import publish, start_gateway
from tests.servers import Influxd, Mosquitto

pytestmark = pytest.mark.integration

ADMIN_KEY = secrets.token_urlsafe(32)  # a bootstrap key must be a random secret
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
DAY_MS = 86_400_000


def get(url: str, **params: Any) -> httpx.Response:
    return httpx.get(url, params=params, headers=ADMIN, timeout=15)


def test_beds_show_device_state_and_series_come_from_memory_or_influxdb(
        mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, mosquitto.url, influxd, HOMECARE_API_KEY=ADMIN_KEY)
    try:
        now = int(time.time() * 1000)
        old = now - 3 * DAY_MS
        bed = "homecare/v1/site-01/bed-0042"
        publish(mosquitto.url, [
            (f"{bed}/fall/fs-0042/telemetry", json.dumps(
                {"ts": old + 20_000, "seq": 1, "samples": [
                    {"t": old, "in_bed": True, "heart_rate": 60.0},
                    {"t": old + 10_000, "in_bed": True, "heart_rate": 62.0}]}).encode()),
            (f"{bed}/fall/fs-0042/telemetry", json.dumps(
                {"ts": now, "seq": 2, "in_bed": True, "heart_rate": 71.5,
                 "breathing_rate": 15.0}).encode()),
            (f"{bed}/fall/fs-0042/status", json.dumps(
                {"ts": now, "seq": 3, "state": "online", "battery": 64, "fw": "3.0.1",
                 "heartbeat_s": 300}).encode()),
        ])
        series = f"{gateway.url}/api/v1/beds/site-01/bed-0042/series"
        deadline = time.monotonic() + 30
        history: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = get(series, metric="heart_rate", since=old - 60_000,
                           until=old + 3_600_000)
            if response.status_code == 200 and response.json()["points"]:
                history = response.json()
                break
            time.sleep(0.2)
        assert history, f"no history\n{gateway.log_tail()}"
        assert (history["source"], history["complete"]) == ("influxdb", True)
        assert sum(p["value"] for p in history["points"]) / len(history["points"]) == 61.0
        assert all(old - 60_000 <= p["t"] < old + 3_600_000 for p in history["points"])

        # Since the gateway started, memory has seen everything: no database round trip.
        recent = get(series, metric="heart_rate", since=now).json()
        assert recent["source"] == "memory"
        assert recent["points"] == [{"t": now, "value": 71.5}]

        beds = get(f"{gateway.url}/api/v1/beds").json()["items"]
        [found] = [b for b in beds if b["bed"] == "bed-0042"]
        assert found["auto_registered"] is True
        assert found["latest"]["breathing_rate"] == {"t": now, "value": 15.0}
        [device] = found["devices"]
        assert (device["device"], device["kind"], device["state"], device["battery"],
                device["fw"], device["heartbeat_s"]) == (
            "fs-0042", "fall", "online", 64.0, "3.0.1", 300.0)

        influxd.stop()
        down = get(series, metric="heart_rate", since=old, until=old + 3_600_000)
        assert down.status_code == 503
        assert down.json()["error"] == "unavailable"
        assert "time-series database" in down.json()["detail"]
        assert get(series, metric="heart_rate", since=now).status_code == 200, \
            "recent values do not need the database"
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()
