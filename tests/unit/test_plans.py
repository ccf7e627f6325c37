"""Service plans: the catalogue of service items, one planned visit's validation and the CSV
import (a clear problem per row and column, never a half-read file). Synthetic ids only."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from alerts.plans import (
    DEFAULT_CATALOGUE,
    Catalogue,
    PlannedVisit,
    make_plan,
    parse_plans_csv,
)
from alerts.residents import RowProblem

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
CATALOGUE = Catalogue.parse(DEFAULT_CATALOGUE)
HEADER = "site,bed,plan,caregiver,date,start,end,services\n"


def zone_of(site: str) -> zoneinfo.ZoneInfo:
    return SHANGHAI


def ms(date: str, time: str) -> int:
    moment = dt.datetime.fromisoformat(f"{date}T{time}").replace(tzinfo=SHANGHAI)
    return round(moment.timestamp() * 1000)


def test_the_default_catalogue_has_the_contract_items_and_which_need_a_recording() -> None:
    assert CATALOGUE["bathing"].minutes == 30.0
    assert CATALOGUE["bathing"].recording
    assert not CATALOGUE["cleaning"].recording
    assert CATALOGUE.minutes(["bathing", "medication"]) == 35.0
    assert CATALOGUE.recorded(["cleaning", "rehab", "bathing"]) == ("rehab", "bathing")
    assert Catalogue.parse(CATALOGUE.entries()) == CATALOGUE


def test_a_catalogue_entry_that_says_nothing_clear_is_refused_naming_it() -> None:
    for entry, what in (("bathing", "code:minutes"), ("bathing:x", "minutes"),
                        ("bathing:0", "minutes"), ("bath ing:10", "code"),
                        ("bathing:10:filmed", "recorded"), ("bathing:10:recorded:x",
                                                            "code:minutes")):
        with pytest.raises(ValueError, match=what) as error:
            Catalogue.parse([entry])
        assert repr(entry) in str(error.value)
    with pytest.raises(ValueError, match="twice"):
        Catalogue.parse(["a:1", "a:2"])
    with pytest.raises(ValueError, match="empty"):
        Catalogue.parse([])


def test_a_plan_has_its_window_in_the_sites_time_zone() -> None:
    plan, problems = make_plan(site="site-01", bed="bed-0001", plan="p-1", caregiver="c001",
                               date="2026-11-02", start="08:30", end="10:35",
                               services=["bathing", "medication"], catalogue=CATALOGUE,
                               zone=SHANGHAI)
    assert problems == []
    assert isinstance(plan, PlannedVisit)
    assert (plan.start_ms, plan.end_ms) == (ms("2026-11-02", "08:30"), ms("2026-11-02", "10:35"))
    assert plan.services == ("bathing", "medication")


def test_a_window_past_midnight_ends_the_next_day() -> None:
    plan, problems = make_plan(site="s", bed="b", plan="p", caregiver="c", date="2026-11-02",
                               start="23:00", end="01:00", services=["medication"],
                               catalogue=CATALOGUE, zone=SHANGHAI)
    assert problems == []
    assert plan is not None
    assert plan.end_ms - plan.start_ms == 2 * 3_600_000


def test_every_problem_of_a_plan_is_named_with_its_field() -> None:
    plan, problems = make_plan(site="site 1", bed="b", plan="", caregiver="Wang Mei",
                               date="2026-02-30", start="8h", end="25:00",
                               services=["bathing", "massage", "bathing"], catalogue=CATALOGUE,
                               zone=SHANGHAI)
    assert plan is None
    fields = [field for field, _ in problems]
    assert fields == ["site", "plan", "caregiver", "date", "start", "end", "services",
                      "services"]
    assert problems[-2][1].startswith("unknown service code massage")
    assert problems[-1] == ("services", "bathing is listed twice")


def test_a_window_longer_than_twelve_hours_or_of_no_length_is_refused() -> None:
    for start, end in (("06:00", "19:00"), ("09:00", "09:00")):
        _, problems = make_plan(site="s", bed="b", plan="p", caregiver="c", date="2026-11-02",
                                start=start, end=end, services=["medication"],
                                catalogue=CATALOGUE, zone=SHANGHAI)
        assert [field for field, _ in problems] == ["end"], (start, end)


def test_a_plan_needs_at_least_one_service_item() -> None:
    _, problems = make_plan(site="s", bed="b", plan="p", caregiver="c", date="2026-11-02",
                            start="09:00", end="10:00", services=[], catalogue=CATALOGUE,
                            zone=SHANGHAI)
    assert problems == [("services", "at least one service item code")]


def test_csv_rows_become_plans_and_each_bad_row_is_named_without_its_value() -> None:
    text = (HEADER
            + "site-01,bed-0001,p-1,c001,2026-11-02,08:30,10:35,bathing;medication\n"
            + "site-01,bed-0002,p-2,c001,2026-11-02,10:30,12:35,meal_assist cleaning\n"
            + "site-01,bed-0003,p-3,Li Ping,2026-11-31,10:30,12:35,massage\n"
            + "\n"
            + "site-01,bed-0004,p-1,c002,2026-11-02,10:30,12:35,rehab\n")
    result = parse_plans_csv(text, catalogue=CATALOGUE, zone_of=zone_of)
    assert [(r.row, r.plan.plan) for r in result.rows] == [(2, "p-1"), (3, "p-2")]
    assert result.rows[1].plan.services == ("meal_assist", "cleaning")
    assert [str(p) for p in result.problems] == [
        "row 4, caregiver: not an id (printable characters, no spaces, / or \\, not starting "
        "with = + - @, at most 128)",
        "row 4, date: not a date (YYYY-MM-DD)",
        "row 4, services: unknown service code massage (the catalogue: bathing, meal_assist, "
        "medication, cleaning, vitals_check, rehab, companionship)",
        "row 6, plan: this plan is also on row 2, with other values",
    ]
    assert "Li Ping" not in " ".join(str(p) for p in result.problems)


def test_the_header_must_name_known_columns_and_the_required_ones() -> None:
    result = parse_plans_csv("site,bed,plan,when,services\n", catalogue=CATALOGUE,
                             zone_of=zone_of)
    assert [str(p) for p in result.problems] == [
        "row 1, when: unknown column (known: site, bed, plan, caregiver, date, start, end, "
        "services, cancelled)",
        "row 1, caregiver: required column missing",
        "row 1, date: required column missing",
        "row 1, start: required column missing",
        "row 1, end: required column missing",
    ]
    assert not parse_plans_csv("", catalogue=CATALOGUE, zone_of=zone_of).ok


def test_a_cancelled_column_marks_plans_that_are_not_expected_any_more() -> None:
    text = ("site,bed,plan,caregiver,date,start,end,services,cancelled\n"
            "s,b,p-1,c,2026-11-02,09:00,10:00,medication,yes\n"
            "s,b,p-2,c,2026-11-03,09:00,10:00,medication,\n"
            "s,b,p-3,c,2026-11-04,09:00,10:00,medication,perhaps\n")
    result = parse_plans_csv(text, catalogue=CATALOGUE, zone_of=zone_of)
    assert [(r.plan.plan, r.plan.cancelled) for r in result.rows] == [("p-1", True),
                                                                       ("p-2", False)]
    assert [str(p) for p in result.problems] == ["row 4, cancelled: yes or no (or empty)"]


def test_a_byte_order_mark_and_spaces_around_cells_are_fine() -> None:
    text = "\ufeff" + HEADER + " s , b , p , c , 2026-11-02 , 9:00 , 10:00 , medication \n"
    result = parse_plans_csv(text, catalogue=CATALOGUE, zone_of=zone_of)
    assert result.ok
    assert result.rows[0].plan.start == "09:00"


def test_same_plan_compares_everything_but_who_changed_it_when() -> None:
    plan, _ = make_plan(site="s", bed="b", plan="p", caregiver="c", date="2026-11-02",
                        start="09:00", end="10:00", services=["medication"],
                        catalogue=CATALOGUE, zone=SHANGHAI)
    assert plan is not None
    import msgspec

    stamped = msgspec.structs.replace(plan, updated_at=5, updated_by="anna")
    assert plan.same_plan(stamped)
    assert not plan.same_plan(msgspec.structs.replace(plan, caregiver="c2"))


# --- found by a fresh verifier (2026-12-01) -------------------------------------------------

PLACES = {"site-01": frozenset({"bed-0001", "bed-0002"}), "site-02": frozenset({"bed-0009"})}


def test_with_a_registry_a_row_for_another_site_or_bed_is_refused() -> None:
    parsed = parse_plans_csv(
        HEADER + "site-01,bed-0001,p-1,c001,2026-11-02,08:30,09:30,bathing\n"
        "site-99,bed-0001,p-2,c001,2026-11-02,08:30,09:30,bathing\n"
        "site-01,bed-0009,p-3,c001,2026-11-02,08:30,09:30,bathing\n"
        "site-01,bed-0077,p-4,c001,2026-11-02,08:30,09:30,bathing\n",
        catalogue=CATALOGUE, zone_of=zone_of, places=PLACES)
    assert [(p.row, p.column) for p in parsed.problems] == [(3, "site"), (4, "bed"), (5, "bed")]
    assert "not a site of the registry" in parsed.problems[0].message
    assert "under another site" in parsed.problems[1].message
    assert "under another site" not in parsed.problems[2].message
    # A site listed without beds (they register as their devices come): any bed of its own.
    assert parse_plans_csv(HEADER + "site-03,bed-0077,p-5,c001,2026-11-02,08:30,09:30,bathing\n"
                           "site-03,bed-0001,p-6,c001,2026-11-02,08:30,09:30,bathing\n",
                           catalogue=CATALOGUE, zone_of=zone_of,
                           places={**PLACES, "site-03": frozenset()}).problems == (
        RowProblem(3, "bed", "the registry lists this bed under another site"),)
    assert not any("site-99" in str(p) or "bed-00" in str(p) for p in parsed.problems)
    # Without a registry, any site and bed.
    assert parse_plans_csv(HEADER + "site-99,bed-0001,p-2,c001,2026-11-02,08:30,09:30,bathing\n",
                           catalogue=CATALOGUE, zone_of=zone_of).ok


@pytest.mark.parametrize("date", ["9999-12-31", "0001-01-01", "1999-12-31", "2100-01-01"])
def test_a_date_outside_the_sane_range_is_refused_not_a_crash(date: str) -> None:
    plan, problems = make_plan(site="s", bed="b", plan="p-1", caregiver="c001", date=date,
                               start="23:00", end="01:00", services=["bathing"],
                               catalogue=CATALOGUE, zone=SHANGHAI)
    assert plan is None
    assert problems == [("date", "outside the dates plans may have (2000-01-01 to 2099-12-31)")]
    parsed = parse_plans_csv(HEADER + f"s,b,p-1,c001,{date},23:00,01:00,bathing\n",
                             catalogue=CATALOGUE, zone_of=lambda site: dt.UTC)
    assert [(p.row, p.column) for p in parsed.problems] == [(2, "date")]


BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def berlin(date: str, start: str, end: str) -> tuple[PlannedVisit | None, list[tuple[str, str]]]:
    return make_plan(site="s", bed="b", plan="p-1", caregiver="c001", date=date, start=start,
                     end=end, services=["bathing"], catalogue=CATALOGUE, zone=BERLIN)


def test_a_start_the_clocks_skip_is_named_not_a_window_of_no_length() -> None:
    # 2026-03-29 in Berlin: 02:00 becomes 03:00.
    assert berlin("2026-03-29", "02:00", "03:00") == (None, [(
        "start", "this time does not exist on that day: the clocks go forward (daylight "
                 "saving time); plan it after the change")])
    assert berlin("2026-03-29", "01:30", "02:30")[1][0][0] == "end"
    plan, _ = berlin("2026-03-29", "01:30", "03:30")
    assert plan is not None
    assert plan.end_ms - plan.start_ms == 3_600_000, "the hour skipped is not there"


def test_a_window_in_the_hour_the_clocks_repeat_has_its_clock_length() -> None:
    # 2026-10-25 in Berlin: 03:00 becomes 02:00; 02:00-03:00 happens twice.
    for start, end, minutes in (("02:00", "03:00", 60), ("02:15", "02:45", 30),
                                ("01:30", "02:30", 60), ("02:30", "03:30", 60),
                                ("01:00", "04:00", 240)):
        plan, problems = berlin("2026-10-25", start, end)
        assert plan is not None, problems
        assert plan.end_ms - plan.start_ms == minutes * 60_000, (start, end)


def test_an_exact_duplicate_row_is_imported_once_a_different_one_is_named() -> None:
    row = "site-01,bed-0001,p-1,c001,2026-11-02,08:30,09:30,bathing\n"
    parsed = parse_plans_csv(HEADER + row + row, catalogue=CATALOGUE, zone_of=zone_of)
    assert parsed.ok
    assert [r.row for r in parsed.rows] == [2]
    parsed = parse_plans_csv(HEADER + row + row.replace("09:30", "09:45"),
                             catalogue=CATALOGUE, zone_of=zone_of)
    assert [str(p) for p in parsed.problems] == [
        "row 3, plan: this plan is also on row 2, with other values"]
