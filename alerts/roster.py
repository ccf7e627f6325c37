"""The on-call roster: who is on duty at each site, shift by shift, in the site's time zone.

A :class:`Roster` has the station's staff (:class:`Staff`: an id, a name, a role, and where to
reach them: email, a phone number for the webhook's SMS or voice bridge, an MQTT pager id), its
shifts (:class:`Shift`: a name and a start time, each lasting until the next one starts, the
last past midnight until the first) and the duty (:class:`Duty`: which dispatchers, which nurse
and which manager are on a shift at a site, on every day, on some weekdays or on one date).
Staff contact details are the station's own, not the residents': they may travel to the
channels that reach the staff (:mod:`alerts.notify`); the resident profile never does unless
a channel is allowed it.

The module is over 400 lines: the roster's parts (staff, shifts, duty, chains) and the rule
that decides who is on duty are read and checked together.

Who is on duty (:meth:`Roster.on_duty`) is decided in the site's zone: the shift whose start
is the latest not after the local time, on the date it started (a night shift from 20:00 is
the previous day's after midnight). Each role is taken from the most specific duty entry that
names it: the site before ``*`` (every site), and for each a date before a weekday before every
day. So a date entry that names only the nurse changes the nurse of that shift and keeps the
usual dispatchers.

The roster is written in the on-call file (``oncall_file``, TOML: ``[[staff]]``,
``[[shifts]]``, ``[[duty]]``, and the escalation chains, :mod:`alerts.escalation`) and may be
replaced by an admin through the API (:mod:`alerts.rosterstore` keeps it).

>>> roster = Roster.from_mapping({
...     "staff": [{"id": "anna", "name": "Anna", "role": "dispatcher", "email": "a@x.invalid"},
...               {"id": "li", "name": "Li", "role": "nurse"}],
...     "shifts": [{"name": "day", "start": "08:00"}, {"name": "night", "start": "20:00"}],
...     "duty": [{"site": "*", "shift": "night", "dispatchers": ["anna"], "nurse": "li"}]})
>>> import zoneinfo
>>> shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")
>>> now = roster.on_duty("site-01", 1_767_290_400_000, shanghai)  # 2026-01-02 02:00 there
>>> now.shift, now.date, [s.id for s in now.dispatchers], now.nurse.id, now.manager
('night', '2026-01-01', ['anna'], 'li', None)
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from alerts.reports import Shift

ROLES: Final = ("dispatcher", "nurse", "manager")
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
ANY_SITE: Final = "*"
MAX_STAFF: Final = 1000
MAX_DUTY: Final = 10_000
COVERAGE_DAYS: Final = 7
"""How far ahead a roster's coverage gaps are looked for (:meth:`Roster.gaps`)."""

Role = Literal["dispatcher", "nurse", "manager"]

_ID = re.compile(ID_PATTERN)
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,190}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()-]{2,30}$")


