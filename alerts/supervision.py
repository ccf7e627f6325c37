"""The supervision and settlement report: per care institution, caregiver and month, the planned,
performed, verified, unverifiable and flagged visits (with their reasons), the service items
and minutes, and what is billable. Rendered as CSV and a printable page by
:mod:`alerts.supervisionpage`.

(A module over 400 lines: every line of the report and the totals it feeds are one reading of
the log, its rules beside each other, tested together against the log.)

Everything comes from the hash-chained service log (check-ins, check-outs and the visits'
service records, :mod:`alerts.servicerecords`), the plan store and the service catalogue, so
every figure can be traced to records of the chain (each visit line names its service record's
seq and hash). The rules:

* A visit belongs to the month, and the day, of its check-in in its site's zone.
* **performed**: checked in and out. By its service record (the latest revision), it is
  **verified**, **unverifiable** (no reason, but nothing could confirm it; its line's reasons
  say why: ``not_sensed``, the infrared could not count the people during it, too few samples
  with a people count, a sensor without the optional ``people`` field; ``dropped``,
  ``expired`` or ``not_judged``, the detector never judged it), or **flagged** with its
  reasons;
  **pending** while it is not settled yet.
  **unfinished**: checked in, never checked out (not billable).
* A visit checked in under a visit id its caregiver used at the bed before (after that visit's
  check-out, or a day after its check-in: a badge that always sends one id) cannot be chained
  under that key: the log sets it aside as ``visit_id_reused`` (:mod:`alerts.servicelog`) and
  it has no service record. It is not left out: it is a **flagged** line, reason
  ``visit_id_reused`` (unfinished without a check-out set aside after it), then the reasons
  the detector found judging it as a visit of its own (``too_short``, ``nobody_sensed``...;
  ``not_sensed`` when it could not count people; its judgement kept apart in the log's file,
  :func:`alerts.servicelog.reused_visit_id`, for 35 days) with its claimed and sensed minutes,
  its items held, never billable, for the institution to review (and to give its badges
  distinct visit ids).
* **planned**: the month's plans (by their local date) that were not called off, counted for
  the caregiver the plan names. A plan is taken by the visit whose service record names it
  (a visit not settled yet: the plan nearest its check-in, as settling would take it);
  **missed**: planned, its window over at the report's time and taken by no visit.
  **unplanned**: a performed visit that took no plan.
* **items** and **minutes**: the service items billed at check-out, with the catalogue's
  minutes (``claimed_minutes``: the visit's claim, its stay or its items' minutes when longer;
  ``sensed_minutes``: what the sensors confirmed, as the detector measured it when it judged
  the visit, verified or flagged; none for records settled without a judgement).
* **billable**: the verified and the unverifiable visits: their items at the catalogue's
  minutes. An unverifiable visit was contradicted by nothing: a ``not_sensed`` one passed every
  check that could be made (plan window, overlap, recordings, the catalogue's minutes against
  the stay), and holding it would hold every visit of a home whose sensor has no people count
  against an honest caregiver; one never judged was checked by nothing (no alert came either),
  which its reason says. Its minutes are billable but also counted apart
  (``unverifiable_minutes``, a part of ``billable_minutes``), so the payer sees how much of the
  bill the sensors could not confirm. A flagged visit's minutes are **held** until the
  institution has reviewed it; a pending one's wait. A visit billing an item outside the
  catalogue is flagged ``unknown_service`` (its service record says so; a record settled
  before 2026-12-02 verified with one is read as flagged so), its minutes held.

The report states the chain's verification (:mod:`alerts.chainstatus`): a figure is only as
good as the records it comes from.

The institution of a site is the ``service_institutions`` setting's (``site=institution``),
else the site itself.

>>> institution_of(["site-01=care-north", "site-02=care-north"])
{'site-01': 'care-north', 'site-02': 'care-north'}
>>> month_range("2026-11", dt.UTC)
(1793491200000, 1796083200000)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from alerts.chainstatus import ChainStatus
from alerts.model import VisitEvent
from alerts.plans import Catalogue, PlannedVisit, plan_for_visit
from alerts.servicelog import SERVICE_RECORD, JudgedVisit, RefusedVisit, ServiceRecord
from alerts.servicerecords import UNKNOWN_SERVICE

MONTH_PATTERN: Final = r"^(20[0-9]{2})-(0[1-9]|1[0-2])$"
_MONTH = re.compile(MONTH_PATTERN)
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DAY_MS: Final = 86_400_000
PAGE: Final = 1000
MAX_RECORDS: Final = 1_000_000
"""Records one report reads at most (a month of a large station is far below)."""

Status = Literal["verified", "unverifiable", "flagged", "pending", "unfinished"]
STATUSES: Final[tuple[Status, ...]] = ("verified", "unverifiable", "flagged", "pending",
                                       "unfinished")


class RecordSource(Protocol):
    """The service log (:class:`alerts.servicelog.ServiceLog`)."""

    def query(self, *, since: int | None = None, until: int | None = None,
              after_seq: int | None = None, event: str | None = None,
              newest_first: bool = True, limit: int = 100) -> list[ServiceRecord]: ...

    def refused_between(self, *, reasons: Sequence[str], since: int, until: int,
                        limit: int = 100_000) -> list[RefusedVisit]: ...

    def judged_reused(self, site: str, bed: str, caregiver: str, visit: str
                      ) -> dict[int, JudgedVisit]: ...


class PlanSource(Protocol):
    """The plan store (:class:`alerts.planstore.PlanStore`)."""

    def list(self, *, since_ms: int | None = None, until_ms: int | None = None,
             after: tuple[int, str, str] | None = None, limit: int = 100
             ) -> list[PlannedVisit]: ...


def institution_of(pairs: Iterable[str]) -> dict[str, str]:
    """The ``service_institutions`` setting as ``{site: institution}``; raises ``ValueError``
    naming a bad entry."""
    found: dict[str, str] = {}
    for pair in pairs:
        site, _, institution = (part.strip() for part in pair.partition("="))
        if not _ID.match(site) or not _ID.match(institution):
            raise ValueError(f"{pair!r}: write site=institution (ids of letters, digits, _ "
                             "and -)")
        if site in found:
            raise ValueError(f"{pair!r}: the site {site} is given twice")
        found[site] = institution
    return found


def month_range(month: str, zone: dt.tzinfo) -> tuple[int, int]:
    """``[start, end)`` of a ``YYYY-MM`` month in ``zone``, epoch ms; ``ValueError`` if it is
    not a month."""
    found = _MONTH.match(month)
    if found is None:
        raise ValueError(f"{month!r}: expected a month YYYY-MM")
    year, number = int(found[1]), int(found[2])
    start = dt.datetime(year, number, 1, tzinfo=zone)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitLine:
    """One visit checked in during the month."""

    institution: str
    site: str
    bed: str
    caregiver: str
    visit: str
    day: str
    """Local date of the check-in."""
    check_in_at: int
    check_out_at: int | None
    status: Status
    reasons: tuple[str, ...]
    """A flagged visit's reasons; an unverifiable one's: why it could not be (``not_sensed``,
    ``dropped``, ``expired``, ``not_judged``)."""
    plan: str | None
    services: tuple[str, ...]
    services_minutes: float
    """The items' minutes in the catalogue."""
    claimed_minutes: float | None
    sensed_minutes: float | None
    billable_minutes: float
    record_seq: int | None
    """The service record this line is read from (None: not settled); with its hash, what
    proves it against the chain."""
    record_hash: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MissedPlan:
    institution: str
    site: str
    bed: str
    plan: str
    caregiver: str
    window: str
    services: tuple[str, ...]


