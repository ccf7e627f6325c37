"""``/api/v1/beds``: beds with device state and recent values; metric series.

Beds are those of the registry (auto-registered ones included) plus any the live state has
seen. Device connectivity is judged at request time: what the device last said, unless it has
been silent longer than its heartbeat times the registry's ``offline_factor``; a last will
counts from its receipt unless the device spoke after it, the rule ``device_offline`` follows
too (:mod:`devices.devicetime`). Each device shows how far its clock is from receipt time and
whether it is wrong (outside the clock window).

No request here walks every bed or device (issue #17: after a flood of made-up ids, sorting
100,000 beds per ``GET /beds`` held the event loop 1.2 s): pages come from the registry's and
the live state's sorted indexes (:class:`devices.bedkeys.BedKeys`), and a bed lists its
devices registered on first sight only up to :data:`MAX_UNHEARD_DEVICES` (the rest counted).
``python -m bench.beds_api`` measures it.

A bed counts, beside its own unresolved alerts, the unresolved summaries that list it (alert
storms, devices outside the registry: one site-level alert per site and type, ``bed`` empty)
and its site's unresolved ``site_offline`` alert when that names the bed (or names only some
of the beds affected: then every bed of the site, since which of the rest are dark is not
known), so that a device offline inside a storm or a dark site does not leave its bed looking
calm. Which summaries
list a bed comes from the storms' index of beds (:meth:`alerts.storms.AlertStorms.summaries_of`),
kept as members join and clear; a summary counts while its alert is unresolved (resolved by a
dispatcher or by the gateway: gone from the bed at once). A request reads the unresolved
alerts once, as it did, and each bed's summaries in the index, never a summary's members.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Depends, Path, Query

from alerts.api._alerts import alert_out
from alerts.api._auth import require
from alerts.api._context import ApiContext
from alerts.api._errors import ApiError, error_responses
from alerts.api._models import (
    EPOCH_MS_MAX,
    ID_PATTERN,
    BedDetail,
    BedOut,
    BedPage,
    BedSummaryOut,
    DeviceOut,
    Metric,
    Reading,
    Series,
)
from alerts.errors import HistoryError
from alerts.keys import Role
from alerts.livestate import READINGS, DeviceState, connectivity
from alerts.model import Alert, AlertType
from alerts.store import split_incident
from alerts.storms import SUMMARY

SiteId = Annotated[str, Path(pattern=ID_PATTERN)]


@dataclass(slots=True)
class _Summaries:
    """The unresolved site-level alerts a bed's views may list (:func:`router`'s
    ``open_summaries``)."""

    storms: dict[str, Alert] = field(default_factory=dict)
    """Summaries (alert storms, devices outside the registry) by incident key."""
    dark: dict[str, list[tuple[Alert, frozenset[str] | None]]] = field(default_factory=dict)
    """``site_offline`` alerts by site, each with the beds it names (None: all the site's)."""
    offline: dict[tuple[str, str], dict[str, Alert]] = field(default_factory=dict)
    """Devices' own ``device_offline`` alerts not cleared, by site and bed, then device: what
    a device the live state does not hold (a restart forgot it, and it is still silent)
    shows."""

HOUR_MS = 3_600_000
MAX_UNHEARD_DEVICES = 32
"""Devices registered on first sight and not in live state listed on a bed's page; the rest
are counted (``devices_not_shown``)."""


def _readings(points: list[tuple[int, float]]) -> list[Reading]:
    return [Reading(t=t, value=v) for t, v in points]


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(prefix="/beds", tags=["beds"])
    viewer = Depends(require(Role.VIEWER))

    def page_keys(after: tuple[str, str] | None, site: str | None,
                  limit: int) -> list[tuple[str, str]]:
        """The first ``limit`` beds after ``after`` of the registry's and the live state's
        together: the first ``limit`` of each, merged (both kept sorted, so the cost is the
        page's, whatever the number of beds)."""
        merged = set(ctx.registry.bed_keys.page(after, site, limit))
        merged.update(ctx.live.bed_keys().page(after, site, limit))
        return sorted(merged)[:limit]

    def devices(site: str, bed: str, now: int,
                offline: dict[tuple[str, str], dict[str, Alert]]
                ) -> tuple[list[DeviceOut], int]:
        """The bed's devices to show, and how many more it has. Shown: every device the
        registry file lists and every device the live state holds (at most
        ``max_devices_per_bed``); of those registered on first sight and not held, the first
        :data:`MAX_UNHEARD_DEVICES`: the rest are counted, so that a flood of made-up ids on
        a bed costs its page neither time nor bytes. A device the live state does not hold
        (not heard since a restart) whose own ``device_offline`` alert is open and not cleared
        or which is a member of a ``device_offline`` summary is ``offline``, last seen when
        the alert says (until 2026-12-03: ``unknown``, never seen, beside the alert)."""
        registered = ctx.registry.bed(site, bed)
        known = registered.devices if registered is not None else {}
        live = {d.device: d for d in ctx.live.devices_of(site, bed)}
        shown = set(live)
        unheard = 0
        for device_id, listed in known.items():  # file devices first, then auto-registered
            if not listed.auto_registered:
                shown.add(device_id)
            elif device_id not in live:
                if unheard == MAX_UNHEARD_DEVICES:
                    break
                shown.add(device_id)
                unheard += 1
        # Devices the registry file does not list, forgotten at a restart with their first
        # sight, are still shown while their own device_offline alert is open.
        own = offline.get((site, bed), {})
        alerted = [d for d in own if d not in known and d not in live]
        shown.update(alerted)
        total = len(known) + sum(1 for d in live if d not in known) + len(alerted)
        defaults = ctx.registry.defaults
        out = []
        for device_id in sorted(shown):
            entry = known.get(device_id)
            state = live.get(device_id)
            heartbeat = (state.heartbeat_s if state is not None and state.heartbeat_s
                         else entry.heartbeat_s if entry is not None else defaults.heartbeat_s)
            alert = own.get(device_id) if state is None else None
            said = alert.evidence.get("kind") if alert is not None else None
            kind = entry.kind.value if entry is not None else (
                state.kind.value if state is not None else
                said if isinstance(said, str) else "unknown")
            heard = alert.evidence.get("last_heard_ms") if alert is not None else None
            if state is None and alert is None and ctx.storms is not None:
                heard = ctx.storms.member_since(AlertType.DEVICE_OFFLINE, site, bed, device_id)
            out.append(DeviceOut(
                device=device_id, kind=kind,
                state=connectivity(state, now_ms=now, heartbeat_s=heartbeat,
                                   offline_factor=defaults.offline_factor)
                if state is not None else "offline" if alert is not None or heard is not None
                else "unknown",
                reported_state=_reported(state), battery=state.battery if state else None,
                fw=state.fw if state else None, heartbeat_s=heartbeat,
                last_seen=state.last_seen or None if state else
                heard if isinstance(heard, int) and heard > 0 else None,
                status_at=state.status_at if state else None,
                # A device live state holds that the registry does not (any longer) was
                # registered on first sight: the registry's memo of those forgot it.
                registered=entry is not None or state is not None,
                auto_registered=entry.auto_registered if entry is not None else True,
                clock_offset_s=state.clock_offset_ms / 1000
                if state is not None and state.clock_offset_ms is not None else None,
                clock_wrong=state.clock_wrong if state is not None else False))
        return out, total - len(out)

    def bed_out(site: str, bed: str, now: int, own_alerts: int,
                summaries: _Summaries) -> BedOut:
        """``own_alerts``: the bed's unresolved alerts; ``summaries``: the unresolved
        site-level alerts that may list it (:func:`open_summaries`)."""
        registered = ctx.registry.bed(site, bed)
        live = ctx.live.bed(site, bed)
        latest = live.latest() if live is not None else {}
        shown, more = devices(site, bed, now, summaries.offline)
        listing = listing_summaries(site, bed, summaries)
        return BedOut(
            site=site, bed=bed, person=registered.person if registered is not None else None,
            auto_registered=registered.auto_registered if registered is not None else True,
            last_seen=live.last_seen or None if live is not None else None,
            devices=shown, devices_not_shown=more,
            latest={m: Reading(t=t, value=v) for m, (t, v) in latest.items()},
            open_alerts=own_alerts + len(listing), summaries=listing,
            away_since=live.away_since() if live is not None else None)

    def listing_summaries(site: str, bed: str,
                          summaries: _Summaries) -> list[BedSummaryOut]:
        """The unresolved summaries and dark-site alerts that list ``site``/``bed``, most
        severe first."""
        listing = [a for a, beds in summaries.dark.get(site, ()) if beds is None or bed in beds]
        if ctx.storms is not None and summaries.storms:
            listing += [summaries.storms[key] for key in ctx.storms.summaries_of(site, bed)
                        if key in summaries.storms]
        listing.sort(key=lambda a: (a.severity.rank, a.opened_at, a.id))
        return [BedSummaryOut(id=a.id, type=a.type, severity=a.severity, status=a.status,
                              site=a.site, opened_at=a.opened_at, summary=a.summary)
                for a in listing]

    async def unresolved() -> list[Alert]:
        if ctx.engine is not None:
            return ctx.engine.open_alerts()
        if ctx.alert_store is not None:
            return await asyncio.to_thread(ctx.alert_store.open_alerts)
        return []

    def open_summaries(alerts: list[Alert]) -> _Summaries:
        """The summary alerts among ``alerts`` (unresolved) by incident key, and the
        ``site_offline`` ones by site with the beds they name (None: every bed of the site,
        when the alert names only some of those affected)."""
        found = _Summaries()
        for a in alerts:
            if a.bed:
                if a.type == AlertType.DEVICE_OFFLINE and a.cleared_at is None:
                    episode = split_incident(a.incident)[0].split("/", 3)[-1]
                    found.offline.setdefault((a.site, a.bed), {})[episode] = a
                continue
            if a.evidence.get(SUMMARY) is True:
                found.storms[split_incident(a.incident)[0]] = a
                if a.type == AlertType.SITE_OFFLINE:
                    # Made-up sites gone dark, one summary (alerts.storms): its members are
                    # the sites it names (the first 50), every bed of each dark; the storms'
                    # bed index holds beds only.
                    for site in a.evidence.get("members") or ():
                        if isinstance(site, str) and site and "/" not in site:
                            found.dark.setdefault(site, []).append((a, None))
            elif a.type == AlertType.SITE_OFFLINE:
                named = a.evidence.get("beds")
                beds = (frozenset(str(b) for b in named)
                        if isinstance(named, list) and not a.evidence.get("beds_omitted")
                        else None)
                found.dark.setdefault(a.site, []).append((a, beds))
        return found

    def known(site: str, bed: str, alerts: list[Alert] | None = None) -> None:
        """404 unless the registry or the live state knows the bed, or (``alerts``: the
        unresolved ones) an alert is about it or a summary names it: a bed outside the
        registry is forgotten at a restart (and by the live state's bounds) while its alerts
        stay (until 2026-12-03 such a bed answered 404 beside a summary naming it)."""
        if ctx.registry.bed(site, bed) is not None or ctx.live.bed(site, bed) is not None:
            return
        if alerts is not None and (
                (ctx.storms is not None and ctx.storms.summaries_of(site, bed))
                or any(a.site == site and a.bed == bed for a in alerts)):
            return
        raise ApiError(404, f"no bed {site}/{bed}")

    @api.get("", response_model=BedPage, dependencies=[viewer],
             summary="Beds with device state and latest values")
    async def list_beds(
        site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        cursor: Annotated[str | None, Query(
            max_length=130, pattern=r"^[A-Za-z0-9_-]{1,64}/[A-Za-z0-9_-]{1,64}$",
            description="next_cursor of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> BedPage:
        """Sorted by site then bed. ``next_cursor`` continues after the last bed."""
        after = tuple(cursor.split("/", 1)) if cursor is not None else None
        keys = page_keys(after, site, limit + 1)  # type: ignore[arg-type]
        page = keys[:limit]
        alerts = await unresolved()
        counts = Counter((a.site, a.bed) for a in alerts)
        summaries = open_summaries(alerts)
        now = ctx.clock()
        items = [bed_out(s, b, now, counts[(s, b)], summaries) for s, b in page]
        return BedPage(items=items,
                       next_cursor=f"{page[-1][0]}/{page[-1][1]}" if len(keys) > limit else None)

    @api.get("/{site}/{bed}", response_model=BedDetail, dependencies=[viewer],
             responses=error_responses(404), summary="One bed: devices, recent values, alerts")
    async def get_bed(
        site: SiteId, bed: SiteId,
        recent_minutes: Annotated[int, Query(ge=0, le=1440,
                                             description="how much of each metric")] = 60,
    ) -> BedDetail:
        unresolved_now = await unresolved()
        known(site, bed, unresolved_now)
        alerts = sorted((a for a in unresolved_now if a.site == site and a.bed == bed),
                        key=lambda a: (a.severity.rank, a.opened_at, a.id))
        base = bed_out(site, bed, ctx.clock(), len(alerts), open_summaries(unresolved_now))
        recent: dict[str, list[Reading]] = {}
        live = ctx.live.bed(site, bed)
        if live is not None and recent_minutes:
            for metric, ring in live.rings.items():
                if ring.newest >= 0:
                    since = ring.newest - recent_minutes * 60_000
                    recent[metric] = _readings(ring.points(since=since))
        return BedDetail(**base.model_dump(exclude={"devices", "latest", "summaries"}),
                         devices=base.devices, latest=base.latest,
                         summaries=base.summaries, recent=recent,
                         alerts=[alert_out(a) for a in alerts])

    @api.get("/{site}/{bed}/series", response_model=Series, dependencies=[viewer],
             responses=error_responses(400, 404, 502, 503, 504),
             summary="One metric of one bed over time")
    async def series(
        site: SiteId, bed: SiteId, metric: Metric,
        since: Annotated[int | None, Query(ge=0, le=EPOCH_MS_MAX,
                                           description="epoch ms; default an hour ago")] = None,
        until: Annotated[int | None, Query(ge=0, le=EPOCH_MS_MAX,
                                           description="epoch ms, exclusive; default now")
                         ] = None,
        limit: Annotated[int, Query(ge=1, le=5000, description="most points returned; "
                                                               "history is downsampled")] = 1440,
    ) -> Series:
        """From memory when the gateway's 24 h ring covers ``since``; otherwise from the
        time-series database when one is configured (``source`` says which; database errors
        are 502/503)."""
        known(site, bed)
        now = ctx.clock()
        end = until if until is not None else now + 1
        start = since if since is not None else end - HOUR_MS
        if start >= end:
            raise ApiError(400, "since must be before until")
        in_memory = start >= ctx.live.coverage_start(site, bed, metric, now_ms=now)
        if in_memory or ctx.history is None:
            points = ctx.live.series(site, bed, metric, since=start, until=end)
            if len(points) > limit:
                points = points[-limit:]
            return Series(site=site, bed=bed, metric=metric, since=start, until=end,
                          source="memory", complete=in_memory, points=_readings(points))
        try:
            points = await ctx.history.series(site, bed, metric, since=start, until=end,
                                              max_points=limit)
        except HistoryError as exc:
            retry = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
            raise ApiError(exc.status, str(exc), error=exc.code, headers=retry) from exc
        return Series(site=site, bed=bed, metric=metric, since=start, until=end,
                      source="influxdb", complete=True, points=_readings(points))

    return api


def _reported(state: DeviceState | None) -> Literal["online", "offline"] | None:
    if state is None:
        return None
    if state.reported_state == "online":
        return "online"
    if state.reported_state == "offline":
        return "offline"
    return None


assert set(READINGS) == set(get_args(Metric)), "the API's metrics are the live state's"
