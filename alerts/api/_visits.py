"""``/api/v1/service-logs`` and ``/api/v1/visits``: the caregiver service log and the app's
check-in/check-out (recorded with ``source="api"`` and the API key's name as actor).

A check-in/out is validated before anything enters the hash chain, which keeps what it is given
for ever: 422 for a body that breaks the schema (ids as in the device contract), 404 for a site
or bed the gateway does not know (neither in the registry, auto-registered ones included, nor
seen live), 409 when it contradicts its visit (:func:`alerts.servicelog.refusal`: a check-out
without the visit's check-in at that bed by that caregiver, a second check-out, a second
check-in). Only the same call again is a retry, answered 200 with the earlier record
(:func:`alerts.servicelog.repeats`); one that differs is judged like any other. The visit
check runs in the append's transaction.

A visit recorded here is then checked like a badge's: the ``service_anomaly`` detector reads
the app's check-ins and check-outs from the service log and judges them against the plans, the
sensors and the recordings (README, "Service supervision").
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from alerts.api._auth import Dispatcher, require
from alerts.api._context import ApiContext
from alerts.api._errors import ApiError, error_responses
from alerts.api._models import (
    EPOCH_MS_MAX,
    ID_PATTERN,
    ChainCheck,
    CheckInBody,
    CheckOutBody,
    PersonId,
    RefusedVisitList,
    RefusedVisitOut,
    ServiceLogPage,
    ServiceLogRecordOut,
)
from alerts.errors import VisitRefused
from alerts.keys import Role
from alerts.model import VisitEvent
from alerts.servicelog import Audit, RefusedVisit, ServiceRecord, Verification, api_origin

EVENTS: Final[dict[str, Literal["check_in", "check_out", "service"]]] = {
    "check_in": "check_in", "check_out": "check_out", "service": "service"}
SOURCES: Final[dict[str, Literal["badge", "api", "gateway"]]] = {
    "badge": "badge", "api": "api", "gateway": "gateway"}
HEAD_PATTERN: Final = r"^[0-9]{1,18}:[0-9a-fA-F]{64}$"
MAX_KEPT_HEADS: Final = 100


class FullCheck(BaseModel):
    """The last full verification (every record recomputed), run in the background."""

    model_config = ConfigDict(frozen=True)
    at: int
    """When it ended (epoch ms)."""
    ok: bool
    records: int
    """Records it recomputed."""
    head_seq: int
    """The last record it found sound."""
    first_bad_seq: int | None = None
    error: str | None = None
    seconds: float = 0.0


class ChainVerified(ChainCheck):
    suspect_from: int | None = None
    """A kept head the chain does not reach: some record from this one up to
    ``suspect_to`` was changed, removed or re-hashed (``first_bad_seq`` null: not known)."""
    suspect_to: int | None = None
    log_last_seq: int = 0
    """Where the log ends: the last record it holds (0: none), sound or not (``records`` and
    ``head_seq`` say how far it is known good, which may be none of it)."""
    kept_beyond_seq: int | None = None
    """The first kept head (``head``) beyond the log's end: the log does not reach it, so it
    is not sound (null: every kept head is within the log)."""
    last_full: FullCheck | None = None
    """The last full verification; the records before ``from_seq`` were not recomputed by
    this one and are vouched for only as of it (null: never)."""
    scope: str
    """What this answer vouches for, in words."""


def full_check(audit: Audit | None) -> FullCheck | None:
    if audit is None:
        return None
    return FullCheck(at=audit.at, ok=audit.ok, records=audit.records, head_seq=audit.head_seq,
                     first_bad_seq=audit.first_bad_seq, error=audit.error,
                     seconds=audit.seconds)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scope(result: Verification) -> str:
    """What a verification vouches for: the records recomputed now, and those before them as
    of the last full verification."""
    now = (f"records {result.from_seq} to {result.from_seq + result.checked - 1} recomputed "
           f"now" if result.checked else "no record recomputed now")
    if not result.ok:
        now += f"; {result.log_end()}; " + (f"sound up to record {result.head_seq}"
                                            if result.head_seq else "no record is known sound")
    if result.from_seq <= 1:
        return now
    audit = result.last_full
    if audit is None:
        return (f"{now}; records before {result.from_seq} were verified earlier and never "
                f"fully re-verified since (full=true recomputes every record)")
    if audit.ok:
        return (f"{now}; records before {result.from_seq} as of the full verification at "
                f"{_iso(audit.at)} (its own links sound up to record {audit.head_seq})")
    return (f"{now}; the full verification at {_iso(audit.at)} found record "
            f"{audit.first_bad_seq} bad: {audit.error}")


def record_out(record: ServiceRecord) -> ServiceLogRecordOut:
    return ServiceLogRecordOut(
        seq=record.seq, at=record.at, recorded_at=record.recorded_at, site=record.site,
        bed=record.bed, caregiver=record.caregiver, visit=record.visit,
        event=EVENTS.get(record.event, "check_out"), method=record.method,
        services=list(record.services) if record.services is not None else None,
        source=SOURCES.get(record.source, "api"), device=record.device,
        actor=record.actor, prev_hash=record.prev_hash, hash=record.hash, detail=record.detail)


def refused_out(refused: RefusedVisit) -> RefusedVisitOut:
    e = refused.event
    return RefusedVisitOut(
        origin=e.origin, at=e.at, recorded_at=refused.recorded_at, site=e.site, bed=e.bed,
        caregiver=e.caregiver, visit=e.visit, event=e.event, method=e.method,
        services=list(e.services) if e.services is not None else None, device=e.device,
        reason=refused.reason, detail=refused.detail)


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["service log"])
    viewer = Depends(require(Role.VIEWER))
    log = ctx.service_log

    @api.get("/service-logs", response_model=ServiceLogPage, dependencies=[viewer],
             summary="Caregiver check-ins, check-outs and service records, newest first")
    async def service_logs(
        site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        bed: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        caregiver: Annotated[PersonId | None, Query()] = None,
        visit: Annotated[PersonId | None, Query()] = None,
        since: Annotated[int | None, Query(ge=0, le=EPOCH_MS_MAX,
                                           description="at >= since (epoch ms)")] = None,
        until: Annotated[int | None, Query(ge=0, le=EPOCH_MS_MAX,
                                           description="at < until (epoch ms)")] = None,
        cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
        event: Annotated[Literal["check_in", "check_out", "service"] | None, Query(
            description="Only check-ins, check-outs or service records")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> ServiceLogPage:
        records = await asyncio.to_thread(
            log.query, site=site, bed=bed, caregiver=caregiver, visit=visit, since=since,
            until=until, before_seq=int(cursor) if cursor is not None else None,
            event=event, limit=limit + 1)
        page = records[:limit]
        return ServiceLogPage(
            items=[record_out(r) for r in page],
            next_cursor=str(page[-1].seq) if len(records) > limit else None)

    @api.get("/service-logs/verify", response_model=ChainVerified, dependencies=[viewer],
             summary="Verify the service log's hash chain against heads kept elsewhere")
    async def verify(
        head: Annotated[list[Annotated[str, StringConstraints(pattern=HEAD_PATTERN)]] | None,
                        Query(max_length=MAX_KEPT_HEADS, description="A head kept elsewhere, "
                              "SEQ:HASH (the seq and hash delivered upstream with a record); "
                              "repeat for more")] = None,
        full: Annotated[bool, Query(description="Recompute every record, not only those "
                                                "after the last one verified")] = False,
    ) -> ChainVerified:
        """``ok`` false names the first record that was changed, removed, moved, or is not the
        one a kept head says (or, from one kept head the chain does not reach, the records it
        may be: ``suspect_from`` to ``suspect_to``). Goes on from the last record verified
        unless ``full`` (which also finds an edit behind it that kept the old hashes); in a
        worker thread. The records before ``from_seq`` are vouched for as of ``last_full``,
        the full verification the gateway runs in the background (``scope`` says it in
        words); a bad record it found keeps ``ok`` false until a full one finds none."""
        kept = [(int(seq), digest.lower())
                for seq, _, digest in (text.partition(":") for text in head or ())]
        result = await asyncio.to_thread(log.verify, heads=kept, full=full)
        return ChainVerified(
            ok=result.ok, records=result.records, head_seq=result.head_seq,
            head_hash=result.head_hash, checked=result.checked, from_seq=result.from_seq,
            kept_heads=len(kept), first_bad_seq=result.first_bad_seq, error=result.error,
            suspect_from=result.suspect_from, suspect_to=result.suspect_to,
            log_last_seq=result.log_last_seq, kept_beyond_seq=result.kept_beyond_seq,
            last_full=full_check(result.last_full), scope=scope(result))

    @api.get("/service-logs/refused", response_model=RefusedVisitList, dependencies=[viewer],
             summary="Badge check-ins/outs set aside (never chained), newest first")
    async def refused(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> RefusedVisitList:
        """A badge event that contradicts its visit (say, a check-out without a check-in) is
        kept here with the reason instead of entering the hash chain."""
        items = await asyncio.to_thread(log.refused, limit=limit)
        return RefusedVisitList(items=[refused_out(r) for r in items])

    def known_bed(site: str, bed: str) -> None:
        if ctx.registry.bed(site, bed) is not None or ctx.live.bed(site, bed) is not None:
            return
        if site not in ctx.registry.sites and not ctx.live.bed_keys().has_site(site):
            raise ApiError(404, f"no site {site}")
        raise ApiError(404, f"no bed {site}/{bed}")

    async def record(event: VisitEvent, response: Response) -> ServiceLogRecordOut:
        known_bed(event.site, event.bed)
        try:
            [(stored, new)] = await asyncio.to_thread(log.append, [event], now_ms=event.at)
        except VisitRefused as exc:
            raise ApiError(409, {"reason": exc.reason, "message": exc.detail}) from exc
        response.status_code = 201 if new else 200
        return record_out(stored)

    answers = {201: {"model": ServiceLogRecordOut, "description": "Recorded"},
               200: {"model": ServiceLogRecordOut,
                     "description": "Already recorded (a retry): the earlier record"},
               **error_responses(403, 404, 409, 413)}

    @api.post("/visits/check-in", response_model=ServiceLogRecordOut, status_code=201,
              responses=answers, tags=["visits"], summary="Check a caregiver in (the app)")
    async def check_in(body: CheckInBody, key: Dispatcher,
                       response: Response) -> ServiceLogRecordOut:
        """Idempotent per visit (site, bed, caregiver and visit id: the same visit id at
        another bed or by another caregiver is another visit): the same call again (the visit
        not checked out since) returns the first record with 200. 409 ``visit_id_reused``
        for a check-in after the visit's check-out (or a day after a check-in never checked
        out): a new visit under a visit id used before; ``already_checked_in`` for any other
        check-in of a visit checked in already."""
        return await record(VisitEvent(
            origin=api_origin(body.site, body.bed, body.caregiver, body.visit,
                              "check_in"), at=ctx.clock(),
            site=body.site, bed=body.bed, caregiver=body.caregiver, visit=body.visit,
            event="check_in", source="api", method="app", actor=key.name), response)

    @api.post("/visits/check-out", response_model=ServiceLogRecordOut, status_code=201,
              responses=answers, tags=["visits"], summary="Check a caregiver out (the app)")
    async def check_out(body: CheckOutBody, key: Dispatcher,
                        response: Response) -> ServiceLogRecordOut:
        """With the service item codes delivered; idempotent per visit like check-in: only the
        same call again (same caregiver and services) is 200. 409 (``detail.reason``) unless
        the visit is open at that bed for that caregiver: ``no_check_in``, ``other_bed`` or
        ``other_caregiver`` (that visit id is open only at another bed or for another
        caregiver), ``already_checked_out`` (other services after the check-out too)."""
        return await record(VisitEvent(
            origin=api_origin(body.site, body.bed, body.caregiver, body.visit,
                              "check_out"), at=ctx.clock(),
            site=body.site, bed=body.bed, caregiver=body.caregiver, visit=body.visit,
            event="check_out", source="api", method="app", services=tuple(body.services),
            actor=key.name), response)

    return api
