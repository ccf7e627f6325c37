"""Issue #13, 4, live: a whole site going dark, and the gateway losing its broker, as alerts.

A real ``homecare gateway`` process and a real mosquitto; every home device is its own MQTT
client with a last will, as the simulators' devices are. The intervals are short settings
(a status promised every 2 s, so a device is offline after 6 s; the detectors judging every
second; a resolved condition closed at once), so each test takes seconds:

* a site's devices all stop (their link cut: the broker announces them offline; or silent
  with their connections up) -> one ``site_offline`` alert naming the beds, within the
  devices' limit, and no device alert; closed when they come back;
* the broker stops -> a ``gateway_health`` alert once it has been down for the configured
  time, no site or device alert meanwhile (the gateway hears nobody: that says nothing about
  the devices), closed when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.broker import BrokerUrl
from devices.mqttwire import Will
from simulators.mqtt import Publisher
from tests.servers import GatewayProcess, Mosquitto

pytestmark = [pytest.mark.integration]

KEY = secrets.token_urlsafe(32)
HEARTBEAT_S = 2
FACTOR = 3.0
LIMIT_MS = round(HEARTBEAT_S * FACTOR * 1000)
"""A device's limit: silent this long, it is offline (the 'heartbeat limit')."""
EVALUATE_S = 1
DARK, LIT = "site-dark", "site-lit"
BEDS = {DARK: [f"bed-d{n}" for n in range(4)], LIT: [f"bed-l{n}" for n in range(3)]}


def _now() -> int:
    return time.time_ns() // 1_000_000


def _registry(path: Path) -> Path:
    lines = ["[defaults]", f"heartbeat_s = {HEARTBEAT_S}", f"offline_factor = {FACTOR}",
             'timezone = "Asia/Shanghai"']
    for site, beds in BEDS.items():
        for bed in beds:
            lines += [f"[sites.{site}.beds.{bed}.devices.ir-{bed}]", 'kind = "infrared"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Device:
    """An infrared sensor: its own connection with a last will, a status every second and
    a reading every half second, until stopped."""

    def __init__(self, url: str, site: str, bed: str, heartbeat_s: float) -> None:
        self.url, self.site, self.bed, self.heartbeat_s = url, site, bed, heartbeat_s
        self.device = f"ir-{bed}"
        self.base = f"homecare/v1/{site}/{bed}/infrared/{self.device}"
        self.seq = 0
        self.client: Publisher | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        will = Will(f"{self.base}/status", json.dumps(
            {"ts": _now(), "seq": 0, "state": "offline"}).encode(), qos=1, retain=True)
        self.client = Publisher(BrokerUrl.parse(self.url), client_id=self.device, will=will,
                                keepalive=30)
        await self.client.connect()
        self.task = asyncio.create_task(self._speak(), name=f"device[{self.device}]")

    async def _speak(self) -> None:
        assert self.client is not None
        while True:
            self.seq += 1
            await self.client.publish(f"{self.base}/status", json.dumps(
                {"ts": _now(), "seq": self.seq, "state": "online",
                 "heartbeat_s": self.heartbeat_s}).encode(), retain=True)
            for _ in range(2):
                self.seq += 1
                await self.client.publish(f"{self.base}/telemetry", json.dumps(
                    {"ts": _now(), "seq": self.seq, "presence": True, "motion": 1,
                     "zone": "room"}).encode())
                await asyncio.sleep(0.5)

    async def fall_silent(self) -> None:
        """Stops speaking; the connection stays up (no will)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def lose_link(self) -> None:
        """Stops speaking and drops the connection without DISCONNECT: the broker publishes
        the will at once."""
        await self.fall_silent()
        assert self.client is not None
        self.client.abort()
        await self.client.close()

    async def stop(self) -> None:
        await self.fall_silent()
        if self.client is not None:
            await self.client.disconnect()
            await self.client.close()


@contextlib.asynccontextmanager
async def devices(url: str, heartbeat_s: float = HEARTBEAT_S
                  ) -> AsyncIterator[dict[str, list[Device]]]:
    sites = {site: [Device(url, site, bed, heartbeat_s) for bed in beds]
             for site, beds in BEDS.items()}
    try:
        for fleet in sites.values():
            for device in fleet:
                await device.start()
        yield sites
    finally:
        for fleet in sites.values():
            for device in fleet:
                with contextlib.suppress(Exception):
                    await device.stop()


@pytest.fixture
def gateway(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[GatewayProcess]:
    server = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env={
        "HOMECARE_API_KEY": KEY, "HOMECARE_REGISTRY_FILE": str(_registry(tmp_path / "r.toml")),
        "HOMECARE_DETECTOR_EVALUATE_INTERVAL_S": str(EVALUATE_S),
        "HOMECARE_ALERT_CLEAR_GRACE_S": "0", "HOMECARE_GATEWAY_HEALTH_ALERT_AFTER_S": "2"})
    server.start()
    try:
        server.wait_connected()
        yield server
    finally:
        server.stop()


async def _alerts(gateway: GatewayProcess, **params: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10,
                                 headers={"Authorization": f"Bearer {KEY}"}) as client:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
            body = (await client.get("/api/v1/alerts", params=query)).raise_for_status().json()
            items += body["items"]
            cursor = body["next_cursor"]
            if cursor is None:
                return items


async def _until(what: str, check: Callable[[], Any], within_s: float = 60.0) -> Any:
    """Poll the async ``check`` every 0.2 s until it returns something true."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} not seen within {within_s} s")


