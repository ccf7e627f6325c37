"""An emergency call under load: real mosquitto, the real gateway process, ~5,000 msg/s of
realistic background traffic; the call is in the gateway's alert store within moments, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.broker import BrokerUrl
from simulators.load import pregenerate
from simulators.mqtt import Publisher
from tests.ingest import start_gateway
from tests.servers import GatewayProcess, Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 5_000
"""Background messages per second."""
SECONDS = 16
BED = "bed-0042"
CALL_LATENCY_LIMIT_S = 2.0
"""Upper bound asserted for press published -> alert read back from the gateway's SQLite file
under that load (broker delivery, gateway, commit, and this test's polling). Measured figures
are printed: ~0.1 s on an idle 2-core machine, more when other work shares the cores."""
GATEWAY_LIMIT_S = 0.5
"""Upper bound for receipt by the gateway -> alert on disk, from the gateway's own histogram:
no batching delay on the emergency path."""


def emergency_calls(db_path: Path, bed: str) -> list[dict[str, Any]]:
    """The emergency-call alerts of ``bed`` as stored by the gateway (read from its file)."""
    if not db_path.exists():
        return []
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
        try:
            rows = db.execute("SELECT alert FROM alerts WHERE type = 'emergency_button'"
                              " AND bed = ?", (bed,)).fetchall()
        except sqlite3.OperationalError:  # the gateway has not created its schema yet
            return []
    return [json.loads(row[0]) for row in rows]


def history(db_path: Path, alert_id: str) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
        return db.execute("SELECT seq, action FROM changes WHERE alert_id = ? ORDER BY seq",
                          (alert_id,)).fetchall()


async def _paced(publisher: Publisher, messages: list[tuple[str, bytes]], rate: float,
                 started: float) -> None:
    """Publish ``messages`` at ``rate`` per second (QoS 1), in 10 ms steps."""
    sent = 0
    while sent < len(messages):
        due = min(len(messages), int((time.monotonic() - started) * rate) + 1)
        if due > sent:
            publisher.cork()
            for topic, payload in messages[sent:due]:
                publisher.publish_nowait(topic, payload, qos=1)
            publisher.uncork()
            sent = due
        await asyncio.sleep(0.01)
    async with asyncio.timeout(60):
        await publisher.drain()


async def _received(client: httpx.AsyncClient, gateway: GatewayProcess) -> float:
    r = await client.get(f"{gateway.url}/metrics")
    for line in r.text.splitlines():
        if line.startswith("homecare_messages_received_total "):
            return float(line.split()[1])
    return 0.0


async def _scenario(gateway: GatewayProcess, broker: BrokerUrl,
                    background: list[tuple[str, bytes]], press: tuple[str, bytes]
                    ) -> dict[str, Any]:
    db_path = gateway.data_dir / "alerts.sqlite3"
    load = Publisher(broker, client_id="alerts-live-load", max_inflight=60_000,
                     reconnect=False)
    button = Publisher(broker, client_id="alerts-live-button", reconnect=False)
    await load.connect()
    await button.connect()
    samples: list[tuple[float, float]] = []
    result: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        started = time.monotonic()
        pump = asyncio.create_task(_paced(load, background, RATE, started))
        try:
            deadline = started + SECONDS + 60
            while not pump.done() and time.monotonic() < deadline:
                samples.append((time.monotonic(), await _received(client, gateway)))
                if "latency_s" not in result and time.monotonic() - started >= SECONDS / 2:
                    # The call, in the middle of the load.
                    pressed = time.monotonic()
                    pressed_wall_ms = time.time() * 1000
                    button.publish_nowait(*press, qos=1)
                    while not (calls := await asyncio.to_thread(emergency_calls, db_path, BED)):
                        assert time.monotonic() - pressed < 30, "no alert within 30 s"
                        await asyncio.sleep(0.002)
                    result["latency_s"] = time.monotonic() - pressed
                    # Receipt by the gateway (its clock, same machine) splits the latency into
                    # broker delivery and gateway processing + commit.
                    result["to_gateway_ms"] = calls[0]["opened_at"] - pressed_wall_ms
                    # The same press again (same seq, same bytes): a redelivery, not a new call.
                    button.publish_nowait(*press, qos=1)
                    async with asyncio.timeout(10):
                        await button.drain()
                    result["published_duplicate_at"] = time.monotonic()
                await asyncio.sleep(0.25)
            async with asyncio.timeout(10):
                await pump
            result["publish_s"] = time.monotonic() - started
        finally:
            pump.cancel()
            await load.disconnect()
            await button.disconnect()
    result["samples"] = samples
    return result


def _steady_rate(samples: list[tuple[float, float]]) -> float:
    """Messages per second the gateway received between 1 s after the start and the last
    sample while the load was running."""
    start_t = samples[0][0] + 1.0
    window = [s for s in samples if s[0] >= start_t]
    assert len(window) >= 4, samples
    (t1, n1), (t2, n2) = window[0], window[-1]
    return (n2 - n1) / (t2 - t1)


def test_an_emergency_call_under_5000_msgs_per_s_is_one_critical_alert_within_moments(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    background = pregenerate(beds=300, n_messages=RATE * SECONDS, seed=21)
    assert not any(b'"press"' in p for _, p in background)
    device_seqs = [json.loads(p)["seq"] for t, p in background
                   if t.startswith(f"homecare/v1/site-01/{BED}/button/")]
    topic = f"homecare/v1/site-01/{BED}/button/btn-0042/event"
    press = (topic, json.dumps({"ts": int(time.time() * 1000), "seq": max(device_seqs) + 1,
                                "event": "press"}).encode())
    gateway = start_gateway(tmp_path, mosquitto.url, None)
    try:
        result = asyncio.run(_scenario(gateway, BrokerUrl.parse(mosquitto.url), background,
                                       press))
        rate = _steady_rate(result["samples"])
        print(f"\nbackground received {rate:,.0f} msg/s; press -> stored alert "
              f"{result['latency_s'] * 1000:.1f} ms (broker -> gateway receipt "
              f"{result['to_gateway_ms']:.1f} ms)")
        # The rate the test's own publisher reached is printed, not asserted: on a shared
        # machine it is the publisher's speed (a fresh-clone run reached 3,554 msg/s), not the
        # gateway's. The call is checked below, published in the middle of the load.
        # Everything arrived (background + press + its duplicate).
        deadline = time.monotonic() + 60
        while gateway.metric("homecare_messages_received_total") < len(background) + 2:
            assert time.monotonic() < deadline, "gateway did not receive everything"
            time.sleep(0.1)
        m = gateway.metrics()
        assert m["homecare_messages_duplicate_total"] >= 1
        assert result["latency_s"] < CALL_LATENCY_LIMIT_S
        critical = 'severity="critical"'
        assert m[f"homecare_alert_open_latency_seconds_count{{{critical}}}"] == 1
        assert m[f'homecare_alert_open_latency_seconds_bucket{{le="{GATEWAY_LIMIT_S}",'
                 f'{critical}}}'] == 1, {k: v for k, v in m.items() if "open_latency" in k}
        calls = emergency_calls(gateway.data_dir / "alerts.sqlite3", BED)
        assert len(calls) == 1, calls
        [call] = calls
        assert (call["severity"], call["status"], call["site"]) == (
            "critical", "open", "site-01")
        assert call["occurrences"] == 1, "the duplicate press was not folded in"
        assert call["evidence"]["seq"] == max(device_seqs) + 1
        actions = [action for _, action in history(gateway.data_dir / "alerts.sqlite3",
                                                   call["id"])]
        assert actions[:1] == ["opened"]
        assert "updated" not in actions, "the duplicate press changed nothing"
        assert m.get('homecare_alert_changes_total{action="opened"}', 0) >= 1
    finally:
        gateway.stop()
    assert gateway.returncode == 0
    # After a clean shutdown the call is still on disk, once.
    assert len(emergency_calls(gateway.data_dir / "alerts.sqlite3", BED)) == 1
