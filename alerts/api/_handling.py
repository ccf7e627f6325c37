"""Handling an alert: ``/api/v1/handling`` (the station's checklists and outcome codes) and
what a dispatcher records on an unresolved alert: assignment, comments, checklist items,
calls to the resident and their contacts (:mod:`alerts.handling`).

Each is a change of the alert (its history, the stream, the audit log of API writes); doing
what is already done records nothing and answers the alert as it is. 400 when the request
cannot apply to this alert (``error``: ``not_on_checklist``, ``no_such_contact``,
``no_profile``, ``not_a_dispatcher``), 409 when it is resolved. A call names its contact by
position only: the profile, with names and numbers, stays at the hub.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field, create_model

from alerts.api._alerts import alert_out
from alerts.api._auth import Dispatcher, require
from alerts.api._context import ApiContext
from alerts.api._errors import ApiError, error_responses
from alerts.api._models import (
    ALERT_ID_PATTERN,
    AlertOut,
    AssignBody,
    ChecklistBody,
    CommentBody,
    ContactCallBody,
    HandlingOut,
)
from alerts.engine import AlertEngine
from alerts.errors import AlertNotFound, HandlingRefused
from alerts.handling import Handling, assign, call, check, comment
from alerts.keys import ApiKey, Role
from alerts.model import Alert, AlertChange

AlertId = Annotated[str, Path(pattern=ALERT_ID_PATTERN, description="The alert's id.")]
_HANDLED = error_responses(400, 403, 404, 409, 413, 503)


def count_outcomes(engine: AlertEngine, registry: CollectorRegistry | None
                   ) -> Callable[[], None]:
    """Count every resolution with an outcome in ``homecare_alert_outcomes_total{type,
    outcome}`` from now on (an engine listener: committed changes only); returns the function
    that stops it."""
    outcomes = Counter("homecare_alert_outcomes", "Alerts resolved by a dispatcher, by alert "
                       "type and outcome code (false alarms, ambulances called...)",
                       ["type", "outcome"],
                       registry=registry if registry is not None else CollectorRegistry())

    def count(changes: list[AlertChange]) -> None:
        for change in changes:
            if change.action == "resolved" and change.alert.outcome:
                outcomes.labels(change.alert.type.value, change.alert.outcome).inc()

    return engine.add_listener(count)


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["handling"])
    plan = ctx.response_plan

    def engine() -> AlertEngine:
        if ctx.engine is None:
            raise ApiError(503, "the alert engine is not running")
        return ctx.engine

    async def record(alert_id: str, key: ApiKey, step: Handling) -> AlertOut:
        alert = await asyncio.to_thread(
            engine().handle, alert_id, action=step.action, actor=key.name, note=step.note,
            change=step.change, now_ms=ctx.clock())
        return alert_out(alert)

    def known(alert_id: str) -> Alert:
        alert = engine().get(alert_id)
        if alert is None:
            raise AlertNotFound(alert_id)
        return alert

    @api.get("/handling", response_model=HandlingOut,
             dependencies=[Depends(require(Role.VIEWER))],
             summary="The response checklists per alert type and the outcome codes")
    async def handling() -> HandlingOut:
        """What the console offers while an alert is handled: the checklist of each alert
        type (settings ``alert_checklist_<type>``) and the outcome codes one of which resolves
        an alert (``alert_outcomes``)."""
        return HandlingOut(outcomes=list(plan.outcomes), checklists={
            alert_type: list(items) for alert_type, items in plan.checklists.items() if items})

    @api.post("/alerts/{alert_id}/assign", response_model=AlertOut, responses=_HANDLED,
              summary="Assign an alert to a dispatcher (the caller by default)")
    async def assign_alert(alert_id: AlertId, key: Dispatcher,
                           body: Annotated[AssignBody | None, Body()] = None) -> AlertOut:
        """``to``: an active dispatcher or admin key's name; absent: the caller. Recorded as
        ``assigned`` (note: the assignee)."""
        to = body.to if body is not None and body.to is not None else key.name
        if to != key.name:
            other = await asyncio.to_thread(ctx.keys.get, to)
            if other is None or not other.role.allows(Role.DISPATCHER):
                raise HandlingRefused("not_a_dispatcher", f"no active dispatcher or admin key "
                                      f"is named {to!r}")
        return await record(alert_id, key, assign(to, now_ms=ctx.clock()))

    @api.post("/alerts/{alert_id}/unassign", response_model=AlertOut, responses=_HANDLED,
              summary="Take an alert off whoever it is assigned to")
    async def unassign_alert(alert_id: AlertId, key: Dispatcher) -> AlertOut:
        return await record(alert_id, key, assign(None, now_ms=ctx.clock()))

    @api.post("/alerts/{alert_id}/comments", response_model=AlertOut, status_code=201,
              responses=_HANDLED, summary="Comment on an alert while handling it")
    async def comment_alert(alert_id: AlertId, key: Dispatcher, body: CommentBody
                            ) -> AlertOut:
        """Recorded as ``commented`` with the text as its note (history and stream)."""
        return await record(alert_id, key, comment(body.text))

    async def check_item(alert_id: AlertId, key: Dispatcher, body: ChecklistBody) -> AlertOut:
        """Check (``done``: true) or uncheck an item of the alert type's checklist
        (``GET /handling``); recorded as ``checklist_checked``/``checklist_unchecked`` with
        the item as note. An item of another type's checklist answers 400."""
        return await record(alert_id, key, check(plan, body.item, done=body.done))

    if plan.items:  # the item is one of the station's: the document lists them
        check_item.__annotations__["body"] = _checklist_body(plan.items)
    api.post("/alerts/{alert_id}/checklist", response_model=AlertOut, responses=_HANDLED,
             summary="Check or uncheck an item of the alert's response checklist")(check_item)

    @api.post("/alerts/{alert_id}/calls", response_model=AlertOut, status_code=201,
              responses=_HANDLED,
              summary="Record a call to the resident or an emergency contact")
    async def call_contact(alert_id: AlertId, key: Dispatcher, body: ContactCallBody
                           ) -> AlertOut:
        """``contact`` 0 is the resident's own phone, 1.. the emergency contacts in the
        order of the bed's profile; ``result`` says whether they answered. Recorded as
        ``contact_called`` (the alert's ``contact_calls`` and history carry the position,
        never the name or number). 400 without a profile or such a contact."""
        alert = await asyncio.to_thread(known, alert_id)
        if ctx.residents is None:
            raise ApiError(503, "resident profiles are not available")
        profile = (await asyncio.to_thread(ctx.residents.get, alert.site, alert.bed)
                   if alert.bed else None)
        if profile is None:
            raise HandlingRefused("no_profile", "this bed has no resident profile: a call "
                                  "names a contact of the profile")
        return await record(alert_id, key, call(
            body.contact, body.result, contacts=len(profile.contacts),
            has_phone=bool(profile.phone), by=key.name, now_ms=ctx.clock()))

    return api


def _checklist_body(items: tuple[str, ...]) -> type[ChecklistBody]:
    item: Any = Literal[items]
    model: type[ChecklistBody] = create_model(
        "ChecklistBody", __base__=ChecklistBody, __doc__="An item of the checklist.",
        item=(item, Field(description="An item of the alert type's response checklist "
                                      "(GET /handling).")))
    return model
