"""Messages the broker sends right behind the CONNACK of a resumed session are acknowledged.

On a persistent session the broker delivers what it queued while the gateway was away at once
after the CONNACK, often in the same socket read. Found by the chaos run (bench/chaos.py): those
messages were numbered with the connection they came on only after the CONNACK had been
handled, so they carried no connection number, their PUBACKs were never sent, and the broker
delivered them again after every restart (157 of 5,000 in a reproduction; a press among them
was "ignored as a replay" after each of 11 kills, and evidence was dead-lettered again).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from simulators.load import pregenerate
from tests.ingest import publish
from tests.servers import GatewayProcess, Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BACKLOG = 2_000


def _received(gateway: GatewayProcess) -> float:
    return gateway.metric("homecare_messages_received_total")


def test_a_backlog_taken_in_at_reconnect_is_not_delivered_again_after_a_restart(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    env = {"HOMECARE_LOG_LEVEL": "warning"}
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=env)
    gateway.start()
    gateway.wait_connected()
    gateway.stop()  # its persistent session stays at the broker, which now queues for it
    traffic = pregenerate(beds=20, n_messages=BACKLOG, seed=5,
                          start_ms=int(time.time() * 1000) - 3_600_000)
    publish(mosquitto.url, traffic)

    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=env,
                             port=gateway.port)
    gateway.start()
    try:
        gateway.wait_connected()
        wait_for(lambda: _received(gateway) >= BACKLOG
                 and gateway.metric("homecare_inbox_depth") == 0
                 and gateway.metric("homecare_spool_pending_points") > 0, "backlog taken in")
    finally:
        gateway.stop()  # a clean stop: everything committed is acknowledged first
    assert gateway.returncode == 0

    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=env,
                             port=gateway.port)
    gateway.start()
    try:
        gateway.wait_connected()
        # A marker published after the reconnect arrives after anything the broker sent
        # again with the CONNACK, so once it is in, the count is complete.
        marker = ("homecare/v1/site-01/bed-0001/button/btn-0001/status",
                  json.dumps({"ts": int(time.time() * 1000), "seq": 10**6,
                              "state": "online"}).encode())
        publish(mosquitto.url, [marker])
        wait_for(lambda: _received(gateway) >= 1, "the marker")
        assert _received(gateway) == 1, "messages of the backlog were delivered again: " \
            "they had not been acknowledged"
    finally:
        gateway.stop()
