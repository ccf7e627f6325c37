"""A registered device cannot take over the gateway's MQTT sessions (issue #17).

A compromised device with its own valid password connected to mosquitto under the gateway's
client id and ``<id>-urgent`` once a second: each connection kicked a gateway session off the
broker and, with a clean start, discarded its persistent session and the messages queued for
it (7 of 20 presses never stored, 2 calls reaching neither session). The shipped
deploy/mosquitto/mosquitto.conf now makes every user name the client id
(``use_username_as_clientid``), and the urgent session has a user of its own
(``mqtt_urgent_username``, written by ``homecare acl``).

Here: the shipped mosquitto.conf (only the port and file paths rewritten) with the files
``homecare acl`` writes for 20 beds and the attacker's, a real gateway with both sessions, the
attacker connecting under both of its client ids over and over while the 20 buttons press;
every press must be stored and alerted, and neither gateway session dropped.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices import Registry
from gateway.config import Settings
from gateway.ingest.subscriptions import SessionFilters
from gateway.ingest.urgentsession import urgent_filters
from gateway.runtime import Gateway
from homecare.acl import write_broker_files
from tests.inprocess import until
from tests.servers import GatewayProcess, Mosquitto, free_port
from tests.urgent import alerts_of, sessions_connected, stored

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
SITE = "site-01"
BEDS = [f"bed-{n:04d}" for n in range(1, 21)]
ATTACKER = "btn-0666"
TIMEOUT = 10.0
SETTLE_S = 30.0
"""How long the presses may take to arrive once the attack is over (they take milliseconds)."""


def registry_text() -> str:
    beds = [*BEDS, "bed-0666"]
    return "".join(f'[sites.{SITE}.beds.{bed}.devices.btn-{bed[4:]}]\nkind = "button"\n'
                   for bed in beds)


def shipped_config(server: Mosquitto, files: Path) -> Path:
    """deploy/mosquitto/mosquitto.conf with the test's port and paths, nothing else changed."""
    text = CONF.read_text()
    rewrites = {
        r"^listener 1883$": f"listener {server.port} {server.host}",
        r"^persistence_location .*$": f"persistence_location {server.data_dir}/",
        r"^password_file .*$": f"password_file {files / 'passwd'}",
        r"^acl_file .*$": f"acl_file {files / 'acl'}",
    }
    for pattern, replacement in rewrites.items():
        text, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert n == 1, f"mosquitto.conf has no single line matching {pattern}"
    path = server.workdir / "mosquitto.conf"
    path.write_text(text + "\nuser root\n")
    return path


def password(files: Path, user: str) -> str:
    return str(json.loads((files / "credentials" / f"{user}.json").read_text())["password"])


@pytest.fixture
def files(tmp_path: Path) -> Path:
    registry = tmp_path / "registry.toml"
    registry.write_text(registry_text())
    out = tmp_path / "broker-files"
    write_broker_files(Registry.load(registry), out)
    return out


@pytest.fixture
def broker(tmp_path: Path, files: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "mosquitto")
    server.config_file = shipped_config(server, files)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect(broker: Mosquitto, user: str, secret: str, *, client_id: str,
            clean_start: bool = True) -> mqtt.Client:
    """A connected MQTT 5 client (session expiry 0: a clean start discards a session)."""
    done = threading.Event()
    codes: list[mqtt.ReasonCode] = []

    def on_connect(c: mqtt.Client, u: object, f: object, rc: mqtt.ReasonCode,
                   p: object) -> None:
        codes.append(rc)
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    client.username_pw_set(user, secret)
    client.on_connect = on_connect
    client.connect(broker.host, broker.port, keepalive=30, clean_start=clean_start,
                   properties=Properties(PacketTypes.CONNECT))
    client.loop_start()
    assert done.wait(TIMEOUT), f"no CONNACK for {user} as {client_id}"
    assert not codes[0].is_failure, f"{user} as {client_id} refused: {codes[0]}"
    return client


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


