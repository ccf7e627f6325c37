"""The gateway's HTTP app: health, readiness, Prometheus metrics, the alert API and console.

``/healthz`` answers while the process runs; ``/readyz`` is 200 only while the broker is
connected and the stores and the database are writable (503 otherwise, with the failing checks
and, under ``reasons``, why: "disk_full: ...", "credentials refused: ..."); ``/metrics`` is
the Prometheus text format. These three need no key. The alert API (:mod:`alerts.api`) is under
``/api/v1`` and needs ``Authorization: Bearer <key>`` on every route; its OpenAPI document is
``/openapi.json``, rendered at ``/docs`` (assets served locally, no CDN). The dispatcher
console (static files) is at ``/``. Request bodies over 64 KiB are refused (413), paths that
name nothing 400. Served by uvicorn inside the gateway's own event loop; on shutdown, open
event streams are ended first.

The server holds against cheap tricks (:mod:`gateway.http._connections`): a request head must
be complete within ``http_header_timeout_s``, its body within ``http_body_timeout_s``; open
connections are capped in total and per client address, the oldest idle or half-sent one
making room for a new one, else (from the address holding the most) one stalled on its
client for ``http_evict_stalled_after_s`` (a body not sent, an answer not read), below the
open-files limit (raised to its hard limit at start). A request that cannot be parsed, or
whose body is framed both by ``Transfer-Encoding`` and ``Content-Length``, is answered 400
once and its connection closed; a target in absolute-form (``GET http://host/healthz``) is
served by its path (:mod:`gateway.http._parser`).
Every answer says ``nosniff``, every HTML page carries a Content-Security-Policy, ``DENY``
framing and no referrer (:mod:`gateway.http._pages`).

uvicorn's own lines (a malformed request, an unsupported upgrade, an exception raised by the
app, each one line or a traceback per request) go through the gateway's log setup
(:mod:`gateway.logs`: its format, JSON when configured), not uvicorn's handlers; they and the
API's lines (:data:`HTTP_LOGGERS`) are written at most :data:`~gateway.logs.REPEATS_PER_MINUTE`
times a minute of each kind, the rest counted (``homecare_http_log_lines_suppressed_total``)
and summed up in one ``http.log_suppressed`` line once the minute is over or at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST

from alerts.api import ApiContext, install
from gateway.errors import ConfigError
from gateway.http._connections import (
    BACKLOG,
    ConnectionGuard,
    HttpLimits,
    connection_cap,
    guarded_protocol,
    raise_open_files_limit,
)
from gateway.http._pages import SecurityHeaders, docs_page
from gateway.logs import RepeatLimit

if TYPE_CHECKING:
    from gateway.monitoring import Metrics

log = logging.getLogger("homecare.http")

ShutdownHook = Callable[[], Awaitable[None] | None]
DOCS_ASSETS = "/docs-assets"
HTTP_LOGGERS = ("uvicorn.error", "uvicorn.asgi", "homecare.api", "homecare.api.stream")
"""Loggers whose lines a request can cause, one or more per request: limited by
:func:`serve` (uvicorn.access is off)."""
REPORT_EVERY_S = 5.0
"""How often the lines left out are checked for a minute that is over, to be reported."""


@dataclass(frozen=True, slots=True)
class Health:
    """What ``/readyz`` asks: each check's state, and why the failing ones fail."""

    checks: Callable[[], dict[str, bool]]
    reasons: Callable[[], dict[str, str]]


def _no_slash_redirects(app: FastAPI) -> None:
    """No redirect from ``/path/`` to ``/path``: Starlette builds its ``Location`` from the
    request's ``Host`` header, so ``GET /console/index.html/`` with ``Host: evil.example``
    would send a browser to ``http://evil.example/...``. Such a path answers 404; every route
    has one spelling."""
    app.router.redirect_slashes = False


def create_app(*, health: Health, metrics: Metrics, api: ApiContext) -> FastAPI:
    """The HTTP app from its parts: health checks, the metrics to expose, and what the alert
    API works on (``api.history``, when set, is closed on :func:`shutdown`)."""
    # The OpenAPI page's script and styles are served by the gateway itself (fastapi-offline
    # bundles them): a care station may have no internet, and no page of ours uses a CDN.
    app = FastAPIOffline(title="Home-care gateway", version="1", docs_url=None,
                         redoc_url=None, static_url=DOCS_ASSETS)
    _no_slash_redirects(app)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return docs_page(title=f"{app.title} - Swagger UI", openapi_url=f"{root}{app.openapi_url}",
                         assets_url=f"{root}{DOCS_ASSETS}")

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        checks = health.checks()
        status = 200 if all(checks.values()) else 503
        body: dict[str, object] = {"ready": status == 200, "checks": checks}
        if status != 200:
            reasons = health.reasons()
            body["reasons"] = {name: reasons.get(name, "failing")
                               for name, ok in checks.items() if not ok}
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["operations"])
    async def prometheus() -> Response:
        # Rendered off the event loop: a scrape (a few ms with many series, every few
        # seconds) must not hold up an emergency call read from the socket meanwhile.
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    close_streams = install(app, api)
    hooks: list[ShutdownHook] = [close_streams]
    if api.history is not None:
        hooks.append(api.history.close)
    app.state.shutdown_hooks = hooks

    from alerts.console import router as console

    app.include_router(console)
    app.add_middleware(SecurityHeaders)
    return app


