"""How long ``GET /api/v1/beds`` takes, and how late the event loop's 1 ms timers fire while it
is polled, after a flood of made-up device ids (issue #17).

``python -m bench.beds_api [--ids 100000] [--mode beds|devices] [--polls 20]``

The API (:func:`alerts.api.install`) is served by uvicorn on loopback with a registry of 200
listed beds and a :class:`~alerts.livestate.LiveState`; ``--ids`` made-up ids are then
registered on first sight and fed one status each, as the pipeline does (``beds``: one made-up
bed and device each on the listed site; ``devices``: made-up devices on one listed bed). A
client in another thread polls ``/beds`` (first page, ``limit=5``, a page after a cursor) and
the listed bed's page, while a task on the server's loop sleeps 1 ms at a time and records how
late it wakes. Prints JSON; figures, never assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from alerts.api import ApiContext, install
from alerts.keys import KeyStore
from alerts.livestate import LiveState
from alerts.servicelog import ServiceLog
from devices.codec import Codec, Message
from devices.registry import Registry

T0 = 1_763_884_800_000
PORT = 47_951


def _registry(listed: int) -> Registry:
    return Registry.from_mapping({"sites": {"site-01": {"beds": {
        f"bed-{i:04d}": {"devices": {f"ir-{i:04d}": {"kind": "infrared"}}}
        for i in range(listed)}}}})


def _flood(registry: Registry, live: LiveState, ids: int, mode: str) -> float:
    codec = Codec()
    started = time.perf_counter()
    batch: list[Message] = []
    for i in range(ids):
        topic = (f"homecare/v1/site-01/mb{i:06d}/infrared/md{i:06d}/status" if mode == "beds"
                 else f"homecare/v1/site-01/bed-0099/infrared/ir{i:06d}/status")
        m = codec.decode(topic, (f'{{"ts":{T0},"seq":1,"state":"online","battery":80,'
                                 '"fw":"1","heartbeat_s":10}').encode())
        assert isinstance(m, Message), m
        registry.ensure(m.address)
        batch.append(m)
        if len(batch) == 500:
            live.accept(batch, [T0] * len(batch))
            batch = []
    if batch:
        live.accept(batch, [T0] * len(batch))
    return time.perf_counter() - started


def _quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"n": len(values), "p50": round(statistics.median(values), 2),
            "p99": round(values[min(len(values) - 1, int(0.99 * len(values)))], 2),
            "max": round(values[-1], 2)}


def run(ids: int = 100_000, mode: str = "beds", polls: int = 20) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        token = secrets.token_urlsafe(32)
        registry = _registry(200)
        live = LiveState(started_ms=T0, registered=lambda s, b: (
            (bed := registry.bed(s, b)) is not None and not bed.auto_registered))
        flood_s = _flood(registry, live, ids, mode)
        ctx = ApiContext(keys=KeyStore(Path(tmp) / "keys.sqlite3", bootstrap_token=token),
                         registry=registry, live=live,
                         service_log=ServiceLog(Path(tmp) / "servicelog.sqlite3"),
                         clock=lambda: T0 + 1_000)
        app = FastAPI()
        install(app, ctx)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=PORT,
                                               log_level="warning", lifespan="off"))
        late: list[float] = []
        timings: dict[str, list[float]] = {"beds": [], "beds_limit_5": [], "beds_cursor": [],
                                           "bed_page": []}
        sizes: dict[str, int] = {}

        async def ticker() -> None:
            while not server.should_exit:
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                late.append((time.perf_counter() - t) * 1000 - 1.0)

        def client() -> None:
            while not server.started:
                time.sleep(0.05)
            headers = {"Authorization": f"Bearer {token}"}
            paths = {"beds": "/api/v1/beds", "beds_limit_5": "/api/v1/beds?limit=5",
                     "beds_cursor": "/api/v1/beds?cursor=site-01/mb050000",
                     "bed_page": "/api/v1/beds/site-01/bed-0099"}
            with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=120) as http:
                for _ in range(polls):
                    for name, path in paths.items():
                        t = time.perf_counter()
                        response = http.get(path, headers=headers)
                        timings[name].append((time.perf_counter() - t) * 1000)
                        response.raise_for_status()
                        sizes[name] = len(response.content)
                    time.sleep(0.05)
            server.should_exit = True

        async def main() -> None:
            thread = threading.Thread(target=client, daemon=True)
            thread.start()
            tick = asyncio.create_task(ticker())
            await server.serve()
            await tick
            thread.join()

        asyncio.run(main())
    return {"ids": ids, "mode": mode, "registry_beds": sum(1 for _ in registry.beds()),
            "flood_s": round(flood_s, 1),
            "request_ms": {k: {**_quantiles(v), "first": round(v[0], 2)}
                           for k, v in timings.items()},
            "response_bytes": sizes, "timer_late_ms": _quantiles(late)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=100_000)
    parser.add_argument("--mode", choices=("beds", "devices"), default="beds")
    parser.add_argument("--polls", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(run(args.ids, args.mode, args.polls), indent=2))


if __name__ == "__main__":
    main()
