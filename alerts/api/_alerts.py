"""``/api/v1/alerts``: list, one with history, acknowledge, resolve, and the change stream."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Body, Depends, Header, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints

from alerts.api._auth import Dispatcher, Viewer, require
from alerts.api._context import ApiContext
from alerts.api._errors import ApiError, error_responses
from alerts.api._limits import ApiMetrics
from alerts.api._models import (
    ALERT_ID_PATTERN,
    EPOCH_MS_MAX,
    ID_PATTERN,
    AcknowledgeBody,
    AlertChangeOut,
    AlertDetail,
    AlertOut,
    AlertPage,
    ContactCallOut,
    HistoryEntry,
    ResolveBody,
    StreamReset,
    resolve_body,
)
from alerts.api._stream import ChangeHub, StreamEnd, event_stream, resume_point
from alerts.engine import AlertEngine
from alerts.errors import AlertNotFound
from alerts.keys import Role
from alerts.model import Alert, AlertChange, AlertStatus, AlertType, Severity
from alerts.store import AlertStore

log = logging.getLogger("homecare.api.stream")

EpochMs = Annotated[int, Query(ge=0, le=EPOCH_MS_MAX)]
IdList = Annotated[list[Annotated[str, StringConstraints(pattern=ID_PATTERN)]] | None,
                   Query(max_length=100)]
AlertId = Annotated[str, Path(pattern=ALERT_ID_PATTERN, description="The alert's id.")]


def _event_schema() -> dict[str, Any]:
    change = AlertChangeOut.model_json_schema(ref_template="#/components/schemas/{model}",
                                              mode="serialization")
    change.pop("$defs", None)  # AlertOut and its enums are components already
    reset = StreamReset.model_json_schema(mode="serialization")
    return {
        "type": "object",
        "description": "One Server-Sent Event (the first carries only `retry`). `event: reset` "
                       "(data: StreamReset) when Last-Event-ID cannot be resumed from (above "
                       "the newest change, or not a change seq): reload the alerts; `id:` is "
                       "the head the stream goes on from.",
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$", "description": "change seq"},
            "event": {"type": "string", "description": "the change's action, or `reset`"},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"oneOf": [change, reset]}},
            "retry": {"type": "integer", "minimum": 0},
        },
    }


EVENT_SCHEMA: Final = _event_schema()
"""The OpenAPI schema of one stream event (per-event, as before OpenAPI 3.2)."""


def alert_out(alert: Alert, *, unstored: bool = False) -> AlertOut:
    data = msgspec.to_builtins(alert)
    if unstored:
        data["unstored"] = True
    return AlertOut.model_validate(data)


def _matches(alert: Alert, *, status: list[AlertStatus] | None,
             severity: list[Severity] | None, type: list[AlertType] | None,
             site: list[str] | None, bed: list[str] | None, since: int | None,
             until: int | None) -> bool:
    """``alert`` passes the list's filters (as the store applies them)."""
    return ((not status or alert.status in status)
            and (not severity or alert.severity in severity)
            and (not type or alert.type in type)
            and (not site or alert.site in site) and (not bed or alert.bed in bed)
            and (since is None or alert.opened_at >= since)
            and (until is None or alert.opened_at < until))


def with_unstored(page: list[Alert], unstored: list[Alert]) -> list[AlertOut]:
    """The first page with the alerts changed but not stored yet (a full disk): each one
    replaces its stored version or comes first, marked ``unstored``."""
    pending = {a.id: a for a in unstored}
    items = [alert_out(pending.pop(a.id), unstored=True) if a.id in pending else alert_out(a)
             for a in page]
    return [alert_out(a, unstored=True) for a in pending.values()] + items


def history_entry(change: AlertChange) -> HistoryEntry:
    alert = change.alert
    call = (ContactCallOut.model_validate(msgspec.to_builtins(alert.contact_calls[-1]))
            if change.action == "contact_called" and alert.contact_calls else None)
    return HistoryEntry(seq=change.seq, at=change.at, action=change.action, actor=change.actor,
                        note=change.note, status=alert.status, severity=alert.severity,
                        escalation_level=alert.escalation_level,
                        assigned_to=alert.assigned_to, outcome=alert.outcome,
                        contact_call=call)