@dataclass(slots=True)
class Tally:
    """The figures of one caregiver in one institution (or of a total: ``*``)."""

    institution: str
    caregiver: str
    planned: int = 0
    performed: int = 0
    verified: int = 0
    unverifiable: int = 0
    flagged: int = 0
    pending: int = 0
    unfinished: int = 0
    missed: int = 0
    unplanned: int = 0
    claimed_minutes: float = 0.0
    sensed_minutes: float = 0.0
    services_minutes: float = 0.0
    billable_minutes: float = 0.0
    unverifiable_minutes: float = 0.0
    """Of the billable minutes, the unverifiable visits' (the sensors could not confirm)."""
    held_minutes: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    billable_items: Counter[str] = field(default_factory=Counter)

    def add(self, line: VisitLine) -> None:
        if line.status == "unfinished":
            self.unfinished += 1
            return
        self.performed += 1
        if line.status in ("verified", "unverifiable"):
            if line.status == "verified":
                self.verified += 1
            else:
                self.unverifiable += 1
                self.unverifiable_minutes += line.billable_minutes
            self.billable_minutes += line.billable_minutes
            self.billable_items.update(line.services)
        elif line.status == "flagged":
            self.flagged += 1
            self.held_minutes += line.services_minutes
            self.reasons.update(line.reasons)
        else:
            self.pending += 1
        if line.plan is None:
            self.unplanned += 1
        self.items.update(line.services)
        self.services_minutes += line.services_minutes
        self.claimed_minutes += line.claimed_minutes or 0.0
        self.sensed_minutes += line.sensed_minutes or 0.0

    def merge(self, other: Tally) -> None:
        for name in ("planned", "performed", "verified", "unverifiable", "flagged", "pending",
                     "unfinished", "missed", "unplanned", "claimed_minutes", "sensed_minutes",
                     "services_minutes", "billable_minutes", "unverifiable_minutes",
                     "held_minutes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)
        self.items.update(other.items)
        self.billable_items.update(other.billable_items)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        for name in ("claimed_minutes", "sensed_minutes", "services_minutes",
                     "billable_minutes", "unverifiable_minutes", "held_minutes"):
            out[name] = round(out[name], 1)
        for name in ("reasons", "items", "billable_items"):
            out[name] = dict(sorted(out[name].items()))
        return out


@dataclass(slots=True, kw_only=True)
class SupervisionReport:
    month: str
    generated_at: int
    institution: str | None
    """The institution reported on; None: all."""
    caregivers: list[Tally]
    institutions: list[Tally]
    total: Tally
    visits: list[VisitLine]
    missed: list[MissedPlan]
    catalogue: dict[str, float]
    """Minutes of each item, as the report counted them."""
    chain: ChainStatus | None = None
    """The service log's chain as verified for the report (None: not verified)."""

    def to_json(self) -> dict[str, Any]:
        return {"month": self.month, "generated_at": self.generated_at,
                "institution": self.institution,
                "chain": None if self.chain is None else self.chain.to_json(),
                "total": self.total.to_json(),
                "institutions": [t.to_json() for t in self.institutions],
                "caregivers": [t.to_json() for t in self.caregivers],
                "visits": [dataclasses.asdict(v) for v in self.visits],
                "missed": [dataclasses.asdict(m) for m in self.missed],
                "catalogue": self.catalogue}


def _read(log: RecordSource, event: str, since: int, until: int) -> list[ServiceRecord]:
    out: list[ServiceRecord] = []
    after = 0
    while len(out) < MAX_RECORDS:
        page = log.query(since=since, until=until, after_seq=after, event=event,
                         newest_first=False, limit=PAGE)
        out.extend(page)
        if len(page) < PAGE:
            return out
        after = page[-1].seq
    raise ValueError(f"more than {MAX_RECORDS} records of one kind in a month")


def _plans(plans: PlanSource | None, since: int, until: int) -> list[PlannedVisit]:
    out: list[PlannedVisit] = []
    if plans is None:
        return out
    after: tuple[int, str, str] | None = None
    while True:
        page = plans.list(since_ms=since, until_ms=until, after=after, limit=PAGE)
        out.extend(page)
        if len(page) < PAGE:
            return out
        last = page[-1]
        after = (last.start_ms, last.site, last.plan)


REUSED: Final = "visit_id_reused"


def _reused(log: RecordSource, since: int, until: int, *, month: str,
            wanted: Callable[[str], bool], local_day: Callable[[str, int], str],
            institution_of_site: Callable[[str], str], catalogue: Catalogue,
            month_plans: Sequence[PlannedVisit], taken: set[tuple[str, str]]
            ) -> list[VisitLine]:
    """The visits checked in under a visit id used before at the bed by the caregiver (set
    aside by the log as ``visit_id_reused``, not chained, no service record): flagged with that
    reason, needing the institution's attention, not billable; their check-out (set aside as
    ``already_checked_out``) the first of their key after the check-in; after that reason, the
    reasons of the detector's judgement of the visit, if it is kept (:func:`_judged_reused`),
    and its claimed and sensed minutes."""
    refused = log.refused_between(reasons=(REUSED, "already_checked_out"), since=since,
                                  until=until + DAY_MS)
    judgements: dict[tuple[str, str, str, str], dict[int, JudgedVisit]] = {}
    outs: dict[tuple[str, str, str, str], list[VisitEvent]] = {}
    for r in refused:
        e = r.event
        if r.reason == "already_checked_out":
            outs.setdefault((e.site, e.bed, e.caregiver, e.visit), []).append(e)
    lines = []
    for r in refused:
        e = r.event
        if (r.reason != REUSED or e.event != "check_in" or not wanted(e.site)
                or not local_day(e.site, e.at).startswith(month)):
            continue
        nxt = next((o for o in outs.get((e.site, e.bed, e.caregiver, e.visit), ())
                    if o.at >= e.at), None)
        services = tuple(nxt.services or ()) if nxt is not None else ()
        nearest = plan_for_visit(month_plans, site=e.site, bed=e.bed, caregiver=e.caregiver,
                                 check_in=e.at, taken=lambda p: (p.site, p.plan) in taken)
        if nearest is not None:
            taken.add((e.site, nearest.plan))
        k = (e.site, e.bed, e.caregiver, e.visit)
        if k not in judgements:
            judgements[k] = log.judged_reused(*k)
        judged = _judged_reused(judgements[k], at=e.at, recorded_at=r.recorded_at)
        measured = judged.measured if judged is not None else {}
        reasons = [REUSED]
        found = [*(measured.get("reasons") or ()), *(
            measured.get("unverifiable") or ("not_sensed",)
            if measured.get("verdict") == "unverifiable" else ())]
        reasons.extend(str(x) for x in found if str(x) not in reasons)
        lines.append(VisitLine(
            institution=institution_of_site(e.site), site=e.site, bed=e.bed,
            caregiver=e.caregiver, visit=e.visit, day=local_day(e.site, e.at),
            check_in_at=e.at, check_out_at=nxt.at if nxt is not None else None,
            status="flagged" if nxt is not None else "unfinished", reasons=tuple(reasons),
            plan=nearest.plan if nearest is not None else None, services=services,
            services_minutes=round(catalogue.minutes(services), 1),
            claimed_minutes=measured.get("claimed_minutes"),
            sensed_minutes=measured.get("sensed_minutes"), billable_minutes=0.0,
            record_seq=None, record_hash=None))
    return lines


REUSED_MATCH_MS: Final = 60_000
"""How far a reused id's check-in, as received, may be from where the detector placed it."""


def _judged_reused(kept: Mapping[int, JudgedVisit], *, at: int, recorded_at: int
                   ) -> JudgedVisit | None:
    """The detector's judgement of the visit under a reused id checked in at ``at`` (device
    time) and set aside at ``recorded_at``, among those kept for its key by their check-in
    time as the detector placed it (:func:`alerts.servicelog.reused_visit_id`): at its device
    time, else (a device clock it did not trust) the nearest to its receipt, within
    :data:`REUSED_MATCH_MS`."""
    if at in kept:
        return kept[at]
    near = min(kept, key=lambda t: abs(t - recorded_at), default=None)
    return kept[near] if near is not None and abs(near - recorded_at) <= REUSED_MATCH_MS \
        else None


def supervision_report(*, log: RecordSource, plans: PlanSource | None, catalogue: Catalogue,
                 month: str, zone_of: Callable[[str], dt.tzinfo],
                 institutions: Mapping[str, str], now_ms: int,
                 institution: str | None = None, chain: ChainStatus | None = None
                 ) -> SupervisionReport:
    """The report of ``month`` (``YYYY-MM``) as the log and the plans stand at ``now_ms``;
    ``institution``: only that one's sites; ``chain``: the log's chain as verified for it
    (:mod:`alerts.chainstatus`, stated on the report). Blocks on SQLite (call it from a
    thread)."""
    utc_start, utc_end = month_range(month, dt.UTC)
    since, until = utc_start - DAY_MS, utc_end + 2 * DAY_MS  # every zone, visits over midnight
    zones: dict[str, dt.tzinfo] = {}

    def zone(site: str) -> dt.tzinfo:
        if site not in zones:
            zones[site] = zone_of(site)
        return zones[site]

    def local_day(site: str, ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, zone(site)).date().isoformat()

    def institution_of_site(site: str) -> str:
        return institutions.get(site, site)

    def wanted(site: str) -> bool:
        return institution is None or institution_of_site(site) == institution

    def key(r: ServiceRecord) -> tuple[str, str, str, str]:
        return (r.site, r.bed, r.caregiver, r.visit)

    check_ins = [r for r in _read(log, "check_in", since, until)
                 if wanted(r.site) and local_day(r.site, r.at).startswith(month)]
    check_outs = {key(r): r for r in _read(log, "check_out", since, until + DAY_MS)}
    settled: dict[tuple[str, str, str, str], ServiceRecord] = {}
    for stored in _read(log, SERVICE_RECORD, since, until + DAY_MS):
        settled[key(stored)] = stored  # by seq: the latest revision wins
    month_plans = [p for p in _plans(plans, since, until)
                   if p.date.startswith(month) and wanted(p.site)]
    taken = {(r.site, took["plan"]) for r in settled.values()
             if r.detail is not None and isinstance(took := r.detail.get("plan"), dict)}
    lines: list[VisitLine] = []
    for check_in in check_ins:
        k = key(check_in)
        check_out, record = check_outs.get(k), settled.get(k)
        detail = record.detail if record is not None and record.detail is not None else None
        services = tuple(check_out.services or ()) if check_out is not None else ()
        services_minutes = round(catalogue.minutes(services), 1)
        plan: str | None
        reasons: tuple[str, ...] = ()
        if detail is not None:
            verdict = detail.get("verdict")
            status: Status = (verdict if verdict in ("verified", "unverifiable")
                              else "flagged")
            reasons = tuple(map(str, detail.get("reasons") or ()))
            if status == "unverifiable":
                reasons = tuple(map(str, detail.get("unverifiable") or ("not_sensed",)))
            plan = (detail.get("plan") or {}).get("plan")
            if status != "flagged" and any(c not in catalogue for c in services):
                # A record of before (verified with an item outside the catalogue): held.
                status, reasons = "flagged", (UNKNOWN_SERVICE,)
        else:
            status = "pending" if check_out is not None else "unfinished"
            nearest = plan_for_visit(month_plans, site=check_in.site, bed=check_in.bed,
                                     caregiver=check_in.caregiver, check_in=check_in.at,
                                     taken=lambda p: (p.site, p.plan) in taken)
            plan = nearest.plan if nearest is not None else None
        if plan is not None:
            taken.add((check_in.site, plan))
        lines.append(VisitLine(
            institution=institution_of_site(check_in.site), site=check_in.site,
            bed=check_in.bed, caregiver=check_in.caregiver, visit=check_in.visit,
            day=local_day(check_in.site, check_in.at), check_in_at=check_in.at,
            check_out_at=check_out.at if check_out is not None else None, status=status,
            reasons=reasons, plan=plan,
            services=services, services_minutes=services_minutes,
            claimed_minutes=detail.get("claimed_minutes") if detail else None,
            sensed_minutes=detail.get("sensed_minutes") if detail else None,
            billable_minutes=(services_minutes if status in ("verified", "unverifiable")
                              else 0.0),
            record_seq=record.seq if record is not None else None,
            record_hash=record.hash if record is not None else None))
    lines.extend(_reused(log, since, until, month=month, wanted=wanted, local_day=local_day,
                         institution_of_site=institution_of_site, catalogue=catalogue,
                         month_plans=month_plans, taken=taken))
    missed = [MissedPlan(institution=institution_of_site(p.site), site=p.site, bed=p.bed,
                         plan=p.plan, caregiver=p.caregiver,
                         window=f"{p.date} {p.start}-{p.end}", services=p.services)
              for p in month_plans
              if not p.cancelled and (p.site, p.plan) not in taken and p.end_ms < now_ms]
    tallies: dict[tuple[str, str], Tally] = {}

    def tally(inst: str, caregiver: str) -> Tally:
        return tallies.setdefault((inst, caregiver), Tally(inst, caregiver))

    for p in month_plans:
        if not p.cancelled:
            tally(institution_of_site(p.site), p.caregiver).planned += 1
    for m in missed:
        tally(m.institution, m.caregiver).missed += 1
    for line in lines:
        tally(line.institution, line.caregiver).add(line)
    caregivers = [tallies[k] for k in sorted(tallies)]
    by_institution: dict[str, Tally] = {}
    total = Tally("*", "*")
    for t in caregivers:
        by_institution.setdefault(t.institution, Tally(t.institution, "*")).merge(t)
        total.merge(t)
    lines.sort(key=lambda v: (v.institution, v.caregiver, v.check_in_at, v.site, v.bed))
    missed.sort(key=lambda m: (m.institution, m.caregiver, m.window, m.site, m.plan))
    return SupervisionReport(
        month=month, generated_at=now_ms, institution=institution, caregivers=caregivers,
        institutions=[by_institution[k] for k in sorted(by_institution)], total=total,
        visits=lines, missed=missed,
        catalogue={item.code: item.minutes for item in catalogue}, chain=chain)
