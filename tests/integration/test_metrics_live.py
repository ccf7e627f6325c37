"""The gateway's /metrics, scraped from a real gateway process: the database state says
``none`` when no database is configured (not "down"), the process and build are described,
every alert transition is counted (those made by people through the API too), and unresolved
alerts carry their severity."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from simulators.load import publish_all
from tests.ingest import store_env
from tests.servers import GatewayProcess, Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.integration

ADMIN_KEY = secrets.token_urlsafe(32)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
DB_STATES = ("none", "unknown", "up", "down", "credentials_refused")


@pytest.fixture
def gateway_without_database(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url,
                             env={"HOMECARE_API_KEY": ADMIN_KEY})
    gateway.start()
    try:
        gateway.wait_connected()
        yield gateway
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()


def _wait(gateway: GatewayProcess, what: str, done: Callable[[dict[str, float]], bool],
          timeout: float = 30.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        metrics = gateway.metrics()
        if done(metrics):
            return metrics
        assert time.monotonic() < deadline, (
            f"{what}: not seen in {timeout} s\n"
            + "\n".join(f"{k} {v}" for k, v in sorted(metrics.items()) if "homecare_" in k))
        time.sleep(0.1)


def _publish(broker: Mosquitto, messages: list[tuple[str, dict[str, object]]]) -> None:
    async def run() -> None:
        async with asyncio.timeout(30):
            await publish_all(broker.url, [(t, json.dumps(b).encode()) for t, b in messages])

    asyncio.run(run())


def _state(metrics: dict[str, float]) -> str:
    on = [s for s in DB_STATES if metrics.get(f'homecare_db_state{{state="{s}"}}') == 1]
    assert len(on) == 1, {k: v for k, v in metrics.items() if "homecare_db" in k}
    return on[0]


def test_without_a_database_its_state_is_none_and_the_process_is_described(
        gateway_without_database: GatewayProcess) -> None:
    metrics = gateway_without_database.metrics()
    assert _state(metrics) == "none"
    assert not [k for k in metrics if k.startswith("homecare_db_up")], (
        "no database: not reported as down")
    assert metrics["process_resident_memory_bytes"] > 0
    assert metrics["process_cpu_seconds_total"] > 0
    assert metrics["process_open_fds"] > 0
    assert metrics["process_start_time_seconds"] > 0
    [build] = [k for k in metrics if k.startswith("homecare_build_info")]
    assert f'version="{version("homecare-gateway")}"' in build
    assert metrics[build] == 1


def test_with_a_database_its_state_follows_the_writes(
        mosquitto: Mosquitto, victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url,
                             env=store_env(victoria_metrics))
    gateway.start()
    try:
        gateway.wait_connected()
        assert _state(gateway.metrics()) in ("unknown", "up")
        _publish(mosquitto, [("homecare/v1/site-m/bed-0001/infrared/ir-0001/telemetry",
                              {"ts": int(time.time() * 1000), "seq": 1, "presence": True,
                               "motion": 2, "people": 1, "zone": "bed"})])
        metrics = _wait(gateway, "db up", lambda m: m.get("homecare_db_up") == 1)
        assert _state(metrics) == "up"
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()


def test_every_alert_transition_is_counted_and_open_alerts_carry_their_severity(
        mosquitto: Mosquitto, gateway_without_database: GatewayProcess) -> None:
    gateway = gateway_without_database
    now = int(time.time() * 1000)
    _publish(mosquitto, [("homecare/v1/site-m/bed-0002/button/btn-0002/event",
                          {"ts": now, "seq": 1, "event": "press"})])
    labels = 'severity="critical",status="{}",type="emergency_button"'
    opened = _wait(gateway, "the call open", lambda m: m.get(
        f"homecare_alerts_open{{{labels.format('open')}}}") == 1)
    assert opened['homecare_alert_changes_total{action="opened"}'] == 1

    alerts = httpx.get(f"{gateway.url}/api/v1/alerts", headers=ADMIN, timeout=10).json()
    [call] = alerts["items"]
    acked = httpx.post(f"{gateway.url}/api/v1/alerts/{call['id']}/acknowledge", headers=ADMIN,
                       json={"note": "on the phone"}, timeout=10)
    assert acked.status_code == 200, acked.text
    metrics = _wait(gateway, "the acknowledgement", lambda m: m.get(
        'homecare_alert_changes_total{action="acknowledged"}') == 1)
    assert metrics[f"homecare_alerts_open{{{labels.format('acknowledged')}}}"] == 1
    assert metrics.get(f"homecare_alerts_open{{{labels.format('open')}}}", 0) == 0

    resolved = httpx.post(f"{gateway.url}/api/v1/alerts/{call['id']}/resolve", headers=ADMIN,
                          json={"note": "pressed by mistake", "outcome": "false_alarm"}, timeout=10)
    assert resolved.status_code == 200, resolved.text
    metrics = _wait(gateway, "the resolution", lambda m: m.get(
        'homecare_alert_changes_total{action="resolved"}') == 1)
    assert sum(v for k, v in metrics.items() if k.startswith("homecare_alerts_open{")) == 0
    assert metrics['homecare_alert_changes_total{action="opened"}'] == 1
