"""The broker's TLS listener in deploy/mosquitto/mosquitto.conf, enabled as its comment says
(the "#" removed before each directive of the block) on the real Debian mosquitto, with a
throwaway CA and broker certificate made by openssl for the test.

The gateway connects over ``mqtts://`` trusting that CA (``mqtt_tls_ca_file``) and takes in a
device's press sent over TLS; a client that does not trust the CA, and plain MQTT on the TLS
port, get nowhere; the password file and the ACL hold on the TLS listener as on the plain one."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.integration.test_deploy_mosquitto import OTHER, OWN, PASSWORDS, Peer, deployed_config
from tests.servers import GatewayProcess, Mosquitto, free_port, require_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^# --- TLS listener -+\n(.*?)^# --- end of the TLS listener", re.S | re.M)
CERT_PATHS = {"cafile": "ca.crt", "certfile": "broker.crt", "keyfile": "broker.key"}


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA and a broker certificate for 127.0.0.1 signed by it (EC P-256, two days)."""
    openssl = require_binary("openssl", "/usr/bin/openssl")
    directory.mkdir(parents=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True,
                       timeout=60)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=homecare test CA")
    run("req", *key, "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=127.0.0.1")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "broker.crt", "-days", "2", "-extfile", "san.ext")
    return {name: directory / file for name, file in CERT_PATHS.items()}


class TlsBroker(Mosquitto):
    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.tls_port = free_port()
        self.ca_file = Path()

    @property
    def tls_url(self) -> str:
        return f"mqtts://{self.host}:{self.tls_port}"


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsBroker]:
    server = TlsBroker(tmp_path / "broker")
    monkeypatch.setattr("tests.integration.test_deploy_mosquitto.PASSWORDS", dict(PASSWORDS))
    config = deployed_config(server)
    certs = make_certificates(tmp_path / "certs")
    text = config.read_text()
    block = BLOCK.search(text)
    assert block, "mosquitto.conf has no marked TLS listener block"
    enabled = re.sub(r"^#(?=[a-z])", "", block.group(1), flags=re.M)
    assert "#listener" not in enabled
    assert re.search(r"^listener 8883$", enabled, re.M), enabled
    enabled = re.sub(r"^listener 8883$", f"listener {server.tls_port} {server.host}", enabled,
                     flags=re.M)
    for directive, path in certs.items():
        enabled, n = re.subn(rf"^{directive} /mosquitto/config/certs/{CERT_PATHS[directive]}$",
                             f"{directive} {path}", enabled, flags=re.M)
        assert n == 1, f"the TLS block has no {directive} at the documented path"
    assert "require_certificate true" not in enabled.replace("#require_certificate", "")
    config.write_text(text[:block.start(1)] + enabled + text[block.end(1):])
    server.config_file = config
    server.ca_file = certs["cafile"]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def tls_peer(broker: TlsBroker, username: str, *, ca_file: Path | None) -> Peer:
    peer = Peer(broker, username)
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    peer.client.tls_set_context(context)
    broker_port = broker.port
    broker.port = broker.tls_port  # Peer connects to server.port
    try:
        assert peer.connect() == 0
    finally:
        broker.port = broker_port
    return peer


def test_the_gateway_takes_in_a_press_sent_over_tls(broker: TlsBroker, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=broker.tls_url, env={
        "HOMECARE_MQTT_USERNAME": "gateway", "HOMECARE_MQTT_PASSWORD": PASSWORDS["gateway"],
        # The shipped broker keeps a session per user: the urgent session has its own.
        "HOMECARE_MQTT_URGENT_USERNAME": "gateway-urgent",
        "HOMECARE_MQTT_URGENT_PASSWORD": PASSWORDS["gateway-urgent"],
        "HOMECARE_MQTT_TLS_CA_FILE": str(broker.ca_file)})
    gateway.start()
    try:
        gateway.wait_connected()
        device = tls_peer(broker, "btn-0001", ca_file=broker.ca_file)
        try:
            press = {"ts": time.time_ns() // 1_000_000, "seq": 1, "event": "press"}
            assert device.publish(OWN, json.dumps(press).encode()) == 0
            refused = device.publish(OTHER, json.dumps({**press, "seq": 2}).encode())
            assert refused == 0x87, "the ACL holds on the TLS listener"
        finally:
            device.client.disconnect()
            device.client.loop_stop()
        deadline = time.monotonic() + 30
        while gateway.metric("homecare_messages_accepted_total") < 1:
            assert time.monotonic() < deadline, gateway.log_tail()
            time.sleep(0.1)
        assert gateway.metric('homecare_alerts_open{severity="critical",status="open",'
                              'type="emergency_button"}') == 1
        assert gateway.metric("homecare_messages_received_total") == 1, "not the other bed's"
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()


def test_a_client_that_does_not_trust_the_ca_gets_nowhere(broker: TlsBroker) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set_context(ssl.create_default_context())  # the system's CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect(broker.host, broker.tls_port)


def test_plain_mqtt_on_the_tls_port_gets_nowhere(broker: TlsBroker) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("gateway", PASSWORDS["gateway"])
    connacks: list[object] = []
    client.on_connect = lambda c, u, f, rc, p: connacks.append(rc)
    try:
        client.connect(broker.host, broker.tls_port)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not connacks:
            client.loop(timeout=0.2)
    except OSError:
        pass
    assert connacks == [], "the TLS listener answered a plain CONNECT"
