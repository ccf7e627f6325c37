"""``/api/v1/oncall``: who is on call, and the escalation chains that tell them.

``GET /oncall`` gives the roster in force (staff with their contact details, shifts, duty;
whether it is the on-call file's or one put through the API since) and the escalation chains;
``GET /oncall/now`` who is on duty at a site (now, or at ``at``) in the site's zone; both need a
dispatcher (or admin) key, since they carry the staff's phone numbers and addresses. ``PUT
/oncall`` (admin) replaces the roster, checked whole (400 ``invalid_roster`` with every
problem, never a contact's value): kept until the on-call file's roster changes
(:mod:`alerts.rosterstore`); the chains are the file's only (they set the escalation
timelines of the alert engine). Audited like every write. Both answers carry ``warnings``:
the roster's coverage gaps over the next week (times when no dispatcher is on duty at a
site of the registry or of the duty, in its zone); a roster with gaps is accepted all the
same (an admin may be halfway through an edit), but says so.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from pydantic import Field, StringConstraints

from alerts.api._auth import Admin, require
from alerts.api._context import ApiContext
from alerts.api._errors import ApiError, error_responses
from alerts.api._models import ID_PATTERN, _In, _Out
from alerts.escalation import EscalationPolicy
from alerts.keys import Role
from alerts.model import Severity
from alerts.roster import Roster, RosterError, Staff
from alerts.rosterstore import RosterStore

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Line = Annotated[str, StringConstraints(max_length=200)]


class StaffIn(_In):
    id: Id
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    role: Literal["dispatcher", "nurse", "manager"]
    email: Line = ""
    phone: Annotated[str, StringConstraints(max_length=32)] = ""
    """For the webhook (the SMS or voice bridge calls it)."""
    pager: Annotated[str, StringConstraints(max_length=64)] = ""
    """The MQTT pager's id (the page's topic names it)."""


class ShiftIn(_In):
    name: Id
    start: Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    """Local time ``HH:MM`` in the site's zone; a shift lasts until the next one starts."""


class DutyIn(_In):
    site: Annotated[str, StringConstraints(pattern=r"^([A-Za-z0-9_-]{1,64}|\*)$")]
    """A site id, or ``*``: every site (a site's own entry wins for the roles it names)."""
    shift: Id
    date: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")] | None = None
    """Only the shift starting on this local date (wins over weekdays and every day)."""
    weekdays: Annotated[list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]],
                        Field(max_length=7)] = Field(default_factory=list)
    dispatchers: Annotated[list[Id], Field(max_length=50)] = Field(default_factory=list)
    nurse: Id | None = None
    manager: Id | None = None


class RosterIn(_In):
    """The whole roster; ``shifts`` left out: the shifts in force stay."""

    staff: Annotated[list[StaffIn], Field(max_length=1000)] = Field(default_factory=list)
    shifts: Annotated[list[ShiftIn], Field(max_length=24)] | None = None
    duty: Annotated[list[DutyIn], Field(max_length=10_000)] = Field(default_factory=list)


class StaffOut(_Out):
    id: str
    name: str
    role: str
    email: str = ""
    phone: str = ""
    pager: str = ""


class ShiftOut(_Out):
    name: str
    start: str


class DutyOut(_Out):
    site: str
    shift: str
    date: str | None = None
    weekdays: list[str] = Field(default_factory=list)
    dispatchers: list[str] = Field(default_factory=list)
    nurse: str | None = None
    manager: str | None = None


class StepOut(_Out):
    recipients: list[str]
    channels: list[str]
    wait_s: float | None
    """The wait for an acknowledgement before the next step (on the last one: before it is
    taken again; null: never)."""


class ChainOut(_Out):
    name: str
    severities: list[str]
    types: list[str]
    """Empty: every type."""
    steps: list[StepOut]


class GapOut(_Out):
    site: str
    """A site id, or ``*``: any site (no site is known)."""
    start: int
    """Epoch ms."""
    end: int
    timezone: str | None
    """The site's zone the shifts were read in (null: the gateway machine's)."""
    message: str


class OnCallOut(_Out):
    source: Literal["file", "api"]
    """``file``: the on-call file's roster; ``api``: one put through the API since."""
    updated_at: int | None = None
    updated_by: str | None = None
    staff: list[StaffOut]
    shifts: list[ShiftOut]
    duty: list[DutyOut]
    chains: list[ChainOut]
    """The configured chains, first match wins; then the default chain of each severity."""
    warnings: list[GapOut] = Field(default_factory=list)
    """Coverage gaps over the next week: no dispatcher on duty at a site (calls there reach
    the console only); the first 200."""


