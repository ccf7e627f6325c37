"""Ingest end to end: real mosquitto, real gateway process, real time-series servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.load import pregenerate
from tests.ingest import describe_difference, publish, start_gateway, wait_ingested, wait_stored
from tests.oracle import expected_points
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration

N_MESSAGES = 50_000


@pytest.fixture(scope="module")
def traffic() -> list[tuple[str, bytes]]:
    return pregenerate(beds=200, n_messages=N_MESSAGES, seed=7)


@pytest.mark.parametrize("store_fixture", ["victoria_metrics", "influxd"])
def test_every_published_point_is_stored_exactly_once(
        store_fixture: str, traffic: list[tuple[str, bytes]], mosquitto: Mosquitto,
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store = request.getfixturevalue(store_fixture)
    gateway = start_gateway(tmp_path, mosquitto.url, store)
    try:
        publish(mosquitto.url, traffic)
        wait_ingested(gateway, N_MESSAGES)
        expected = expected_points(traffic)
        stored = wait_stored(store, expected)
        # VictoriaMetrics here keeps exact duplicates (no deduplication), so equality also
        # proves that the gateway wrote no point twice.
        assert stored == expected, describe_difference(expected, stored)
        m = gateway.metrics()
        assert m["homecare_messages_received_total"] == N_MESSAGES
        assert m.get('homecare_messages_rejected_total{reason="invalid_payload"}', 0) == 0
    finally:
        gateway.stop()
    assert gateway.returncode == 0, "SIGTERM is a clean shutdown, not a kill"
    log = gateway.log_tail()
    assert log.count("gateway.stopped") == 1
    # A clean stop logs no asyncio error (an MQTT acknowledgement nobody awaited was logged as
    # "Future exception was never retrieved" at every stop).
    assert "never retrieved" not in log, log
    assert " ERROR " not in log, log
