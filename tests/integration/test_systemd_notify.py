"""The gateway process under ``Type=notify`` with a watchdog (deploy/systemd): the test binds
the unix datagram socket systemd would listen on and passes it as ``$NOTIFY_SOCKET``.

READY=1 comes once the gateway serves (its health answers when READY arrives), WATCHDOG=1
keeps coming while it runs, STOPPING=1 on SIGTERM, and it exits cleanly."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import GatewayProcess, Mosquitto

pytestmark = pytest.mark.integration


def next_notification(sock: socket.socket, gateway: GatewayProcess, *, not_: str = "",
                      timeout: float = 30.0) -> str:
    """The next datagram (skipping those equal to ``not_``)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no notification in {timeout} s\n{gateway.log_tail()}"
        sock.settimeout(min(remaining, 0.5))
        try:
            text = sock.recv(4096).decode()
        except TimeoutError:
            assert gateway.running, f"gateway exited\n{gateway.log_tail()}"
            continue
        if text != not_:
            return text


def test_the_gateway_tells_systemd_it_is_ready_alive_and_stopping(mosquitto: Mosquitto,
                                                                   tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url,
                                 env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "600000"})
        gateway.start()
        try:
            ready = next_notification(sock, gateway, not_="WATCHDOG=1")
            assert ready.startswith("READY=1\nSTATUS="), ready
            assert httpx.get(f"{gateway.url}/healthz", timeout=5).status_code == 200
            for _ in range(3):
                assert next_notification(sock, gateway) == "WATCHDOG=1"
            gateway.stop()
            assert next_notification(sock, gateway, not_="WATCHDOG=1") == "STOPPING=1"
        finally:
            gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()


def test_a_gateway_that_fails_before_serving_never_says_ready(mosquitto: Mosquitto,
                                                              tmp_path: Path) -> None:
    """Its HTTP port is taken: the start fails, systemd hears no READY (it restarts the
    service), and nothing is left unretrieved."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        sock.bind(str(path))
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOMECARE_")}
        env.update(NOTIFY_SOCKET=str(path), WATCHDOG_USEC="600000",
                   HOMECARE_MQTT_URL=mosquitto.url, HOMECARE_DATA_DIR=str(tmp_path / "data"),
                   HOMECARE_API_ADDR=f"127.0.0.1:{port}")
        done = subprocess.run([sys.executable, "-m", "homecare.cli", "gateway"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0, done.stderr
        sock.setblocking(False)
        notifications = []
        with contextlib.suppress(BlockingIOError):
            while True:
                notifications.append(sock.recv(4096).decode())
        assert not [n for n in notifications if n.startswith("READY=1")], notifications
        assert "never retrieved" not in done.stderr + done.stdout, done.stderr[-3000:]


def test_a_standby_is_ready_at_once_fed_while_it_waits_and_ready_again_when_it_serves(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """``--standby`` under systemd: READY with a STATUS saying whom it waits for (a unit that
    never said READY would be killed by TimeoutStartSec), WATCHDOG while it waits, then, the
    serving gateway killed, READY again with the serving STATUS."""
    first = GatewayProcess(tmp_path / "first", mqtt_url=mosquitto.url)
    first.start()
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        standby = GatewayProcess(tmp_path / "standby", mqtt_url=mosquitto.url,
                                 env={**first.env, "NOTIFY_SOCKET": str(path),
                                      "WATCHDOG_USEC": "600000"},
                                 port=first.port, args=("--standby",))
        standby.launch()
        try:
            waiting = next_notification(sock, standby, not_="WATCHDOG=1")
            assert waiting.startswith("READY=1\nSTATUS=standby: gateway pid "), waiting
            for _ in range(3):
                assert next_notification(sock, standby) == "WATCHDOG=1"
            first.kill()
            taking = next_notification(sock, standby, not_="WATCHDOG=1")
            assert taking.startswith("STATUS=taking over "), taking
            serving = next_notification(sock, standby, not_="WATCHDOG=1")
            assert serving == f"READY=1\nSTATUS=serving on 127.0.0.1:{first.port}", serving
            assert httpx.get(f"{standby.url}/healthz", timeout=5).status_code == 200
        finally:
            first.stop()
            standby.stop()
    assert standby.returncode == 0, standby.log_tail()
