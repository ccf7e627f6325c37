"""Slow neighbours never delay the emergency path, and a database that refuses the gateway's
credentials says so at once.

A loopback HTTP server stands in for InfluxDB v2 (:mod:`tests.slowdb`): it takes writes at once
and holds every query until released, so the tests check the order of events (the alert is
committed while the history queries are still held), never wall-clock figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alerts.model import AlertChange
from gateway.config import Settings
from gateway.runtime import Gateway
from tests.inprocess import API_KEY, press, publisher, running, until
from tests.servers import Mosquitto, free_port
from tests.slowdb import SlowDatabase

pytestmark = [pytest.mark.integration]

SITE = "site-slow"
BED = "bed-chart"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
DAY_MS = 86_400_000


@pytest.fixture
def slow_db() -> Iterator[SlowDatabase]:
    with SlowDatabase() as db:
        yield db


def _gateway(tmp_path: Path, mosquitto: Mosquitto, db: SlowDatabase, **settings: object
             ) -> Gateway:
    return Gateway(Settings(
        mqtt_url=mosquitto.url, data_dir=tmp_path / "data",
        mqtt_client_id=f"gw-slow-{tmp_path.name}"[:60], api_addr=f"127.0.0.1:{free_port()}",
        api_key=API_KEY, influx_url=db.url, influx_api="v2", influx_token="token",
        influx_org="homecare", influx_bucket="homecare", **settings))  # type: ignore[arg-type]


def _series_path() -> str:
    """A chart two days back: beyond the 24 h in memory, so it is a database query."""
    now = time.time_ns() // 1_000_000
    return (f"/api/v1/beds/{SITE}/{BED}/series?metric=heart_rate"
            f"&since={now - 2 * DAY_MS}&until={now - DAY_MS}")


async def _bed_known(gateway: Gateway, http: httpx.AsyncClient) -> None:
    """Make the chart's bed known (a device message) before asking for its history."""
    async with publisher(gateway.settings.mqtt_url, "test-bed-device") as device:
        device.publish_nowait(
            f"homecare/v1/{SITE}/{BED}/fall/fs-{BED}/telemetry",
            b'{"ts": %d, "seq": 1, "in_bed": true, "heart_rate": 70}' % (time.time() * 1000))
        await device.drain()
    status = 0
    while status != 200:
        status = (await http.get(f"/api/v1/beds/{SITE}/{BED}", headers=AUTH)).status_code
        await asyncio.sleep(0.02)


async def test_history_requests_against_a_slow_database_never_delay_an_emergency_call(
        tmp_path: Path, mosquitto: Mosquitto, slow_db: SlowDatabase) -> None:
    concurrent = 8  # more than the default thread pool's 6 threads on two cores
    gateway = _gateway(tmp_path, mosquitto, slow_db, history_max_concurrent=concurrent,
                       history_timeout_s=300)
    committed: list[tuple[str, int, int]] = []
    async with running(gateway), httpx.AsyncClient(
            base_url=f"http://{gateway.settings.api_addr}", timeout=600) as http:
        await _bed_known(gateway, http)
        charts = [asyncio.create_task(http.get(_series_path(), headers=AUTH))
                  for _ in range(concurrent)]
        await until(lambda: slow_db.held == concurrent, "every history query at the database")

        def on_commit(changes: list[AlertChange]) -> None:
            for change in changes:
                if change.action == "opened" and change.alert.bed == "bed-call":
                    committed.append((change.alert.id, slow_db.held,
                                      sum(chart.done() for chart in charts)))

        gateway.alerts.add_listener(on_commit)
        async with publisher(mosquitto.url) as devices:
            devices.publish_nowait(*press(SITE, "bed-call"))
            await until(lambda: committed or all(chart.done() for chart in charts),
                        "the emergency call is committed")
        assert committed, "the history queries ended before the emergency call was committed"
        _, held, charts_done = committed[0]
        assert held == concurrent, "committed while every history query was held"
        assert charts_done == 0, "committed before any history request was answered"
        slow_db.release()
        answers = await asyncio.gather(*charts)
        assert [a.status_code for a in answers] == [200] * concurrent
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.json()


async def test_a_history_query_the_database_does_not_answer_times_out_with_a_clear_error(
        tmp_path: Path, mosquitto: Mosquitto, slow_db: SlowDatabase) -> None:
    gateway = _gateway(tmp_path, mosquitto, slow_db, history_timeout_s=0.5)
    async with running(gateway), httpx.AsyncClient(
            base_url=f"http://{gateway.settings.api_addr}", timeout=60) as http:
        await _bed_known(gateway, http)
        answer = await http.get(_series_path(), headers=AUTH)
        assert answer.status_code == 504
        body = answer.json()
        assert body["error"] == "history_timeout"
        assert "did not answer within 0.5 s" in body["detail"]
        metrics = (await http.get("/metrics")).text
        assert 'homecare_history_queries_total{outcome="timeout"} 1.0' in metrics


async def test_history_queries_beyond_the_bound_are_refused_at_once(
        tmp_path: Path, mosquitto: Mosquitto, slow_db: SlowDatabase) -> None:
    gateway = _gateway(tmp_path, mosquitto, slow_db, history_max_concurrent=1,
                       history_max_waiting=1, history_timeout_s=300)
    async with running(gateway), httpx.AsyncClient(
            base_url=f"http://{gateway.settings.api_addr}", timeout=600) as http:
        await _bed_known(gateway, http)
        running_chart = asyncio.create_task(http.get(_series_path(), headers=AUTH))
        await until(lambda: slow_db.held == 1, "the first query at the database")
        waiting_chart = asyncio.create_task(http.get(_series_path(), headers=AUTH))
        await until(lambda: b"homecare_history_in_flight 2.0" in gateway.metrics.render(),
                    "the second query waits for the first")
        refused = await http.get(_series_path(), headers=AUTH)
        assert refused.status_code == 503
        assert refused.json()["error"] == "history_busy"
        assert refused.headers["Retry-After"] == "5"
        assert not running_chart.done()
        assert not waiting_chart.done()
        slow_db.release()
        assert (await running_chart).status_code == 200
        assert (await waiting_chart).status_code == 200


@pytest.mark.parametrize("status", [401, 403])
async def test_a_database_refusing_the_token_is_a_configuration_error_said_at_once(
        tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture,
        status: int) -> None:
    caplog.set_level(logging.INFO)
    with SlowDatabase(write_status=status) as db:
        gateway = _gateway(tmp_path, mosquitto, db, influx_auth_retry_s=0.2)
        async with running(gateway), httpx.AsyncClient(
                base_url=f"http://{gateway.settings.api_addr}", timeout=60) as http:
            await _bed_known(gateway, http)
            await until(lambda: db.writes >= 3, "the refused write is retried (slowly)")
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            reason = ready.json()["reasons"]["tsdb_writable"]
            assert f"HTTP {status}" in reason
            assert "credentials" in reason
            assert "HOMECARE_INFLUX_TOKEN" in reason
            metrics = (await http.get("/metrics")).text
            assert "homecare_db_credentials_refused 1.0" in metrics
            assert gateway.spool.pending_points > 0, "the points stay in the spool"
            db.write_status = 204  # the operator fixed the token
            await until(lambda: gateway.spool.pending_points == 0, "the spool is replayed")
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.json()
            metrics = (await http.get("/metrics")).text
            assert "homecare_db_credentials_refused 0.0" in metrics
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("tsdb.credentials_refused") for m in messages) == 1
    resumed = [m for m in messages if m.startswith("tsdb.resumed")]
    assert len(resumed) == 1
    assert "cause=credentials_refused" in resumed[0]
