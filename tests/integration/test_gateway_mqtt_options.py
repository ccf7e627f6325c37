"""The gateway's MQTT options against real mosquitto: 3.1.1 and 5, passwords, TLS, refusals."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.servers import GatewayProcess, Mosquitto, require_binary

pytestmark = pytest.mark.integration

PRESS = b'{"ts":1763884800000,"seq":41,"event":"press"}'
TOPIC = "homecare/v1/site-01/bed-0007/button/btn-0007/event"


def _publish(server: Mosquitto, *, username: str | None = None, password: str | None = None,
             tls_ca: Path | None = None, port: int | None = None) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="device-btn-0007")
    if username:
        client.username_pw_set(username, password)
    if tls_ca:
        client.tls_set(ca_certs=str(tls_ca))
    client.connect(server.host, port or server.port)
    client.loop_start()
    try:
        client.publish(TOPIC, PRESS, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def _wait_received(gateway: GatewayProcess, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.metric("homecare_messages_accepted_total") >= count:
            return
        time.sleep(0.05)
    raise TimeoutError(gateway.log_tail())


def _broker_with_passwords(workdir: Path, users: dict[str, str]) -> Mosquitto:
    """A started mosquitto that refuses anonymous clients and knows ``users``."""
    workdir.mkdir()
    passwd = workdir / "passwd"
    binary = require_binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    for i, (user, password) in enumerate(users.items()):
        flags = ["-b", "-c"] if i == 0 else ["-b"]
        subprocess.run([binary, *flags, str(passwd), user, password], check=True,
                       capture_output=True)
    broker = Mosquitto(workdir, extra_config=f"password_file {passwd}\n")
    config = broker.write_config()
    config.write_text(config.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    broker.config_file = config
    broker.start()
    return broker


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_gateway_authenticates_with_username_and_password(protocol: str, tmp_path: Path) -> None:
    broker = _broker_with_passwords(tmp_path / "mq",
                                    {"gateway": "gw-secret", "btn-0007": "dev-secret"})
    gateway = GatewayProcess(tmp_path / "gw", mqtt_url=f"mqtt://gateway:gw-secret@{broker.host}:"
                             f"{broker.port}", env={"HOMECARE_MQTT_PROTOCOL": protocol})
    try:
        gateway.start()
        gateway.wait_connected()
        _publish(broker, username="btn-0007", password="dev-secret")
        _wait_received(gateway, 1)
    finally:
        gateway.stop()
        broker.stop()
    assert gateway.returncode == 0


def test_refused_credentials_keep_the_gateway_alive_and_not_ready(tmp_path: Path) -> None:
    broker = _broker_with_passwords(tmp_path / "mq", {"gateway": "gw-secret"})
    gateway = GatewayProcess(tmp_path / "gw", mqtt_url=f"mqtt://gateway:wrong@{broker.host}:"
                             f"{broker.port}")
    try:
        gateway.start()
        deadline = time.monotonic() + 20
        while "mqtt.unavailable" not in gateway.log_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "refused" in gateway.log_tail()
        ready = httpx.get(f"{gateway.url}/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["checks"]["mqtt_connected"] is False
        assert httpx.get(f"{gateway.url}/healthz", timeout=5).status_code == 200
        assert gateway.running
    finally:
        gateway.stop()
        broker.stop()


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = require_binary("openssl")
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    steps = [
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=homecare-test-ca", "-keyout", str(ca_key), "-out", str(ca_crt)],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(csr)],
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt)],
    ]
    for step in steps:
        subprocess.run(step, check=True, capture_output=True)
    return ca_crt, crt, key


def test_gateway_connects_over_tls_and_verifies_the_broker(tmp_path: Path) -> None:
    workdir = tmp_path / "mq"
    workdir.mkdir()
    ca, crt, key = _certificates(workdir)
    broker = Mosquitto(workdir)
    broker.write_config()
    config = broker.workdir / "mosquitto.conf"
    config.write_text(config.read_text() + f"cafile {ca}\ncertfile {crt}\nkeyfile {key}\n")
    broker.config_file = config
    broker.start()
    gateway = GatewayProcess(tmp_path / "gw", mqtt_url=f"mqtts://{broker.host}:{broker.port}",
                             env={"HOMECARE_MQTT_TLS_CA_FILE": str(ca)})
    untrusting = GatewayProcess(tmp_path / "gw2", mqtt_url=f"mqtts://{broker.host}:{broker.port}")
    try:
        gateway.start()
        gateway.wait_connected()
        _publish(broker, tls_ca=ca)
        _wait_received(gateway, 1)
        # Without the CA the broker's certificate is not trusted: no connection, no crash.
        untrusting.start()
        deadline = time.monotonic() + 20
        while "mqtt.unavailable" not in untrusting.log_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "CERTIFICATE_VERIFY_FAILED" in untrusting.log_tail()
        assert untrusting.metric("homecare_mqtt_connected") == 0
    finally:
        untrusting.stop()
        gateway.stop()
        broker.stop()
