"""``/api/v1/residents``: the resident profile of each bed, for the people who act on alerts.

Reading a profile needs a dispatcher (or admin) key: a viewer key gets 403, and nothing else
the API serves (alerts, beds, the stream) carries any of it. Changing profiles needs an admin
key: ``PUT`` replaces one bed's profile, ``DELETE`` removes it, ``POST /residents/import``
upserts the rows of a CSV file (all or nothing; 400 with a problem per row and column, never
the values; the same file again changes nothing). Every write is in the key store's audit log
(:class:`~alerts.api._auth.ApiAuth`). 503 when the profile file cannot be used.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from alerts.api._auth import Admin, require
from alerts.api._context import ApiContext
from alerts.api._errors import ApiError, error_responses
from alerts.api._models import (
    ID_PATTERN,
    ContactOut,
    ImportRefused,
    ResidentImportBody,
    ResidentImportOut,
    ResidentImportRow,
    ResidentIn,
    ResidentOut,
    ResidentPage,
    RowProblemOut,
)
from alerts.keys import Role
from alerts.residents import Contact, Resident, parse_csv
from alerts.residentstore import ResidentStore

SiteId = Annotated[str, Path(pattern=ID_PATTERN)]


def resident_out(resident: Resident) -> ResidentOut:
    return ResidentOut(
        site=resident.site, bed=resident.bed, display_name=resident.display_name,
        address=resident.address, phone=resident.phone,
        contacts=[ContactOut(name=c.name, relation=c.relation, phone=c.phone)
                  for c in resident.contacts],
        medical_notes=resident.medical_notes, access_notes=resident.access_notes,
        updated_at=resident.updated_at, updated_by=resident.updated_by)


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(prefix="/residents", tags=["residents"])
    dispatcher = Depends(require(Role.DISPATCHER))

    def store() -> ResidentStore:
        if ctx.residents is None:
            raise ApiError(503, "resident profiles are not available")
        return ctx.residents

    @api.get("", response_model=ResidentPage, dependencies=[dispatcher],
             responses=error_responses(403, 503),
             summary="Resident profiles, by site and bed (dispatcher and admin keys)")
    async def list_residents(
        site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        bed: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        cursor: Annotated[str | None, Query(
            max_length=130, pattern=r"^[A-Za-z0-9_-]{1,64}/[A-Za-z0-9_-]{1,64}$",
            description="next_cursor of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> ResidentPage:
        """Those of ``site`` and ``bed`` if given (an empty page when a bed has none)."""
        after = None
        if cursor is not None:
            after_site, after_bed = cursor.split("/", 1)
            after = (after_site, after_bed)
        found = await asyncio.to_thread(store().list, site=site, bed=bed, after=after,
                                        limit=limit + 1)
        page = found[:limit]
        return ResidentPage(items=[resident_out(r) for r in page],
                            next_cursor=f"{page[-1].site}/{page[-1].bed}"
                            if len(found) > limit else None)

    @api.get("/{site}/{bed}", response_model=ResidentOut, dependencies=[dispatcher],
             responses=error_responses(403, 404, 503),
             summary="A bed's resident profile (dispatcher and admin keys)")
    async def get_resident(site: SiteId, bed: SiteId) -> ResidentOut:
        """Name, address, phone, emergency contacts in calling order, medical and access
        notes. Kept at the hub only."""
        found = await asyncio.to_thread(store().get, site, bed)
        if found is None:
            raise ApiError(404, f"no resident profile for {site}/{bed}")
        return resident_out(found)

    @api.put("/{site}/{bed}", response_model=ResidentOut,
             responses=error_responses(403, 413, 503),
             summary="Create or replace a bed's resident profile (admin)")
    async def put_resident(site: SiteId, bed: SiteId, body: ResidentIn, key: Admin
                           ) -> ResidentOut:
        """The whole profile; the same again changes nothing (``updated_at`` stays)."""
        resident = Resident(
            site=site, bed=bed, display_name=body.display_name.strip(),
            address=body.address.strip(), phone=body.phone,
            contacts=tuple(Contact(name=c.name.strip(), relation=c.relation.strip(),
                                   phone=c.phone) for c in body.contacts),
            medical_notes=body.medical_notes.strip(), access_notes=body.access_notes.strip())

        def put() -> Resident | None:
            store().put(resident, actor=key.name, now_ms=ctx.clock())
            return store().get(site, bed)

        try:
            stored = await asyncio.to_thread(put)
        except ValueError as exc:  # blank once trimmed: the schema cannot say it
            raise ApiError(400, str(exc)) from exc
        assert stored is not None
        return resident_out(stored)

    @api.delete("/{site}/{bed}", status_code=204, response_class=Response,
                responses=error_responses(403, 404, 503),
                summary="Delete a bed's resident profile (admin)")
    async def delete_resident(site: SiteId, bed: SiteId, key: Admin) -> Response:
        if not await asyncio.to_thread(store().delete, site, bed):
            raise ApiError(404, f"no resident profile for {site}/{bed}")
        return Response(status_code=204)

    @api.post("/import", response_model=ResidentImportOut,
              responses={**error_responses(403, 413, 503),
                         400: {"model": ImportRefused, "description": "Bad Request: "
                               "what is wrong, per row and column (nothing was imported)"}},
              summary="Import resident profiles from CSV (admin)")
    async def import_residents(body: ResidentImportBody, key: Admin) -> ResidentImportOut:
        """Upserts every row, all or nothing; columns left out keep what is stored, the
        contact columns replace the contact list. Format: ``homecare residents import
        --help``. ``dry_run``: only say what would change."""
        parsed = parse_csv(body.csv)
        if parsed.problems:
            raise ApiError(400, [RowProblemOut(row=p.row, column=p.column, msg=p.message
                                               ).model_dump() for p in parsed.problems[:200]],
                           error="invalid_csv")
        result = await asyncio.to_thread(store().import_rows, parsed.rows, actor=key.name,
                                         now_ms=ctx.clock(), dry_run=body.dry_run)
        return ResidentImportOut(
            dry_run=body.dry_run, created=result.count("created"),
            updated=result.count("updated"), unchanged=result.count("unchanged"),
            rows=[ResidentImportRow(row=row, site=site, bed=bed, result=done)
                  for row, site, bed, done in result.rows])

    return api
