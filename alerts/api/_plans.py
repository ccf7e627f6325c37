"""``/api/v1/plans``: the care institution's planned visits per bed, and the service catalogue.

Reading needs any key (viewer and up): plans hold pseudonymous caregiver codes and times, no
personal data. Changing them needs an admin key: ``PUT /plans/{site}/{plan}`` creates or
replaces one planned visit (the same again changes nothing; 201 when created), ``DELETE``
removes it, ``POST /plans/import`` upserts the rows of a CSV file (all or nothing; 400
``invalid_csv`` with a problem per row and column; the request up to :data:`MAX_IMPORT_BYTES`,
a month of a large station). A plan that does not hold together (a date that does not exist or
is outside 2000-2099, a time the clocks skip, a window of no length or over 12 hours, a code
outside the catalogue, a site or bed the registry does not list) is 400 ``invalid_plan`` with
a problem per field, never the value of an id or a time. Times are local to the site's zone
(the registry's, else the gateway's ``timezone``; for a site with neither, the request's
``timezone``, else 400 ``no_timezone`` rather than the machine's zone, often UTC on a server);
an import answers the zone each site's times were read in. Every write is in
the key store's audit log. 503 when the plan file cannot be used.

The shapes are here rather than in ``_models``: they are this route's alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from alerts.api._auth import Admin, require
from alerts.api._context import ApiContext
from alerts.api._errors import ApiError, error_responses
from alerts.api._models import EPOCH_MS_MAX, ID_PATTERN, PersonId, RowProblemOut
from alerts.errors import PlanStoreUnavailable
from alerts.keys import Role
from alerts.plans import (
    PLAN_ID_PATTERN,
    PlannedVisit,
    PlanZones,
    make_plan,
    parse_plans_csv,
    registry_places,
)
from alerts.planstore import PlanStore

P = ParamSpec("P")
T = TypeVar("T")

MAX_IMPORT_BYTES: Final = 4 * 1024 * 1024
"""The largest ``POST /plans/import`` request: a month of a large station (200 beds, four
visits a day: 24,800 rows of 75 to 90 bytes, about 2 MB) with room; every other route keeps
the API's :data:`~alerts.api.MAX_BODY_BYTES`. The rows are read in a worker thread (24,800 in
about 2 s)."""
MAX_IMPORT_CHARS: Final = MAX_IMPORT_BYTES - 1024
IMPORT_PATH: Final = "/plans/import"
"""The route (under the API's prefix) allowed :data:`MAX_IMPORT_BYTES`."""

SiteId = Annotated[str, Path(pattern=ID_PATTERN)]
PlanId = Annotated[str, Path(pattern=PLAN_ID_PATTERN)]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
CURSOR = r"^[0-9]{1,16}/[A-Za-z0-9_-]{1,64}/[A-Za-z0-9_.:-]{1,128}$"


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceItemOut(_Out):
    code: str
    minutes: float
    """Expected minutes."""
    recording: bool
    """Its delivery must be covered by a recording of the home's recorders."""


class CatalogueOut(_Out):
    items: list[ServiceItemOut]

Zone = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                        pattern=r"^[A-Za-z0-9_+/-]{1,64}$")]
"""An IANA zone name (``Asia/Shanghai``)."""


class PlanIn(_In):
    """One planned visit (replaces the stored one of the same site and plan id)."""

    bed: Annotated[str, StringConstraints(pattern=ID_PATTERN)]
    caregiver: PersonId
    """The caregiver's code as the badges send it: printable text in any script, no spaces,
    ``/`` or ``\\``, at most 128 characters (:func:`devices.person_id_problem`)."""
    date: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    """Local date of the window's start."""
    start: Annotated[str, StringConstraints(pattern=r"^\d{1,2}:\d{2}$")]
    end: Annotated[str, StringConstraints(pattern=r"^\d{1,2}:\d{2}$")]
    """Local times (HH:MM); an end before the start is on the next day."""
    services: Annotated[list[Code], Field(min_length=1, max_length=20)]
    cancelled: bool = False
    timezone: Zone | None = None
    """The zone the times are in, for a site with none configured (refused without it);
    refused when it contradicts the site's configured zone."""


