"""Issue #14, what a visit bills: an item outside the service catalogue is flagged
``unknown_service`` and never billed (it was billed at the default minutes each, verified, and
escaped the recording check: the README's own badge example billed ``bath`` and ``meds``); a
stay shorter than the billed items with nothing sensed is ``stay_shorter_than_billed``, not
``too_short`` (which says the caregiver was sensed too short a time)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.plans import DEFAULT_CATALOGUE, Catalogue
from alerts.servicerecords import Settlement
from devices import Registry
from gateway.detect import ServiceAnomalyDetector
from tests.unit.test_detect_support import HOUR, MINUTE, at, badge, opened, run
from tests.unit.test_service_checks import Traffic, visit
from tests.unit.test_supervision import CATALOGUE, MIN, Station, local

T0 = at("2026-11-02", "08:00", "UTC")
NINE = T0 + HOUR


def judged(traffic: Traffic, *, end: int = NINE + 5 * HOUR) -> list[list[str]]:
    return [f.evidence["reasons"] for f in opened(run(
        ServiceAnomalyDetector(Registry(), timezone="UTC"), traffic, start=T0, end=end))]


# --- items outside the catalogue ---------------------------------------------------------------


def test_the_readme_badge_example_codes_are_flagged_unknown_not_verified() -> None:
    # Two 40-minute visits, the caregiver sensed throughout, nothing recorded: the catalogue's
    # codes are flagged no_recording; the made-up ones were verified and billed 30 min.
    made_up = visit("b1", NINE, NINE + 40 * MINUTE, services=["bath", "meds"], recorded=False)
    [raised] = opened(run(ServiceAnomalyDetector(Registry(), timezone="UTC"), made_up,
                          start=T0, end=NINE + 5 * HOUR))
    assert raised.evidence["reasons"] == ["unknown_service"]
    assert raised.evidence["unknown_services"] == ["bath", "meds"]
    assert "bath, meds, not in the service catalogue" in raised.summary
    catalogue = visit("b1", NINE, NINE + 40 * MINUTE, services=["bathing", "medication"],
                      recorded=False)
    assert judged(catalogue) == [["no_recording"]]


def test_an_unknown_code_beside_catalogue_codes_is_named_alone() -> None:
    traffic = visit("b1", NINE, NINE + 40 * MINUTE, services=["bathing", "meds", "meds"])
    [raised] = opened(run(ServiceAnomalyDetector(Registry(), timezone="UTC"), traffic,
                          start=T0, end=NINE + 5 * HOUR))
    assert raised.evidence["reasons"] == ["unknown_service"]
    assert raised.evidence["unknown_services"] == ["meds"]


def test_catalogue_codes_recorded_raise_nothing() -> None:
    traffic = visit("b1", NINE, NINE + 40 * MINUTE, services=["bathing", "medication"])
    assert judged(traffic) == []


# --- a stay shorter than billed with nothing sensed --------------------------------------------


def badge_only(minutes: int, services: list[str]) -> Traffic:
    """A visit in a home without infrared: its badge only."""
    out = NINE + minutes * MINUTE
    return [(NINE + 50, badge("b1", NINE, "check_in", "v-1")),
            (out + 50, badge("b1", out, "check_out", "v-1", services=services))]


def test_a_short_stay_with_nothing_sensed_is_shorter_than_billed_not_too_short() -> None:
    [raised] = opened(run(ServiceAnomalyDetector(Registry(), timezone="UTC"),
                          badge_only(3, ["cleaning"]), start=T0, end=NINE + 5 * HOUR))
    assert raised.evidence["reasons"] == ["stay_shorter_than_billed"]
    assert raised.evidence["sensed_minutes"] is None
    assert raised.evidence["infrared_samples"] == 0
    assert raised.evidence["claimed_minutes"] == 25.0
    assert "checked out after 3 min; services claim 25 min" in raised.summary


def test_a_stay_as_long_as_billed_with_nothing_sensed_raises_nothing() -> None:
    assert judged(badge_only(26, ["cleaning"])) == []


def test_too_short_still_says_the_caregiver_was_sensed_too_short() -> None:
    traffic = visit("b1", NINE, NINE + 30 * MINUTE, services=["vitals_check", "companionship"],
                    sensed_until=NINE + 12 * MINUTE)
    assert judged(traffic) == [["too_short"]]


# --- the service record and the report ---------------------------------------------------------


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    s = Station(tmp_path)
    yield s
    s.log.close()
    s.store.close()
    s.plans.close()


def test_a_visit_billing_unknown_codes_is_recorded_flagged_and_held_in_the_report(
        station: Station) -> None:
    # One judged verified (no reason found by whoever judged it), one nobody judged, one
    # billing catalogue codes: only the last is billable.
    station.visit("site-01", "bed-1", "c-1", local("2026-11-02", "09:00"), 40, ("bath", "meds"))
    station.visit("site-01", "bed-1", "c-1", local("2026-11-03", "09:00"), 40, ("bath",),
                  judged=False)
    station.visit("site-01", "bed-1", "c-1", local("2026-11-04", "09:00"), 40, ("cleaning",))
    now = local("2026-11-05", "09:00")
    station.settle(now)
    details = [r.detail for r in station.log.query(event="service", newest_first=False,
                                                     limit=100)]
    assert [(d["verdict"], d["reasons"], d.get("unknown_services")) for d in details] == [
        ("flagged", ["unknown_service"], ["bath", "meds"]),
        ("flagged", ["unknown_service"], ["bath"]),
        ("verified", [], None)]
    total = station.report(now).total
    assert (total.flagged, total.verified, total.unverifiable) == (2, 1, 0)
    assert total.reasons == {"unknown_service": 2}
    assert total.held_minutes == 45.0  # 15 min each unknown code, as counted before
    assert total.billable_minutes == 25.0
    assert dict(total.billable_items) == {"cleaning": 1}


def test_a_record_verified_before_with_an_unknown_code_is_held_in_the_report(
        station: Station) -> None:
    # Settled while its codes were in the catalogue (or before this check): the report, read
    # with the catalogue of now, holds it.
    station.visit("site-01", "bed-1", "c-1", local("2026-11-02", "09:00"), 40, ("bath",))
    now = local("2026-11-05", "09:00")
    older = Catalogue.parse([*DEFAULT_CATALOGUE, "bath:30"])
    settlement = Settlement(station.log, alerts=station.store, catalogue=older,
                            plans=station.plans, settle_ms=10 * MIN, started_ms=0)
    while settlement.settle(now):
        pass
    [line] = station.report(now).visits
    assert (line.status, line.reasons, line.billable_minutes) == (
        "flagged", ("unknown_service",), 0.0)
    assert CATALOGUE.minutes(["bath"]) == 15.0
