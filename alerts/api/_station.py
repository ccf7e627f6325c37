"""``/api/v1/station``: what a console needs to know about the care station it serves, and
``/api/v1/me``: the key it signed in with.

The station's time zone, so that the console shows dates and times as the dispatchers' wall
clocks do, whatever zone the browser's machine is set to; the key's name and role, so that it
offers a viewer neither the actions nor the resident profiles it may not have.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from alerts.api._auth import Viewer, require
from alerts.api._context import ApiContext
from alerts.api._models import MeOut, StationOut
from alerts.keys import Role


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(prefix="/station", tags=["station"])

    @api.get("", response_model=StationOut, dependencies=[Depends(require(Role.VIEWER))],
             summary="The care station: its time zone")
    async def station() -> StationOut:
        """``timezone``: the registry's default zone, else the gateway's ``timezone``
        setting; null when neither is set (the machine's local zone is used)."""
        return StationOut(timezone=ctx.registry.defaults.timezone or ctx.timezone)

    return api


def me_router() -> APIRouter:
    api = APIRouter(tags=["station"])

    @api.get("/me", response_model=MeOut, summary="The key this request is made with")
    async def me(key: Viewer) -> MeOut:
        """Its name (the actor recorded for what it does) and role."""
        return MeOut(name=key.name, role=key.role)

    return api
