"""Visits folded into a storm summary stay traceable (issue #14, a fresh verifier): more than
ten service anomalies on a site within five minutes become one summary alert
(:mod:`alerts.storms`). Before, the summary listed its members with no reasons and those
visits' service records carried ``evidence.alerts: []``, naming no alert. Now the summary lists
each member's reasons (``member_reasons``), and each folded visit's record names the summary
and takes its reasons from it (without a judgement of the detector too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.model import Alert, AlertStatus, AlertType, Finding, Severity
from alerts.storms import AlertStorms
from devices.registry import Registry
from tests.unit.test_servicerecords import MIN, SETTLE, T0, Station

BEDS = 14
REGISTRY = Registry.from_mapping(
    {"sites": {"site-01": {"beds": {f"bed-{n}": {} for n in range(BEDS)}}}})


def reasons_of(n: int) -> list[str]:
    return ["too_short"] if n % 2 else ["nobody_sensed", "no_recording"]


def anomaly(n: int, at: int) -> Finding:
    """What service_anomaly raises for visit v-n of caregiver 护工-n at bed-n."""
    reasons = reasons_of(n)
    return Finding(type=AlertType.SERVICE_ANOMALY, site="site-01", bed=f"bed-{n}", at=at,
                   severity=Severity.MEDIUM, episode=f"护工-{n}/v-{n}", active=True,
                   started_at=T0, summary=f"visit v-{n}",
                   evidence={"visit": f"v-{n}", "caregiver": f"护工-{n}", "anomaly": reasons[0],
                             "reasons": reasons})


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    s = Station(tmp_path)
    yield s
    s.log.close()
    s.store.close()
    s.plans.close()


def test_the_summary_lists_each_members_reasons_and_keeps_them_across_a_restart() -> None:
    storms = AlertStorms(REGISTRY)
    out = storms.filter([anomaly(n, T0 + 31 * MIN) for n in range(BEDS)], T0 + 31 * MIN)
    [summary] = [f for f in out if f.bed == ""]
    assert summary.evidence["count"] == BEDS
    assert summary.evidence["member_reasons"] == {
        f"bed-{n}/护工-{n}/v-{n}": reasons_of(n) for n in range(BEDS)}
    again = AlertStorms(REGISTRY)
    again.resume([Alert(id="s1", incident="site-01//service_anomaly/summary#1",
                        type=AlertType.SERVICE_ANOMALY, severity=Severity.MEDIUM,
                        site="site-01", bed="", opened_at=T0, updated_at=T0,
                        status=AlertStatus.OPEN, evidence=summary.evidence)])
    later = again.filter([anomaly(1, T0 + 40 * MIN)], T0 + 40 * MIN)
    assert later == [], "a member taken back by name (its episode holds a /), unchanged"
    cleared = again.filter([Finding(type=AlertType.SERVICE_ANOMALY, site="site-01",
                                    bed="bed-1", at=T0 + 41 * MIN, severity=Severity.MEDIUM,
                                    episode="护工-1/v-1", active=False)], T0 + 41 * MIN)
    [update] = cleared
    assert update.evidence["count"] == BEDS - 1
    assert "bed-1/护工-1/v-1" not in update.evidence["member_reasons"]
    assert update.evidence["member_reasons"]["bed-2/护工-2/v-2"] == reasons_of(2)


def test_a_folded_visits_record_names_the_summary_and_its_reasons(station: Station) -> None:
    for n in range(BEDS):
        station.visit(f"v-{n}", check_in=T0, check_out=T0 + 30 * MIN, bed=f"bed-{n}",
                      caregiver=f"护工-{n}")
    storms = AlertStorms(REGISTRY)
    at = T0 + 31 * MIN
    station.engine.apply(storms.filter([anomaly(n, at) for n in range(BEDS)], at), at)
    station.engine.commit()
    alerts, _ = station.store.list_alerts(type=AlertType.SERVICE_ANOMALY, limit=100)
    [summary] = [a for a in alerts if a.bed == ""]
    own = {a.bed: a.id for a in alerts if a.bed}
    assert BEDS - len(own) > 0, "some were folded"
    records = station.settlement.settle(T0 + 30 * MIN + SETTLE)
    assert len(records) == BEDS
    for record in records:
        d = record.detail
        assert d is not None
        n = int(record.bed.removeprefix("bed-"))
        assert (d["verdict"], d["reasons"]) == ("flagged", reasons_of(n)), record.bed
        if record.bed in own:
            assert d["evidence"]["alerts"] == [own[record.bed]]
        else:
            assert d["evidence"]["alerts"] == [summary.id], "the summary it was folded into"


def test_a_storm_after_the_visit_was_settled_revises_its_record(station: Station) -> None:
    for n in range(BEDS):
        station.visit(f"v-{n}", check_in=T0, check_out=T0 + 30 * MIN, bed=f"bed-{n}",
                      caregiver=f"护工-{n}")
    first = station.settlement.settle(T0 + 30 * MIN + SETTLE)
    assert {r.detail["verdict"] for r in first if r.detail} == {"verified"}
    storms = AlertStorms(REGISTRY)
    at = T0 + 45 * MIN
    station.engine.apply(storms.filter([anomaly(n, at) for n in range(BEDS)], at), at)
    station.engine.commit()
    revised = station.settlement.settle(T0 + 46 * MIN)
    assert sorted(r.bed for r in revised) == sorted(f"bed-{n}" for n in range(BEDS)), \
        "the folded visits too"
    assert all(r.detail and r.detail["verdict"] == "flagged" for r in revised)


def test_every_folded_members_reasons_are_named_beyond_the_listed_ones(
        station: Station) -> None:
    # A summary named the reasons of its first 50 members only (LISTED): the service record
    # of the 51st visit folded into it named no alert and took no reason from it.
    beds = 130
    registry = Registry.from_mapping(
        {"sites": {"site-01": {"beds": {f"bed-{n}": {} for n in range(beds)}}}})
    for n in range(beds):
        station.visit(f"v-{n}", check_in=T0, check_out=T0 + 30 * MIN, bed=f"bed-{n}",
                      caregiver=f"护工-{n}")
    storms = AlertStorms(registry)
    at = T0 + 31 * MIN
    station.engine.apply(storms.filter([anomaly(n, at) for n in range(beds)], at), at)
    station.engine.commit()
    alerts, _ = station.store.list_alerts(type=AlertType.SERVICE_ANOMALY, limit=1000)
    [summary] = [a for a in alerts if a.bed == ""]
    folded = summary.evidence["count"]
    assert (folded > 100, len(summary.evidence["members"])) == (True, 50)
    named = summary.evidence["member_reasons"]
    assert (len(named), summary.evidence["member_reasons_omitted"]) == (folded, 0)
    assert named["bed-129/护工-129/v-129"] == reasons_of(129)
    odd = sum(1 for label in named if int(label.split("/")[0][4:]) % 2)
    assert summary.evidence["reason_counts"] == {
        "too_short": odd, "nobody_sensed": folded - odd, "no_recording": folded - odd}
    records = station.settlement.settle(T0 + 30 * MIN + SETTLE)
    last = next(r for r in records if r.bed == "bed-129")
    assert last.detail is not None
    assert (last.detail["verdict"], last.detail["reasons"]) == ("flagged", reasons_of(129))
    assert last.detail["evidence"]["alerts"] == [summary.id]
    # After a restart the members beyond the first 50 are known by name, with their reasons.
    again = AlertStorms(registry)
    again.resume([summary])
    [cleared] = again.filter([Finding(type=AlertType.SERVICE_ANOMALY, site="site-01",
                                      bed="bed-129", at=at + MIN, severity=Severity.MEDIUM,
                                      episode="护工-129/v-129", active=False)], at + MIN)
    assert cleared.evidence["count"] == folded - 1
    assert "bed-129/护工-129/v-129" not in cleared.evidence["member_reasons"]
    assert cleared.evidence["member_reasons"]["bed-128/护工-128/v-128"] == reasons_of(128)