class PlanOut(_Out):
    site: str
    bed: str
    plan: str
    caregiver: str
    date: str
    start: str
    end: str
    start_ms: int
    end_ms: int
    """The window in epoch ms."""
    services: list[str]
    cancelled: bool
    updated_at: int
    updated_by: str


class PlanPage(_Out):
    items: list[PlanOut]
    next_cursor: str | None = None


class PlanImportBody(_In):
    csv: Annotated[str, StringConstraints(min_length=1, max_length=MAX_IMPORT_CHARS)]
    """The CSV file's text (columns as for ``homecare plans import``), at most
    :data:`MAX_IMPORT_BYTES` in the request. Larger files: the command line."""
    dry_run: bool = False
    timezone: Zone | None = None
    """The zone the file's times are in, for sites with none configured (the registry's, or
    the ``timezone`` setting): without it such a site is refused (400 ``no_timezone``) rather
    than read in the machine's zone. Refused when it contradicts a site's configured zone."""


class PlanImportRow(_Out):
    row: int
    site: str
    plan: str
    result: Literal["created", "updated", "unchanged"]


class PlanImportOut(_Out):
    dry_run: bool
    created: int
    updated: int
    unchanged: int
    rows: list[PlanImportRow]
    zones: dict[str, str]
    """The zone each site's times were read in, and where it comes from: ``Asia/Shanghai
    (configured)`` or ``(given)``."""


class PlanRefused(_Out):
    """A plan or a CSV file refused: nothing was changed."""

    error: str
    """``invalid_plan`` or ``invalid_csv`` (other codes: a request refused before it was
    read, as on every route)"""
    detail: list[RowProblemOut] | Any = None
    """Every problem (the first 200), by row (0: a PUT's body) and column."""


