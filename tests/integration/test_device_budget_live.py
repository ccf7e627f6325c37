"""One listed fall sensor sending valid, full-size batches as fast as the broker takes them,
live: real mosquitto (whose ACL would let it: the topic is its own), the gateway in-process
with a small per-device budget. What it sends past its budget is dead-lettered
(``device_over_budget``) and counted, the spool holds only its budget's points, and its own
fall call, its bed's button and another bed's sensor all go through meanwhile.

Before the budget (the tester's run, 2026-12-03) 25 s of such batches took the gateway from 105
MB to 1.2 GB, held listed presses p99 188 ms and overflowed the 2 GiB spool, dropping every
bed's oldest points."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import pytest

from devices import Registry
from gateway.config import Settings
from gateway.ingest.pipeline import DEVICE_OVER_BUDGET
from gateway.runtime import Gateway
from tests.inprocess import publisher, running, until
from tests.servers import Mosquitto

pytestmark = [pytest.mark.integration]

REGISTRY = """
[sites.site-01.beds.bed-0007.devices.btn-0007]
kind = "button"
[sites.site-01.beds.bed-0007.devices.fs-0007]
kind = "fall"
[sites.site-01.beds.bed-0008.devices.fs-0008]
kind = "fall"
"""
SENSOR = "homecare/v1/site-01/bed-0007/fall/fs-0007"
BUTTON = "homecare/v1/site-01/bed-0007/button/btn-0007"
NEIGHBOUR = "homecare/v1/site-01/bed-0008/fall/fs-0008"
BATCHES = 300
SAMPLES = 850
BURST = 256 * 1024


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def vitals(seq: int, samples: int = SAMPLES) -> bytes:
    at = now_ms()
    return json.dumps({"ts": at, "seq": seq, "samples": [
        {"t": at - (samples - k) * 100, "in_bed": True, "heart_rate": 70.0,
         "breathing_rate": 15.0} for k in range(samples)]}, separators=(",", ":")).encode()


async def test_a_sensor_flooding_full_batches_is_held_to_its_budget_and_calls_go_through(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    registry = Registry.from_mapping(tomllib.loads(REGISTRY))
    gateway = Gateway(Settings(mqtt_url=mosquitto.url, data_dir=tmp_path / "data",
                               mqtt_client_id=f"gw-budget-{tmp_path.name}"[:60],
                               device_bytes_per_second=1024, device_burst_bytes=BURST),
                      registry=registry, serve_http=False)
    opened: list[tuple[str, str]] = []
    gateway.alerts.add_listener(lambda changes: opened.extend(
        (c.alert.bed or "", c.alert.type) for c in changes if c.action == "opened"))

    def metric(name: str, **labels: str) -> float:
        return gateway.metrics.registry.get_sample_value(name, labels) or 0.0

    async with running(gateway):
        async with publisher(mosquitto.url, "fs-0007") as sensor:
            size = len(vitals(1))
            for seq in range(1, BATCHES + 1):  # ~19 MB of valid vital signs
                await sensor.wait_window()
                sensor.publish_nowait(f"{SENSOR}/telemetry", vitals(seq))
            sensor.publish_nowait(f"{SENSOR}/event", json.dumps({
                "ts": now_ms(), "seq": BATCHES + 1, "event": "fall_detected",
                "confidence": 0.97, "posture": "lying"}).encode())
            await sensor.drain()
        async with publisher(mosquitto.url, "others") as others:
            others.publish_nowait(f"{BUTTON}/event", json.dumps(
                {"ts": now_ms(), "seq": 1, "event": "press"}).encode())
            others.publish_nowait(f"{NEIGHBOUR}/telemetry", vitals(1, samples=10))
            await others.drain()

        await until(lambda: {("bed-0007", "fall"), ("bed-0007", "emergency_button")}
                    <= set(opened), "the sensor's fall call and its bed's press")
        over = await until(
            lambda: n if (n := metric("homecare_messages_rejected_total",
                                      reason=DEVICE_OVER_BUDGET)) >= BATCHES - 20 else None,
            "the flood's batches past the budget counted")
        await until(lambda: gateway.live.bed("site-01", "bed-0008") is not None,
                    "the neighbour's sample taken")
        # The burst (plus the rate over the seconds the flood took) lets a few batches
        # through, never the flood.
        taken = BATCHES - over
        seconds = 60  # far more than the flood takes; the rate adds a batch per ~62 s
        assert 1 <= taken <= BURST // size + 1 + seconds * 1024 // size
        stored = gateway.spool.pending_points + metric("homecare_points_written_total")
        assert taken * SAMPLES <= stored <= taken * SAMPLES + 10 + 100
        assert sorted(opened) == [("bed-0007", "emergency_button"), ("bed-0007", "fall")]
