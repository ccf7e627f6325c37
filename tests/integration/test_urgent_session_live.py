"""The urgent session, live against real mosquitto: an emergency call published behind a
backlog of the main session opens its alert before the backlog is read, is stored once and
opens one alert; with either session held back the other one still raises it, and the urgent
session's copy is acknowledged only once its alert is on disk.

No test times anything: the proof is a position (how much of the backlog was stored when the
alert opened) and counts (alerts, stored points, which session was first).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from alerts.errors import StorageFault, StoreUnavailable
from alerts.store import AlertStore
from gateway.config import Settings
from gateway.ingest.connection import MqttSource
from gateway.ingest.message import RawMessage
from gateway.runtime import Gateway
from tests.ingest import start_gateway
from tests.inprocess import publisher, until
from tests.servers import Mosquitto, free_port, wait_for
from tests.urgent import alerts_of, press, press_behind_backlog, sessions_connected, stored

pytestmark = [pytest.mark.integration]

SITE = "site-urgent"
BACKLOG = 30_000
"""Telemetry queued for the main session before the press: thirty times the inbox below, so
without a session of its own the press is read only after most of it is processed."""
INBOX = "1000"


@pytest.mark.slow
def test_a_press_behind_a_backlog_opens_its_alert_before_the_backlog_is_read(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, mosquitto.url, None,
                            HOMECARE_INBOX_MAX_MESSAGES=INBOX)
    db = gateway.data_dir / "alerts.sqlite3"
    spool = gateway.data_dir / "spool"
    try:
        wait_for(lambda: sessions_connected(gateway.metrics()), "both sessions connected")
        press_behind_backlog(gateway, mosquitto.url, SITE, "bed-call", BACKLOG)
        assert gateway.proc is not None
        wait_for(lambda: alerts_of(db, SITE, "bed-call"), "the press's alert opens",
                 timeout=120)
        gateway.proc.send_signal(signal.SIGSTOP)  # hold the position while it is counted
        try:
            at_alert = stored(spool)["infrared/ir-backlog"]
        finally:
            gateway.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: gateway.metric("homecare_messages_received_total") >= BACKLOG + 1,
                 "the backlog is read", timeout=120)
        first = {s: gateway.metric(f'homecare_urgent_calls_first_total{{session="{s}"}}')
                 for s in ("main", "urgent")}
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()
    counts = stored(spool)
    assert at_alert < BACKLOG // 2, (
        f"{at_alert} of the {BACKLOG} backlog messages were stored when the press's alert "
        "opened: it waited behind the backlog")
    assert counts["infrared/ir-backlog"] == BACKLOG
    assert counts["button_event/btn-bed-call"] == 1, "the press is stored once"
    calls = alerts_of(db, SITE, "bed-call")
    assert [(a["type"], a["severity"]) for a in calls] == [("emergency_button", "critical")]
    assert first == {"main": 0, "urgent": 1}


# --- in-process: one session held back ------------------------------------------------------------

def _settings(tmp_path: Path, mosquitto: Mosquitto, **more: object) -> Settings:
    return Settings(mqtt_url=mosquitto.url, data_dir=tmp_path / "data",
                    mqtt_client_id=f"gw-urgent-{tmp_path.name}"[:50],
                    api_addr=f"127.0.0.1:{free_port()}", **more)  # type: ignore[arg-type]


def _hold(source: MqttSource) -> asyncio.Event:
    """Keep ``source`` from connecting until the returned event is set (a session down)."""
    release = asyncio.Event()
    run = source.run

    async def held(**kwargs: Any) -> None:
        await release.wait()
        await run(**kwargs)

    source.run = held  # type: ignore[method-assign]
    return release


@asynccontextmanager
async def _running(gateway: Gateway, *connected: MqttSource) -> AsyncIterator[Gateway]:
    task = asyncio.create_task(gateway.run(), name="gateway")
    try:
        async with asyncio.timeout(30):
            await gateway.started.wait()
            for source in connected:
                await source.connected.wait()
        yield gateway
        assert not task.done(), "the gateway ended by itself"
    finally:
        gateway.stop()
        async with asyncio.timeout(60):
            await task


async def _create_sessions(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Run the gateway once, so that the broker keeps both sessions and queues for them."""
    gateway = Gateway(_settings(tmp_path, mosquitto), serve_http=False)
    assert gateway.urgent_source is not None
    async with _running(gateway, gateway.source, gateway.urgent_source):
        pass


def _calls(gateway: Gateway, bed: str) -> int:
    found, _ = gateway.alert_store.list_alerts(bed=bed, type="emergency_button")
    return len(found)


def _metric(gateway: Gateway, name: str, **labels: str) -> float:
    return gateway.metrics.registry.get_sample_value(name, labels) or 0.0


def _first(gateway: Gateway, session: str) -> float:
    return _metric(gateway, "homecare_urgent_calls_first_total", session=session)


