"""``/api/v1/reports/supervision``: the supervision and settlement report of a month
(:mod:`alerts.supervision`), for dispatcher and admin keys (it names caregivers' visits and
what is billable).

Per care institution and caregiver: planned, performed, verified, unverifiable (with why) and
flagged visits with their reasons, service items and minutes, billable and held minutes (the
unverifiable ones' apart); each visit line with the service record it was read from. JSON by
default; ``format=csv`` one ``table`` as a download
(``caregivers``, ``visits``, ``missed``); ``format=html`` the printable page with its charts,
under a policy of its own (its style block by hash, no script, nothing fetched). Months are
each site's own (the registry's zone, else the ``timezone`` setting); built in a worker
thread. The report states the service log chain's verification (``chain`` in the JSON, a
banner on the page, red when not sound, and the header ``X-Service-Log-Chain`` on every
format): verified for it from the checkpoint, the records before as of the gateway's last full
verification (:mod:`alerts.chainstatus`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from alerts.api._auth import Dispatcher
from alerts.api._context import ApiContext
from alerts.api._errors import ApiError, error_responses
from alerts.api._models import ID_PATTERN
from alerts.chainstatus import chain_status
from alerts.plans import zone_named
from alerts.supervision import MONTH_PATTERN, supervision_report
from alerts.supervisionpage import (
    PAGE_POLICY,
    SUPERVISION_TABLES,
    supervision_csv,
    supervision_html,
)


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["reports"])

    @api.get("/reports/supervision", responses={
                 200: {"description": "The report (JSON), a CSV table or the printable page",
                       "content": {"application/json": {}, "text/csv": {}, "text/html": {}}},
                 **error_responses(403)},
             response_class=Response,
             summary="Supervision and settlement report of a month")
    async def supervision(
        _key: Dispatcher,
        month: Annotated[str, Query(pattern=MONTH_PATTERN,
                                    description="The month, YYYY-MM (each site's own zone)")],
        format: Annotated[Literal["json", "csv", "html"], Query(
            description="JSON, one CSV table, or the printable page")] = "json",
        table: Annotated[Literal["caregivers", "visits", "missed"], Query(
            description="The CSV table")] = "caregivers",
        institution: Annotated[str | None, Query(
            pattern=ID_PATTERN, description="Only this institution's sites")] = None,
    ) -> Response:
        """Per institution, caregiver and month: planned, performed, verified, unverifiable and
        flagged visits (reasons), items and minutes, billable and held minutes, missed plans."""
        registry = ctx.registry

        def build() -> Any:
            now_ms = ctx.clock()
            chain = chain_status(ctx.service_log.verify(), kept_heads=0, at_ms=now_ms)
            return supervision_report(
                log=ctx.service_log, plans=ctx.plans, catalogue=ctx.catalogue, month=month,
                zone_of=lambda site: zone_named(registry.timezone(site, ctx.timezone)),
                institutions=ctx.institutions, now_ms=now_ms, institution=institution,
                chain=chain)

        try:
            report = await asyncio.to_thread(build)
        except ValueError as exc:  # more records in a month than one report reads
            raise ApiError(422, str(exc)) from exc
        chain = report.chain
        stated = ("sound" if chain.sound else "NOT SOUND") + f"; records={chain.records}"
        if chain.first_bad_seq is not None:
            stated += f"; first_bad_seq={chain.first_bad_seq}"
        if format == "html":
            return Response(supervision_html(report), media_type="text/html; charset=utf-8",
                            headers={"Content-Security-Policy": PAGE_POLICY,
                                     "Cache-Control": "no-store",
                                     "X-Service-Log-Chain": stated})
        if format == "csv":
            assert table in SUPERVISION_TABLES
            name = "-".join(p for p in ("supervision", month, institution, table) if p)
            return Response(supervision_csv(report, table), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"',
                                     "Cache-Control": "no-store",
                                     "X-Service-Log-Chain": stated})
        return Response(_json(report.to_json()), media_type="application/json",
                        headers={"Cache-Control": "no-store", "X-Service-Log-Chain": stated})

    return api


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
