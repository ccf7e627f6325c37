"""Where the API listens is told as it is, the port the system chose included: systemd's
STATUS said ``serving on 127.0.0.1:0`` for ``api_addr = "127.0.0.1:0"``."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from fastapi import FastAPI

from gateway.config import Settings
from gateway.http import HttpLimits, serve


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