class RosterError(ValueError):
    """A roster that cannot be used: every problem, each as ``where: what`` (never a
    contact's value)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems[:20]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Staff:
    """One person who may be on duty."""

    id: str
    name: str
    role: Role
    email: str = ""
    phone: str = ""
    """For the webhook (an SMS or voice gateway calls this number)."""
    pager: str = ""
    """The id of their MQTT pager (the page's topic names it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Duty:
    """Who is on ``shift`` at ``site`` (``*``: every site): on ``date`` only (ISO, the date the
    shift starts), or on ``weekdays`` (``mon``..``sun``), or on every day when neither."""

    site: str
    shift: str
    date: str | None = None
    weekdays: tuple[str, ...] = ()
    dispatchers: tuple[str, ...] = ()
    nurse: str | None = None
    manager: str | None = None

    def rank(self, site: str, date: str, weekday: str) -> int | None:
        """How specific this entry is for a shift at ``site`` on ``date`` (lower first), or
        None when it does not apply."""
        if self.site not in (site, ANY_SITE):
            return None
        if self.date is not None:
            when = 0 if self.date == date else None
        elif self.weekdays:
            when = 1 if weekday in self.weekdays else None
        else:
            when = 2
        if when is None:
            return None
        return when + (0 if self.site == site else 3)


@dataclass(frozen=True, slots=True)
class OnDuty:
    """Who is on duty at one site at one moment."""

    site: str
    shift: str | None
    """None: the roster has no shifts."""
    date: str | None
    """The local date the shift started (ISO)."""
    dispatchers: tuple[Staff, ...]
    nurse: Staff | None
    manager: Staff | None


@dataclass(frozen=True, slots=True)
class Gap:
    """A time when no dispatcher is on duty at a site: calls there reach the console only."""

    site: str
    start: int
    """Epoch ms, inclusive."""
    end: int
    """Epoch ms, exclusive."""
    zone: str | None
    """The site's zone (IANA) the shifts were read in; None: the machine's."""

    def local(self, at_ms: int) -> str:
        """``at_ms`` in the site's zone, to the minute with its offset."""
        zone = ZoneInfo(self.zone) if self.zone else None
        return _local(at_ms, zone).isoformat(timespec="minutes")

    def text(self) -> str:
        site = "every site (*)" if self.site == ANY_SITE else self.site
        return (f"{site} from {self.local(self.start)} to {self.local(self.end)} "
                f"({self.zone or 'local time'})")


def _local(at_ms: int, zone: ZoneInfo | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(at_ms / 1000, tz=zone) if zone is not None \
        else dt.datetime.fromtimestamp(at_ms / 1000).astimezone()


def _epoch_ms(day: dt.date, minute: int, zone: ZoneInfo | None) -> int:
    """Epoch ms of ``minute`` after midnight on ``day`` in ``zone``."""
    wall = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=zone)
    return round(wall.timestamp() * 1000)


@dataclass(frozen=True, slots=True, kw_only=True)
class Roster:
    """Staff, shifts and duty (see the module docstring); validated by :meth:`from_mapping`."""

    staff: tuple[Staff, ...] = ()
    shifts: tuple[Shift, ...] = ()
    duty: tuple[Duty, ...] = ()

    def person(self, staff_id: str) -> Staff | None:
        return next((s for s in self.staff if s.id == staff_id), None)

    def shift_at(self, local: dt.datetime) -> tuple[Shift, dt.date] | None:
        """The shift running at ``local`` time and the date it started, or None."""
        if not self.shifts:
            return None
        minute = local.hour * 60 + local.minute
        ordered = sorted(self.shifts, key=lambda s: s.start_minute)
        started = [s for s in ordered if s.start_minute <= minute]
        if started:
            return started[-1], local.date()
        return ordered[-1], local.date() - dt.timedelta(days=1)

    def on_duty(self, site: str, at_ms: int, zone: ZoneInfo | None) -> OnDuty:
        """Who is on duty at ``site`` at ``at_ms`` (epoch ms), shifts read in ``zone`` (the
        site's; None: the machine's local zone)."""
        local = _local(at_ms, zone)
        found = self.shift_at(local)
        if found is None:
            return OnDuty(site, None, None, (), None, None)
        shift, date = found
        return self._on_shift(site, shift, date)

    def _on_shift(self, site: str, shift: Shift, date: dt.date) -> OnDuty:
        """Who is on ``shift`` started on ``date`` at ``site``."""
        iso, weekday = date.isoformat(), WEEKDAYS[date.weekday()]
        ranked = sorted(((rank, d) for d in self.duty if d.shift == shift.name
                         and (rank := d.rank(site, iso, weekday)) is not None),
                        key=lambda pair: pair[0])
        dispatchers = next((d.dispatchers for _, d in ranked if d.dispatchers), ())
        nurse = next((d.nurse for _, d in ranked if d.nurse), None)
        manager = next((d.manager for _, d in ranked if d.manager), None)
        people = {s.id: s for s in self.staff}
        return OnDuty(site, shift.name, iso, tuple(people[i] for i in dispatchers),
                      people[nurse] if nurse else None, people[manager] if manager else None)

    def gaps(self, site: str, zone: ZoneInfo | None, start_ms: int,
             days: int = COVERAGE_DAYS) -> list[Gap]:
        """The times from ``start_ms`` for ``days`` when no dispatcher is on duty at ``site``
        (shifts read in ``zone``, None: the machine's), adjacent shifts merged; a roster
        without shifts is one gap.

        >>> roster = Roster.from_mapping({
        ...     "staff": [{"id": "anna", "name": "Anna", "role": "dispatcher"}],
        ...     "shifts": [{"name": "day", "start": "08:00"}, {"name": "night", "start": "20:00"}],
        ...     "duty": [{"site": "*", "shift": "day", "dispatchers": ["anna"]},
        ...              {"site": "*", "shift": "night", "date": "2026-01-02",
        ...               "dispatchers": ["anna"]}]})
        >>> import zoneinfo
        >>> utc = zoneinfo.ZoneInfo("UTC")
        >>> [g.text() for g in roster.gaps("s", utc, 1_767_268_800_000, days=2)]  # Jan 1 12:00
        ['s from 2026-01-01T20:00+00:00 to 2026-01-02T08:00+00:00 (UTC)']
        """
        end_ms = start_ms + days * 86_400_000
        zone_name = zone.key if zone is not None else None
        if not self.shifts:
            return [Gap(site, start_ms, end_ms, zone_name)]
        ordered = sorted(self.shifts, key=lambda s: s.start_minute)
        # Only the entries that may apply at this site (a long duty list is read once per site).
        mine = Roster(staff=self.staff, shifts=self.shifts,
                      duty=tuple(d for d in self.duty if d.site in (site, ANY_SITE)))
        first = _local(start_ms, zone).date() - dt.timedelta(days=1)
        last = _local(end_ms, zone).date()
        out: list[Gap] = []
        day = first
        while day <= last:
            for i, shift in enumerate(ordered):
                begin = _epoch_ms(day, shift.start_minute, zone)
                after = ordered[i + 1] if i + 1 < len(ordered) else ordered[0]
                until = _epoch_ms(day + dt.timedelta(days=0 if i + 1 < len(ordered) else 1),
                                  after.start_minute, zone)
                begin, until = max(begin, start_ms), min(until, end_ms)
                if begin >= until or mine._on_shift(site, shift, day).dispatchers:
                    continue
                if out and out[-1].end >= begin:
                    out[-1] = Gap(site, out[-1].start, max(until, out[-1].end), zone_name)
                else:
                    out.append(Gap(site, begin, until, zone_name))
            day += dt.timedelta(days=1)
        return out

    # --- reading and writing ------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, default_shifts: Sequence[Shift] = ()
                     ) -> Roster:
        """The roster from the on-call file's tables (or the API's JSON); raises
        :class:`RosterError` with every problem. Keys other than ``staff``, ``shifts``,
        ``duty`` (and ``chains``, which :mod:`alerts.escalation` reads) are refused; without
        ``shifts``, the shifts are ``default_shifts``."""
        problems: list[str] = []
        extra = set(raw) - {"staff", "shifts", "duty", "chains"}
        problems += [f"{key}: unknown key" for key in sorted(extra)]
        staff = tuple(s for i, row in enumerate(_rows(raw, "staff", problems))
                      if (s := _staff(row, f"staff[{i}]", problems)) is not None)
        shifts = tuple(h for i, row in enumerate(_rows(raw, "shifts", problems))
                       if (h := _shift(row, f"shifts[{i}]", problems)) is not None) \
            if "shifts" in raw else tuple(default_shifts)
        duty = tuple(d for i, row in enumerate(_rows(raw, "duty", problems))
                     if (d := _duty(row, f"duty[{i}]", problems)) is not None)
        if len(staff) > MAX_STAFF or len(duty) > MAX_DUTY:
            problems.append(f"at most {MAX_STAFF} staff and {MAX_DUTY} duty entries")
        ids = [s.id for s in staff]
        if len(set(ids)) != len(ids):
            problems.append("staff: an id is listed twice")
        names = [s.name for s in shifts]
        if len(set(names)) != len(names) or len({s.start_minute for s in shifts}) != len(shifts):
            problems.append("shifts: a name or a start time is listed twice")
        roles = {s.id: s.role for s in staff}
        for i, d in enumerate(duty):
            where = f"duty[{i}]"
            if d.shift not in names:
                problems.append(f"{where}.shift: no such shift")
            for who in d.dispatchers:
                if roles.get(who) != "dispatcher":
                    problems.append(f"{where}.dispatchers: {who!r} is no dispatcher on the staff")
            for role, who_or_none in (("nurse", d.nurse), ("manager", d.manager)):
                if who_or_none is not None and roles.get(who_or_none) != role:
                    problems.append(f"{where}.{role}: {who_or_none!r} is no {role} on the staff")
        if problems:
            raise RosterError(problems)
        return cls(staff=staff, shifts=shifts, duty=duty)

    def to_mapping(self) -> dict[str, Any]:
        """The roster as :meth:`from_mapping` reads it (empty fields left out)."""
        return {
            "staff": [{k: v for k, v in (("id", s.id), ("name", s.name), ("role", s.role),
                                         ("email", s.email), ("phone", s.phone),
                                         ("pager", s.pager)) if v} for s in self.staff],
            "shifts": [{"name": s.name, "start": s.start} for s in self.shifts],
            "duty": [{k: v for k, v in (("site", d.site), ("shift", d.shift), ("date", d.date),
                                        ("weekdays", list(d.weekdays)),
                                        ("dispatchers", list(d.dispatchers)),
                                        ("nurse", d.nurse), ("manager", d.manager)) if v}
                     for d in self.duty]}


