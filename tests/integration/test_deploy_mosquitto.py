"""The production broker config (deploy/mosquitto/) on the real Debian mosquitto.

Only what cannot work in a test is rewritten: the listener (a free loopback port), the file
paths (a temp dir) and ``user root``; authentication, the ACL, persistence and the queue
limits are the committed ones. The shipped ACL is the one ``homecare acl`` writes for
deploy/registry.example.toml (its users below); the password file is made by Debian's
``mosquitto_passwd``, or by ``homecare acl`` itself.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices import Registry
from homecare.acl import write_broker_files
from tests.servers import Mosquitto, require_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "mosquitto"
PASSWORDS = {"gateway": "gw-secret", "gateway-urgent": "gw-urgent-secret",
             "btn-0001": "dev1-secret", "btn-0002": "dev2-secret"}
"""Users of the shipped ACL (deploy/registry.example.toml): btn-0001 is the button of
site-01/bed-0001, btn-0002 of site-01/bed-0002."""
OWN = "homecare/v1/site-01/bed-0001/button/btn-0001/event"
OTHER = "homecare/v1/site-01/bed-0002/button/btn-0002/event"
TIMEOUT = 10.0


def deployed_config(server: Mosquitto, *, generated: bool = False) -> Path:
    """deploy/mosquitto/mosquitto.conf with test ports and paths; asserts what it rewrites.

    The password file is made with ``mosquitto_passwd`` from :data:`PASSWORDS`, or (with
    ``generated``) by ``homecare acl`` for the example registry: then :data:`PASSWORDS` is
    filled from the credentials it wrote."""
    text = (DEPLOY / "mosquitto.conf").read_text()
    acl = shutil.copy(DEPLOY / "acl", server.workdir / "acl")
    passwd = server.workdir / "passwd"
    if generated:
        done = write_broker_files(Registry.load(ROOT / "deploy" / "registry.example.toml"),
                                  server.workdir / "homecare-acl")
        assert done.acl.read_text() == Path(acl).read_text()
        shutil.copy(done.passwd, passwd)
        for user in PASSWORDS:
            PASSWORDS[user] = json.loads((done.credentials / f"{user}.json").read_text())[
                "password"]
    else:
        binary = require_binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
        for i, (user, password) in enumerate(PASSWORDS.items()):
            flags = ["-b", "-c"] if i == 0 else ["-b"]
            subprocess.run([binary, *flags, str(passwd), user, password], check=True,
                           capture_output=True, timeout=30)
    rewrites = {
        r"^listener 1883$": f"listener {server.port} {server.host}",
        r"^persistence_location .*$": f"persistence_location {server.data_dir}/",
        r"^password_file .*$": f"password_file {passwd}",
        r"^acl_file .*$": f"acl_file {acl}",
    }
    for pattern, replacement in rewrites.items():
        text, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert n == 1, f"deploy config has no single line matching {pattern}"
    path = server.workdir / "mosquitto.conf"
    path.write_text(text + "\nuser root\n")
    return path


@pytest.fixture(params=["mosquitto_passwd", "homecare acl"])
def broker(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "broker")
    monkeypatch.setattr(f"{__name__}.PASSWORDS", dict(PASSWORDS))
    server.config_file = deployed_config(server, generated=request.param == "homecare acl")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Peer:
    """A blocking MQTT v5 client for tests: connect result, acks and messages as values."""

    server: Mosquitto
    username: str | None
    client_id: str = ""
    session_expiry: int = 0
    connack: queue.Queue[mqtt.ReasonCode] = field(default_factory=queue.Queue)
    pubacks: dict[int, mqtt.ReasonCode] = field(default_factory=dict)
    subacks: queue.Queue[list[mqtt.ReasonCode]] = field(default_factory=queue.Queue)
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self._acked = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        if self.username is not None:
            self.client.username_pw_set(self.username, PASSWORDS.get(self.username, "wrong"))
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(list(rcs))
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_publish = self._on_publish

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    rc: mqtt.ReasonCode, props: Properties) -> None:
        with self._acked:
            self.pubacks[mid] = rc
            self._acked.notify_all()

    def connect(self) -> mqtt.ReasonCode:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        self.client.connect(self.server.host, self.server.port, keepalive=30,
                            clean_start=self.session_expiry == 0, properties=props)
        self.client.loop_start()
        return self.connack.get(timeout=TIMEOUT)

    def subscribe(self, topic: str) -> mqtt.ReasonCode:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=TIMEOUT)[0]

    def publish(self, topic: str, payload: bytes) -> mqtt.ReasonCode:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self.pubacks, timeout=TIMEOUT)
            return self.pubacks[info.mid]

    def receive(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(broker: Mosquitto) -> Iterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


def connected(peers: list[Peer], broker: Mosquitto, username: str, *, client_id: str,
              session_expiry: int = 0) -> Peer:
    peer = Peer(broker, username, client_id=client_id, session_expiry=session_expiry)
    peers.append(peer)
    rc = peer.connect()
    assert not rc.is_failure, f"{username} refused: {rc}"
    return peer


def test_anonymous_and_wrong_password_are_refused(broker: Mosquitto, peers: list[Peer]) -> None:
    anonymous = Peer(broker, None)
    peers.append(anonymous)
    assert anonymous.connect().is_failure
    stranger = Peer(broker, "intruder")
    peers.append(stranger)
    assert stranger.connect().is_failure


def test_device_publishes_only_its_own_topics_and_gateway_receives_them(
    broker: Mosquitto, peers: list[Peer]
) -> None:
    gateway = connected(peers, broker, "gateway", client_id="gw")
    assert not gateway.subscribe("homecare/v1/#").is_failure
    device = connected(peers, broker, "btn-0001", client_id="btn-0001")

    denied = device.publish(OTHER, b'{"ts":1,"seq":1,"event":"press"}')
    assert denied.is_failure, "a device wrote another device's topic"
    assert device.publish(OWN, b'{"ts":2,"seq":2,"event":"press"}') == 0
    status = OWN.rsplit("/", 1)[0] + "/status"
    assert device.publish(status, b'{"ts":3,"seq":3,"state":"online"}') == 0

    # Messages of one publisher arrive in order: the denied one would have come first.
    first, second = gateway.receive(), gateway.receive()
    assert (first.topic, first.payload) == (OWN, b'{"ts":2,"seq":2,"event":"press"}')
    assert second.topic == status


def test_device_subscribed_to_all_device_topics_receives_nothing(
    broker: Mosquitto, peers: list[Peer]
) -> None:
    """Mosquitto's ACL file grants the SUBSCRIBE and checks read access per delivered message,
    so the proof is that nothing is delivered, not the SUBACK."""
    gateway = connected(peers, broker, "gateway", client_id="gw")
    assert not gateway.subscribe("homecare/v1/#").is_failure
    snoop = connected(peers, broker, "btn-0002", client_id="btn-0002")
    snoop.subscribe("homecare/v1/#")
    snoop.subscribe(OWN)
    device = connected(peers, broker, "btn-0001", client_id="btn-0001")

    assert device.publish(OWN, b'{"ts":1,"seq":1,"event":"press"}') == 0
    own = OTHER.rsplit("/", 1)[0] + "/status"
    # Mosquitto queues a PUBLISH to every subscriber before it sends the PUBACK on the same
    # connection (seen 200 times in 200), so had the snoop been allowed to read its own
    # message, it would be in its queue once its PUBACK is in.
    assert snoop.publish(own, b'{"ts":1,"seq":1,"state":"online"}') == 0
    assert [gateway.receive().topic for _ in range(2)] == [OWN, own]
    assert snoop.messages.empty()


def test_device_cannot_write_under_its_own_id_on_another_bed_site_or_kind(
    broker: Mosquitto, peers: list[Peer]
) -> None:
    """The old pattern rule (``homecare/v1/+/+/+/%u/+``) let a button raise calls for any bed
    under its own id (issue #17); the shipped ACL binds it to its site, bed and kind."""
    gateway = connected(peers, broker, "gateway", client_id="gw")
    assert not gateway.subscribe("homecare/v1/#").is_failure
    device = connected(peers, broker, "btn-0001", client_id="btn-0001")
    press = b'{"ts":1,"seq":1,"event":"press"}'
    for topic in ("homecare/v1/site-01/bed-0002/button/btn-0001/event",
                  "homecare/v1/site-01/bed-0001/fall/btn-0001/event",
                  "homecare/v1/site-02/bed-0001/button/btn-0001/event",
                  "homecare/v1/site-01/bed-0002/button/btn-0001/status"):
        assert device.publish(topic, press).is_failure, f"the broker took {topic}"
    assert device.publish(OWN, press) == 0
    assert gateway.receive().topic == OWN  # in order: a refused one would have come first
    assert gateway.messages.empty()


def test_device_cannot_write_outside_the_contract(broker: Mosquitto, peers: list[Peer]) -> None:
    device = connected(peers, broker, "btn-0001", client_id="btn-0001")
    assert device.publish("homecare/v2/site-01/bed-0001/button/btn-0001/event", b"{}").is_failure
    assert device.publish("$SYS/broker/uptime", b"0").is_failure
    assert device.publish("other/btn-0001", b"{}").is_failure


def queue_for_offline_gateway(broker: Mosquitto, peers: list[Peer], payload: bytes) -> None:
    gateway = connected(peers, broker, "gateway", client_id="gw-persistent",
                        session_expiry=3600)
    assert not gateway.subscribe("homecare/v1/#").is_failure
    gateway.close()
    device = connected(peers, broker, "btn-0001", client_id="btn-0001")
    assert device.publish(OWN, payload) == 0
    device.close()


def assert_gateway_gets(broker: Mosquitto, peers: list[Peer], payload: bytes) -> None:
    gateway = Peer(broker, "gateway", client_id="gw-persistent", session_expiry=3600)
    peers.append(gateway)
    assert not gateway.connect().is_failure
    message = gateway.receive()
    assert (message.topic, message.payload, message.qos) == (OWN, payload, 1)


def test_queued_message_for_offline_gateway_survives_broker_restart(
    broker: Mosquitto, peers: list[Peer]
) -> None:
    queue_for_offline_gateway(broker, peers, b'{"ts":5,"seq":5,"event":"press"}')
    broker.restart()
    assert_gateway_gets(broker, peers, b'{"ts":5,"seq":5,"event":"press"}')


@pytest.mark.slow
def test_queued_message_survives_broker_crash_after_autosave(
    broker: Mosquitto, peers: list[Peer]
) -> None:
    """A crash loses at most the last autosave interval; after it, the message is on disk."""
    interval = int(re.search(r"^autosave_interval (\d+)$",
                             (DEPLOY / "mosquitto.conf").read_text(), re.MULTILINE)[1])
    assert interval <= 60
    db = broker.data_dir / "mosquitto.db"
    before = db.stat().st_mtime_ns if db.exists() else 0
    queue_for_offline_gateway(broker, peers, b'{"ts":6,"seq":6,"event":"press"}')
    deadline = time.monotonic() + 2 * interval + 5
    while not (db.exists() and db.stat().st_mtime_ns > before):
        assert time.monotonic() < deadline, "no autosave within twice the interval"
        time.sleep(0.1)
    broker.kill()
    broker.start()
    assert_gateway_gets(broker, peers, b'{"ts":6,"seq":6,"event":"press"}')


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["5", "3.1.1"])
def test_a_press_reaches_a_gateway_holding_hundreds_of_unacknowledged_messages(
    broker: Mosquitto, peers: list[Peer], protocol: int
) -> None:
    """While a bulk store cannot commit, the gateway holds its batch unacknowledged and keeps
    reading only for emergency calls. The broker must keep sending: a per-client in-flight
    limit (mosquitto's ``max_inflight_messages``, which binds MQTT 3.1.1 clients; MQTT 5
    clients set their own Receive Maximum) would hold the press behind the unacknowledged
    telemetry."""
    received: queue.Queue[str] = queue.Queue()
    gateway = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-held-{protocol}",
                          protocol=protocol, manual_ack=True, reconnect_on_failure=False)
    gateway.username_pw_set("gateway", PASSWORDS["gateway"])
    gateway.on_message = lambda c, u, msg: received.put(msg.topic)  # never acknowledged
    subscribed: queue.Queue[bool] = queue.Queue()
    gateway.on_subscribe = lambda c, u, mid, rcs, p: subscribed.put(True)
    if protocol == mqtt.MQTTv5:
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = 65535  # as the gateway sends it
        gateway.connect(broker.host, broker.port, keepalive=30, properties=props)
    else:
        gateway.connect(broker.host, broker.port, keepalive=30)
    gateway.loop_start()
    try:
        gateway.subscribe("homecare/v1/#", qos=1)
        assert subscribed.get(timeout=TIMEOUT)
        device = connected(peers, broker, "btn-0001", client_id="btn-0001")
        status = OWN.rsplit("/", 1)[0] + "/status"
        held = 500
        for seq in range(held):
            assert device.publish(status, b'{"ts":%d,"seq":%d,"state":"online"}'
                                  % (seq + 1, seq + 1)) == 0
        assert device.publish(OWN, b'{"ts":999,"seq":999,"event":"press"}') == 0
        topics = [received.get(timeout=TIMEOUT) for _ in range(held + 1)]
        assert topics[-1] == OWN
    finally:
        gateway.disconnect()
        gateway.loop_stop()