class OnDutyOut(_Out):
    site: str
    at: int
    timezone: str | None
    shift: str | None
    date: str | None
    """The local date the shift started."""
    dispatchers: list[StaffOut]
    nurse: StaffOut | None
    manager: StaffOut | None


class InvalidRoster(_Out):
    error: Literal["invalid_roster"]
    detail: list[str]


def _staff(s: Staff) -> StaffOut:
    return StaffOut(id=s.id, name=s.name, role=s.role, email=s.email, phone=s.phone,
                    pager=s.pager)


def _chains(policy: EscalationPolicy | None) -> list[ChainOut]:
    policy = policy or EscalationPolicy()
    chains = [*policy.chains, *(policy.default(s) for s in Severity)]
    return [ChainOut.model_validate(c.to_mapping()) for c in chains]


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(prefix="/oncall", tags=["on-call"])
    dispatcher = Depends(require(Role.DISPATCHER))

    def store() -> RosterStore:
        if ctx.oncall is None:
            raise ApiError(503, "the on-call roster is not available")
        return ctx.oncall

    def zone(site: str) -> ZoneInfo | None:
        name = ctx.registry.timezone(site, ctx.timezone)
        return ZoneInfo(name) if name else None

    def warnings(held: RosterStore) -> list[GapOut]:
        gaps = held.gaps(ctx.clock(), sites=list(ctx.registry.sites), zone=zone)
        return [GapOut(site=g.site, start=g.start, end=g.end, timezone=g.zone,
                       message=f"no dispatcher on duty at {g.text()}: calls there reach the "
                       "console only") for g in gaps[:200]]

    def answer(held: RosterStore) -> OnCallOut:
        raw: dict[str, Any] = held.roster.to_mapping()
        return OnCallOut(source="api" if held.source == "api" else "file",
                         updated_at=held.updated_at, updated_by=held.updated_by,
                         staff=[StaffOut.model_validate(s) for s in raw["staff"]],
                         shifts=[ShiftOut.model_validate(s) for s in raw["shifts"]],
                         duty=[DutyOut.model_validate(d) for d in raw["duty"]],
                         chains=_chains(ctx.escalation), warnings=warnings(held))

    @api.get("", response_model=OnCallOut, dependencies=[dispatcher],
             responses=error_responses(403, 503),
             summary="The on-call roster and the escalation chains (dispatcher and admin keys)")
    async def get_oncall() -> OnCallOut:
        return await asyncio.to_thread(answer, store())

    @api.get("/now", response_model=OnDutyOut, dependencies=[dispatcher],
             responses=error_responses(403, 503),
             summary="Who is on duty at a site (dispatcher and admin keys)")
    async def on_duty_now(
        site: Annotated[str, Query(pattern=ID_PATTERN)],
        at: Annotated[int | None, Query(ge=0, le=10**14,
                                        description="epoch ms; default now")] = None,
    ) -> OnDutyOut:
        """The shift running at ``at`` in the site's zone (the registry's, else the station's)
        and who is on it."""
        when = ctx.clock() if at is None else at
        zone_name = ctx.registry.timezone(site, ctx.timezone)
        duty = store().roster.on_duty(site, when, ZoneInfo(zone_name) if zone_name else None)
        return OnDutyOut(site=site, at=when, timezone=zone_name, shift=duty.shift,
                         date=duty.date, dispatchers=[_staff(s) for s in duty.dispatchers],
                         nurse=_staff(duty.nurse) if duty.nurse else None,
                         manager=_staff(duty.manager) if duty.manager else None)

    @api.put("", response_model=OnCallOut,
             responses={**error_responses(403, 413, 503),
                        400: {"model": InvalidRoster, "description": "Bad Request: every "
                              "problem (nothing was changed)"}},
             summary="Replace the on-call roster (admin)")
    async def put_oncall(body: RosterIn, key: Admin) -> OnCallOut:
        """Staff, shifts and duty, checked whole; the same roster again changes nothing but
        the time. Kept until the on-call file's roster changes; the chains stay the file's.
        Accepted with coverage gaps, listed in ``warnings``."""
        held = store()
        raw = body.model_dump(exclude_none=True)
        if body.shifts is None:
            raw["shifts"] = held.roster.to_mapping()["shifts"]
        try:
            roster = Roster.from_mapping(raw)
        except RosterError as exc:
            raise ApiError(400, list(exc.problems[:200]), error="invalid_roster") from exc
        await asyncio.to_thread(held.replace, roster, actor=key.name, now_ms=ctx.clock())
        return await asyncio.to_thread(answer, held)

    return api

