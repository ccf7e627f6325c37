"""The gateway process under ``Type=notify`` with a watchdog (deploy/systemd): the test binds
the unix datagram socket systemd would listen on and passes it as ``$NOTIFY_SOCKET``.

READY=1 comes once the gateway serves (its health answers when READY arrives), WATCHDOG=1
keeps coming while it runs, STOPPING=1 on SIGTERM, and it exits cleanly."""

from __future__ import annotations

import socket
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
