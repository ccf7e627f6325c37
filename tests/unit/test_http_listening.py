"""Where the API listens is told as it is, the port the system chose included: systemd's
STATUS said ``serving on 127.0.0.1:0`` for ``api_addr = "127.0.0.1:0"``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.http import HttpLimits, listening_socket, serve
from gateway.runtime import Gateway
from tests.inprocess import API_KEY


async def test_a_port_chosen_by_the_system_is_the_one_told() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    told: list[str] = []
    started = asyncio.Event()
    task = asyncio.create_task(serve(app, "127.0.0.1", 0, started,
                                     limits=HttpLimits.from_settings(Settings()),
                                     listening=told.append))
    try:
        async with asyncio.timeout(20):
            await started.wait()
        [address] = told
        host, _, port = address.rpartition(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://{address}/ping", timeout=10)
        assert answer.json() == {"pong": "yes"}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_api_address_in_use_stops_the_gateway_with_a_word_naming_the_setting(
        tmp_path: Path) -> None:
    """A fresh tester: with api_addr on a port already in use the gateway stopped (exit 3)
    with uvicorn's bind error and then only ``mqtt.disconnected ... reconnecting``; uvicorn had
    exited the process itself. Now the gateway stops with a ConfigError that names api_addr
    (the runner prints it; exit status 2)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = Gateway(Settings(data_dir=tmp_path / "data", mqtt_url="mqtt://127.0.0.1:9",
                                   api_addr=f"127.0.0.1:{port}", api_key=API_KEY))
        with pytest.raises(ConfigError, match=rf"api_addr .*127\.0\.0\.1:{port}.*in use"):
            async with asyncio.timeout(30):
                await gateway.run()



async def test_connections_to_the_api_are_sent_without_delay() -> None:
    """A connection accepted on the socket gateway.http binds has TCP_NODELAY, as when uvicorn
    bound it: the socket must say IPPROTO_TCP, or asyncio leaves Nagle on and a stream's events
    wait up to 40 ms for the client's delayed ACK (flood bench, 2026-12-02: press -> stream
    max 5 -> 45 ms)."""
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Accepted(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            nodelay.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    sock = listening_socket("127.0.0.1", 0)
    server = await asyncio.get_running_loop().create_server(Accepted, sock=sock)
    try:
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(10):
            assert await nodelay != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
