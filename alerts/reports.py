"""How alerts were answered: the response report and the response-time histograms.

The telecare norm is that alarm calls are answered within 60 s (TEC Quality: 97.5 % of them).
Per alert, this measures:

* **time to acknowledge**: from the opening to the *first answer by a person*, the first
  acknowledgement, or the resolution when a dispatcher resolved it without one. A call that
  comes again after an acknowledgement (``repeated``) is not measured again: the first answer
  counts. Who answered is the dispatcher of the alert (the API key's name);
* **time to resolve**: from the opening to the resolution, by a person or by the system (a
  condition that cleared);
* **within the target** (``ack_target_s``, 60 s): answered within it; not answered and older
  than it: missed; not answered and younger: not decided yet (left out of the share). A
  *critical* alert is one that was critical at any time: a call the person cancelled at once
  (downgraded to high) still had to be answered.

Grouped by the day and the shift it opened in, read in its site's zone (the registry's
``timezone`` of the site, else the station's), by site and by the dispatcher who answered
it (those nobody answered together), each group gives how many alerts, how many answered,
the median, 90th percentile (nearest rank), mean and longest time to acknowledge, the same of
the time to resolve, and the share of critical alerts answered within the target. Outcomes
by type: how each type was resolved (the outcome codes, ``false_alarm`` counted apart), and
how many the system resolved.

Shifts (:class:`Shift`: the on-call roster's shifts in force when it has any, else the
``report_shifts`` setting) are named start times in the site's zone; each lasts until the next
one starts, the last one past midnight until the first (``day=08:00``, ``night=20:00``: a call
at 02:00 is in the night shift, of the calendar day it opened in; ``shift_date`` says the shift
started the day before, as the roster that paged it says).

:class:`~alerts.responsemetrics.ResponseMetrics` observes the same two times as Prometheus
histograms, from the engine's committed changes.

>>> settings = ReportSettings(shifts=ReportSettings.parse_shifts(["day=08:00", "night=20:00"]))
>>> [settings.shift_at(minute) for minute in (0, 8 * 60, 19 * 60 + 59, 20 * 60)]
['night', 'day', 'day', 'night']
>>> median([45, 30, 50, 40]), nearest_rank([45, 30, 50, 40], 0.9)
(42.5, 50)
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

from alerts.model import AlertStatus, Severity
from alerts.store import AlertStore, FirstResponse

SHIFT_PATTERN: Final = re.compile(r"^([a-z0-9_]{1,32})=([01][0-9]|2[0-3]):([0-5][0-9])$")
DEFAULT_SHIFTS: Final = ("day=08:00", "night=20:00")
ACK_TARGET_S: Final = 60.0
FALSE_ALARM: Final = "false_alarm"
SYSTEM: Final = "system"
MAX_ALERTS: Final = 100_000
"""Alerts one report reads at most; a longer period is refused (narrow it)."""
MAX_DAYS: Final = 366


@dataclass(frozen=True, slots=True)
class Shift:
    name: str
    start_minute: int

    @property
    def start(self) -> str:
        return f"{self.start_minute // 60:02d}:{self.start_minute % 60:02d}"


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """The station's shifts and its answer target (settings ``report_shifts``,
    ``report_ack_target_s``)."""

    shifts: tuple[Shift, ...] = field(default_factory=lambda: ReportSettings.parse_shifts(
        DEFAULT_SHIFTS))
    ack_target_s: float = ACK_TARGET_S

    def __post_init__(self) -> None:
        if not self.shifts:
            raise ValueError("at least one shift")
        if len({s.name for s in self.shifts}) != len(self.shifts):
            raise ValueError("a shift name is given twice")
        if len({s.start_minute for s in self.shifts}) != len(self.shifts):
            raise ValueError("two shifts start at the same time")
        if not self.ack_target_s > 0:
            raise ValueError("the target must be positive")
        object.__setattr__(self, "shifts", tuple(sorted(self.shifts,
                                                        key=lambda s: s.start_minute)))

    @staticmethod
    def parse_shifts(items: Iterable[str]) -> tuple[Shift, ...]:
        """``name=HH:MM`` items (a shift's name and start); ``ValueError`` naming a bad one."""
        shifts = []
        for item in items:
            found = SHIFT_PATTERN.match(item.strip())
            if found is None:
                raise ValueError(f"{item!r}: expected name=HH:MM (a name of lower-case "
                                 "letters, digits and _, a 24-hour time)")
            shifts.append(Shift(found[1], int(found[2]) * 60 + int(found[3])))
        return tuple(shifts)

    def shift_at(self, minute: int) -> str:
        """The shift a local time (minutes after midnight) falls in."""
        current = self.shifts[-1]  # before the first start: the last shift, since yesterday
        for shift in self.shifts:
            if shift.start_minute <= minute:
                current = shift
        return current.name


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertResponse:
    """How one alert was answered."""

    id: str
    type: str
    severity: str
    critical: bool
    site: str
    bed: str
    status: str
    opened_at: int
    opened_at_local: str
    day: str
    """The calendar day it opened, in its site's zone."""
    shift: str
    shift_date: str
    """The day its shift started (the night shift's of the evening before, after midnight)."""
    answer: str | None
    """``acknowledged``, ``resolved`` (resolved without an acknowledgement), None."""
    answered_at: int | None
    answered_by: str | None
    ack_s: float | None
    within_target: bool | None
    resolved_at: int | None
    resolved_by: str | None
    resolve_s: float | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class GroupStats:
    key: str | None
    start: int | None
    """A day's local midnight (epoch ms); None for the other groups."""
    alerts: int
    answered: int
    ack_median_s: float | None
    ack_p90_s: float | None
    ack_mean_s: float | None
    ack_max_s: float | None
    resolved: int
    resolve_median_s: float | None
    resolve_p90_s: float | None
    resolve_mean_s: float | None
    critical: int
    critical_decided: int
    critical_within_target: int
    critical_within_target_share: float | None


@dataclass(frozen=True, slots=True)
class TypeOutcomes:
    type: str
    resolved_by_person: int
    resolved_by_system: int
    outcomes: dict[str, int]
    false_alarms: int
    false_alarm_share: float | None
    """Of those a person resolved; None when nobody resolved one."""


@dataclass(frozen=True, slots=True)
class ResponseReport:
    since: int
    until: int
    timezone: str | None
    ack_target_s: float
    shifts: list[dict[str, str]]
    totals: GroupStats
    by_day: list[GroupStats]
    by_shift: list[GroupStats]
    by_site: list[GroupStats]
    by_dispatcher: list[GroupStats]
    outcomes: list[TypeOutcomes]
    alerts: list[AlertResponse]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def nearest_rank(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``share`` of them at or
    below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _local(ms: int, zone: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(ms / 1000, zone)


ShiftOf = Callable[[datetime], tuple[str, date]]
"""``local time -> (shift name, the date the shift started)``."""


def shift_of(settings: ReportSettings) -> ShiftOf:
    """The shifts of ``settings`` as a :data:`ShiftOf` (the report's without a roster)."""
    def of(local: datetime) -> tuple[str, date]:
        minute = local.hour * 60 + local.minute
        started = local.date() if minute >= settings.shifts[0].start_minute \
            else local.date() - timedelta(days=1)
        return settings.shift_at(minute), started
    return of


def respond(row: FirstResponse, *, settings: ReportSettings, zone: tzinfo | None,
            now_ms: int, shifts: ShiftOf | None = None) -> AlertResponse:
    """One alert's answer, as the module docstring measures it; ``zone``: its site's,
    ``shifts``: the shifts in force (default: ``settings``')."""
    alert = row.alert
    answer = answered_at = answered_by = None
    if row.acknowledged_at is not None:
        answer, answered_at, answered_by = "acknowledged", row.acknowledged_at, \
            row.acknowledged_by
    elif (alert.status is AlertStatus.RESOLVED and alert.resolved_by
          and alert.resolved_by != SYSTEM):
        answer, answered_at, answered_by = "resolved", alert.resolved_at, alert.resolved_by
    target_ms = settings.ack_target_s * 1000
    ack_ms = answered_at - alert.opened_at if answered_at is not None else None
    within: bool | None
    if ack_ms is not None:
        within = ack_ms <= target_ms
    elif alert.status is AlertStatus.RESOLVED or now_ms - alert.opened_at > target_ms:
        within = False
    else:
        within = None
    opened = _local(alert.opened_at, zone)
    shift, started = (shifts or shift_of(settings))(opened)
    resolve_ms = (alert.resolved_at - alert.opened_at
                  if alert.status is AlertStatus.RESOLVED and alert.resolved_at is not None
                  else None)
    return AlertResponse(
        id=alert.id, type=alert.type.value, severity=alert.severity.value,
        critical=alert.severity is Severity.CRITICAL or row.downgraded, site=alert.site,
        bed=alert.bed, status=alert.status.value, opened_at=alert.opened_at,
        opened_at_local=opened.strftime("%Y-%m-%d %H:%M:%S"), day=opened.date().isoformat(),
        shift=shift, shift_date=started.isoformat(), answer=answer,
        answered_at=answered_at, answered_by=answered_by,
        ack_s=_seconds(ack_ms / 1000) if ack_ms is not None else None, within_target=within,
        resolved_at=alert.resolved_at if resolve_ms is not None else None,
        resolved_by=alert.resolved_by if resolve_ms is not None else None,
        resolve_s=_seconds(resolve_ms / 1000) if resolve_ms is not None else None,
        outcome=alert.outcome)


def group(key: str | None, rows: Sequence[AlertResponse], start: int | None = None
          ) -> GroupStats:
    acks = [r.ack_s for r in rows if r.ack_s is not None]
    resolves = [r.resolve_s for r in rows if r.resolve_s is not None]
    critical = [r for r in rows if r.critical]
    decided = [r for r in critical if r.within_target is not None]
    within = sum(1 for r in decided if r.within_target)
    return GroupStats(
        key=key, start=start, alerts=len(rows), answered=len(acks),
        ack_median_s=_seconds(median(acks)),
        ack_p90_s=nearest_rank(acks, 0.9),
        ack_mean_s=_seconds(statistics.fmean(acks)) if acks else None,
        ack_max_s=max(acks) if acks else None, resolved=len(resolves),
        resolve_median_s=_seconds(median(resolves)), resolve_p90_s=nearest_rank(resolves, 0.9),
        resolve_mean_s=_seconds(statistics.fmean(resolves)) if resolves else None,
        critical=len(critical), critical_decided=len(decided), critical_within_target=within,
        critical_within_target_share=round(within / len(decided), 4) if decided else None)


def _days(since: int, until: int, zone: tzinfo | None) -> dict[str, int]:
    """Every local day of ``[since, until)`` with its midnight (epoch ms)."""
    first: date = _local(since, zone).date()
    last: date = _local(max(since, until - 1), zone).date()
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return {d.isoformat(): int(datetime.combine(d, time(), zone).timestamp() * 1000)
            for d in days}


def build_report(rows: Sequence[FirstResponse], *, since: int, until: int,
                 settings: ReportSettings, timezone: str | None, now_ms: int,
                 zone_of: Callable[[str], str | None] | None = None,
                 roster_shifts: tuple[Sequence[Shift], ShiftOf] | None = None
                 ) -> ResponseReport:
    """The report of the alerts ``rows`` (opened in ``[since, until)``). ``timezone``: the
    station's (the days listed, their midnights); ``zone_of``: a site's zone (IANA; default
    and None: the station's); ``roster_shifts``: the roster's shifts and its
    :meth:`~alerts.roster.Roster.shift_at`, in place of ``settings``'."""
    zone = ZoneInfo(timezone) if timezone else None
    zones: dict[str, tzinfo | None] = {}

    def site_zone(site: str) -> tzinfo | None:
        if site not in zones:
            name = zone_of(site) if zone_of is not None else None
            zones[site] = ZoneInfo(name) if name else zone
        return zones[site]

    shifts, shift_at = roster_shifts if roster_shifts is not None \
        else (settings.shifts, shift_of(settings))
    days = _days(since, until, zone)
    answers = [respond(r, settings=settings, zone=site_zone(r.alert.site), now_ms=now_ms,
                       shifts=shift_at) for r in rows]
    day_order = sorted(set(days) | {a.day for a in answers})

    def by(key: Callable[[AlertResponse], str | None], order: Iterable[str | None] = (),
           starts: Mapping[str, int] | None = None) -> list[GroupStats]:
        groups: dict[str | None, list[AlertResponse]] = {k: [] for k in order}
        for answer in answers:
            groups.setdefault(key(answer), []).append(answer)
        keys = list(groups) if order else sorted(groups, key=lambda k: (k is None, k or ""))
        return [group(k, groups[k], (starts or {}).get(k or "")) for k in keys]

    outcomes: dict[str, dict[str, int]] = defaultdict(dict)
    by_system: dict[str, int] = defaultdict(int)
    for answer in answers:
        if answer.resolved_by == SYSTEM:
            by_system[answer.type] += 1
        elif answer.resolve_s is not None:
            code = answer.outcome or "none"
            outcomes[answer.type][code] = outcomes[answer.type].get(code, 0) + 1
    types = sorted(set(outcomes) | set(by_system))
    return ResponseReport(
        since=since, until=until, timezone=timezone, ack_target_s=settings.ack_target_s,
        shifts=[{"name": s.name, "start": s.start}
                for s in sorted(shifts, key=lambda s: s.start_minute)],
        totals=group(None, answers), by_day=by(lambda a: a.day, day_order, days),
        by_shift=by(lambda a: a.shift, [s.name for s in sorted(shifts,
                                                              key=lambda s: s.start_minute)]),
        by_site=by(lambda a: a.site), by_dispatcher=by(lambda a: a.answered_by),
        outcomes=[_outcomes(t, dict(sorted(outcomes[t].items())), by_system[t])
                  for t in types],
        alerts=answers)


def _outcomes(alert_type: str, codes: dict[str, int], by_system: int) -> TypeOutcomes:
    person = sum(codes.values())
    false = codes.get(FALSE_ALARM, 0)
    return TypeOutcomes(type=alert_type, resolved_by_person=person,
                        resolved_by_system=by_system, outcomes=codes, false_alarms=false,
                        false_alarm_share=round(false / person, 4) if person else None)


def read_report(store: AlertStore, *, since: int, until: int, sites: Sequence[str] | None,
                settings: ReportSettings, timezone: str | None, now_ms: int,
                zone_of: Callable[[str], str | None] | None = None,
                roster_shifts: tuple[Sequence[Shift], ShiftOf] | None = None
                ) -> ResponseReport:
    """Read the alerts of the period and build the report (blocks on SQLite: a worker thread).
    ``ValueError`` for a period that is empty, too long or holds too many alerts."""
    if until <= since:
        raise ValueError("until must be after since")
    if until - since > MAX_DAYS * 86_400_000:
        raise ValueError(f"a report covers at most {MAX_DAYS} days")
    rows = store.responses(since=since, until=until, site=sites or None, limit=MAX_ALERTS + 1)
    if len(rows) > MAX_ALERTS:
        raise ValueError(f"more than {MAX_ALERTS} alerts in the period: narrow it")
    return build_report(rows, since=since, until=until, settings=settings, timezone=timezone,
                        now_ms=now_ms, zone_of=zone_of, roster_shifts=roster_shifts)
