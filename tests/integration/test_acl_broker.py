"""``homecare acl`` on the real mosquitto: the broker started with the generated ACL and password
file refuses a device publishing on another bed's, site's or kind's topics (nothing reaches a
subscriber, nothing is retained), and passes its own topics."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties

from tests.servers import Mosquitto

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = """
[sites.site-01.beds.bed-0007.devices.btn-0007]
kind = "button"
[sites.site-01.beds.bed-0007.devices.badge-c01]
kind = "badge"
[sites.site-01.beds.bed-0099.devices.btn-0099]
kind = "button"
"""
HOME = "homecare/v1/site-01/bed-0007/button/btn-0007"
TIMEOUT = 10.0
PRESS = b'{"ts":1763884800000,"seq":1,"event":"press"}'


class Client:
    """A blocking MQTT 5 client: CONNACK, PUBACK reason codes and messages as values."""

    def __init__(self, broker: Mosquitto, username: str, password: str, *,
                 client_id: str | None = None, will: tuple[str, bytes] | None = None) -> None:
        self.connack: queue.Queue[mqtt.ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[bool] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.pubacks: dict[int, mqtt.ReasonCode] = {}
        self._acked = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or username,
                                  protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(True)
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        self.result = self.connack.get(timeout=TIMEOUT)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    rc: mqtt.ReasonCode, props: Properties) -> None:
        with self._acked:
            self.pubacks[mid] = rc
            self._acked.notify_all()

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self.subacks.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> mqtt.ReasonCode:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self.pubacks, timeout=TIMEOUT)
            return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    """The files of ``homecare acl`` (the installed command, as an operator runs it)."""
    registry = tmp_path / "registry.toml"
    registry.write_text(REGISTRY)
    out = tmp_path / "broker-files"
    done = subprocess.run(
        [sys.executable, "-m", "homecare.cli", "acl", "--registry", str(registry),
         "--out-dir", str(out)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for path in (out / "credentials").iterdir():
        assert json.loads(path.read_text())["password"] not in done.stderr + done.stdout
    return out


@pytest.fixture
def broker(tmp_path: Path, generated: Path) -> Iterator[Mosquitto]:
    # The deployment's queue limit: with the test broker's `max_queued_messages 0` (no limit),
    # Mosquitto 2.0.11 drops a client's connection at its next packet after refusing one of
    # its QoS 1 publishes (seen every time); with a limit it answers each refusal (PUBACK 0x87)
    # and the connection goes on, as deploy/mosquitto/mosquitto.conf has it.
    server = Mosquitto(tmp_path / "mosquitto", password_file=generated / "passwd",
                       acl_file=generated / "acl", extra_config="max_queued_messages 1000000")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def password(generated: Path, user: str) -> str:
    return str(json.loads((generated / "credentials" / f"{user}.json").read_text())["password"])


def connect(clients: list[Client], broker: Mosquitto, generated: Path, user: str, *,
            secret: str | None = None, client_id: str | None = None,
            will: tuple[str, bytes] | None = None) -> Client:
    client = Client(broker, user, secret if secret is not None else password(generated, user),
                    client_id=client_id, will=will)
    clients.append(client)
    return client


def test_a_device_writes_only_its_own_bed_and_kind(broker: Mosquitto, generated: Path,
                                                   clients: list[Client]) -> None:
    gateway = connect(clients, broker, generated, "gateway")
    assert not gateway.result.is_failure
    gateway.subscribe("homecare/v1/#")
    button = connect(clients, broker, generated, "btn-0007")
    assert not button.result.is_failure

    refused = {
        "another bed": "homecare/v1/site-01/bed-0099/button/btn-0007/event",
        "another kind": "homecare/v1/site-01/bed-0007/fall/btn-0007/event",
        "another bed and kind": "homecare/v1/site-01/bed-0099/fall/btn-0007/event",
        "another site": "homecare/v1/site-02/bed-0007/button/btn-0007/event",
        "another device": "homecare/v1/site-01/bed-0099/button/btn-0099/event",
        # Its own topics, but a channel the contract does not have (a device filling the
        # broker with retained messages on channels of its own making).
        "a channel of its own making": "homecare/v1/site-01/bed-0007/button/btn-0007/junk-1",
        "a level more": "homecare/v1/site-01/bed-0007/button/btn-0007/event/x",
    }
    for what, topic in refused.items():
        assert button.publish(topic, PRESS).is_failure, f"the broker took {what}"
    offline = b'{"ts":1763884800000,"seq":0,"state":"offline"}'
    assert button.publish("homecare/v1/site-01/bed-0099/button/btn-0007/status", offline,
                          retain=True).is_failure
    assert button.publish(f"{HOME}/event", PRESS) == 0
    assert button.publish(f"{HOME}/status", b'{"ts":1,"seq":2,"state":"online"}') == 0

    # One publisher's messages arrive in order: a refused one would have come first.
    first = gateway.messages.get(timeout=TIMEOUT)
    second = gateway.messages.get(timeout=TIMEOUT)
    assert [first.topic, second.topic] == [f"{HOME}/event", f"{HOME}/status"]
    assert gateway.messages.empty()

    # Nothing was retained on the other bed: a new subscriber there gets retained messages
    # first, so the first it gets is what that bed's own button says now.
    late = connect(clients, broker, generated, "gateway", client_id="gateway-late")
    late.subscribe("homecare/v1/site-01/bed-0099/#")
    other = connect(clients, broker, generated, "btn-0099")
    assert other.publish("homecare/v1/site-01/bed-0099/button/btn-0099/event", PRESS) == 0
    first = late.messages.get(timeout=TIMEOUT)
    assert (first.topic, first.retain) == (
        "homecare/v1/site-01/bed-0099/button/btn-0099/event", False)


def test_a_badge_writes_on_any_bed_of_its_site_only(broker: Mosquitto, generated: Path,
                                                    clients: list[Client]) -> None:
    gateway = connect(clients, broker, generated, "gateway")
    gateway.subscribe("homecare/v1/#")
    badge = connect(clients, broker, generated, "badge-c01")
    check_in = b'{"ts":1,"seq":1,"event":"check_in","caregiver":"c01","visit":"v1"}'
    assert badge.publish("homecare/v1/site-02/bed-0007/badge/badge-c01/event",
                         check_in).is_failure
    assert badge.publish("homecare/v1/site-01/bed-0007/button/badge-c01/event",
                         PRESS).is_failure
    assert badge.publish("homecare/v1/site-01/bed-0099/badge/badge-c01/event", check_in) == 0
    assert gateway.messages.get(timeout=TIMEOUT).topic == (
        "homecare/v1/site-01/bed-0099/badge/badge-c01/event")


def test_wrong_or_borrowed_passwords_and_devices_reading_are_refused(
        broker: Mosquitto, generated: Path, clients: list[Client]) -> None:
    assert connect(clients, broker, generated, "btn-0007", secret="guess").result.is_failure
    borrowed = password(generated, "btn-0099")
    assert connect(clients, broker, generated, "btn-0007", secret=borrowed).result.is_failure
    assert connect(clients, broker, generated, "btn-unlisted", secret=borrowed).result.is_failure

    snoop = connect(clients, broker, generated, "btn-0099")
    snoop.subscribe("homecare/v1/#")
    button = connect(clients, broker, generated, "btn-0007")
    assert button.publish(f"{HOME}/event", PRESS) == 0
    # Mosquitto queues a PUBLISH to every subscriber before the PUBACK on the same
    # connection: had the snoop been allowed to read its own message, it would be there.
    assert snoop.publish("homecare/v1/site-01/bed-0099/button/btn-0099/event", PRESS) == 0
    assert snoop.messages.empty()


def test_a_last_will_on_another_bed_never_reaches_the_gateway(
        broker: Mosquitto, generated: Path, clients: list[Client]) -> None:
    gateway = connect(clients, broker, generated, "gateway")
    gateway.subscribe("homecare/v1/#")
    will = ("homecare/v1/site-01/bed-0099/button/btn-0007/status",
            b'{"ts":1,"seq":0,"state":"offline"}')
    button = connect(clients, broker, generated, "btn-0007", will=will)
    assert not button.result.is_failure  # Mosquitto 2.0 checks a will when it would send it
    button.client.socket().close()  # type: ignore[union-attr]  # the connection drops
    # The same client id again: by its CONNACK the old connection is gone, and its will (had
    # the broker sent it) is in the gateway's queue ahead of anything published after.
    again = connect(clients, broker, generated, "btn-0007")
    assert not again.result.is_failure
    honest = connect(clients, broker, generated, "btn-0099")
    assert honest.publish("homecare/v1/site-01/bed-0099/button/btn-0099/event", PRESS) == 0
    assert gateway.messages.get(timeout=TIMEOUT).topic == (
        "homecare/v1/site-01/bed-0099/button/btn-0099/event")
    assert gateway.messages.empty()


def test_a_device_moved_in_the_registry_is_bound_to_its_new_bed_after_a_reload(
        broker: Mosquitto, generated: Path, clients: list[Client], tmp_path: Path) -> None:
    """Re-run ``homecare acl``, SIGHUP the broker: the connected device keeps its connection
    and its password, and from then on may write only its new bed's topics."""
    button = connect(clients, broker, generated, "btn-0007")
    old, new = HOME + "/event", "homecare/v1/site-01/bed-0100/button/btn-0007/event"
    assert not button.publish(old, PRESS).is_failure  # (no subscriber here: reason 0x10)
    assert button.publish(new, PRESS).is_failure
    registry = tmp_path / "registry.toml"
    registry.write_text(REGISTRY.replace("bed-0007.devices.btn-0007",
                                         "bed-0100.devices.btn-0007"))
    done = subprocess.run(
        [sys.executable, "-m", "homecare.cli", "acl", "--registry", str(registry),
         "--out-dir", str(generated)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "0 new" in done.stderr
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while button.publish(new, PRESS).is_failure:  # the reload takes effect when it does
        assert time.monotonic() < deadline, "the reloaded ACL never took effect"
        time.sleep(0.05)
    assert button.publish(old, PRESS).is_failure
    assert not button.result.is_failure
