"""Ingest under failure: database outage, broker restart, gateway SIGKILL, hostile traffic.

Each test proves from the stores themselves that nothing was lost or duplicated.
"""

from __future__ import annotations

import random
import signal
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from devices import Codec, Rejected
from simulators.load import pregenerate
from tests.ingest import (
    describe_difference,
    drain_a_frozen_backlog,
    publish,
    start_gateway,
    wait_ingested,
    wait_stored,
)
from tests.oracle import expected_points
from tests.servers import GatewayProcess, Influxd, Mosquitto, VictoriaMetrics, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]



def test_database_outage_is_spooled_and_replayed_without_loss(
        mosquitto: Mosquitto, victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    traffic = pregenerate(beds=100, n_messages=20_000, seed=11)
    first, second = traffic[:8_000], traffic[8_000:]
    gateway = start_gateway(tmp_path, mosquitto.url, victoria_metrics)
    try:
        publish(mosquitto.url, first)
        wait_ingested(gateway, len(first))
        victoria_metrics.stop()
        publish(mosquitto.url, second)
        wait_for(lambda: gateway.metric("homecare_messages_received_total") >= len(traffic),
                  "gateway received everything while the database was down")
        wait_for(lambda: gateway.metric("homecare_spool_pending_points") > 0,
                  "points waiting in the spool")
        assert gateway.metric('homecare_write_errors_total{kind="retryable"}') >= 1
        assert gateway.metric("homecare_db_up") == 0
        victoria_metrics.start()
        wait_ingested(gateway, len(traffic))
        wait_for(lambda: gateway.metric("homecare_spool_pending_points") == 0,
                  "spool drained")
        expected = expected_points(traffic)
        stored = wait_stored(victoria_metrics, expected)
        assert stored == expected, describe_difference(expected, stored)
        assert gateway.metric("homecare_points_replayed_total") > 0
        assert gateway.metric("homecare_db_up") == 1
        assert gateway.metric("homecare_points_dropped_total") == 0
    finally:
        gateway.stop()
    log = gateway.log_tail(200)
    assert log.count("tsdb.outage") == 1, "an outage is logged once, not per retry"
    assert "tsdb.resumed" in log


def test_broker_restart_mid_run_loses_and_duplicates_nothing(
        mosquitto: Mosquitto, victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    traffic = pregenerate(beds=100, n_messages=30_000, seed=12)
    first, second = traffic[:15_000], traffic[15_000:]
    gateway = start_gateway(tmp_path, mosquitto.url, victoria_metrics)
    try:
        assert gateway.proc is not None
        # Freeze the gateway so that at the restart the broker holds a queued backlog and
        # messages delivered but not yet acknowledged.
        gateway.proc.send_signal(signal.SIGSTOP)
        publish(mosquitto.url, first)
        mosquitto.restart()
        gateway.proc.send_signal(signal.SIGCONT)
        publish(mosquitto.url, second)
        wait_ingested(gateway, len(traffic))
        expected = expected_points(traffic)
        stored = wait_stored(victoria_metrics, expected)
        # No deduplication in this VictoriaMetrics: equality means nothing was written twice,
        # although the broker redelivered every message left unacknowledged at the restart.
        assert stored == expected, describe_difference(expected, stored)
        assert gateway.metric("homecare_mqtt_connected") == 1
    finally:
        gateway.stop()
    assert "mqtt.connected" in gateway.log_tail(200)


@pytest.mark.parametrize("store_kind", ["influxd", "victoria_metrics_dedup"])
def test_gateway_sigkill_mid_run_loses_nothing_and_stores_each_point_once(
        store_kind: str, mosquitto: Mosquitto, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    store: Influxd | VictoriaMetrics
    if store_kind == "influxd":
        store = request.getfixturevalue("influxd")
    else:
        # A kill between a database write and the spool cursor update replays that batch; the
        # write is idempotent per series and timestamp, which VictoriaMetrics honours only with
        # deduplication on (as a deployment must configure it).
        store = VictoriaMetrics(tmp_path / "vm", dedup_interval="1ms")
        store.start()
        request.addfinalizer(store.stop)
    traffic = pregenerate(beds=200, n_messages=40_000, seed=13)
    gateway = start_gateway(tmp_path, mosquitto.url, store)
    try:
        publish(mosquitto.url, traffic[:5_000])
        wait_ingested(gateway, 5_000)
        drain_a_frozen_backlog(gateway, mosquitto.url, traffic[5_000:], 5_000)
        gateway.kill()
        gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=gateway.env,
                                 port=gateway.port)
        gateway.start()
        gateway.wait_connected()
        wait_ingested(gateway, 1)
        expected = expected_points(traffic)
        stored = wait_stored(store, expected, timeout=60)
        assert stored == expected, describe_difference(expected, stored)
    finally:
        gateway.stop()


def _hostile_messages(n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` messages that all break the contract, of every kind of breakage."""
    rng = random.Random(seed)
    good_topic = "homecare/v1/site-01/bed-{:04d}/fall/fs-{:04d}/telemetry"
    makers = [
        lambda i: (good_topic.format(i % 50, i % 50), b"{not json"),
        lambda i: (good_topic.format(i % 50, i % 50), rng.randbytes(rng.randint(1, 300))),
        lambda i: (good_topic.format(i % 50, i % 50),
                   b'{"ts":"yesterday","seq":1,"in_bed":true}'),
        lambda i: (good_topic.format(i % 50, i % 50), b'{"ts":1,"seq":-4,"heart_rate":60}'),
        lambda i: (good_topic.format(i % 50, i % 50), b'[1,2,3]'),
        lambda i: (good_topic.format(i % 50, i % 50), b'{"ts":1,"seq":2}'),
        lambda i: (good_topic.format(i % 50, i % 50),
                   b'{"ts":1,"seq":1,"in_bed":true,"pad":"' + b"x" * 70_000 + b'"}'),
        lambda i: (f"homecare/v1/site-01/bed-{i:04d}/toaster/t-{i}/event", b'{"ts":1,"seq":1}'),
        lambda i: (f"homecare/v1/site-01/bed-{i:04d}/button/b-{i}/telemetry",
                   b'{"ts":1,"seq":1,"event":"press"}'),
        lambda i: (f"homecare/v1/site 01/bed-{i:04d}/button/b-{i}/event",
                   b'{"ts":1,"seq":1,"event":"press"}'),
        lambda i: (f"homecare/v1/site-01/bed-{i:04d}/button/b-{i}/event/extra",
                   b'{"ts":1,"seq":1,"event":"press"}'),
        lambda i: (f"homecare/v1/site-01/bed-{i:04d}/button/b-{i}/event",
                   b'{"ts":1,"seq":1,"event":"explode"}'),
        lambda i: (f"homecare/v1/site-01/bed-{i:04d}/badge/bg-{i}/event",
                   b'{"ts":1,"seq":1,"event":"check_in"}'),
    ]
    return [makers[i % len(makers)](i) for i in range(n)]


def test_hostile_traffic_is_dead_lettered_with_reasons_and_good_data_still_arrives(
        mosquitto: Mosquitto, victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    good = pregenerate(beds=50, n_messages=10_000, seed=14)
    bad = _hostile_messages(10_000, seed=14)
    codec = Codec()
    assert all(isinstance(codec.decode(t, p), Rejected) for t, p in bad)
    mixed = [m for pair in zip(good, bad, strict=True) for m in pair]
    gateway = start_gateway(tmp_path, mosquitto.url, victoria_metrics)
    try:
        publish(mosquitto.url, mixed)
        wait_ingested(gateway, len(mixed))
        expected = expected_points(good)
        stored = wait_stored(victoria_metrics, expected)
        assert stored == expected, describe_difference(expected, stored)
        rejected = sum(v for k, v in gateway.metrics().items()
                       if k.startswith("homecare_messages_rejected_total"))
        assert rejected == len(bad)
    finally:
        gateway.stop()
    with sqlite3.connect(gateway.data_dir / "deadletters.sqlite3") as db:
        rows = db.execute("SELECT topic, reason, detail, size FROM dead_letters").fetchall()
    assert len(rows) == len(bad)
    assert all(reason and detail for _, reason, detail, _ in rows)
    reasons = Counter(reason for _, reason, _, _ in rows)
    assert set(reasons) >= {"malformed_json", "invalid_payload", "empty_sample", "oversize",
                            "unknown_kind", "unknown_channel", "bad_topic"}
    assert max(size for *_, size in rows) > 64 * 1024
    assert Counter((t, s) for t, _, _, s in rows) == Counter(
        (t, len(p)) for t, p in bad)
