"""The process runner's notifications around a gateway that fails before it serves: no READY,
STOPPING never sent for a failure, and nothing left for the event loop to complain about."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway import runner
from gateway.config import load
from gateway.sdnotify import Notifier


class FailingGateway:
    """Starts, then fails before it serves (a port taken, a store that raises)."""

    def __init__(self, settings: object) -> None:
        self.started = asyncio.Event()
        self.http_started = asyncio.Event()

    async def run(self) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("failed before serving")

    def stop(self) -> None:
        pass


async def test_a_gateway_failing_before_it_serves_is_never_ready(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HOMECARE_"):
            monkeypatch.delenv(key)
    monkeypatch.setattr(runner, "Gateway", FailingGateway)
    complaints: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: complaints.append(ctx))
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        with pytest.raises(RuntimeError, match="failed before serving"):
            await runner._serve(load(None), Notifier(str(path)))
        for _ in range(5):  # whatever the runner left behind finishes, and is collected
            await asyncio.sleep(0)
        gc.collect()
        sent = []
        try:
            while True:
                sent.append(sock.recv(4096).decode())
        except BlockingIOError:
            pass
    assert not [s for s in sent if s.startswith("READY=1")], sent
    assert complaints == [], [c.get("message") for c in complaints]
