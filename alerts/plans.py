"""Service plans: the visits a care institution plans for each bed, and the service catalogue.

(A module over 400 lines: a plan's shape, the rule that matches a visit to its plan, and the
CSV import that validates rows against the catalogue, the registry and the site's clock are
one contract with the institution, read in one place.)

A :class:`PlannedVisit` says who (a caregiver's pseudonymous id) is to visit which bed, when
(a local date and a time window in the site's zone, kept also as epoch ms) and for what
(service item codes). The ``service_anomaly`` detector compares each visit the devices record
with it: a visit outside its window, a visit without a plan, a planned visit that never
happened. The institution's id of the planned visit (``plan``) with the site is its key, so
importing the same schedule again changes nothing and a corrected row replaces the old one.

The :class:`Catalogue` lists the service item codes the station bills, with the minutes each
is expected to take and whether it must be recorded (audio or infrared recording covering the
visit): the gateway's ``service_catalogue`` setting, entries ``code:minutes`` or
``code:minutes:recorded``. Codes outside it are refused in plans; a badge may still report
them (they count :data:`UNKNOWN_SERVICE_MINUTES`).

Bad input is a value: :func:`make_plan` and :func:`parse_plans_csv` say what is wrong where
(row, column, what), never repeating the value of an id or a time, except an unknown service
code, which is the station's own vocabulary.

CSV: UTF-8 (a byte-order mark is fine), comma-separated, a header row naming the columns
``site``, ``bed``, ``plan``, ``caregiver``, ``date`` (``YYYY-MM-DD``), ``start``, ``end``
(``HH:MM`` local time; an end before the start is on the next day), ``services`` (codes
separated by ``;`` or spaces) and optionally ``cancelled`` (``yes``/``no``). Rows are counted
as a spreadsheet shows them (the header is row 1); a row repeated exactly counts once.

Also refused: a date outside :data:`FIRST_DATE` to :data:`LAST_DATE`; a time the clocks skip
that day (a window in the hour they repeat has the length its clock times say); with the
registry's beds by site (:func:`registry_places`), a site it does not list or a bed it does not
place at that site (:func:`place_problems`).

>>> import zoneinfo
>>> catalogue = Catalogue.parse(DEFAULT_CATALOGUE)
>>> result = parse_plans_csv(
...     "site,bed,plan,caregiver,date,start,end,services\\n"
...     "site-01,bed-0001,p-1,c001,2026-11-02,08:30,10:30,bathing;medication\\n"
...     "site-01,bed-0002,p-2,c001,2026-11-02,11:00,10:30,haircut\\n",
...     catalogue=catalogue, zone_of=lambda site: zoneinfo.ZoneInfo("Asia/Shanghai"))
>>> [(row.plan.plan, row.plan.end_ms - row.plan.start_ms) for row in result.rows]
[('p-1', 7200000)]
>>> for problem in result.problems:  # doctest: +ELLIPSIS
...     print(problem)
row 3, end: the window is longer than 12 hours (an end before the start is the next day)
row 3, services: unknown service code haircut (the catalogue: bathing, meal_assist, ...)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import zoneinfo
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from alerts.residents import MAX_ROWS, RowProblem
from devices import SERVICE_MINUTES, person_id, person_id_problem

if TYPE_CHECKING:
    from devices import Registry

ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
"""Site and bed ids (the device contract)."""
PLAN_ID_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,128}$"
"""Plan ids (the institution's codes). Caregiver ids follow the rule of every place that takes
them, badges included (:func:`devices.person_id_problem`): any printable text, no spaces."""
SERVICE_CODE_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,64}$"
UNKNOWN_SERVICE_MINUTES: Final = 15.0
"""Minutes counted for a code outside the catalogue (a badge may report any)."""
MAX_WINDOW_MS: Final = 12 * 3_600_000
FIRST_DATE: Final = dt.date(2000, 1, 1)
LAST_DATE: Final = dt.date(2099, 12, 31)
"""The dates a plan may have (a year like 0001 or 9999 is a typing error, and beyond the
times the stores and the zone rules can hold)."""
MAX_SERVICES: Final = 20
DEFAULT_RECORDED: Final = frozenset({"bathing", "medication", "rehab"})
"""Items whose delivery must be recorded by default: personal care, medicines, therapy."""
DEFAULT_CATALOGUE: Final[tuple[str, ...]] = tuple(
    f"{code}:{minutes:g}{':recorded' if code in DEFAULT_RECORDED else ''}"
    for code, minutes in SERVICE_MINUTES.items())
"""The contract's service items (:data:`devices.SERVICE_MINUTES`) as catalogue entries."""

_ID = re.compile(ID_PATTERN)
_PLAN_ID = re.compile(PLAN_ID_PATTERN)
_CODE = re.compile(SERVICE_CODE_PATTERN)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_SEPARATORS = re.compile(r"[;\s]+")
_YES: Final = {"yes": True, "y": True, "true": True, "1": True,
               "no": False, "n": False, "false": False, "0": False, "": False}

COLUMNS: Final = ("site", "bed", "plan", "caregiver", "date", "start", "end", "services",
                  "cancelled")
REQUIRED_COLUMNS: Final = COLUMNS[:-1]


class ServiceItem(msgspec.Struct, frozen=True, kw_only=True):
    """One code of the catalogue: expected minutes, and whether it must be recorded."""

    code: str
    minutes: float
    recording: bool = False


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The service items by code, in the order they were given."""

    items: Mapping[str, ServiceItem]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Catalogue:
        """From ``code:minutes[:recorded]`` entries; raises ``ValueError`` naming the bad one.

        >>> Catalogue.parse(["bathing:30:recorded", "cleaning:25"]).recorded(["cleaning",
        ...                                                                  "bathing"])
        ('bathing',)
        """
        items: dict[str, ServiceItem] = {}
        for entry in entries:
            parts = entry.strip().split(":")
            if len(parts) not in (2, 3):
                raise ValueError(f"{entry!r}: write code:minutes or code:minutes:recorded")
            code, minutes_text = parts[0].strip(), parts[1].strip()
            if not _CODE.fullmatch(code):
                raise ValueError(f"{entry!r}: the code is letters, digits, _ . -, at most 64")
            try:
                minutes = float(minutes_text)
            except ValueError:
                minutes = -1.0
            if not 0 < minutes <= 24 * 60:
                raise ValueError(f"{entry!r}: minutes must be a number above 0, at most 1440")
            if len(parts) == 3 and parts[2].strip() != "recorded":
                raise ValueError(f"{entry!r}: the third part may only be 'recorded'")
            if code in items:
                raise ValueError(f"{entry!r}: the code {code} is listed twice")
            items[code] = ServiceItem(code=code, minutes=minutes, recording=len(parts) == 3)
        if not items:
            raise ValueError("the catalogue is empty: list at least one service item")
        return cls(items)

    def __getitem__(self, code: str) -> ServiceItem:
        return self.items[code]

    def __contains__(self, code: object) -> bool:
        return code in self.items

    def __iter__(self) -> Iterator[ServiceItem]:
        return iter(self.items.values())

    def minutes(self, codes: Iterable[str]) -> float:
        """Expected minutes of ``codes`` together (:data:`UNKNOWN_SERVICE_MINUTES` for a code
        outside the catalogue)."""
        return sum(item.minutes if (item := self.items.get(code)) else UNKNOWN_SERVICE_MINUTES
                   for code in codes)

    def recorded(self, codes: Iterable[str]) -> tuple[str, ...]:
        """Those of ``codes`` that must be recorded, in their order, each once."""
        return tuple(dict.fromkeys(c for c in codes if (i := self.items.get(c)) and i.recording))

    def entries(self) -> tuple[str, ...]:
        """The catalogue as setting entries (what :meth:`parse` takes)."""
        return tuple(f"{i.code}:{i.minutes:g}{':recorded' if i.recording else ''}"
                     for i in self.items.values())


class PlannedVisit(msgspec.Struct, frozen=True, kw_only=True):
    """One planned visit of a caregiver to a bed; key ``(site, plan)``."""

    site: str
    bed: str
    plan: str
    """The institution's id of this planned visit."""
    caregiver: str
    date: str
    """Local date of the window's start, ``YYYY-MM-DD``."""
    start: str
    end: str
    """Local times ``HH:MM``; an end before the start is on the next day."""
    start_ms: int
    end_ms: int
    """The window in epoch ms (from the local times in the site's zone)."""
    services: tuple[str, ...]
    cancelled: bool = False
    """Not expected any more (kept, so the record says it was planned and called off)."""
    updated_at: int = 0
    updated_by: str = ""

    def same_plan(self, other: PlannedVisit) -> bool:
        """Equal but for who changed it when."""
        return msgspec.structs.replace(self, updated_at=0, updated_by="") == \
            msgspec.structs.replace(other, updated_at=0, updated_by="")


PLAN_MATCH_MS: Final = 3 * 3_600_000
"""A visit checked in this far from a plan's window may still be that plan's (early or late)."""


def plan_for_visit(plans: Iterable[PlannedVisit], *, site: str, bed: str, caregiver: str,
                   check_in: int, taken: Callable[[PlannedVisit], bool] = lambda plan: False
                   ) -> PlannedVisit | None:
    """The plan a visit takes: the plan of its own caregiver on its bed nearest to its
    ``check_in`` within :data:`PLAN_MATCH_MS` of the window (the earlier window on a tie),
    never a cancelled one nor one ``taken`` by another visit. The one rule of the detector
    (``service_anomaly``), the service records and the supervision report.

    A visit by another caregiver than the planned one (a substitute) takes no plan: it is
    ``unplanned``, and the plan, if nobody of its own came, ``missed``. So a visit can neither
    hide a missed plan of a colleague nor take a plan another visit took.

    >>> import zoneinfo
    >>> def planned(plan, caregiver, start, end):
    ...     made, _ = make_plan(site="s", bed="b", plan=plan, caregiver=caregiver,
    ...                         date="2026-11-02", start=start, end=end, services=["meal_assist"],
    ...                         catalogue=Catalogue.parse(DEFAULT_CATALOGUE),
    ...                         zone=zoneinfo.ZoneInfo("UTC"))
    ...     return made
    >>> plans = [planned("p-1", "c-10", "12:50", "12:55"), planned("p-2", "c-4", "12:00", "12:30")]
    >>> at = plans[0].start_ms - 120_000  # 12:48
    >>> plan_for_visit(plans, site="s", bed="b", caregiver="c-11", check_in=at) is None
    True
    >>> plan_for_visit(plans, site="s", bed="b", caregiver="c-4", check_in=at).plan
    'p-2'
    >>> plan_for_visit(plans, site="s", bed="b", caregiver="c-4", check_in=at,
    ...                taken=lambda plan: plan.plan == "p-2") is None
    True
    """
    best: tuple[tuple[int, int], PlannedVisit] | None = None
    for plan in plans:
        if ((plan.site, plan.bed, plan.caregiver) != (site, bed, caregiver) or plan.cancelled
                or taken(plan)):
            continue
        distance = (0 if plan.start_ms <= check_in <= plan.end_ms
                    else min(abs(check_in - plan.start_ms), abs(check_in - plan.end_ms)))
        if distance > PLAN_MATCH_MS:
            continue
        rank = (distance, plan.start_ms)
        if best is None or rank < best[0]:
            best = (rank, plan)
    return best[1] if best else None


def zone_named(name: str | None) -> dt.tzinfo:
    """The zone a site's plan times are in: ``name`` (IANA; the registry's zone of the site,
    else the gateway's ``timezone`` setting), else the machine's (``TZ``, else
    ``/etc/localtime``), as the detectors take it; UTC when none is usable."""
    for candidate in (name, os.environ.get("TZ", "").lstrip(":")):
        if candidate:
            try:
                return zoneinfo.ZoneInfo(candidate)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
    try:
        with Path("/etc/localtime").open("rb") as handle:
            return zoneinfo.ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return dt.UTC


class PlanZones:
    """The zone each site's plan times are read in, and where it comes from; a callable
    ``zone_of`` for :func:`parse_plans_csv` and :func:`make_plan`.

    A site's configured zone (``configured(site)``: the registry's, else the ``timezone``
    setting) is used; a site without one takes ``given`` (an import's ``--timezone`` or
    ``timezone``: the zone the file's times are in). A site with neither is refused
    (:meth:`problems`), never read in the machine's zone: a station's server often runs on UTC
    while its caregivers' schedules are in Beijing time, 8 hours off. A ``given`` zone that
    contradicts a configured one is refused too.

    >>> zones = PlanZones({"s1": "Asia/Shanghai"}.get)
    >>> zones("s1"), zones("s2") is not None
    (zoneinfo.ZoneInfo(key='Asia/Shanghai'), True)
    >>> zones.used, zones.problems()[0][:52]
    ({'s1': 'Asia/Shanghai (configured)'}, 'no time zone is configured for site s2 (the registry')
    >>> zones = PlanZones({"s1": "Europe/Berlin"}.get, given="Asia/Shanghai")
    >>> _ = zones("s1"), zones("s2")
    >>> zones.used, zones.problems()
    ({'s2': 'Asia/Shanghai (given)'}, ["site s1's zone is Europe/Berlin (configured), not \
Asia/Shanghai as given: leave the zone out or correct the configuration"])
    """

    def __init__(self, configured: Callable[[str], str | None], *,
                 given: str | None = None) -> None:
        """``ValueError`` for a ``given`` name that is not an IANA zone."""
        self._configured = configured
        self._given: dt.tzinfo | None = None
        self.given = given or None
        if self.given is not None:
            try:
                self._given = zoneinfo.ZoneInfo(self.given)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {self.given!r} (an IANA name such as "
                                 "Asia/Shanghai)") from None
        self.used: dict[str, str] = {}
        """Each site's zone and where it comes from (``configured`` or ``given``)."""
        self._unzoned: set[str] = set()
        self._conflicts: dict[str, str] = {}

    def __call__(self, site: str) -> dt.tzinfo:
        name = self._configured(site)
        if name is not None and self.given is not None and name != self.given:
            self._conflicts[site] = name
        elif name is not None:
            self.used[site] = f"{name} (configured)"
            return zone_named(name)
        elif self._given is not None:
            self.used[site] = f"{self.given} (given)"
            return self._given
        else:
            self._unzoned.add(site)
        return dt.UTC  # refused by problems()

    def problems(self) -> list[str]:
        """Why the sites read so far cannot be imported, or nothing."""
        machine = zone_named(None)
        found = [f"no time zone is configured for site {site} (the registry's timezone, or "
                 f"the timezone setting): its times would be read as the machine's "
                 f"({machine}); give the zone the file's times are in (such as --timezone "
                 "Asia/Shanghai, or timezone in the request) or configure it"
                 for site in sorted(self._unzoned)]
        found += [f"site {site}'s zone is {name} (configured), not {self.given} as given: "
                  "leave the zone out or correct the configuration"
                  for site, name in sorted(self._conflicts.items())]
        return found

    def summary(self) -> str:
        """``site-01 Asia/Shanghai (configured), ...``: what to tell whoever imports."""
        return ", ".join(f"{site} {used}" for site, used in sorted(self.used.items()))


Places = Mapping[str, Collection[str]]
"""The registry's beds by site (:func:`registry_places`)."""


def registry_places(registry: Registry) -> dict[str, frozenset[str]] | None:
    """The beds plans may name, by site: the registry's; ``None`` when it lists no site (no
    registry configured: any site and bed)."""
    if not registry.sites:
        return None
    return {site.id: frozenset(site.beds) for site in registry.sites.values()}


def place_problems(site: str, bed: str, places: Places | None) -> list[tuple[str, str]]:
    """What is wrong with a plan's site and bed against the registry's (none without one):
    a site it does not list, a bed it lists under another site, a bed of a site whose beds
    it lists that is not one of them."""
    if places is None or not _ID.fullmatch(site) or not _ID.fullmatch(bed):
        return []
    if site not in places:
        return [("site", "not a site of the registry (its time zone and beds are unknown)")]
    if bed in places[site]:
        return []
    if any(bed in beds for name, beds in places.items() if name != site):
        return [("bed", "the registry lists this bed under another site")]
    if places[site]:  # a site listed without beds: its beds register as their devices come
        return [("bed", "not a bed of this site in the registry")]
    return []


def _time(text: str, *, end: bool) -> tuple[int, int] | None:
    found = _TIME.fullmatch(text)
    if found is None:
        return None
    hour, minute = int(found[1]), int(found[2])
    if minute > 59 or hour > 24 or (hour == 24 and (minute or not end)):
        return None
    return hour, minute


_EPOCH: Final = dt.datetime(1970, 1, 1)
_MS: Final = dt.timedelta(milliseconds=1)


def _instants(day: dt.date, hour: int, minute: int, zone: dt.tzinfo) -> tuple[int, ...]:
    """The epoch ms a local time of ``day`` names in ``zone``: one, two in the hour the clocks
    go back (earlier first), none in the hour they skip going forward."""
    wall = dt.datetime.combine(day, dt.time()) + dt.timedelta(hours=hour, minutes=minute)
    local_ms = (wall - _EPOCH) // _MS
    offsets = {(wall.replace(tzinfo=zone, fold=fold).utcoffset() or dt.timedelta()) // _MS
               for fold in (0, 1)}
    if len(offsets) == 1:  # every time but those of a change of the clocks
        return (local_ms - offsets.pop(),)
    found = []
    for offset in offsets:  # a time the clocks skip has neither offset at its instants
        at = local_ms - offset
        moment = dt.datetime.fromtimestamp(at / 1000, zone)
        if (moment.utcoffset() or dt.timedelta()) // _MS == offset:
            found.append(at)
    return tuple(sorted(found))


def _window(day: dt.date, begins: tuple[int, int], ends: tuple[int, int], zone: dt.tzinfo
            ) -> tuple[int, int] | tuple[str, str]:
    """The window ``begins``-``ends`` (local, an end before the start on the next day) in
    epoch ms, or the ``(field, what)`` wrong with it. In the hour the clocks go back, of the
    instants a time names, those that give the window the length its clock times say (else
    the earliest start and the latest end); a time the clocks skip does not exist."""
    start_at = _instants(day, *begins, zone)
    end_day = day + dt.timedelta(days=1) if ends < begins else day
    end_at = _instants(end_day, *ends, zone)
    if not start_at:
        return ("start", "this time does not exist on that day: the clocks go forward "
                         "(daylight saving time); plan it after the change")
    if not end_at:
        return ("end", "this time does not exist on that day: the clocks go forward "
                       "(daylight saving time); plan it after the change")
    if ends == begins:
        return ("end", "the window has no length")
    wall_ms = ((ends[0] - begins[0]) * 60 + ends[1] - begins[1]) * 60_000 % (24 * 3_600_000)
    pairs = [(a, b) for a in start_at for b in end_at if b > a]
    fitting = [(a, b) for a, b in pairs if b - a == wall_ms]
    if not pairs:
        return ("end", "the window has no length")
    return fitting[0] if fitting else (start_at[0], end_at[-1])


def make_plan(*, site: str, bed: str, plan: str, caregiver: str, date: str, start: str,
              end: str, services: Sequence[str], catalogue: Catalogue, zone: dt.tzinfo,
              cancelled: bool = False, places: Places | None = None
              ) -> tuple[PlannedVisit | None, list[tuple[str, str]]]:
    """A planned visit from its fields as given (times local to ``zone``), or ``None`` and
    what is wrong: ``(field, what)`` pairs. ``places``: the registry's beds by site
    (:func:`registry_places`); a site or bed not there is refused (``None``: no registry).

    >>> import zoneinfo
    >>> make_plan(site="s", bed="b", plan="p-1", caregiver="c001", date="2026-11-02",
    ...           start="09:00", end="9:00", services=["bathing"],
    ...           catalogue=Catalogue.parse(DEFAULT_CATALOGUE), zone=zoneinfo.ZoneInfo("UTC"))
    (None, [('end', 'the window has no length')])
    """
    caregiver = person_id(caregiver)
    found: list[tuple[str, str]] = []
    for name, value in (("site", site), ("bed", bed)):
        if not _ID.fullmatch(value):
            found.append((name, "not an id (letters, digits, _ and -, at most 64)"))
    if not _PLAN_ID.fullmatch(plan):
        found.append(("plan", "not an id (letters, digits, _ . : -, at most 128)"))
    if (problem := person_id_problem(caregiver)) is not None:
        found.append(("caregiver", problem))
    found += place_problems(site, bed, places)
    day: dt.date | None = None
    if _DATE.fullmatch(date):
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            day = None
    if day is None:
        found.append(("date", "not a date (YYYY-MM-DD)"))
    begins, ends = _time(start, end=False), _time(end, end=True)
    if begins is None:
        found.append(("start", "not a time of day (HH:MM, 00:00 to 23:59)"))
    if ends is None:
        found.append(("end", "not a time of day (HH:MM, 00:00 to 24:00)"))
    if day is not None and not FIRST_DATE <= day <= LAST_DATE:
        found.append(("date", f"outside the dates plans may have ({FIRST_DATE} to "
                              f"{LAST_DATE})"))
        day = None
    start_ms = end_ms = 0
    if day is not None and begins is not None and ends is not None:
        window = _window(day, begins, ends, zone)
        if isinstance(window[0], str):
            found.append((window[0], str(window[1])))
        else:
            start_ms, end_ms = int(window[0]), int(window[1])
            if end_ms - start_ms > MAX_WINDOW_MS:
                found.append(("end", "the window is longer than 12 hours (an end before the "
                                     "start is the next day)"))
    codes = tuple(services)
    if not codes:
        found.append(("services", "at least one service item code"))
    if len(codes) > MAX_SERVICES:
        found.append(("services", f"at most {MAX_SERVICES} service items"))
    for code in codes[:MAX_SERVICES]:
        if not _CODE.fullmatch(code):
            found.append(("services", "not a service code (letters, digits, _ . : -)"))
        elif code not in catalogue:
            found.append(("services", f"unknown service code {code} (the catalogue: "
                                      f"{', '.join(catalogue.items)})"))
    for code in sorted({c for c in codes if codes.count(c) > 1}):
        found.append(("services", f"{code} is listed twice"))
    if found or day is None or begins is None or ends is None:
        return None, found
    return PlannedVisit(site=site, bed=bed, plan=plan, caregiver=caregiver, date=date,
                        start=f"{begins[0]:02d}:{begins[1]:02d}",
                        end=f"{ends[0]:02d}:{ends[1]:02d}", start_ms=start_ms, end_ms=end_ms,
                        services=codes, cancelled=cancelled), []


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One good row of a CSV file."""

    row: int
    plan: PlannedVisit


@dataclass(frozen=True, slots=True)
class PlanImport:
    """A CSV file of plans read: its good rows and, for every other one, what is wrong."""

    rows: tuple[PlanRow, ...]
    problems: tuple[RowProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_plans_csv(text: str, *, catalogue: Catalogue,
                    zone_of: Callable[[str], dt.tzinfo],
                    places: Places | None = None) -> PlanImport:
    """Read a CSV file of planned visits (format in the module docstring); ``zone_of(site)``
    is the zone of a site's local times; ``places`` the registry's beds by site (a row for
    another site or bed is refused; ``None``: no registry). Rows without any value are
    skipped, and so is a row that repeats an earlier one exactly; every problem is reported
    (row, column, what), none raised."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return PlanImport((), (RowProblem(1, "", "the file is empty: a header row naming the "
                                                 "columns comes first"),))
    except csv.Error as exc:
        return PlanImport((), (RowProblem(1, "", f"not CSV ({exc})"),))
    found = _header_problems(header)
    if found:
        return PlanImport((), tuple(found))
    rows: list[PlanRow] = []
    first_row: dict[tuple[str, str], PlanRow] = {}
    number = 1
    try:
        for cells in reader:
            number += 1
            if number > MAX_ROWS + 1:
                found.append(RowProblem(number, "", f"more than {MAX_ROWS} rows: split the "
                                                    "file"))
                break
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                found.append(RowProblem(number, "", f"{len(cells)} cells for {len(header)} "
                                                    "columns"))
                continue
            values = dict(zip(header, (c.strip() for c in cells), strict=False))
            cancelled = _YES.get(values.get("cancelled", "").lower())
            site = values.get("site", "")
            plan, problems = make_plan(
                site=site, bed=values.get("bed", ""), plan=values.get("plan", ""),
                caregiver=values.get("caregiver", ""), date=values.get("date", ""),
                start=values.get("start", ""), end=values.get("end", ""),
                services=[c for c in _SEPARATORS.split(values.get("services", "")) if c],
                catalogue=catalogue, zone=zone_of(site) if _ID.fullmatch(site) else dt.UTC,
                cancelled=bool(cancelled), places=places)
            found += [RowProblem(number, column, what) for column, what in problems]
            if cancelled is None:
                found.append(RowProblem(number, "cancelled", "yes or no (or empty)"))
            if plan is None or cancelled is None:
                continue
            key = (plan.site, plan.plan)
            if key in first_row:
                earlier = first_row[key]
                if not earlier.plan.same_plan(plan):
                    found.append(RowProblem(number, "plan", f"this plan is also on row "
                                                            f"{earlier.row}, with other values"))
                continue  # the same row again: imported once
            first_row[key] = PlanRow(number, plan)
            rows.append(first_row[key])
    except csv.Error as exc:
        found.append(RowProblem(number + 1, "", f"not CSV ({exc})"))
    return PlanImport(tuple(rows), tuple(found))


def _header_problems(header: Sequence[str]) -> list[RowProblem]:
    found = []
    for name in sorted({n for n in header if header.count(n) > 1}):
        found.append(RowProblem(1, name, "this column is named twice"))
    for name in header:
        if name not in COLUMNS:
            found.append(RowProblem(1, name or "(empty)",
                                    f"unknown column (known: {', '.join(COLUMNS)})"))
    for name in REQUIRED_COLUMNS:
        if name not in header:
            found.append(RowProblem(1, name, "required column missing"))
    return found