def not_ready_app(reason: dict[str, str]) -> FastAPI:
    """What the gateway's address answers while its stores cannot be opened: alive, not
    ready, and why."""
    app = FastAPI(title="Home-care gateway (stores not open)", docs_url=None, redoc_url=None)
    _no_slash_redirects(app)
    app.add_middleware(SecurityHeaders)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        return JSONResponse({"ready": False, "checks": {"stores_open": False},
                             "reasons": dict(reason)}, status_code=503)

    return app


async def shutdown(app: FastAPI) -> None:
    """End open event streams and close the API's clients (before uvicorn stops)."""
    for hook in getattr(app.state, "shutdown_hooks", ()):
        try:
            result = hook()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("http.shutdown_hook_failed hook=%r", hook)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv6 when ``host`` has a colon), not yet
    listening; :class:`ConfigError` naming ``api_addr`` when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said, not left 0: asyncio sets TCP_NODELAY only on connections whose socket
    # says TCP, and without it every event written to a stream waited up to 40 ms for the
    # client's delayed ACK (Nagle): the flood bench's press -> stream max went 5 -> 45 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"api_addr (HOMECARE_API_ADDR): cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc} (a port in use, or an address that is not "
                          f"this machine's)") from exc
    return sock


async def serve(app: FastAPI, host: str, port: int, started: asyncio.Event | None = None,
                *, limits: HttpLimits, metrics: Metrics | None = None,
                listening: Callable[[str], None] | None = None) -> None:
    """Run uvicorn until cancelled; then end the event streams, stop accepting connections and
    let requests in flight finish (at most a few seconds). ``listening`` hears the address it
    listens on (``host:port``, the port chosen by the system when ``port`` is 0) before
    ``started`` is set."""
    before, after = raise_open_files_limit()
    max_connections = connection_cap(limits.max_connections)
    closed = (metrics.http_connections_closed.labels if metrics is not None else None)

    def count_closed(reason: str) -> None:
        if closed is not None:
            closed(reason).inc()

    guard = ConnectionGuard(max_connections=max_connections,
                            max_per_client=min(limits.max_connections_per_client,
                                               max_connections),
                            stalled_after_s=limits.evict_stalled_after_s,
                            closed=count_closed)
    if metrics is not None:
        metrics.http_connections_open.set_function(lambda: guard.open)
    # log_config=None: uvicorn's lines go to the gateway's handler (its format, JSON when
    # configured); with its default it installed a plain-text handler of its own.
    config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level="warning",
                            access_log=False, lifespan="off",
                            h11_max_incomplete_event_size=16 * 1024,
                            http=guarded_protocol(limits, guard, count_closed),
                            backlog=BACKLOG, timeout_graceful_shutdown=3,
                            # X-Forwarded-For only from the configured proxies: uvicorn's
                            # default trusts loopback, where any local process could pose
                            # as another client to dodge the per-client limits.
                            proxy_headers=bool(limits.trusted_proxies),
                            forwarded_allow_ips=list(limits.trusted_proxies) or None)
    server = uvicorn.Server(config)
    # The gateway owns SIGTERM/SIGINT (clean shutdown of intake first); uvicorn must not.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign, assignment]
    # Bound here, not by uvicorn, which logs a bind error and exits the process (sys.exit,
    # through the event loop): the gateway then stopped with no word of its own.
    sock = listening_socket(host, port)
    repeats = _limit_repeats(metrics)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    reporting = asyncio.create_task(_report_repeats(repeats), name="http.log_limit")
    try:
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has only a flag
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        port = sock.getsockname()[1]  # the one the system chose, when asked for 0
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if listening is not None:
            listening(address)
        log.info("http.listening addr=%s max_connections=%d per_client=%d "
                 "header_timeout_s=%g body_timeout_s=%g evict_stalled_after_s=%g open_files=%d%s",
                 address, max_connections, guard.max_per_client, limits.header_timeout_s,
                 limits.body_timeout_s, limits.evict_stalled_after_s, after,
                 f" (raised from {before})" if after != before else "")
        if max_connections < limits.max_connections:
            log.warning("http.connections_capped wanted=%d max_connections=%d open_files=%d; "
                        "raise the open-files limit (LimitNOFILE) for more",
                        limits.max_connections, max_connections, after)
        if started is not None:
            started.set()
        # Shielded: cancelling this coroutine must not cancel uvicorn itself, which would cut
        # off requests in flight (they answered 500); below it stops gracefully instead.
        await asyncio.shield(task)
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await shutdown(app)
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 5)
        reporting.cancel()
        for name in HTTP_LOGGERS:
            logging.getLogger(name).removeFilter(repeats)
        repeats.flush(final=True)
        with contextlib.suppress(asyncio.CancelledError):
            await reporting


def _limit_repeats(metrics: Metrics | None) -> RepeatLimit:
    """A :class:`RepeatLimit` on :data:`HTTP_LOGGERS`, counting what it leaves out."""
    counted = metrics.http_log_lines_suppressed.labels if metrics is not None else None

    def report(name: str, template: str, count: int, level: int) -> None:
        log.log(level, "http.log_suppressed source=%s message=%r count=%d window_s=60; "
                "lines of this kind left out in its minute", name, template, count)

    def dropped(name: str) -> None:
        if counted is not None:
            counted(name).inc()

    repeats = RepeatLimit(report=report, dropped=dropped)
    for name in HTTP_LOGGERS:
        logging.getLogger(name).addFilter(repeats)
    return repeats


async def _report_repeats(repeats: RepeatLimit) -> None:
    while True:
        await asyncio.sleep(REPORT_EVERY_S)
        repeats.flush()


__all__ = ["Health", "HttpLimits", "create_app", "listening_socket", "not_ready_app", "serve",
           "shutdown"]