async def run(work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``work`` on a worker thread; a plan file that cannot be used is 503."""
    try:
        return await asyncio.to_thread(work, *args, **kwargs)
    except PlanStoreUnavailable as exc:
        raise ApiError(503, "service plans are not available") from exc


def plan_out(plan: PlannedVisit) -> PlanOut:
    return PlanOut(site=plan.site, bed=plan.bed, plan=plan.plan, caregiver=plan.caregiver,
                   date=plan.date, start=plan.start, end=plan.end, start_ms=plan.start_ms,
                   end_ms=plan.end_ms, services=list(plan.services), cancelled=plan.cancelled,
                   updated_at=plan.updated_at, updated_by=plan.updated_by)


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(prefix="/plans", tags=["plans"])
    viewer = Depends(require(Role.VIEWER))
    refused: dict[int | str, dict[str, Any]] = {400: {
        "model": PlanRefused, "description": "Bad Request: what is wrong, per field or row and "
        "column (nothing was changed)"}}

    def store() -> PlanStore:
        if ctx.plans is None:
            raise ApiError(503, "service plans are not available")
        return ctx.plans

    def zones(given: str | None) -> PlanZones:
        try:
            return PlanZones(lambda site: ctx.registry.timezone(site, ctx.timezone),
                             given=given)
        except ValueError as exc:
            raise ApiError(400, [RowProblemOut(row=0, column="timezone", msg=str(exc)
                                               ).model_dump()], error="no_timezone") from None

    def refuse_unzoned(zone_of: PlanZones) -> None:
        if problems := zone_of.problems():
            raise ApiError(400, [RowProblemOut(row=0, column="timezone", msg=m).model_dump()
                                 for m in problems], error="no_timezone")

    @api.get("/catalogue", response_model=CatalogueOut, dependencies=[viewer],
             summary="The service items plans may list and visits may bill")
    async def catalogue() -> CatalogueOut:
        """The ``service_catalogue`` setting: expected minutes, and whether a recording must
        cover the item."""
        return CatalogueOut(items=[ServiceItemOut(code=i.code, minutes=i.minutes,
                                                  recording=i.recording)
                                   for i in ctx.catalogue])

    @api.get("", response_model=PlanPage, dependencies=[viewer],
             responses=error_responses(503), summary="Planned visits, by window start")
    async def list_plans(
        site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        bed: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        caregiver: Annotated[PersonId | None, Query()] = None,
        since: Annotated[int | None, Query(ge=0, le=EPOCH_MS_MAX, description=(
            "windows ending after this (epoch ms)"))] = None,
        until: Annotated[int | None, Query(ge=0, le=EPOCH_MS_MAX, description=(
            "windows starting before this (epoch ms)"))] = None,
        cursor: Annotated[str | None, Query(max_length=210, pattern=CURSOR, description=(
            "next_cursor of the previous page"))] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> PlanPage:
        after = None
        if cursor is not None:
            start, after_site, after_plan = cursor.split("/", 2)
            after = (int(start), after_site, after_plan)
        found = await run(store().list, site=site, bed=bed, caregiver=caregiver,
                          since_ms=since, until_ms=until, after=after, limit=limit + 1)
        page = found[:limit]
        return PlanPage(items=[plan_out(p) for p in page],
                        next_cursor=f"{page[-1].start_ms}/{page[-1].site}/{page[-1].plan}"
                        if len(found) > limit else None)

    @api.get("/{site}/{plan}", response_model=PlanOut, dependencies=[viewer],
             responses=error_responses(404, 503), summary="One planned visit")
    async def get_plan(site: SiteId, plan: PlanId) -> PlanOut:
        found = await run(store().get, site, plan)
        if found is None:
            raise ApiError(404, f"no plan {plan} at {site}")
        return plan_out(found)

    @api.put("/{site}/{plan}", response_model=PlanOut, status_code=200,
             responses={**error_responses(403, 413, 503), **refused,
                        201: {"model": PlanOut, "description": "Created"}},
             summary="Create or replace a planned visit (admin)")
    async def put_plan(site: SiteId, plan: PlanId, body: PlanIn, key: Admin,
                       response: Response) -> PlanOut:
        """The whole planned visit; the same again changes nothing (200, ``updated_at``
        stays); 201 when it is new."""
        zone_of = zones(body.timezone)
        made, problems = make_plan(
            site=site, bed=body.bed, plan=plan, caregiver=body.caregiver, date=body.date,
            start=body.start, end=body.end, services=body.services, catalogue=ctx.catalogue,
            zone=zone_of(site), cancelled=body.cancelled,
            places=registry_places(ctx.registry))
        refuse_unzoned(zone_of)
        if made is None:
            raise ApiError(400, [RowProblemOut(row=0, column=f, msg=m).model_dump()
                                 for f, m in problems], error="invalid_plan")
        done = await run(store().put, made, actor=key.name, now_ms=ctx.clock())
        stored = await run(store().get, site, plan)
        if stored is None:  # deleted meanwhile
            raise ApiError(404, f"no plan {plan} at {site}")
        response.status_code = 201 if done == "created" else 200
        return plan_out(stored)

    @api.delete("/{site}/{plan}", status_code=204, response_class=Response,
                responses=error_responses(403, 404, 503), summary="Delete a planned visit (admin)")
    async def delete_plan(site: SiteId, plan: PlanId, key: Admin) -> Response:
        """Gone from the plans the visits are checked against (a cancelled plan, by
        contrast, stays on record as called off)."""
        if not await run(store().delete, site, plan):
            raise ApiError(404, f"no plan {plan} at {site}")
        return Response(status_code=204)

    @api.post("/import", response_model=PlanImportOut,
              responses={**error_responses(403, 413, 503), **refused},
              summary="Import planned visits from CSV (admin)")
    async def import_plans(body: PlanImportBody, key: Admin) -> PlanImportOut:
        """Upserts every row, all or nothing. Format: ``homecare plans import --help``.
        ``dry_run``: only say what would change."""
        # A month of a large station's rows: read off the event loop.
        zone_of = zones(body.timezone)
        parsed = await asyncio.to_thread(parse_plans_csv, body.csv, catalogue=ctx.catalogue,
                                         zone_of=zone_of, places=registry_places(ctx.registry))
        refuse_unzoned(zone_of)
        if parsed.problems:
            raise ApiError(400, [RowProblemOut(row=p.row, column=p.column, msg=p.message
                                               ).model_dump() for p in parsed.problems[:200]],
                           error="invalid_csv")
        result = await run(store().import_rows, parsed.rows, actor=key.name,
                           now_ms=ctx.clock(), dry_run=body.dry_run)
        return PlanImportOut(
            dry_run=body.dry_run, created=result.count("created"),
            updated=result.count("updated"), unchanged=result.count("unchanged"),
            rows=[PlanImportRow(row=row, site=site, plan=plan, result=done)
                  for row, site, plan, done in result.rows], zones=zone_of.used)

    return api
