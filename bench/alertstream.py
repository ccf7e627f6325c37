"""The alert stream as the benchmarks read it: ``opened`` events of ``/api/v1/alerts/stream``,
reconnecting with ``Last-Event-ID`` whenever the server ends the stream (a client that falls
too far behind is disconnected by design) or the connection fails. An emergency call's opening
comes twice: first *unstored* (shown before the alert store's commit: what the dispatcher sees
first), then stored, with its id; each is handed on, marked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx


class AlertStream:
    """Reads the stream until cancelled and hands each opened alert to :meth:`on_opened` with
    the ``time.perf_counter()`` of its arrival and whether it was shown unstored."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.connected = asyncio.Event()
        self.reconnects = 0

    def on_opened(self, alert: dict[str, Any], now: float, unstored: bool) -> None:
        """One ``opened`` event (subclasses record what they measure)."""

    async def run(self) -> None:
        last_id: str | None = None
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client:
            while True:
                headers = {"Authorization": f"Bearer {self.key}",
                           "Accept": "text/event-stream"}
                if last_id is not None:
                    headers["Last-Event-ID"] = last_id
                    self.reconnects += 1
                with contextlib.suppress(httpx.HTTPError):
                    async with client.stream("GET", f"{self.url}/api/v1/alerts/stream",
                                             headers=headers) as response:
                        response.raise_for_status()
                        self.connected.set()
                        event = ""
                        async for line in response.aiter_lines():
                            if line.startswith("id:"):
                                last_id = line[3:].strip()
                            elif line.startswith("event:"):
                                event = line[6:].strip()
                            elif line.startswith("data:") and event == "opened":
                                now = time.perf_counter()
                                data = json.loads(line[5:])
                                self.on_opened(data["alert"], now, data.get("unstored") is True)
                            elif not line:
                                event = ""
                await asyncio.sleep(0.2)


__all__ = ["AlertStream"]
