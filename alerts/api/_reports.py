"""``/api/v1/reports/response``: how alerts were answered (:mod:`alerts.reports`).

For any key (as the other reading routes): the alerts opened in ``[since, until)`` (default:
the 7 days up to now; at most 366 days), on the given sites, with the time to acknowledge and
to resolve of each, grouped by day, shift, site and dispatcher, and the outcomes by type.
JSON by default; ``format=csv`` gives one ``table`` of it (``alerts``, ``days``, ``shifts``,
``sites``, ``dispatchers``, ``outcomes``) as a CSV download. Each alert's day and shift are
read in its site's zone (the registry's ``timezone`` of the site, else the station's, the one
``/station`` names), the shifts being the on-call roster's in force when it has any (else
``report_shifts``); the days listed, with their midnights, are the station's.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from alerts.api._auth import require
from alerts.api._context import ApiContext
from alerts.api._errors import ApiError, error_responses
from alerts.api._models import EPOCH_MS_MAX, ID_PATTERN
from alerts.keys import Role
from alerts.reports import (
    AlertResponse,
    GroupStats,
    ResponseReport,
    Shift,
    ShiftOf,
    read_report,
)
from alerts.roster import Roster

WEEK_MS = 7 * 86_400_000
TABLES: Final = ("alerts", "days", "shifts", "sites", "dispatchers", "outcomes")
"""The CSV tables of a report."""
_GROUPS: Final = {"days": "by_day", "shifts": "by_shift", "sites": "by_site",
                  "dispatchers": "by_dispatcher"}


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def to_csv(report: ResponseReport, table: str) -> str:
    """One table of the report as CSV: a header row (the JSON field names), then one row per
    alert, group, or type and outcome code (``resolved_by_system`` for the system's)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if table == "alerts":
        names = list(AlertResponse.__dataclass_fields__)
        writer.writerow(names)
        for answer in report.alerts:
            writer.writerow([_cell(getattr(answer, n)) for n in names])
    elif table in _GROUPS:
        names = list(GroupStats.__dataclass_fields__)
        writer.writerow(names)
        for stats in getattr(report, _GROUPS[table]):
            writer.writerow([_cell(getattr(stats, n)) for n in names])
    else:
        writer.writerow(["type", "outcome", "count"])
        for row in report.outcomes:
            for code, count in row.outcomes.items():
                writer.writerow([row.type, code, count])
            if row.resolved_by_system:
                writer.writerow([row.type, "resolved_by_system", row.resolved_by_system])
    return out.getvalue()


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class AlertResponseOut(_Out):
    id: str
    type: str
    severity: str
    critical: bool
    """Critical at any time (a call the person cancelled at once included)."""
    site: str
    bed: str
    status: str
    opened_at: int
    opened_at_local: str
    """In its site's zone, ``YYYY-MM-DD HH:MM:SS``."""
    day: str
    """The calendar day it opened, in its site's zone."""
    shift: str
    """The shift it opened in (the roster's shifts when it has any), in its site's zone."""
    shift_date: str
    """The day that shift started (after midnight, a night shift's is the day before)."""
    answer: Literal["acknowledged", "resolved"] | None
    """How a person first answered it: acknowledged, or resolved without an acknowledgement;
    null: nobody has."""
    answered_at: int | None
    answered_by: str | None
    ack_s: float | None
    """Time to acknowledge: from the opening to the first answer, in seconds."""
    within_target: bool | None
    """Answered within the target; false also when not answered and older than it; null: not
    answered and younger than it."""
    resolved_at: int | None
    resolved_by: str | None
    resolve_s: float | None
    outcome: str | None


class GroupStatsOut(_Out):
    key: str | None
    """The day (``YYYY-MM-DD``), shift, site or dispatcher; null: the dispatcher of alerts
    nobody answered (and the totals)."""
    start: int | None = None
    """A day's local midnight (epoch ms); null for the other groups."""
    alerts: int
    answered: int
    ack_median_s: float | None
    ack_p90_s: float | None
    """90th percentile, nearest rank."""
    ack_mean_s: float | None
    ack_max_s: float | None
    resolved: int
    resolve_median_s: float | None
    resolve_p90_s: float | None
    resolve_mean_s: float | None
    critical: int
    critical_decided: int
    """Critical alerts answered, or older than the target: the share's denominator."""
    critical_within_target: int
    critical_within_target_share: float | None


class TypeOutcomesOut(_Out):
    type: str
    resolved_by_person: int
    resolved_by_system: int
    outcomes: dict[str, int]
    false_alarms: int
    false_alarm_share: float | None


class ShiftOut(_Out):
    name: str
    start: str
    """``HH:MM`` in each site's zone; a shift lasts until the next one starts."""


class ResponseReportOut(_Out):
    since: int
    until: int
    timezone: str | None
    ack_target_s: float
    shifts: list[ShiftOut]
    totals: GroupStatsOut
    by_day: list[GroupStatsOut]
    """Every day of the period, with or without alerts."""
    by_shift: list[GroupStatsOut]
    by_site: list[GroupStatsOut]
    by_dispatcher: list[GroupStatsOut]
    outcomes: list[TypeOutcomesOut]
    alerts: list[AlertResponseOut]
    """The first ``limit`` alerts, oldest first."""
    alerts_total: int


SiteList = Annotated[list[Annotated[str, StringConstraints(pattern=ID_PATTERN)]] | None,
                     Query(max_length=100)]


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(prefix="/reports", tags=["reports"])

    @api.get("/response", response_model=ResponseReportOut,
             dependencies=[Depends(require(Role.VIEWER))],
             responses={**error_responses(400, 503),
                        200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                              "description": "The report (JSON), or one table of it (CSV)"}},
             summary="Response report: time to acknowledge and to resolve, within the target")
    async def response_report(
        since: Annotated[int | None, Query(ge=0, le=EPOCH_MS_MAX,
                                           description="opened_at >= since (epoch ms); "
                                           "default: 7 days before until")] = None,
        until: Annotated[int | None, Query(ge=0, le=EPOCH_MS_MAX,
                                           description="opened_at < until (epoch ms); "
                                           "default: now")] = None,
        site: SiteList = None,
        format: Annotated[Literal["json", "csv"], Query()] = "json",
        table: Annotated[Literal[TABLES], Query(  # type: ignore[valid-type]
            description="With format=csv: which table")] = "alerts",
        limit: Annotated[int, Query(ge=0, le=10_000, description="Alerts listed in JSON")
                         ] = 1000,
    ) -> Any:
        """The alerts opened in the period (at most 366 days and 100,000 alerts), measured
        as :mod:`alerts.reports` says: the first answer by a person (an acknowledgement, or a
        resolution without one), the resolution, and whether a critical alert was answered
        within the station's target (``report_ack_target_s``); grouped by day and shift
        (each alert's in its site's zone; the roster's shifts, else ``report_shifts``), site
        and dispatcher; outcomes by type."""
        if ctx.alert_store is None:
            raise ApiError(503, "the alert store is not running")
        now = ctx.clock()
        end = until if until is not None else now
        start = since if since is not None else end - WEEK_MS
        zone = ctx.registry.defaults.timezone or ctx.timezone
        roster = ctx.oncall.roster if ctx.oncall is not None else None
        roster_shifts: tuple[Sequence[Shift], ShiftOf] | None = None
        if roster is not None and roster.shifts:
            def on_shift(local: datetime, roster: Roster = roster) -> tuple[str, date]:
                found = roster.shift_at(local)
                assert found is not None  # the roster has shifts
                return found[0].name, found[1]
            roster_shifts = (roster.shifts, on_shift)
        try:
            report = await asyncio.to_thread(
                read_report, ctx.alert_store, since=start, until=end, sites=site,
                settings=ctx.reports, timezone=zone, now_ms=now,
                zone_of=lambda name: ctx.registry.timezone(name, ctx.timezone),
                roster_shifts=roster_shifts)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if format == "csv":
            return Response(to_csv(report, table), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition":
                                     f'attachment; filename="response-{table}.csv"'})
        body = dataclasses.asdict(report)
        body["alerts_total"] = len(report.alerts)
        body["alerts"] = body["alerts"][:limit]
        return ResponseReportOut.model_validate(body)

    return api
