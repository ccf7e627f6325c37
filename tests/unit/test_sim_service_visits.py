"""The simulated visits with plans and injected service anomalies (simulators/service_visits.py):
the traffic shows each anomaly as devices would, the plans are a valid institution CSV, the
app's visits leave the badge traffic, and a run is reproducible."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from alerts import DEFAULT_CATALOGUE, Catalogue, parse_plans_csv
from simulators.config import SimConfig
from simulators.service_visits import SERVICE_KINDS, ServiceRun, service_simulation

START = dt.date(2026, 11, 2)
CONFIG = SimConfig(beds=12, seed=5, incidents_per_bed_day=0.0, profiles=("standard", "couple"))


def simulate(**options: Any) -> ServiceRun:
    return service_simulation(CONFIG, start=START, days=4, anomaly_share=0.5, seed=2,
                              **options)


@pytest.fixture(scope="module")
def run() -> ServiceRun:
    return simulate()


@pytest.fixture(scope="module")
def traffic(run: ServiceRun) -> list[tuple[int, str, dict[str, Any]]]:
    """Badge events, recorder events and infrared samples, decoded."""
    kept = []
    for e in run.simulation.messages():
        parts = e.topic.split("/")
        if parts[4] in ("badge", "infrared") or (parts[4] == "audio" and parts[6] == "event"):
            if parts[6] == "status":
                continue
            kept.append((e.t, e.topic, json.loads(e.payload)))
    return kept


def badges(traffic: list[tuple[int, str, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    for _, topic, payload in traffic:
        if "/badge/" in topic:
            yield {**payload, "bed": topic.split("/")[3]}


def people(traffic: list[tuple[int, str, dict[str, Any]]], bed: str, start: int,
           end: int) -> list[int]:
    found = []
    for _, topic, payload in traffic:
        if f"/{bed}/infrared/" in topic and topic.endswith("/telemetry"):
            for sample in payload.get("samples") or [payload]:
                t = sample.get("t", payload["ts"])
                if start <= t < end and "people" in sample:
                    found.append(sample["people"])
    return found


def test_the_plans_are_a_valid_csv_with_one_visit_per_bed_and_day(run: ServiceRun) -> None:
    parsed = parse_plans_csv(run.plans_csv, catalogue=Catalogue.parse(DEFAULT_CATALOGUE),
                             zone_of=lambda site: zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert parsed.ok, parsed.problems[:3]
    unplanned = sum(v.reason == "unplanned" for v in run.visits)
    assert len(parsed.rows) == CONFIG.beds * 4 - unplanned


def test_every_kind_is_injected_and_most_visits_stay_honest(run: ServiceRun) -> None:
    reasons = Counter(v.reason for v in run.visits)
    injected = {k for k in SERVICE_KINDS if reasons[k]} | ({"missed"} if any(
        m.injected for m in run.missed) else set())
    # An overlap needs the caregiver's honest visit just before.
    assert set(SERVICE_KINDS) - {"overlap"} <= injected
    assert reasons[None] > 0
    assert any(v.couple and v.reason == "nobody_sensed" for v in run.visits)
    assert any(m.couple and m.injected for m in run.missed)


def test_a_caregiver_who_never_came_is_not_sensed_and_an_honest_one_is(
        run: ServiceRun, traffic: list[tuple[int, str, dict[str, Any]]]) -> None:
    by_visit = {(b["bed"], b["visit"], b["event"]): b["ts"] for b in badges(traffic)}
    for visit in run.visits:
        if visit.path != "badge" or visit.reason not in (None, "nobody_sensed"):
            continue
        out = by_visit.get((visit.bed, visit.visit, "check_out"))
        if out is None:
            continue
        seen = people(traffic, visit.bed, visit.check_in_ms + 60_000, out - 60_000)
        household = 2 if visit.couple else 1
        if visit.reason is None:
            assert max(seen) > household, visit
        else:
            assert max(seen) <= household, visit


def test_badge_visit_ids_repeat_across_caregivers_and_app_visits_leave_no_badge(
        run: ServiceRun, traffic: list[tuple[int, str, dict[str, Any]]]) -> None:
    check_ins = [b for b in badges(traffic) if b["event"] == "check_in"]
    by_id = Counter(b["visit"] for b in check_ins)
    assert any(n > 1 for n in by_id.values()), "ids like v1102-0 repeat across caregivers"
    app_ids = {e.visit for e in run.app_events}
    assert app_ids
    assert not app_ids & set(by_id)
    assert {e.event for e in run.app_events} == {"check_in", "check_out"}


def test_a_run_is_reproducible() -> None:
    first, second = simulate(), simulate()
    assert first.plans_csv == second.plans_csv
    assert first.visits == second.visits
    assert first.app_events == second.app_events


def test_a_substitute_visits_in_the_planned_caregivers_stead_and_the_plan_stays() -> None:
    # About one honest visit in 37 (by day and bed: the fixture's 12 beds over 4 days may have
    # none). The plan stays the planned caregiver's, and it is a plan that never happened.
    config = SimConfig(beds=40, seed=5, incidents_per_bed_day=0.0, profiles=("standard",))
    made = service_simulation(config, start=START, days=6, anomaly_share=0.2, seed=2)
    substitutes = [v for v in made.visits if v.reason == "substitute"]
    assert substitutes
    plans = {(p.plan.bed, p.plan.date): p.plan.caregiver for p in parse_plans_csv(
        made.plans_csv, catalogue=Catalogue.parse(DEFAULT_CATALOGUE),
        zone_of=lambda site: zoneinfo.ZoneInfo("Asia/Shanghai")).rows}
    zone = zoneinfo.ZoneInfo("Asia/Shanghai")
    for visit in substitutes:
        day = dt.datetime.fromtimestamp(visit.check_in_ms / 1000, zone).date().isoformat()
        assert visit.caregiver == f"sub-{visit.bed}"
        assert plans[(visit.bed, day)] not in (None, visit.caregiver)
        plan_id = f"p{day.replace('-', '')}-{visit.bed}"
        assert any(m.plan == plan_id and m.injected for m in made.missed), visit