async def _heard_everyone(gateway: GatewayProcess) -> None:
    async def heard() -> bool:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10,
                                     headers={"Authorization": f"Bearer {KEY}"}) as client:
            body = (await client.get("/api/v1/beds", params={"limit": 100})).json()
        online = {b["bed"] for b in body["items"]
                  if any(d.get("state") == "online" for d in b["devices"])}
        return online >= {bed for beds in BEDS.values() for bed in beds}

    await _until("every device online", heard)


async def _pass_gateway_time(ms: int) -> None:
    """Let ``ms`` of the gateway's (wall) clock pass, so that what would have been raised by
    then has been."""
    await asyncio.sleep(ms / 1000)


@pytest.mark.parametrize("how", ["link_cut", "silent"])
async def test_a_site_whose_devices_all_stop_is_one_site_alert_closed_when_they_return(
        gateway: GatewayProcess, mosquitto: Mosquitto, how: str) -> None:
    async with devices(mosquitto.url) as sites:
        await _heard_everyone(gateway)
        for device in sites[DARK]:
            await (device.lose_link() if how == "link_cut" else device.fall_silent())

        async def site_alert() -> list[dict[str, Any]]:
            return [a for a in await _alerts(gateway, site=DARK) if a["type"] == "site_offline"]

        [alert] = await _until("the site alert", site_alert)
        assert (alert["site"], alert["bed"], alert["severity"]) == (DARK, "", "high")
        assert alert["evidence"]["beds"] == BEDS[DARK]
        assert alert["evidence"]["silent"] == alert["evidence"]["devices"] == 4
        if how == "link_cut":
            assert alert["evidence"]["last_wills"] == 4
        # Within the devices' limit of their last sign of life, give or take the detectors'
        # evaluation round (the gateway's own clock, in the alert).
        silent_for = alert["opened_at"] - alert["evidence"]["started_at"]
        assert silent_for <= LIMIT_MS + 2 * EVALUATE_S * 1000, silent_for
        print(f"site alert {how}: opened {silent_for} ms after the last sign of life "
              f"(limit {LIMIT_MS} ms)")

        # Long after every device passed its limit: still the one alert, no device alerts.
        await _pass_gateway_time(2 * LIMIT_MS)
        assert [(a["type"], a["site"], a["bed"]) for a in await _alerts(gateway)] == [
            ("site_offline", DARK, "")]

        for device in sites[DARK]:
            if how == "link_cut":
                await device.start()
            else:
                device.task = asyncio.create_task(device._speak())

        async def closed() -> bool:
            [again] = await site_alert()
            return bool(again["status"] == "resolved")

        await _until("the site alert closed", closed)
        await _pass_gateway_time(2 * LIMIT_MS)
        everything = await _alerts(gateway)
        assert [(a["type"], a["status"], a["resolved_by"]) for a in everything] == [
            ("site_offline", "resolved", "system")]