def router(ctx: ApiContext, hub: ChangeHub, metrics: ApiMetrics) -> APIRouter:
    api = APIRouter(prefix="/alerts", tags=["alerts"])
    viewer = Depends(require(Role.VIEWER))

    def store() -> AlertStore:
        if ctx.alert_store is None:
            raise ApiError(503, "the alert store is not running")
        return ctx.alert_store

    def engine() -> AlertEngine:
        if ctx.engine is None:
            raise ApiError(503, "the alert engine is not running")
        return ctx.engine

    @api.get("", response_model=AlertPage, dependencies=[viewer],
             responses=error_responses(400, 503),
             summary="List alerts (unresolved first, most severe first, newest first)")
    async def list_alerts(
        status: Annotated[list[AlertStatus] | None, Query(max_length=3)] = None,
        severity: Annotated[list[Severity] | None, Query(max_length=4)] = None,
        type: Annotated[list[AlertType] | None, Query(max_length=10)] = None,
        site: IdList = None,
        bed: IdList = None,
        since: Annotated[int | None, Query(ge=0, le=EPOCH_MS_MAX,
                                           description="opened_at >= since (epoch ms)")] = None,
        until: Annotated[int | None, Query(ge=0, le=EPOCH_MS_MAX,
                                           description="opened_at < until (epoch ms)")] = None,
        cursor: Annotated[str | None, Query(max_length=512,
                                            pattern=r"^[A-Za-z0-9_=-]+$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> AlertPage:
        """Filters may repeat (``?status=open&status=acknowledged``): any value matches. Pass
        ``next_cursor`` back as ``cursor`` for the next page. While the alert store cannot
        write (a full disk), the first page also carries the alerts changed but not stored
        yet, first and marked ``unstored`` (beyond ``limit`` if need be)."""
        alerts, next_cursor = await asyncio.to_thread(
            store().list_alerts, status=status, severity=severity, type=type, site=site,
            bed=bed, since=since, until=until, cursor=cursor, limit=limit)
        unstored = ([a for a in ctx.engine.unstored_alerts() if _matches(
            a, status=status, severity=severity, type=type, site=site, bed=bed, since=since,
            until=until)] if ctx.engine is not None and cursor is None else [])
        if unstored:
            return AlertPage(items=with_unstored(alerts, unstored), next_cursor=next_cursor)
        return AlertPage(items=[alert_out(a) for a in alerts], next_cursor=next_cursor)

    @api.get("/stream", response_class=StreamingResponse,
             summary="Server-Sent Events of alert changes",
             responses={200: {"content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
                              "description": "`id:` change seq, `event:` action, `data:` the "
                                             "change as JSON (AlertChangeOut); or `event: "
                                             "reset` (StreamReset): reload the alerts."},
                        **error_responses(400, 429, 503)})
    async def stream(
        key: Viewer,
        last_event_id: Annotated[int | None, Query(
            ge=0, le=EPOCH_MS_MAX, description="Resume after this change seq (same as the "
                                               "Last-Event-ID header)")] = None,
        follow: Annotated[bool, Query(description="false: send the changes since "
                                                  "last_event_id and end")] = True,
        last_event_id_header: Annotated[str | None, Header(
            alias="Last-Event-ID", max_length=256, include_in_schema=False)] = None,
    ) -> StreamingResponse:
        """Every change after ``Last-Event-ID`` from the store, then live changes; keep-alive
        comments when idle. Slow clients are disconnected and resume with Last-Event-ID.
        A Last-Event-ID above the newest change (a restored store) or not a change seq is
        answered with an ``event: reset`` first: reload the alerts, then read on. The stream
        ends once its key is revoked; one key holds a bounded number of streams (429)."""
        resume = resume_point(last_event_id, last_event_id_header)
        alert_store = store()
        slot = hub.take_slot(key.id)
        if slot is None:
            metrics.streams_refused.inc()
            raise ApiError(429, f"the key {key.name!r} already has {hub.streams_per_key} "
                                f"streams open; close one first", error="too_many_requests",
                           headers={"Retry-After": "5"})

        def ended(reason: StreamEnd) -> None:
            slot.release()
            if reason != "closed":
                metrics.streams_ended.labels(reason).inc()
                log.info("api.stream_closed reason=%s key=%s", reason, key.name)

        body = event_stream(hub, alert_store, last_event_id=resume, follow=follow,
                            heartbeat_s=ctx.sse_heartbeat_s, retry_ms=ctx.sse_retry_ms,
                            key_active=lambda: ctx.keys.is_active(key.id),
                            recheck_s=ctx.key_recheck_s, on_end=ended)
        weakref.finalize(body, slot.release)  # a stream never started still gives it back
        return StreamingResponse(body, media_type="text/event-stream", headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.get("/{alert_id}", response_model=AlertDetail, dependencies=[viewer],
             responses=error_responses(404, 503), summary="One alert with its history")
    async def get_alert(alert_id: AlertId) -> AlertDetail:
        def read() -> tuple[Alert | None, list[AlertChange]]:
            found = engine().get(alert_id) if ctx.engine is not None else store().get(alert_id)
            return found, store().history(alert_id) if found is not None else []

        alert, history = await asyncio.to_thread(read)
        if alert is None:
            raise AlertNotFound(alert_id)
        fields: dict[str, Any] = msgspec.to_builtins(alert)
        return AlertDetail.model_validate(
            {**fields, "history": [history_entry(c).model_dump() for c in history]})

    @api.post("/{alert_id}/acknowledge", response_model=AlertOut,
              responses=error_responses(403, 404, 409, 413, 503),
              summary="Acknowledge an open alert (stops escalation)")
    async def acknowledge(
        alert_id: AlertId, key: Dispatcher,
        body: Annotated[AcknowledgeBody | None, Body()] = None,
    ) -> AlertOut:
        """The key's name is recorded as who acknowledged; the note is optional."""
        alert = await asyncio.to_thread(
            engine().acknowledge, alert_id, actor=key.name,
            note=body.note if body is not None else None, now_ms=ctx.clock())
        return alert_out(alert)

    async def resolve(alert_id: AlertId, key: Dispatcher, body: ResolveBody) -> AlertOut:
        """The note (what was done) and the outcome code (how it ended: one of the station's,
        ``GET /handling``) are required; the key's name is recorded as who resolved. The
        outcome is kept in the alert, its history and the stream, and counted in
        ``homecare_alert_outcomes_total{type,outcome}``."""
        alert = await asyncio.to_thread(engine().resolve, alert_id, actor=key.name,
                                        note=body.note, outcome=body.outcome,
                                        now_ms=ctx.clock())
        return alert_out(alert)

    # The body names the station's outcome codes: the document lists them, pydantic refuses
    # any other with them named (422).
    resolve.__annotations__["body"] = resolve_body(ctx.response_plan.outcomes)
    api.post("/{alert_id}/resolve", response_model=AlertOut,
             responses=error_responses(403, 404, 409, 413, 503),
             summary="Resolve an alert with a note and an outcome code")(resolve)

    return api
