"""The on-call roster: who is on duty per site and shift in the site's zone, the most specific
duty entry per role, checked input, and the roster an admin replaced kept until the file
changes."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import zoneinfo
from pathlib import Path
from typing import Any

import pytest

from alerts.reports import ReportSettings
from alerts.roster import Roster, RosterError
from alerts.rosterstore import RosterStore

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
LONDON = zoneinfo.ZoneInfo("Europe/London")

RAW: dict[str, Any] = {
    "staff": [
        {"id": "anna", "name": "Anna (synthetic)", "role": "dispatcher",
         "email": "anna@station.invalid", "phone": "+86 138 0000 0001", "pager": "pg-1"},
        {"id": "bo", "name": "Bo (synthetic)", "role": "dispatcher"},
        {"id": "chen", "name": "Chen (synthetic)", "role": "dispatcher"},
        {"id": "li", "name": "Li (synthetic)", "role": "nurse", "email": "li@station.invalid"},
        {"id": "ma", "name": "Ma (synthetic)", "role": "nurse"},
        {"id": "wang", "name": "Wang (synthetic)", "role": "manager"}],
    "shifts": [{"name": "day", "start": "08:00"}, {"name": "night", "start": "20:00"}],
    "duty": [
        {"site": "*", "shift": "day", "dispatchers": ["anna"], "nurse": "li", "manager": "wang"},
        {"site": "*", "shift": "night", "dispatchers": ["bo"], "nurse": "ma"},
        {"site": "site-02", "shift": "day", "dispatchers": ["chen"]},
        {"site": "*", "shift": "day", "weekdays": ["sat", "sun"], "dispatchers": ["bo"]},
        {"site": "*", "shift": "night", "date": "2026-01-01", "nurse": "li"}]}


def at(zone: zoneinfo.ZoneInfo, *fields: int) -> int:
    return int(dt.datetime(*fields, tzinfo=zone).timestamp() * 1000)


def test_who_is_on_duty_follows_the_sites_zone_and_the_most_specific_entry_per_role() -> None:
    roster = Roster.from_mapping(RAW)
    # Friday 2026-01-02 10:00 in Shanghai: the day shift, everyone from the '*' entry.
    now = roster.on_duty("site-01", at(SHANGHAI, 2026, 1, 2, 10, 0), SHANGHAI)
    assert (now.shift, now.date) == ("day", "2026-01-02")
    assert ([s.id for s in now.dispatchers], now.nurse and now.nurse.id,
            now.manager and now.manager.id) == (["anna"], "li", "wang")
    # The same moment is 02:00 in London: the night shift of the day before there.
    london = roster.on_duty("site-01", at(SHANGHAI, 2026, 1, 2, 10, 0), LONDON)
    assert (london.shift, london.date, [s.id for s in london.dispatchers]) == (
        "night", "2026-01-01", ["bo"])
    assert london.nurse is not None
    assert london.nurse.id == "li", "the date's nurse"
    assert london.manager is None
    # A site's own entry beats '*' for the role it names, and only that role.
    other = roster.on_duty("site-02", at(SHANGHAI, 2026, 1, 2, 10, 0), SHANGHAI)
    assert [s.id for s in other.dispatchers] == ["chen"]
    assert other.nurse is not None
    assert other.nurse.id == "li"
    # Weekdays: Saturday's day shift has its own dispatcher.
    saturday = roster.on_duty("site-01", at(SHANGHAI, 2026, 1, 3, 9, 0), SHANGHAI)
    assert [s.id for s in saturday.dispatchers] == ["bo"]
    # After midnight the night shift is the previous day's (its date's nurse).
    late = roster.on_duty("site-01", at(SHANGHAI, 2026, 1, 2, 3, 0), SHANGHAI)
    assert (late.shift, late.date, late.nurse and late.nurse.id) == ("night", "2026-01-01",
                                                                       "li")
    assert Roster().on_duty("site-01", 0, SHANGHAI).dispatchers == ()


def test_the_roster_uses_the_report_shifts_when_it_names_none() -> None:
    shifts = ReportSettings.parse_shifts(["early=06:00", "late=14:00", "night=22:00"])
    roster = Roster.from_mapping({"staff": RAW["staff"], "duty": [
        {"site": "*", "shift": "late", "dispatchers": ["anna"]}]}, default_shifts=shifts)
    now = roster.on_duty("site-01", at(SHANGHAI, 2026, 1, 2, 15, 0), SHANGHAI)
    assert (now.shift, [s.id for s in now.dispatchers]) == ("late", ["anna"])
    assert Roster.from_mapping(roster.to_mapping()) == roster


def test_a_bad_roster_names_every_problem_and_never_a_contacts_value() -> None:
    bad = {"staff": [{"id": "anna", "name": "Anna", "role": "dispatcher",
                      "email": "not-an-address", "phone": "call me"},
                     {"id": "anna", "name": "Anna again", "role": "chef"}],
           "shifts": [{"name": "day", "start": "8 o'clock"}],
           "duty": [{"site": "site 1", "shift": "dawn", "dispatchers": ["li"]},
                    {"site": "*", "shift": "day"}],
           "rota": []}
    with pytest.raises(RosterError) as caught:
        Roster.from_mapping(bad)
    text = str(caught.value)
    for expected in ("rota: unknown key", "staff[0].email", "staff[0].phone", "staff[1].role",
                     "shifts[0].start", "duty[0].site", "duty[1]: names nobody"):
        assert expected in text, (expected, text)
    assert "not-an-address" not in text
    assert "call me" not in text
    with pytest.raises(RosterError, match="no dispatcher on the staff"):
        Roster.from_mapping({**RAW, "duty": [{"site": "*", "shift": "day",
                                              "dispatchers": ["li"]}]})
    with pytest.raises(RosterError, match="listed twice"):
        Roster.from_mapping({**RAW, "staff": RAW["staff"] + RAW["staff"][:1]})


def test_a_roster_replaced_through_the_api_is_kept_privately_until_the_file_changes(
        tmp_path: Path) -> None:
    path = tmp_path / "oncall.json"
    seed = Roster.from_mapping(RAW)
    store = RosterStore(path, seed=seed)
    assert (store.source, store.roster) == ("file", seed)
    assert not path.exists()
    changed = Roster.from_mapping({**RAW, "duty": RAW["duty"][:1]})
    store.replace(changed, actor="admin-a", now_ms=5)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["updated_by"] == "admin-a"
    again = RosterStore(path, seed=seed)
    assert (again.source, again.roster, again.updated_by) == ("api", changed, "admin-a")
    # The station edits the file: the file wins, the API's roster is moved aside.
    edited = Roster.from_mapping({**RAW, "duty": RAW["duty"][1:]})
    after_edit = RosterStore(path, seed=edited)
    assert (after_edit.source, after_edit.roster) == ("file", edited)
    assert not path.exists()
    assert (tmp_path / "oncall.json.replaced").exists()


def test_coverage_gaps_are_the_times_no_dispatcher_is_on_duty_per_site_in_its_zone() -> None:
    """A site whose entry names a nurse for the night but no dispatcher is covered by the
    ``*`` dispatchers; a site whose own night has no dispatcher at all is not (issue #13: such
    a roster was accepted silently and calls reached nobody off-console)."""
    roster = Roster.from_mapping({**RAW, "duty": [
        {"site": "*", "shift": "day", "dispatchers": ["anna"]},
        {"site": "site-02", "shift": "night", "nurse": "ma"},
        {"site": "site-03", "shift": "night", "dispatchers": ["bo"], "date": "2026-01-02"}]})
    start = at(SHANGHAI, 2026, 1, 1, 12)
    shanghai = roster.gaps("site-02", SHANGHAI, start, days=2)
    assert [(g.start, g.end) for g in shanghai] == [
        (at(SHANGHAI, 2026, 1, 1, 20), at(SHANGHAI, 2026, 1, 2, 8)),
        (at(SHANGHAI, 2026, 1, 2, 20), at(SHANGHAI, 2026, 1, 3, 8))]
    assert shanghai[0].text() == \
        "site-02 from 2026-01-01T20:00+08:00 to 2026-01-02T08:00+08:00 (Asia/Shanghai)"
    # The same shifts in London's zone are other instants (start is 04:00 there, at night).
    assert [(g.start, g.end) for g in roster.gaps("site-02", LONDON, start, days=1)] == [
        (start, at(LONDON, 2026, 1, 1, 8)), (at(LONDON, 2026, 1, 1, 20), start + 86_400_000)]
    # A date entry covers its night only.
    assert [(g.start, g.end) for g in roster.gaps("site-03", SHANGHAI, start, days=2)] == [
        (at(SHANGHAI, 2026, 1, 1, 20), at(SHANGHAI, 2026, 1, 2, 8))]
    assert Roster.from_mapping(RAW).gaps("site-02", SHANGHAI, start) == []
    nobody = Roster.from_mapping({"staff": RAW["staff"], "shifts": RAW["shifts"]})
    assert [(g.start, g.end) for g in nobody.gaps("site-01", SHANGHAI, start)] == [
        (start, start + 7 * 86_400_000)]


def test_the_store_logs_its_gaps_at_load_and_on_change_and_counts_sites_without_a_dispatcher(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    day_only = Roster.from_mapping({**RAW, "duty": [
        {"site": "*", "shift": "day", "dispatchers": ["anna"]}]})
    noon, night = at(SHANGHAI, 2026, 1, 1, 12), at(SHANGHAI, 2026, 1, 1, 22)
    zones = {"site-01": SHANGHAI, "site-sh": SHANGHAI}
    caplog.set_level("WARNING", logger="homecare.alerts.oncall")
    store = RosterStore(tmp_path / "oncall.json", seed=day_only, sites=lambda: ["site-01"],
                        zone=zones.get, clock=lambda: noon)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 7, lines
    assert lines[0].startswith("oncall.gap site=site-01 from=2026-01-01T20:00+08:00 "
                               "to=2026-01-02T08:00+08:00 zone=Asia/Shanghai"), lines
    assert (store.sites_uncovered(noon), store.sites_uncovered(night)) == (0, 1)

    caplog.clear()
    store.replace(Roster.from_mapping({**RAW, "duty": [
        {"site": "*", "shift": "day", "dispatchers": ["anna"]},
        {"site": "*", "shift": "night", "dispatchers": ["bo"]},
        {"site": "site-sh", "shift": "night", "dispatchers": ["chen"], "weekdays": ["mon"]},
        {"site": "site-sh", "shift": "day", "nurse": "li"}]}), actor="a", now_ms=noon)
    assert caplog.records == []
    assert store.sites_uncovered(night) == 0
    caplog.clear()
    store.replace(day_only, actor="a", now_ms=noon)
    assert len(caplog.records) == 7
    # No on-call file: nobody is meant to be on call, nothing to warn of.
    caplog.clear()
    quiet = RosterStore(tmp_path / "other.json", seed=Roster(), check=False)
    assert (quiet.gaps(noon), quiet.sites_uncovered(night), caplog.records) == ([], 0, [])