async def test_a_lost_broker_is_a_gateway_alert_after_its_time_and_no_site_goes_dark(
        gateway: GatewayProcess, mosquitto: Mosquitto) -> None:
    # The devices promise a status every 4 s here (a limit of 12 s): once the broker is back
    # they reconnect after up to 5 s (their client's back-off), and the gateway judges them
    # from its own reconnection.
    limit_ms = round(4 * FACTOR * 1000)
    async with devices(mosquitto.url, heartbeat_s=4) as sites:
        await _heard_everyone(gateway)
        assert sites
        await asyncio.to_thread(mosquitto.stop)

        async def readyz() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
                return dict((await client.get("/readyz")).json())

        async def broker_lost() -> bool:
            return (await readyz())["checks"]["mqtt_connected"] is False

        await _until("/readyz saying the broker is lost", broker_lost)

        async def health() -> list[dict[str, Any]]:
            return [a for a in await _alerts(gateway) if a["type"] == "gateway_health"]

        [alert] = await _until("the gateway health alert", health)
        assert (alert["site"], alert["bed"], alert["severity"]) == ("_gateway", "", "high")
        assert alert["incident"].startswith("_gateway//gateway_health/mqtt_connected#")
        assert alert["opened_at"] - alert["evidence"]["failing_since"] >= 2000
        assert "broker" in alert["summary"]
        # Every device is past its limit by the gateway's clock, but it hears nobody.
        await _pass_gateway_time(limit_ms + 3000)
        assert [a["type"] for a in await _alerts(gateway)] == ["gateway_health"]

        await asyncio.to_thread(mosquitto.start)

        async def closed() -> bool:
            [again] = await health()
            return bool(again["status"] == "resolved")

        await _until("the gateway health alert closed", closed)
        await _heard_everyone(gateway)
        await _pass_gateway_time(limit_ms + 3000)
        assert [(a["type"], a["status"]) for a in await _alerts(gateway)] == [
            ("gateway_health", "resolved")]


async def test_made_up_sites_gone_dark_are_one_summary_and_their_calls_their_own(
        gateway: GatewayProcess, mosquitto: Mosquitto) -> None:
    # Issue #17, the tester's shape, bounded: 20 made-up sites of three made-up beds each
    # send one status per device, then nothing; the listed site-dark loses its link. Expect
    # one site_offline of its own for the listed site, one summary listing the made-up sites
    # (not 20 high alerts), and a made-up site's button press its own critical alert.
    made_up = [f"fake-{n:02d}" for n in range(20)]
    async with devices(mosquitto.url) as sites, Publisher(
            BrokerUrl.parse(mosquitto.url), client_id="made-up-fleet") as fleet:
        await _heard_everyone(gateway)
        for site in made_up:
            for b in range(3):
                await fleet.publish(f"homecare/v1/{site}/xbed-{b}/infrared/xir-{b}/status",
                                    json.dumps({"ts": _now(), "seq": 1, "state": "online",
                                                "heartbeat_s": HEARTBEAT_S}).encode())
        await fleet.publish("homecare/v1/fake-07/newbed/button/newbtn/event", json.dumps(
            {"ts": _now(), "seq": 1, "event": "press"}).encode())
        for device in sites[DARK]:
            await device.lose_link()

        async def site_alerts() -> list[dict[str, Any]]:
            found = [a for a in await _alerts(gateway) if a["type"] == "site_offline"]
            return found if len(found) >= 2 else []

        await _until("the site alerts", site_alerts)
        await _pass_gateway_time(2 * LIMIT_MS)  # every made-up site has had its chance
        everything = await _alerts(gateway)
        dark = sorted((a["site"], a["bed"], a["severity"]) for a in everything
                      if a["type"] == "site_offline")
        assert dark == [("_unregistered", "", "high"), (DARK, "", "high")]
        [summary] = [a for a in everything if a["site"] == "_unregistered"
                     and a["type"] == "site_offline"]
        assert summary["evidence"]["members"] == made_up
        assert summary["summary"] == "site offline on 20 unregistered sites"
        assert [(a["site"], a["bed"], a["severity"]) for a in everything
                if a["type"] == "emergency_button"] == [("fake-07", "newbed", "critical")]
        assert not [a for a in everything if a["site"].startswith("fake-")
                    and a["type"] != "emergency_button"]
