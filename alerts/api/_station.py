"""``/api/v1/station``: what a console needs to know about the care station it serves, and
``/api/v1/me``: the key it signed in with.

The station's time zone, so that the console shows dates and times as the dispatchers' wall
clocks do, whatever zone the browser's machine is set to; the key's name and role, so that it
offers a viewer neither the actions nor the resident profiles it may not have; and
``/api/v1/station/upstream``, how the upstream delivery stands: each destination's queue and the
entries set aside (parked after the retry horizon, or rejected).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import ConfigDict

from alerts.api._auth import Viewer, require
from alerts.api._context import ApiContext
from alerts.api._models import MeOut, StationOut, _Out
from alerts.keys import Role


class UpstreamQueueOut(_Out):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    destination: str
    """``platform``, ``institution`` or ``family:<site>/<bed>``."""
    pending: int
    parked: int
    rejected: int


class SetAsideOut(_Out):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    destination: str
    key: str
    """The entry's ``Idempotency-Key`` (``<source>/alert/<seq>``, ``<source>/service/<seq>``)."""
    state: str
    """``parked`` (failed past the retry horizon while the entry behind it went through) or
    ``rejected`` (refused by the destination); ``homecare upstream requeue`` puts it back."""
    attempts: int
    status: int | None = None
    """The last answer's HTTP status; null: a network error or a time-out."""
    error: str | None = None
    """The start of the last answer (or the error)."""
    at: int | None = None
    """When it was set aside (epoch ms)."""


class UpstreamOut(_Out):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    configured: bool
    """Whether anything goes upstream from this gateway."""
    queues: list[UpstreamQueueOut]
    """Each destination with entries not delivered."""
    set_aside: list[SetAsideOut]
    """The first 100 entries set aside, oldest first."""


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(prefix="/station", tags=["station"])

    @api.get("", response_model=StationOut, dependencies=[Depends(require(Role.VIEWER))],
             summary="The care station: its time zone")
    async def station() -> StationOut:
        """``timezone``: the registry's default zone, else the gateway's ``timezone``
        setting; null when neither is set (the machine's local zone is used)."""
        return StationOut(timezone=ctx.registry.defaults.timezone or ctx.timezone)

    @api.get("/upstream", response_model=UpstreamOut,
             dependencies=[Depends(require(Role.VIEWER))],
             summary="Upstream delivery: each destination's queue and the entries set aside")
    async def upstream() -> UpstreamOut:
        """Entries pending, parked and rejected per destination, and those set aside with the
        last answer; ``configured`` false (and nothing listed) when nothing goes upstream."""
        if ctx.upstream is None:
            return UpstreamOut(configured=False, queues=[], set_aside=[])
        return UpstreamOut.model_validate(await run_in_threadpool(ctx.upstream))

    return api


def me_router() -> APIRouter:
    api = APIRouter(tags=["station"])

    @api.get("/me", response_model=MeOut, summary="The key this request is made with")
    async def me(key: Viewer) -> MeOut:
        """Its name (the actor recorded for what it does) and role."""
        return MeOut(name=key.name, role=key.role)

    return api
