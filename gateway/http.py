"""The gateway's HTTP app: health, readiness and Prometheus metrics (the alert API mounts here).

``/healthz`` answers while the process runs; ``/readyz`` is 200 only while the broker is
connected and the stores are writable (503 with the failing checks otherwise); ``/metrics`` is
the Prometheus text format. Served by uvicorn inside the gateway's own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from gateway.service import Gateway

log = logging.getLogger("homecare.http")


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="Home-care gateway", version="1", docs_url="/docs",
                  redoc_url=None)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        checks = gateway.readiness()
        status = 200 if all(checks.values()) else 503
        return JSONResponse({"ready": status == 200, "checks": checks}, status_code=status)

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def serve(app: FastAPI, host: str, port: int, started: asyncio.Event | None = None
                ) -> None:
    """Run uvicorn until cancelled."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off", h11_max_incomplete_event_size=16 * 1024)
    server = uvicorn.Server(config)
    # The gateway owns SIGTERM/SIGINT (clean shutdown of intake first); uvicorn must not.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign, assignment]
    task = asyncio.create_task(server.serve(), name="http")
    try:
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has only a flag
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        log.info("http.listening addr=%s:%d", host, port)
        if started is not None:
            started.set()
        await task
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 5)
