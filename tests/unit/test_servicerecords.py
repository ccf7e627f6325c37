"""Each finished visit becomes one service record in the hash chain, settled after its
check-out: its plan, claimed and sensed times, recording coverage, evidence references and
verdict, verified or flagged with the reasons of the visit's service_anomaly alerts; once per
visit, across restarts, and revised when a finding comes after it was settled."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.engine import AlertEngine
from alerts.model import AlertType, Finding, Severity, VisitEvent
from alerts.plans import DEFAULT_CATALOGUE, Catalogue, PlannedVisit, make_plan
from alerts.planstore import PlanStore
from alerts.servicelog import JudgedVisit, ServiceLog, ServiceRecord
from alerts.servicerecords import Settlement, service_detail
from alerts.store import AlertStore

T0 = 1_793_613_600_000  # 2026-11-02 10:00 UTC
MIN = 60_000
SETTLE = 10 * MIN
CATALOGUE = Catalogue.parse(DEFAULT_CATALOGUE)


class Station:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "servicelog.sqlite3"
        self.log = ServiceLog(self.path)
        self.store = AlertStore(tmp_path / "alerts.sqlite3")
        self.engine = AlertEngine(self.store)
        self.plans = PlanStore(tmp_path / "plans.sqlite3")
        self.settlement = self.settling()

    def settling(self) -> Settlement:
        return Settlement(self.log, alerts=self.store, catalogue=CATALOGUE, plans=self.plans,
                          settle_ms=SETTLE, started_ms=T0 - SETTLE)

    def visit(self, visit: str, *, check_in: int, check_out: int | None,
              services: tuple[str, ...] = ("bathing",), bed: str = "bed-1",
              caregiver: str = "c-1", judged: bool = True) -> None:
        """``judged``: the detector judged it, finding nothing (a minute after its check-out,
        as it does; a test's own judgement or alerts replace or add to that)."""
        common: dict[str, Any] = {"site": "site-01", "bed": bed, "caregiver": caregiver,
                                  "visit": visit, "source": "badge", "method": "nfc",
                                  "device": "bg-1"}
        self.log.append([VisitEvent(origin=f"{bed}/{visit}/in", at=check_in,
                                    event="check_in", **common)], now_ms=check_in)
        if check_out is not None:
            self.log.append([VisitEvent(origin=f"{bed}/{visit}/out", at=check_out,
                                        event="check_out", services=services, **common)],
                            now_ms=check_out)
            if judged:
                self.log.record_judged([JudgedVisit(
                    site="site-01", bed=bed, caregiver=caregiver, visit=visit,
                    judged_at=check_out + MIN, measured={"verdict": "verified", "reasons": []})])

    def flag(self, visit: str, at: int, reasons: list[str], *, active: bool = True,
             bed: str = "bed-1", caregiver: str = "c-1", **evidence: Any) -> None:
        """What the service_anomaly detector raises for a visit (a clearing finding has no
        reasons)."""
        if reasons:
            evidence = {"anomaly": reasons[0], "reasons": reasons, **evidence}
        self.engine.apply([Finding(
            type=AlertType.SERVICE_ANOMALY, site="site-01", bed=bed, at=at,
            severity=Severity.MEDIUM, episode=f"{caregiver}/{visit}", active=active,
            summary=f"visit {visit}", evidence={"visit": visit, "caregiver": caregiver,
                                                **evidence})], at)
        self.engine.commit()

    def plan(self, plan: str, start: str, end: str, caregiver: str = "c-1") -> PlannedVisit:
        made, problems = make_plan(site="site-01", bed="bed-1", plan=plan, caregiver=caregiver,
                                   date="2026-11-02", start=start, end=end,
                                   services=["bathing"], catalogue=CATALOGUE,
                                   zone=zoneinfo.ZoneInfo("UTC"))
        assert made is not None, problems
        self.plans.put(made, actor="test", now_ms=T0)
        return made

    def records(self) -> list[ServiceRecord]:
        return self.log.query(event="service", newest_first=False, limit=1000)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    s = Station(tmp_path)
    yield s
    s.log.close()
    s.store.close()
    s.plans.close()


def test_a_visit_nobody_flagged_is_settled_verified_with_its_plan_times_and_references(
        station: Station) -> None:
    station.plan("p-1", "09:45", "11:00")
    station.visit("v-1", check_in=T0, check_out=T0 + 40 * MIN,
                  services=("bathing", "meal_assist"))
    assert station.settlement.settle(T0 + 40 * MIN + SETTLE - 1) == [], "not settled yet"
    [record] = station.settlement.settle(T0 + 40 * MIN + SETTLE)
    check_in, check_out = station.log.query(visit="v-1", newest_first=False)[:2]
    assert (record.event, record.source, record.site, record.bed, record.caregiver,
            record.visit, record.services, record.at) == (
        "service", "gateway", "site-01", "bed-1", "c-1", "v-1", ("bathing", "meal_assist"),
        T0 + 40 * MIN)
    d = record.detail
    assert d is not None
    assert (d["verdict"], d["reasons"]) == ("verified", [])
    assert (d["check_in_at"], d["check_out_at"], d["stayed_minutes"]) == (
        T0, T0 + 40 * MIN, 40.0)
    assert (d["services_minutes"], d["claimed_minutes"]) == (50.0, 50.0)
    assert d["recording_required"] == ["bathing"]
    assert d["plan"]["plan"] == "p-1"
    assert d["plan"]["window"] == "2026-11-02 09:45-11:00"
    assert d["evidence"] == {"check_in": {"seq": check_in.seq, "hash": check_in.hash},
                             "check_out": {"seq": check_out.seq, "hash": check_out.hash},
                             "alerts": [], "judged_at": T0 + 41 * MIN}
    assert station.log.verify(full=True).ok, "the record is in the chain, its detail hashed"
    assert station.settlement.settle(T0 + 3 * SETTLE) == [], "once"


def test_a_flagged_visit_carries_the_reasons_sensed_time_recordings_and_alerts(
        station: Station) -> None:
    plan = station.plan("p-1", "10:00", "11:00")
    station.visit("v-1", check_in=T0, check_out=T0 + 35 * MIN)
    clip = {"clip": "k-1", "device": "au-1", "started_ms": T0, "stopped_ms": T0 + 5 * MIN,
            "duration_s": 300.0, "sha256": "ab" * 32}
    station.flag("v-1", T0 + 36 * MIN, ["too_short", "no_recording"], plan="p-1",
                 claimed_minutes=35.0, sensed_minutes=6.0, household_people=2,
                 infrared_samples=30, recording_coverage=0.14, recordings=[clip])
    [record] = station.settlement.settle(T0 + 35 * MIN + SETTLE)
    d = record.detail
    assert d is not None
    assert (d["verdict"], d["reasons"]) == ("flagged", ["too_short", "no_recording"])
    assert (d["claimed_minutes"], d["sensed_minutes"], d["household_people"],
            d["infrared_samples"]) == (35.0, 6.0, 2, 30)
    assert (d["recording_coverage"], d["recordings"]) == (0.14, [clip])
    assert d["plan"]["plan"] == plan.plan
    [alert] = station.store.open_alerts()
    assert d["evidence"]["alerts"] == [alert.id]


CLIP = {"clip": "k-7", "device": "au-1", "started_ms": T0 + MIN, "stopped_ms": T0 + 39 * MIN,
        "duration_s": 2280.0, "sha256": "cd" * 32}
MEASURED = {"verdict": "verified", "reasons": [], "check_in_ms": T0, "check_out_ms": T0 + 40 * MIN,
            "stayed_minutes": 40.0, "claimed_minutes": 50.0, "sensed_minutes": 38.0,
            "household_people": 2, "infrared_samples": 40, "samples_with_caregiver": 38,
            "recording_required": ["bathing"], "recording_coverage": 0.95,
            "recordings": [CLIP]}
JUDGED = JudgedVisit(site="site-01", bed="bed-1", caregiver="c-1", visit="v-1",
                     judged_at=T0 + 41 * MIN, measured=MEASURED)


def test_a_verified_visit_carries_what_the_sensors_saw_as_the_detector_measured_it() -> None:
    # The detector's measurements came only with a finding, so a verified record had no sensed
    # time, no people count and no recordings: it could not be traced to what the sensors saw.
    detail = service_detail(check_in=(1, "a" * 64, T0), check_out=(2, "b" * 64, T0 + 40 * MIN),
                            services=("bathing", "meal_assist"), alerts=[], plan=None,
                            catalogue=CATALOGUE, judged=JUDGED)
    assert (detail["verdict"], detail["reasons"]) == ("verified", [])
    assert (detail["claimed_minutes"], detail["sensed_minutes"], detail["household_people"],
            detail["infrared_samples"], detail["samples_with_caregiver"]) == (
        50.0, 38.0, 2, 40, 38)
    assert (detail["recording_coverage"], detail["recordings"]) == (0.95, [CLIP])
    assert detail["recording_required"] == ["bathing"]
    assert detail["evidence"]["judged_at"] == T0 + 41 * MIN


def test_a_finding_folded_into_a_storm_summary_still_flags_its_visit() -> None:
    # More than ten service anomalies on one site within five minutes are folded into one
    # summary alert of the site (alerts.storms), not an alert of the visit: the record was
    # settled "verified" although the detector had judged the visit too short.
    judged = JudgedVisit(site="site-01", bed="bed-1", caregiver="c-1", visit="v-1",
                         judged_at=T0 + 41 * MIN, measured={
                             **MEASURED, "verdict": "flagged", "reasons": ["too_short"],
                             "sensed_minutes": 4.0})
    detail = service_detail(check_in=(1, "a" * 64, T0), check_out=(2, "b" * 64, T0 + 40 * MIN),
                            services=("bathing",), alerts=[], plan=None, catalogue=CATALOGUE,
                            judged=judged)
    assert (detail["verdict"], detail["reasons"], detail["sensed_minutes"]) == (
        "flagged", ["too_short"], 4.0)


UNCOUNTED = {**MEASURED, "verdict": "unverifiable", "unverifiable": ["not_sensed"],
             "sensed_minutes": None, "household_people": 1, "infrared_samples": 0,
             "samples_with_caregiver": 0}
"""A visit at a home whose infrared sends no people count, as the detector judges it."""


def test_a_visit_the_sensors_could_not_count_is_recorded_unverifiable(
        station: Station) -> None:
    # Recorded "verified" before, as if checked, although nothing could show that the
    # caregiver came (issue #14, a fresh verifier). A reason that needs no sensing still flags
    # it; a judgement of before ("verified") stays verified.
    station.visit("v-1", check_in=T0, check_out=T0 + 40 * MIN)
    station.log.record_judged([JudgedVisit(site="site-01", bed="bed-1", caregiver="c-1",
                                           visit="v-1", judged_at=T0 + 41 * MIN,
                                           measured=UNCOUNTED)])
    [record] = station.settlement.settle(T0 + 40 * MIN + SETTLE)
    d = record.detail
    assert d is not None
    assert (d["verdict"], d["reasons"], d["unverifiable"], d["infrared_samples"],
            d["sensed_minutes"]) == ("unverifiable", [], ["not_sensed"], 0, None)
    flagged = service_detail(
        check_in=(1, "a" * 64, T0), check_out=(2, "b" * 64, T0 + 40 * MIN),
        services=("bathing",), alerts=[], plan=None, catalogue=CATALOGUE,
        judged=JudgedVisit(site="site-01", bed="bed-1", caregiver="c-1", visit="v-1",
                           judged_at=T0 + 41 * MIN, measured={
                               **UNCOUNTED, "verdict": "flagged", "reasons": ["no_recording"]}))
    assert (flagged["verdict"], flagged["reasons"], flagged["unverifiable"]) == (
        "flagged", ["no_recording"], [])
    before = service_detail(check_in=(1, "a" * 64, T0), check_out=(2, "b" * 64, T0 + 40 * MIN),
                            services=("bathing",), alerts=[], plan=None, catalogue=CATALOGUE,
                            judged=JUDGED)
    assert (before["verdict"], before["unverifiable"]) == ("verified", [])
    # An alert that comes after it was settled revises it to flagged.
    station.flag("v-1", T0 + 55 * MIN, ["overlap"])
    [revised] = station.settlement.settle(T0 + 56 * MIN)
    assert revised.detail is not None
    assert (revised.detail["verdict"], revised.detail["reasons"]) == ("flagged", ["overlap"])


def test_a_caregiver_counted_from_a_home_empty_before_is_said_so() -> None:
    detail = service_detail(
        check_in=(1, "a" * 64, T0), check_out=(2, "b" * 64, T0 + 40 * MIN),
        services=("cleaning",), alerts=[], plan=None, catalogue=CATALOGUE,
        judged=JudgedVisit(site="site-01", bed="bed-1", caregiver="c-1", visit="v-1",
                           judged_at=T0 + 41 * MIN,
                           measured={**MEASURED, "home_empty_before": True}))
    assert (detail["verdict"], detail["home_empty_before"]) == ("verified", True)
    assert service_detail(check_in=(1, "a" * 64, T0), check_out=(2, "b" * 64, T0 + 40 * MIN),
                          services=("cleaning",), alerts=[], plan=None, catalogue=CATALOGUE,
                          judged=JUDGED)["home_empty_before"] is None, "judged before"


def test_a_verified_visit_is_settled_with_its_judgement_across_a_restart(
        station: Station, tmp_path: Path) -> None:
    station.visit("v-1", check_in=T0, check_out=T0 + 40 * MIN,
                  services=("bathing", "meal_assist"))
    station.log.record_judged([JUDGED])
    station.log.record_judged([JudgedVisit(site="site-01", bed="bed-2", caregiver="c-1",
                                           visit="v-1", judged_at=T0 + 41 * MIN,
                                           measured={**MEASURED, "sensed_minutes": 1.0})])
    station.log.close()  # the gateway restarts between the judgement and the settlement
    station.log = ServiceLog(station.path)
    [record] = station.settling().settle(T0 + 40 * MIN + SETTLE)
    d = record.detail
    assert d is not None
    assert (d["verdict"], d["sensed_minutes"], d["household_people"], d["infrared_samples"],
            d["recording_coverage"], d["recordings"]) == ("verified", 38.0, 2, 40, 0.95, [CLIP])
    assert station.log.verify(full=True).ok


def test_a_missing_check_out_cleared_by_the_late_one_is_no_reason(station: Station) -> None:
    station.visit("v-1", check_in=T0, check_out=None)
    station.flag("v-1", T0 + 60 * MIN, ["no_checkout"])
    station.log.append([VisitEvent(origin="late", at=T0 + 90 * MIN, event="check_out",
                                   site="site-01", bed="bed-1", caregiver="c-1", visit="v-1",
                                   source="badge", services=("bathing",))], now_ms=T0 + 90 * MIN)
    station.flag("v-1", T0 + 92 * MIN, [], active=False)
    station.log.record_judged([JudgedVisit(site="site-01", bed="bed-1", caregiver="c-1",
                                           visit="v-1", judged_at=T0 + 91 * MIN,
                                           measured={"verdict": "verified", "reasons": []})])
    [record] = station.settlement.settle(T0 + 90 * MIN + SETTLE)
    assert record.detail is not None
    assert (record.detail["verdict"], record.detail["checked_out_late"]) == ("verified", True)


def test_a_visit_takes_only_its_own_alerts_keyed_by_bed_caregiver_and_visit(
        station: Station) -> None:
    station.visit("v-1", check_in=T0, check_out=T0 + 30 * MIN)
    station.visit("v-2", check_in=T0, check_out=T0 + 30 * MIN, bed="bed-2", caregiver="c-2")
    station.flag("v-1", T0 + 31 * MIN, ["nobody_sensed"], bed="bed-2", caregiver="c-2")
    station.flag("v-1", T0 + 31 * MIN, ["overlap"], bed="bed-1", caregiver="c-7")
    station.flag("v-2", T0 + 31 * MIN, ["too_short"], bed="bed-2", caregiver="c-2")
    records = station.settlement.settle(T0 + 30 * MIN + SETTLE)
    reasons = {(r.bed, r.caregiver): r.detail["reasons"] for r in records if r.detail}
    assert reasons == {("bed-1", "c-1"): [], ("bed-2", "c-2"): ["too_short"]}


def test_nothing_is_settled_until_the_detectors_had_their_time_after_a_start(
        station: Station) -> None:
    station.visit("v-1", check_in=T0, check_out=T0 + 30 * MIN)
    late_start = Settlement(station.log, alerts=station.store, catalogue=CATALOGUE,
                            settle_ms=SETTLE, started_ms=T0 + 5 * 60 * MIN)
    assert late_start.settle(T0 + 5 * 60 * MIN + SETTLE - 1) == []
    assert len(late_start.settle(T0 + 5 * 60 * MIN + SETTLE)) == 1


def test_settling_survives_a_restart_without_settling_twice(station: Station) -> None:
    station.visit("v-1", check_in=T0, check_out=T0 + 30 * MIN)
    station.visit("v-2", check_in=T0 + 60 * MIN, check_out=T0 + 90 * MIN)
    assert [r.visit for r in station.settlement.settle(T0 + 30 * MIN + SETTLE)] == ["v-1"]
    again = station.settling()
    assert [r.visit for r in again.settle(T0 + 90 * MIN + SETTLE)] == ["v-2"]
    assert [r.visit for r in station.records()] == ["v-1", "v-2"]


def test_a_finding_after_the_visit_was_settled_revises_its_record(station: Station) -> None:
    station.visit("v-1", check_in=T0, check_out=T0 + 30 * MIN)
    [first] = station.settlement.settle(T0 + 30 * MIN + SETTLE)
    assert first.detail is not None
    assert first.detail["verdict"] == "verified"
    station.flag("v-1", T0 + 50 * MIN, ["overlap"])
    [revised] = station.settlement.settle(T0 + 51 * MIN)
    assert revised.detail is not None
    assert (revised.detail["verdict"], revised.detail["reasons"]) == ("flagged", ["overlap"])
    assert (revised.detail["supersedes"], revised.detail["revision"]) == (first.seq, 2)
    assert revised.origin.endswith("#2")
    assert station.settlement.settle(T0 + 60 * MIN) == [], "the same verdict is not revised"
    assert station.log.verify(full=True).ok


async def test_the_settling_task_runs_in_rounds_and_says_when_it_chained_records(
        station: Station) -> None:
    import asyncio

    station.visit("v-1", check_in=T0, check_out=T0 + 30 * MIN)
    stopping = asyncio.Event()
    told: list[int] = []

    def settled() -> None:
        told.append(len(station.records()))
        stopping.set()

    clock = [(T0 + 30 * MIN + SETTLE) / 1000]
    await asyncio.wait_for(station.settlement.run(stopping, on_settled=settled, every_s=0.01,
                                                  clock=lambda: clock[0]), 10)
    assert told == [1]


def test_the_record_takes_the_plan_the_detector_gave_and_a_substitute_takes_none(
        station: Station) -> None:
    # The verifier's case, detector and settlement together: c-4's visit takes its plan r-pd;
    # c-11, who has no plan, visits 10:48-10:51, by c-10's plan r-px (10:50-10:55), which
    # nobody keeps. Until 2026-12-01 the detector gave c-11's visit r-px (hiding the missed
    # plan, no `unplanned`) and the record named r-pd (c-4's, taken already).
    from devices import Registry
    from gateway.detect import ServiceAnomalyDetector

    station.plan("r-pd", "10:00", "10:30", caregiver="c-4")
    station.plan("r-px", "10:50", "10:55", caregiver="c-10")
    detector = ServiceAnomalyDetector(Registry(), timezone="UTC")
    detector.configure(plans=station.plans, visit_log=station.log)
    stays = {T0 + 2 * MIN: ("v-4", "c-4", T0 + 22 * MIN), T0 + 48 * MIN: ("v-11", "c-11",
                                                                          T0 + 51 * MIN)}
    for now in range(T0 - 10 * MIN, T0 + 3 * 60 * MIN, MIN):
        if now in stays:
            visit, caregiver, check_out = stays[now]
            station.visit(visit, check_in=now, check_out=check_out, caregiver=caregiver,
                          services=("vitals_check",))
        station.engine.apply(detector.evaluate(now), now)
        station.engine.commit()
    records = {r.caregiver: r.detail for r in station.settlement.settle(T0 + 3 * 60 * MIN)}
    assert records["c-4"] is not None
    assert records["c-11"] is not None
    assert records["c-4"]["plan"]["plan"] == "r-pd"
    assert (records["c-11"]["verdict"], records["c-11"]["reasons"], records["c-11"]["plan"]) \
        == ("flagged", ["unplanned"], None)
    missed = [a for a in station.store.list_alerts(type=AlertType.SERVICE_ANOMALY)[0]
              if a.evidence.get("reasons") == ["missed"]]
    assert [a.evidence["plan"] for a in missed] == ["r-px"]


def test_a_visit_nobody_judged_is_settled_unverifiable_saying_why(station: Station) -> None:
    # Settled "verified" before: a visit the detector never judged (given up open past a day,
    # dropped beyond open_visits_max, or no judgement kept at all) read as checked (issue #14).
    for visit, why in (("v-1", "dropped"), ("v-2", "expired")):
        station.visit(visit, check_in=T0, check_out=T0 + 40 * MIN, judged=False)
        station.log.record_judged([JudgedVisit(
            site="site-01", bed="bed-1", caregiver="c-1", visit=visit, judged_at=T0 + MIN,
            measured={"verdict": "unverifiable", "reasons": [], "unverifiable": [why],
                      "check_in_ms": T0, "check_out_ms": None, "plan": None})])
    station.visit("v-3", check_in=T0, check_out=T0 + 40 * MIN, judged=False)
    records = station.settlement.settle(T0 + 40 * MIN + SETTLE)
    got = {r.visit: (r.detail["verdict"], r.detail["reasons"], r.detail["unverifiable"])
           for r in records if r.detail}
    assert got == {"v-1": ("unverifiable", [], ["dropped"]),
                   "v-2": ("unverifiable", [], ["expired"]),
                   "v-3": ("unverifiable", [], ["not_judged"])}
    # An alert of such a visit still flags it.
    station.visit("v-4", check_in=T0, check_out=T0 + 40 * MIN, judged=False)
    station.flag("v-4", T0 + 41 * MIN, ["overlap"])
    [flagged] = station.settlement.settle(T0 + 40 * MIN + 2 * SETTLE)
    assert flagged.detail is not None
    assert (flagged.detail["verdict"], flagged.detail["unverifiable"]) == ("flagged", [])


def test_the_alerts_of_a_later_visit_under_the_same_id_are_not_the_chained_visits(
        station: Station) -> None:
    # The detector judges a visit under a reused id as its own (the log set it aside); its
    # alert names the same caregiver and visit id, and flagged the honest earlier visit.
    station.visit("v-1", check_in=T0, check_out=T0 + 40 * MIN)
    station.flag("v-1", T0 + 41 * MIN, ["nobody_sensed"], visit_id_reused=True)
    [record] = station.settlement.settle(T0 + 40 * MIN + SETTLE)
    assert record.detail is not None
    assert (record.detail["verdict"], record.detail["evidence"]["alerts"]) == ("verified", [])
    station.flag("v-1", T0 + 55 * MIN, ["too_short"], visit_id_reused=True)
    assert station.settlement.settle(T0 + 56 * MIN) == [], "no revision either"


WITHIN = 7 * MIN  # the gateway's judged_within_ms by default
SHORT = 90_000  # service_record_settle_s at its minimum


def judged(visit: str, at: int, verdict: str = "verified", **measured: Any) -> JudgedVisit:
    return JudgedVisit(site="site-01", bed="bed-1", caregiver="c-1", visit=visit,
                       judged_at=at, measured={"verdict": verdict, "reasons": [], **measured})


def test_a_visit_judged_after_a_short_settle_waits_for_its_judgement(
        station: Station) -> None:
    # With service_record_settle_s at 90 s a visit delivered late (judged when its home's
    # infrared caught up, minutes after the check-out came) or checked out in the app (read
    # by the detector at its next evaluation) was settled unverifiable, not_judged, before
    # its judgement came, and the judgement never revised it (issue #14, F4).
    settling = Settlement(station.log, alerts=station.store, catalogue=CATALOGUE,
                          settle_ms=SHORT, started_ms=T0 - SETTLE, judged_within_ms=WITHIN)
    out = T0 + 40 * MIN
    station.visit("v-1", check_in=T0, check_out=out, judged=False)
    station.visit("v-2", check_in=T0 + MIN, check_out=out + MIN)
    assert settling.settle(out + SHORT) == [], "v-1 may still be judged; v-2 is not due yet"
    assert station.log.settlement_cursor()[0] < station.log.query(
        visit="v-1", event="check_out")[0].seq, "the cursor stays before the visit waiting"
    station.log.record_judged([judged("v-1", out + 4 * MIN)])
    records = settling.settle(out + 4 * MIN)
    got = [(r.visit, r.detail["verdict"], r.detail["evidence"].get("judged_at"))
           for r in records if r.detail]
    assert got == [("v-1", "verified", out + 4 * MIN), ("v-2", "verified", out + 2 * MIN)]
    assert settling.settle(out + WITHIN * 2) == [], "once"


def test_a_visit_never_judged_settles_not_judged_after_the_bound_and_a_later_judgement_revises_it(
        station: Station, tmp_path: Path) -> None:
    settling = Settlement(station.log, alerts=station.store, catalogue=CATALOGUE,
                          settle_ms=SHORT, started_ms=T0 - SETTLE, judged_within_ms=WITHIN)
    out = T0 + 40 * MIN
    for n, visit in enumerate(("v-1", "v-2")):
        station.visit(visit, check_in=T0 + n * MIN, check_out=out + n * MIN, judged=False)
    assert settling.settle(out + WITHIN - 1) == [], "nothing waits for ever, but this long"
    first = settling.settle(out + WITHIN)
    assert [(r.visit, r.detail["unverifiable"]) for r in first if r.detail] == [
        ("v-1", ["not_judged"])], "v-2's own bound is a minute later"
    [second] = settling.settle(out + MIN + WITHIN)
    assert second.detail is not None
    assert second.detail["unverifiable"] == ["not_judged"]
    # The detector judges both later still (a sensor far behind): each record is revised
    # once, across a restart, like a finding that came after it was settled.
    station.log.record_judged([judged("v-1", out + 20 * MIN),
                               judged("v-2", out + 20 * MIN, "unverifiable",
                                      unverifiable=["not_sensed"])])
    station.log.close()
    station.log = ServiceLog(station.path)
    again = Settlement(station.log, alerts=station.store, catalogue=CATALOGUE,
                       settle_ms=SHORT, started_ms=out + 21 * MIN, judged_within_ms=WITHIN)
    revised = again.settle(out + 21 * MIN)
    got = {r.visit: (r.detail["verdict"], r.detail["unverifiable"], r.detail["revision"],
                     r.detail["supersedes"], r.origin.endswith("#2"))
           for r in revised if r.detail}
    assert got == {"v-1": ("verified", [], 2, first[0].seq, True),
                   "v-2": ("unverifiable", ["not_sensed"], 2, second.seq, True)}
    assert again.settle(out + 30 * MIN) == [], "revised once"
    station.log.record_judged([judged("v-1", out + 40 * MIN)])  # judged again, the same
    assert again.settle(out + 41 * MIN) == [], "the same verdict is not revised"
    assert station.log.judged_after_settling() == []
    assert station.log.verify(full=True).ok


def test_a_judgement_written_while_its_record_was_being_chained_is_not_lost(
        station: Station) -> None:
    # Settling read no judgement (past its bound), then the detector wrote one before the
    # record was chained: the record is queued for its revision in the same transaction.
    out = T0 + 40 * MIN
    station.visit("v-1", check_in=T0, check_out=out, judged=False)
    settling = Settlement(station.log, alerts=station.store, catalogue=CATALOGUE,
                          settle_ms=SHORT, started_ms=T0 - SETTLE, judged_within_ms=WITHIN)
    [check_out] = station.log.query(visit="v-1", event="check_out")
    entry = settling._entry(check_out)
    assert entry is not None
    station.log.record_judged([judged("v-1", out + 8 * MIN)])
    station.log.append_service([entry], cursor=(check_out.seq, 0))
    assert station.log.judged_after_settling() == [("site-01", "bed-1", "c-1", "v-1")]
    [revised] = settling.settle(out + 9 * MIN)
    assert revised.detail is not None
    assert (revised.detail["verdict"], revised.detail["revision"]) == ("verified", 2)


def test_a_record_revised_by_a_late_judgement_goes_upstream_once_per_revision(
        station: Station, tmp_path: Path) -> None:
    from gateway.upstream import Outbox, Upstream
    from tests.unit.test_upstream import SECRET

    outbox = Outbox(tmp_path / "outbox.sqlite3")
    upstream = Upstream(outbox, url="http://127.0.0.1:9/p", secret=SECRET, source="gw-1",
                        alert_store=station.store, service_log=station.log)
    try:
        settling = Settlement(station.log, alerts=station.store, catalogue=CATALOGUE,
                              settle_ms=SHORT, started_ms=T0 - SETTLE, judged_within_ms=WITHIN)
        out = T0 + 40 * MIN
        station.visit("v-1", check_in=T0, check_out=out, judged=False)
        assert upstream.pump() == 2, "the check-in and check-out"
        [first] = settling.settle(out + WITHIN)
        assert upstream.pump() == 1, "the record settled not_judged"
        station.log.record_judged([judged("v-1", out + 30 * MIN)])
        [revised] = settling.settle(out + 31 * MIN)
        assert revised.detail is not None
        assert revised.detail["supersedes"] == first.seq
        assert upstream.pump() == 1, "its revision"
        assert settling.settle(out + 32 * MIN) == []
        assert upstream.pump() == 0, "once"
    finally:
        outbox.close()


def test_a_finding_raised_while_its_visits_record_is_built_revises_it(
        station: Station) -> None:
    # The detector (another thread) flags the visit after settling read its alerts for the
    # first record and before settling read the alert changes for revisions: the change was
    # taken as read and the record stayed verified.
    out = T0 + 30 * MIN
    station.visit("v-1", check_in=T0, check_out=out)
    store = station.store
    raised = []

    class Racing:
        def list_alerts(self, **query: Any) -> Any:
            found = store.list_alerts(**query)
            if not raised:
                raised.append(True)
                station.flag("v-1", out + SETTLE, ["overlap"])
            return found

        def changes_since(self, seq: int, limit: int = 1000) -> Any:
            return store.changes_since(seq, limit)

    settling = Settlement(station.log, alerts=Racing(), catalogue=CATALOGUE,  # type: ignore[arg-type]
                          settle_ms=SETTLE, started_ms=T0 - SETTLE)
    [first] = settling.settle(out + SETTLE)
    assert first.detail is not None
    assert first.detail["verdict"] == "verified", "built before the finding"
    [revised] = settling.settle(out + SETTLE + MIN)
    assert revised.detail is not None
    assert (revised.detail["verdict"], revised.detail["reasons"]) == ("flagged", ["overlap"])
    assert revised.detail["supersedes"] == first.seq