def _rows(raw: Mapping[str, Any], key: str, problems: list[str]) -> list[Mapping[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        problems.append(f"{key}: a list of tables")
        return []
    return value


def _text(row: Mapping[str, Any], key: str, where: str, problems: list[str], *,
          required: bool = False, max_len: int = 200) -> str:
    value = row.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > max_len or any(
            ord(c) < 32 or ord(c) == 127 for c in value):
        problems.append(f"{where}.{key}: text on one line, at most {max_len} characters")
        return ""
    if required and not value.strip():
        problems.append(f"{where}.{key}: required")
    return value.strip()


def _only(row: Mapping[str, Any], allowed: set[str], where: str, problems: list[str]) -> None:
    problems += [f"{where}.{key}: unknown key" for key in sorted(set(row) - allowed)]


def _staff(row: Mapping[str, Any], where: str, problems: list[str]) -> Staff | None:
    _only(row, {"id", "name", "role", "email", "phone", "pager"}, where, problems)
    before = len(problems)
    staff_id = _text(row, "id", where, problems, required=True, max_len=64)
    if staff_id and not _ID.fullmatch(staff_id):
        problems.append(f"{where}.id: letters, digits, _ and -, at most 64")
    name = _text(row, "name", where, problems, required=True)
    role = row.get("role")
    if role not in ROLES:
        problems.append(f"{where}.role: one of {', '.join(ROLES)}")
    email = _text(row, "email", where, problems)
    if email and not _EMAIL.fullmatch(email):
        problems.append(f"{where}.email: not an email address")
    phone = _text(row, "phone", where, problems, max_len=32)
    if phone and not _PHONE.fullmatch(phone):
        problems.append(f"{where}.phone: digits, spaces, ( ) - and a leading +")
    pager = _text(row, "pager", where, problems, max_len=64)
    if pager and not _ID.fullmatch(pager):
        problems.append(f"{where}.pager: letters, digits, _ and -, at most 64")
    if len(problems) > before:
        return None
    return Staff(id=staff_id, name=name, role=role, email=email, phone=phone,  # type: ignore[arg-type]
                 pager=pager)


def _shift(row: Mapping[str, Any], where: str, problems: list[str]) -> Shift | None:
    _only(row, {"name", "start"}, where, problems)
    name = _text(row, "name", where, problems, required=True, max_len=64)
    if name and not _ID.fullmatch(name):
        problems.append(f"{where}.name: letters, digits, _ and -, at most 64")
        return None
    start = row.get("start")
    match = _CLOCK.fullmatch(start) if isinstance(start, str) else None
    if match is None:
        problems.append(f"{where}.start: HH:MM")
        return None
    return Shift(name, int(match[1]) * 60 + int(match[2])) if name else None


def _ids(row: Mapping[str, Any], key: str, where: str, problems: list[str]) -> tuple[str, ...]:
    value = row.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and _ID.fullmatch(v)
                                              for v in value) or len(set(value)) != len(value):
        problems.append(f"{where}.{key}: a list of distinct ids")
        return ()
    return tuple(value)


def _duty(row: Mapping[str, Any], where: str, problems: list[str]) -> Duty | None:
    _only(row, {"site", "shift", "date", "weekdays", "dispatchers", "nurse", "manager"}, where,
          problems)
    before = len(problems)
    site = _text(row, "site", where, problems, required=True, max_len=64)
    if site and site != ANY_SITE and not _ID.fullmatch(site):
        problems.append(f"{where}.site: a site id or *")
    shift = _text(row, "shift", where, problems, required=True, max_len=64)
    date = row.get("date")
    if date is not None:
        try:
            date = dt.date.fromisoformat(str(date)).isoformat()
        except ValueError:
            problems.append(f"{where}.date: YYYY-MM-DD")
    weekdays = _ids(row, "weekdays", where, problems)
    if any(w not in WEEKDAYS for w in weekdays):
        problems.append(f"{where}.weekdays: some of {', '.join(WEEKDAYS)}")
    if date is not None and weekdays:
        problems.append(f"{where}: a date or weekdays, not both")
    dispatchers = _ids(row, "dispatchers", where, problems)
    nurse = _text(row, "nurse", where, problems, max_len=64) or None
    manager = _text(row, "manager", where, problems, max_len=64) or None
    if not (dispatchers or nurse or manager):
        problems.append(f"{where}: names nobody (dispatchers, nurse or manager)")
    if len(problems) > before:
        return None
    return Duty(site=site, shift=shift, date=date, weekdays=weekdays, dispatchers=dispatchers,
                nurse=nurse, manager=manager)