class Takeover(threading.Thread):
    """The compromised device: connects under both of the gateway's client ids with a clean
    start, holds them a moment, lets go, again, until stopped."""

    def __init__(self, broker: Mosquitto, secret: str, client_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.broker, self.secret, self.client_ids = broker, secret, client_ids
        self.stopping = threading.Event()
        self.connections = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                held = [connect(self.broker, ATTACKER, self.secret, client_id=cid)
                        for cid in self.client_ids]
                self.connections += len(held)
                self.stopping.wait(0.3)
                for client in held:
                    close(client)
        except BaseException as exc:  # reported by the test
            self.error = exc


def press(broker: Mosquitto, files: Path, bed: str) -> None:
    """One press by the bed's own button, QoS 1, acknowledged by the broker."""
    device = f"btn-{bed[4:]}"
    client = connect(broker, device, password(files, device), client_id=device)
    try:
        payload = json.dumps({"ts": time.time_ns() // 1_000_000, "seq": 1,
                              "event": "press"}).encode()
        info = client.publish(f"homecare/v1/{SITE}/{bed}/button/{device}/event", payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {bed}'s press"
    finally:
        close(client)


def test_a_device_under_the_gateways_client_ids_neither_drops_its_sessions_nor_its_calls(
        broker: Mosquitto, files: Path, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=broker.url, env={
        "HOMECARE_MQTT_USERNAME": "gateway",
        "HOMECARE_MQTT_PASSWORD": password(files, "gateway"),
        "HOMECARE_MQTT_URGENT_USERNAME": "gateway-urgent",
        "HOMECARE_MQTT_URGENT_PASSWORD": password(files, "gateway-urgent"),
    })
    client_id = gateway.env["HOMECARE_MQTT_CLIENT_ID"]
    gateway.start()
    try:
        gateway.wait_connected()
        deadline = time.monotonic() + TIMEOUT
        while not sessions_connected(gateway.metrics()):
            assert time.monotonic() < deadline, f"urgent session down\n{gateway.log_tail()}"
            time.sleep(0.05)
        attack = Takeover(broker, password(files, ATTACKER), [client_id, f"{client_id}-urgent"])
        attack.start()
        try:
            for bed in BEDS:
                press(broker, files, bed)
                time.sleep(0.25)  # spread the presses over the attack, not an assertion
        finally:
            attack.stopping.set()
            attack.join(TIMEOUT)
        assert attack.error is None, f"the attacker failed: {attack.error!r}"
        assert attack.connections >= 2 * 10, "the attack ran for the presses' whole span"

        db = gateway.data_dir / "alerts.sqlite3"
        spool = gateway.data_dir / "spool"

        def missing() -> tuple[list[str], list[str]]:
            points = stored(spool)
            return ([bed for bed in BEDS if points[f"button_event/btn-{bed[4:]}"] < 1],
                    [bed for bed in BEDS if not any(a["type"] == "emergency_button"
                                                    for a in alerts_of(db, SITE, bed))])

        deadline = time.monotonic() + SETTLE_S
        while any(missing()) and time.monotonic() < deadline:
            time.sleep(0.1)
        not_stored, not_alerted = missing()
        log = gateway.log_path.read_text(errors="replace")
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()
    takeovers = len(re.findall(r"mqtt\.disconnected|mqtt\.server_disconnect", log))
    assert (len(not_stored), len(not_alerted), takeovers) == (0, 0, 0), (
        f"{len(not_stored)} of {len(BEDS)} presses never stored ({not_stored}), "
        f"{len(not_alerted)} never alerted ({not_alerted}); the gateway's sessions were "
        f"dropped {takeovers} times by {attack.connections} connections under their ids")
    assert len(re.findall(r"mqtt\.connected session=(main|urgent)", log)) == 2, (
        "each session connected once, and stayed")


def status(broker: Mosquitto, files: Path, bed: str, seq: int) -> None:
    """One status of the bed's button (not an urgent topic), QoS 1, acknowledged."""
    device = f"btn-{bed[4:]}"
    client = connect(broker, device, password(files, device), client_id=device)
    try:
        payload = json.dumps({"ts": time.time_ns() // 1_000_000, "seq": seq, "state": "online",
                              "battery": 80}).encode()
        info = client.publish(f"homecare/v1/{SITE}/{bed}/button/{device}/status", payload,
                              qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {bed}'s status"
    finally:
        close(client)


def test_two_sessions_under_one_user_lose_nothing_and_the_gateway_says_so(
        broker: Mosquitto, files: Path, tmp_path: Path) -> None:
    """Without ``mqtt_urgent_username`` (a gateway upgraded without re-running ``homecare
    acl``) both sessions connect as ``gateway``, which this broker makes one client id: the
    urgent session was handed the main session's queue, whose telemetry it acknowledged and
    nobody stored, and the two took over each other. The gateway warns at start; the urgent
    session connects only once the main one has subscribed, and stops as soon as it is handed
    a message it never subscribed to, or is taken over twice (resuming a session it has no
    record of is no sign: tests/integration/test_urgent_session_restore.py), unacknowledged,
    so the main session gets everything: every status stored,
    every press alerted (a fresh-clone run lost the first bed's status and press when the
    urgent session took the client id before the main one had subscribed, and acknowledged the
    press it alerted)."""
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=broker.url, env={
        "HOMECARE_MQTT_USERNAME": "gateway",
        "HOMECARE_MQTT_PASSWORD": password(files, "gateway"),
    })
    gateway.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while "mqtt.urgent_session_shares_user user=gateway" not in gateway.log_tail(200):
            assert time.monotonic() < deadline, f"no warning\n{gateway.log_tail()}"
            time.sleep(0.05)
        # From its first subscription on, the broker keeps what the main session subscribed
        # to; published before it, a status has no subscriber to be kept for.
        gateway.wait_connected()
        for n, bed in enumerate(BEDS):
            status(broker, files, bed, 10 + n)
            press(broker, files, bed)
            time.sleep(0.1)  # spread over the sessions' reconnections, not an assertion
        db = gateway.data_dir / "alerts.sqlite3"
        spool = gateway.data_dir / "spool"

        def missing() -> tuple[list[str], list[str], list[str]]:
            points = stored(spool)
            statuses = Counter(key.split("/", 1)[1] for key in points.elements()
                               if not key.startswith("button_event/"))
            return ([bed for bed in BEDS if statuses[f"btn-{bed[4:]}"] < 1],
                    [bed for bed in BEDS if points[f"button_event/btn-{bed[4:]}"] < 1],
                    [bed for bed in BEDS if not any(a["type"] == "emergency_button"
                                                    for a in alerts_of(db, SITE, bed))])

        deadline = time.monotonic() + SETTLE_S
        while any(missing()) and time.monotonic() < deadline:
            time.sleep(0.1)
        lost_status, lost_press, not_alerted = missing()
        log = gateway.log_path.read_text(errors="replace")
    finally:
        gateway.stop()
    assert (lost_status, lost_press, not_alerted) == ([], [], []), (
        f"statuses never stored {lost_status}, presses never stored {lost_press}, never "
        f"alerted {not_alerted}\n{log[-3000:]}")
    assert "mqtt.urgent_session_shared" in log, log[-3000:]


async def test_a_call_the_urgent_session_took_on_the_main_session_is_still_stored(
        broker: Mosquitto, files: Path, tmp_path: Path) -> None:
    """A gateway that ran before (its data directory knows both sessions) and now has both
    under one user on this broker: while the main session is down, the urgent session holds
    the one client id, takes a press, alerts it and acknowledges it, the only copy the broker
    had. Once it finds it held the main session (taken over, or handed telemetry), that copy
    is handed on to be stored: before, the call was alerted and never stored."""
    settings = Settings(mqtt_url=broker.url, data_dir=tmp_path / "data",
                        mqtt_client_id="gw-shared", mqtt_username="gateway",
                        mqtt_password=password(files, "gateway"),
                        api_addr=f"127.0.0.1:{free_port()}")  # type: ignore[arg-type]
    for client_id, topics in (("gw-shared", ["homecare/v1/#"]),
                              ("gw-shared-urgent", urgent_filters("homecare/v1/#"))):
        SessionFilters(settings.data_dir, client_id).record(topics)  # an earlier run's
    gateway = Gateway(settings, serve_http=False)
    urgent = gateway.urgent_source
    assert urgent is not None
    release = asyncio.Event()
    run_main = gateway.source.run

    async def main_later(**kwargs: Any) -> None:
        await release.wait()
        await run_main(**kwargs)

    gateway.source.run = main_later  # type: ignore[method-assign]
    task = asyncio.create_task(gateway.run(), name="gateway")
    spool = settings.data_dir / "spool"
    try:
        async with asyncio.timeout(TIMEOUT):
            await urgent.connected.wait()
        await asyncio.to_thread(press, broker, files, BEDS[0])
        await until(lambda: gateway.alert_store.list_alerts(bed=BEDS[0])[0]
                    and not gateway._urgent_unacked, "alerted and acknowledged", TIMEOUT)
        release.set()  # the main session comes back under the same client id
        for n in range(200):
            if urgent.shared:
                break
            await asyncio.to_thread(status, broker, files, BEDS[1], 10 + n)
            await asyncio.sleep(0.05)
        assert urgent.shared, "the urgent session never found it held the main session"
        await until(lambda: stored(spool)["button_event/btn-0001"], "the press is stored",
                    SETTLE_S)
        found, _ = gateway.alert_store.list_alerts(bed=BEDS[0], type="emergency_button")
    finally:
        gateway.stop()
        async with asyncio.timeout(60):
            await task
    assert stored(spool)["button_event/btn-0001"] == 1, "stored once"
    assert len(found) == 1, "alerted once"