async def test_with_the_main_session_down_the_urgent_one_raises_the_call_and_it_is_stored_later(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    await _create_sessions(tmp_path, mosquitto)
    gateway = Gateway(_settings(tmp_path, mosquitto), serve_http=False)
    assert gateway.urgent_source is not None
    release = _hold(gateway.source)
    spool = tmp_path / "data" / "spool"
    async with _running(gateway, gateway.urgent_source), publisher(mosquitto.url) as devices:
        devices.publish_nowait(*press(SITE, "bed-a"))
        await devices.drain()
        await until(lambda: _calls(gateway, "bed-a") == 1, "the urgent session raises it")
        assert not gateway.source.connected.is_set()
        assert gateway.pipeline.pending_messages == 0, "nothing to store from the urgent copy"
        release.set()  # the main session is back: its copy is stored, opens nothing more
        await until(lambda: _metric(gateway, "homecare_messages_received_total") >= 1,
                    "the main session's copy is taken in")
    assert stored(spool)["button_event/btn-bed-a"] == 1
    assert len(alerts_of(tmp_path / "data" / "alerts.sqlite3", SITE, "bed-a")) == 1
    assert (_first(gateway, "urgent"), _first(gateway, "main")) == (1, 0)


async def test_with_the_urgent_session_down_the_main_one_raises_the_call_once(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    await _create_sessions(tmp_path, mosquitto)
    gateway = Gateway(_settings(tmp_path, mosquitto), serve_http=False)
    assert gateway.urgent_source is not None
    release = _hold(gateway.urgent_source)
    spool = tmp_path / "data" / "spool"
    async with _running(gateway, gateway.source), publisher(mosquitto.url) as devices:
        devices.publish_nowait(*press(SITE, "bed-b"))
        await devices.drain()
        await until(lambda: _calls(gateway, "bed-b") == 1, "the main session raises it")
        acked: list[RawMessage] = []
        ack = gateway.urgent_source.ack
        with mock.patch.object(gateway.urgent_source, "ack",
                               side_effect=lambda raws: (acked.extend(raws), ack(raws))):
            release.set()  # the urgent session's queued copy comes: a second copy, no call
            await until(lambda: acked, "the urgent copy is acknowledged")
        assert _calls(gateway, "bed-b") == 1
    assert stored(spool)["button_event/btn-bed-b"] == 1
    assert (_first(gateway, "urgent"), _first(gateway, "main")) == (0, 1)


async def test_the_urgent_copy_is_acknowledged_only_once_its_alert_is_on_disk(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    await _create_sessions(tmp_path, mosquitto)
    gateway = Gateway(_settings(tmp_path, mosquitto), serve_http=False)
    assert gateway.urgent_source is not None
    release = _hold(gateway.source)  # only the urgent copy comes
    acked: list[RawMessage] = []
    disk_full = StoreUnavailable("alerts write failed (disk_full)", store="alerts",
                                 fault=StorageFault("disk_full", True))
    async with _running(gateway, gateway.urgent_source), publisher(mosquitto.url) as devices:
        ack: Callable[[list[RawMessage]], None] = gateway.urgent_source.ack
        with mock.patch.object(gateway.urgent_source, "ack",
                               side_effect=lambda raws: (acked.extend(raws), ack(raws))):
            with mock.patch.object(AlertStore, "write", side_effect=disk_full) as write:
                devices.publish_nowait(*press(SITE, "bed-c"))
                await devices.drain()
                await until(lambda: write.call_count >= 2, "the alert commit is retried")
                assert acked == [], "not acknowledged while its alert is not on disk"
            await until(lambda: _calls(gateway, "bed-c") == 1, "the alert is written")
            await until(lambda: acked, "then the urgent copy is acknowledged")
        release.set()
    assert [r.urgent_session for r in acked] == [True]
    assert len(alerts_of(tmp_path / "data" / "alerts.sqlite3", SITE, "bed-c")) == 1


async def test_switched_off_there_is_no_urgent_session(mosquitto: Mosquitto,
                                                        tmp_path: Path) -> None:
    gateway = Gateway(_settings(tmp_path, mosquitto, mqtt_urgent_session=False),
                      serve_http=False)
    assert gateway.urgent_source is None
    shared = Gateway(_settings(tmp_path / "shared", mosquitto,
                               mqtt_topic="$share/gateways/homecare/v1/#"), serve_http=False)
    assert shared.urgent_source is None, "a shared subscription gets none"
    shared._close_stores()
    async with _running(gateway, gateway.source), publisher(mosquitto.url) as devices:
        devices.publish_nowait(*press(SITE, "bed-d"))
        await devices.drain()
        await until(lambda: _calls(gateway, "bed-d") == 1, "the main session raises it")
    assert _first(gateway, "main") == 1
