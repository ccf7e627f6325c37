"""Shared steps of the ingest tests: start a gateway against a real store, publish, verify."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

from simulators.load import publish_all
from tests.oracle import PointKey, influx_points, victoria_points
from tests.servers import GatewayProcess, Influxd, VictoriaMetrics, wait_for

MEASUREMENTS = ("infrared", "audio", "vitals", "button_event", "recording", "fall_event",
                "badge_event", "device_status")


HISTORY_CLOCK_WINDOW = {"HOMECARE_CLOCK_WINDOW_S": str(5 * 365 * 86_400)}
"""Simulated traffic starts at a fixed date in the past and the test stores keep it (100-year
retention): its device times are stored as sent, as the oracle expects."""


def store_env(store: Influxd | VictoriaMetrics) -> dict[str, str]:
    if isinstance(store, Influxd):
        store.create_database("homecare")
        return {"HOMECARE_INFLUX_URL": store.url, "HOMECARE_INFLUX_API": "v1",
                "HOMECARE_INFLUX_DB": "homecare", **HISTORY_CLOCK_WINDOW}
    return {"HOMECARE_INFLUX_URL": store.url, "HOMECARE_INFLUX_API": "v2",
            "HOMECARE_INFLUX_ORG": "test", "HOMECARE_INFLUX_BUCKET": "homecare",
            "HOMECARE_INFLUX_TOKEN": "test-token", **HISTORY_CLOCK_WINDOW}


def start_gateway(tmp_path: Path, mqtt_url: str, store: Influxd | VictoriaMetrics | None,
                  **env: str) -> GatewayProcess:
    all_env = store_env(store) if store is not None else {}
    all_env.update(env)
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mqtt_url, env=all_env)
    gateway.start()
    gateway.wait_connected()
    return gateway


def publish(url: str, messages: list[tuple[str, bytes]], *, timeout: float = 120.0) -> None:
    async def run() -> None:
        async with asyncio.timeout(timeout):
            await publish_all(url, messages)

    asyncio.run(run())


def drain_a_frozen_backlog(gateway: GatewayProcess, url: str, backlog: list[tuple[str, bytes]],
                           received: int) -> None:
    """Queue ``backlog`` at the broker while the gateway (having received ``received``) is
    frozen (SIGSTOP), let it go on, and return once it is taking the backlog in: a kill then
    finds batches in every state (received, spooled, written, acknowledged)."""
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGSTOP)
    publish(url, backlog)
    gateway.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: gateway.metric("homecare_messages_received_total") > received,
             "the gateway draining the backlog")


def wait_ingested(gateway: GatewayProcess, received: int, *, timeout: float = 120.0) -> None:
    """Until the gateway received ``received`` messages and wrote everything it spooled."""
    deadline = time.monotonic() + timeout
    m: dict[str, float] = {}
    while time.monotonic() < deadline:
        m = gateway.metrics()
        if (m.get("homecare_messages_received_total", 0) >= received
                and m.get("homecare_points_written_total", 0)
                >= m.get("homecare_points_spooled_total", 0)
                and m.get("homecare_inbox_depth", 0) == 0):
            return
        time.sleep(0.1)
    shown = {k: v for k, v in m.items() if k.startswith("homecare_") and "bucket" not in k}
    raise TimeoutError(f"gateway did not finish ingesting: {shown}")


def stored_points(store: Influxd | VictoriaMetrics) -> Counter[PointKey]:
    if isinstance(store, VictoriaMetrics):
        return victoria_points(store.export())
    rows = {m: store.query("homecare", f'SELECT * FROM "{m}" GROUP BY *') for m in MEASUREMENTS}
    return influx_points(rows)


def wait_stored(store: Influxd | VictoriaMetrics, expected: Counter[PointKey], *,
                timeout: float = 30.0) -> Counter[PointKey]:
    """Poll the store until it holds at least every expected point (or the deadline passes)."""
    deadline = time.monotonic() + timeout
    while True:
        stored = stored_points(store)
        if not (expected - stored) or time.monotonic() >= deadline:
            return stored
        time.sleep(0.2)


def describe_difference(expected: Counter[PointKey], stored: Counter[PointKey]) -> str:
    missing = expected - stored
    extra = stored - expected
    sample = list(missing.items())[:3] + list(extra.items())[:3]
    return (f"missing {sum(missing.values())} points, {sum(extra.values())} extra/duplicate; "
            f"e.g. {sample}")
