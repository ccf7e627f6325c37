"""The alert API: alerts, their change stream and their handling (assignment, comments,
checklists, calls, outcomes), beds, resident profiles (dispatcher and admin keys only), the
on-call roster and escalation chains, series,
service logs, visits, service plans, keys, the station (its time zone), the caller's key and
the response report (:mod:`alerts.reports`) and the supervision and settlement report
(:mod:`alerts.supervision`).

Mounted on the gateway's FastAPI app under ``/api/v1`` by :func:`install`; every route needs
``Authorization: Bearer <key>`` (see :mod:`alerts.keys` for roles). Errors are JSON
``{"error": <code>, "detail": ...}``. Outside ``/api``: ``/ack/<token>``, the one-time
acknowledge link of a notification, whose signed token is its own permission.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, FastAPI

from alerts.api import (
    _acklink,
    _alerts,
    _beds,
    _handling,
    _keys,
    _plans,
    _reports,
    _residents,
    _roster,
    _station,
    _supervision,
    _visits,
)
from alerts.api._auth import ApiAuth, FailedAuth, known_query_only
from alerts.api._context import ApiContext, wall_clock_ms
from alerts.api._errors import ApiError, error_responses
from alerts.api._errors import install as install_errors
from alerts.api._limits import ApiMetrics, AuthThrottle, BodyLimit, PathGuard, client_group
from alerts.api._stream import ChangeHub, event_stream, format_event
from alerts.responsemetrics import ResponseMetrics

PREFIX = "/api/v1"
MAX_BODY_BYTES = 64 * 1024


def install(app: FastAPI, ctx: ApiContext) -> Callable[[], None]:
    """Mount the API on ``app``; returns the function that ends open streams (shutdown).

    Also installs, for the whole app: JSON errors, the request body limit
    (:data:`MAX_BODY_BYTES`, 413; a plan import's
    :data:`alerts.api._plans.MAX_IMPORT_BYTES`) and the path check (400 for a path that names
    nothing, :class:`PathGuard`).
    """
    metrics = ApiMetrics(ctx.metrics)
    install_errors(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES,
                       larger={PREFIX + _plans.IMPORT_PATH: _plans.MAX_IMPORT_BYTES})
    # One budget of failed authentications per address: wrong keys and made-up links alike.
    failures = FailedAuth(metrics=metrics,
                          throttle=AuthThrottle(failures_per_minute=ctx.auth_failures_per_minute))
    app.add_middleware(ApiAuth, keys=ctx.keys, failures=failures)
    app.add_middleware(PathGuard, metrics=metrics)  # outermost: a bad path reaches nothing
    hub = ChangeHub(queue_size=ctx.sse_queue_size, streams_per_key=ctx.sse_streams_per_key)
    unsubscribe = (ctx.engine.add_listener(hub.publish, unstored=hub.publish_unstored)
                   if ctx.engine is not None else None)
    uncount = (_handling.count_outcomes(ctx.engine, ctx.metrics) if ctx.engine is not None
               else None)
    untime = (ctx.engine.add_listener(ResponseMetrics(ctx.metrics, ctx.alert_store).observe)
              if ctx.engine is not None else None)
    api = APIRouter(prefix=PREFIX, responses=error_responses(400, 401, 422, 429),
                    dependencies=[Depends(known_query_only)])
    api.include_router(_alerts.router(ctx, hub, metrics))
    api.include_router(_handling.router(ctx))
    api.include_router(_beds.router(ctx))
    api.include_router(_residents.router(ctx))
    api.include_router(_roster.router(ctx))
    api.include_router(_visits.router(ctx))
    api.include_router(_plans.router(ctx))
    api.include_router(_keys.router(ctx))
    api.include_router(_station.router(ctx))
    api.include_router(_reports.router(ctx))
    api.include_router(_supervision.router(ctx))
    api.include_router(_station.me_router())
    app.include_router(api)
    app.include_router(_acklink.router(ctx, failures))  # no key: the signed link is the permission

    def close() -> None:
        for stop in (unsubscribe, uncount, untime):
            if stop is not None:
                stop()
        hub.close()

    return close


__all__ = [
    "MAX_BODY_BYTES",
    "PREFIX",
    "ApiContext",
    "ApiError",
    "ChangeHub",
    "client_group",
    "event_stream",
    "format_event",
    "install",
    "wall_clock_ms",
]
