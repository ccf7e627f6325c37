"""The gateway in the test's own event loop, for fault tests that inject at a store's boundary
(``side_effect=``) or watch the order of events (listeners) instead of timing them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from devices.broker import BrokerUrl
from gateway.runtime import Gateway
from simulators.mqtt import Publisher

API_KEY = secrets.token_urlsafe(32)  # a bootstrap key must be a random secret


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[Gateway]:
    """Run ``gateway`` until the block ends; it is connected (and serving HTTP) inside."""
    task = asyncio.create_task(gateway.run(), name="gateway")
    try:
        async with asyncio.timeout(30):
            await gateway.started.wait()
            await gateway.source.connected.wait()
            if gateway.serve_http:
                await gateway.http_started.wait()
        yield gateway
        assert not task.done(), "the gateway ended by itself"
    finally:
        gateway.stop()
        async with asyncio.timeout(60):
            await task


@contextlib.asynccontextmanager
async def publisher(mqtt_url: str, client_id: str = "test-devices"
                    ) -> AsyncIterator[Publisher]:
    client = Publisher(BrokerUrl.parse(mqtt_url), client_id=client_id, reconnect=False)
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()


def press(site: str, bed: str, seq: int = 1) -> tuple[str, bytes]:
    topic = f"homecare/v1/{site}/{bed}/button/btn-{bed}/event"
    payload = {"ts": time.time_ns() // 1_000_000, "seq": seq, "event": "press"}
    return topic, json.dumps(payload).encode()


def invalid(site: str, bed: str, n: int) -> tuple[str, bytes]:
    """A message the codec rejects (malformed JSON), unique by ``n``."""
    return f"homecare/v1/{site}/{bed}/infrared/ir-{bed}/telemetry", b'{"ts": %d, oops' % n


async def until(predicate: Callable[[], Any], what: str, within_s: float = 30.0) -> Any:
    """Poll ``predicate`` on the loop until it returns something true, or fail naming
    ``what``."""
    deadline = time.monotonic() + within_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)
    return value
