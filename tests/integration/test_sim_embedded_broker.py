"""The embedded broker of the zero-setup demo, with real paho clients and the simulator."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from devices.broker import BrokerUrl
from devices.mqttwire import Will
from homecare.embedded_broker import EmbeddedBroker
from homecare.errors import EmbeddedBrokerError
from simulators.config import SimConfig
from simulators.live import run_live
from simulators.mqtt import Publisher

pytestmark = pytest.mark.integration


class Subscriber:
    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.received: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = lambda c, *_: c.subscribe("homecare/v1/#", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((msg.topic, msg.payload, bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def _until(check: Callable[[], object], *, within_s: float = 15.0) -> None:
    """Poll ``check`` until true, failing after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_paho_publishes_and_subscribes_through_the_embedded_broker() -> None:
    async with EmbeddedBroker() as broker:
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        sub = Subscriber(broker.host, broker.port, "t-eb-sub")
        try:
            await _until(sub.ready.is_set)
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-eb-pub")
            pub.connect(broker.host, broker.port)
            pub.loop_start()
            info = pub.publish("homecare/v1/site-01/bed-0001/button/btn-0001/status",
                               b'{"ts":1,"seq":1,"state":"online"}', qos=1, retain=True)
            await _until(info.is_published)
            await _until(lambda: len(sub.snapshot()) == 1)
            late = Subscriber(broker.host, broker.port, "t-eb-late")
            await _until(lambda: any(retain for _, _, retain in late.snapshot()))
            late.close()
            pub.loop_stop()
            pub.disconnect()
        finally:
            sub.close()


async def test_simulator_and_last_will_work_through_the_embedded_broker() -> None:
    async with EmbeddedBroker() as broker:
        sub = Subscriber(broker.host, broker.port, "t-eb-sim-sub")
        try:
            await _until(sub.ready.is_set)
            stats = await run_live(SimConfig(beds=2, seed=1), broker.url, speed=300,
                                   duration_s=1.5, client_prefix="t-eb")
            assert stats.published > 0
            await _until(lambda: len(sub.snapshot()) >= stats.published)
            will = b'{"ts":5,"seq":0,"state":"offline"}'
            device = Publisher(BrokerUrl.parse(broker.url), client_id="t-eb-dev",
                               will=Will("homecare/v1/s/b/fall/fs-1/status", will))
            await device.connect()
            device.abort()
            await _until(lambda: any(p == will for _, p, _ in sub.snapshot()))
            await device.close()
        finally:
            sub.close()


async def test_a_taken_port_is_a_clear_error() -> None:
    async with EmbeddedBroker() as first:
        with pytest.raises(EmbeddedBrokerError, match=str(first.port)):
            async with EmbeddedBroker(port=first.port):
                pass


def test_demo_command_runs_for_a_bounded_time() -> None:
    homecare = str(Path(sys.executable).parent / "homecare")
    done = subprocess.run([homecare, "demo", "--duration", "4", "--beds", "3"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "embedded broker at mqtt://127.0.0.1:" in done.stderr
