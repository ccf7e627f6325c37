"""The supervision and settlement report: per institution, caregiver and month, its totals are
the visits of the service log (checked by hand on a small month, and against an independent
count of the log's records on a larger seeded one); months by the site's zone; plans planned,
taken and missed; billable and held minutes; CSV and the printable page say the same."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.engine import AlertEngine
from alerts.model import AlertType, Finding, Severity, VisitEvent
from alerts.plans import DEFAULT_CATALOGUE, Catalogue, make_plan
from alerts.planstore import PlanStore
from alerts.servicelog import JudgedVisit, ServiceLog
from alerts.servicerecords import Settlement
from alerts.store import AlertStore
from alerts.supervision import SupervisionReport, institution_of, month_range, supervision_report
from alerts.supervisionpage import supervision_csv, supervision_html

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
CATALOGUE = Catalogue.parse(DEFAULT_CATALOGUE)
MIN = 60_000
INSTITUTIONS = institution_of(["site-01=care-north", "site-02=care-north"])  # site-03: itself


def local(day: str, hhmm: str) -> int:
    """Epoch ms of a local time in Shanghai."""
    when = dt.datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=SHANGHAI)
    return int(when.timestamp() * 1000)


class Station:
    def __init__(self, tmp_path: Path) -> None:
        self.log = ServiceLog(tmp_path / "servicelog.sqlite3")
        self.store = AlertStore(tmp_path / "alerts.sqlite3")
        self.engine = AlertEngine(self.store)
        self.plans = PlanStore(tmp_path / "plans.sqlite3")
        self.n = 0

    def plan(self, site: str, bed: str, plan: str, caregiver: str, day: str, start: str,
             end: str, services: list[str], cancelled: bool = False) -> None:
        made, problems = make_plan(site=site, bed=bed, plan=plan, caregiver=caregiver,
                                   date=day, start=start, end=end, services=services,
                                   catalogue=CATALOGUE, zone=SHANGHAI, cancelled=cancelled)
        assert made is not None, problems
        self.plans.put(made, actor="test", now_ms=0)

    def visit(self, site: str, bed: str, caregiver: str, check_in: int, minutes: float | None,
              services: tuple[str, ...] = (), reasons: tuple[str, ...] = (),
              uncounted: bool = False, judged: bool = True) -> str:
        """``uncounted``: the detector judged it with too few infrared samples with a people
        count (unverifiable, or flagged by its ``reasons``); ``judged``: the detector judged it
        (as the detector does, a minute after its check-out), else nobody did."""
        self.n += 1
        visit = f"v-{self.n}"
        common: dict[str, Any] = {"site": site, "bed": bed, "caregiver": caregiver,
                                  "visit": visit, "source": "api", "method": "app"}
        self.log.append([VisitEvent(origin=f"{visit}/in", at=check_in, event="check_in",
                                    **common)], now_ms=check_in)
        if minutes is not None:
            out = check_in + int(minutes * MIN)
            self.log.append([VisitEvent(origin=f"{visit}/out", at=out, event="check_out",
                                        services=services, **common)], now_ms=out)
            if reasons:
                self.engine.apply([Finding(
                    type=AlertType.SERVICE_ANOMALY, site=site, bed=bed, at=out + MIN,
                    severity=Severity.MEDIUM, episode=f"{caregiver}/{visit}",
                    summary="flagged", evidence={"visit": visit, "caregiver": caregiver,
                                                 "reasons": list(reasons),
                                                 "sensed_minutes": 3.0})], out + MIN)
                self.engine.commit()
            if uncounted:
                self.log.record_judged([JudgedVisit(
                    site=site, bed=bed, caregiver=caregiver, visit=visit, judged_at=out + MIN,
                    measured={"verdict": "flagged" if reasons else "unverifiable",
                              "reasons": list(reasons), "infrared_samples": 0,
                              "sensed_minutes": None,
                              **({} if reasons else {"unverifiable": ["not_sensed"]})})])
            elif judged:
                self.log.record_judged([JudgedVisit(
                    site=site, bed=bed, caregiver=caregiver, visit=visit, judged_at=out + MIN,
                    measured={"verdict": "flagged" if reasons else "verified",
                              "reasons": list(reasons)})])
        return visit

    def settle(self, now_ms: int) -> None:
        settlement = Settlement(self.log, alerts=self.store, catalogue=CATALOGUE,
                                plans=self.plans, settle_ms=10 * MIN, started_ms=0)
        while settlement.settle(now_ms):
            pass

    def report(self, now_ms: int, month: str = "2026-11", **options: Any) -> SupervisionReport:
        return supervision_report(log=self.log, plans=self.plans, catalogue=CATALOGUE, month=month,
                            zone_of=lambda site: SHANGHAI, institutions=INSTITUTIONS,
                            now_ms=now_ms, **options)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    s = Station(tmp_path)
    yield s
    s.log.close()
    s.store.close()
    s.plans.close()


def small_month(s: Station) -> int:
    """A November at three sites; returns the report's time."""
    s.plan("site-01", "bed-1", "p-1", "c-1", "2026-11-02", "09:00", "10:00", ["bathing"])
    s.plan("site-01", "bed-1", "p-2", "c-1", "2026-11-03", "09:00", "10:00", ["bathing"])
    s.plan("site-01", "bed-1", "p-3", "c-1", "2026-11-04", "09:00", "10:00", ["bathing"])
    s.plan("site-02", "bed-2", "p-4", "c-2", "2026-11-05", "14:00", "15:00", ["cleaning"])
    s.plan("site-02", "bed-2", "p-5", "c-2", "2026-11-06", "14:00", "15:00", ["cleaning"],
           cancelled=True)
    s.plan("site-03", "bed-3", "p-6", "c-3", "2026-11-30", "09:00", "10:00", ["rehab"])
    s.plan("site-01", "bed-1", "p-7", "c-1", "2026-12-01", "09:00", "10:00", ["bathing"])
    # c-1 at site-01: p-1 verified, p-2 flagged, p-3 missed; one unplanned visit verified.
    s.visit("site-01", "bed-1", "c-1", local("2026-11-02", "09:05"), 40,
            ("bathing", "medication"))
    s.visit("site-01", "bed-1", "c-1", local("2026-11-03", "09:10"), 8, ("bathing",),
            reasons=("too_short", "no_recording"))
    s.visit("site-01", "bed-1", "c-1", local("2026-11-20", "16:00"), 25, ("cleaning",))
    # c-2 at site-02: p-4 taken by a visit never checked out.
    s.visit("site-02", "bed-2", "c-2", local("2026-11-05", "14:00"), None)
    # c-3 at site-03 (its own institution): p-6 done late on the 30th, not settled yet; a visit
    # on the 1st of December local time (still November in UTC), and one on October 31st.
    s.visit("site-03", "bed-3", "c-3", local("2026-11-30", "09:30"), 30, ("rehab",))
    s.visit("site-03", "bed-3", "c-3", local("2026-12-01", "01:00"), 20, ("meal_assist",))
    s.visit("site-03", "bed-3", "c-3", local("2026-10-31", "23:00"), 20, ("meal_assist",))
    s.settle(local("2026-11-29", "00:00"))
    return local("2026-11-30", "10:05")


def figures(report: SupervisionReport) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t["institution"], t["caregiver"]): t for t in (
        *[c.to_json() for c in report.caregivers], *[i.to_json() for i in report.institutions],
        report.total.to_json())}


def test_a_months_totals_per_institution_and_caregiver_are_its_visits(
        station: Station) -> None:
    now = small_month(station)
    report = station.report(now)
    got = figures(report)
    c1 = got[("care-north", "c-1")]
    assert {k: c1[k] for k in ("planned", "performed", "verified", "flagged", "pending",
                               "unfinished", "missed", "unplanned")} == {
        "planned": 3, "performed": 3, "verified": 2, "flagged": 1, "pending": 0,
        "unfinished": 0, "missed": 1, "unplanned": 1}
    assert c1["reasons"] == {"no_recording": 1, "too_short": 1}
    assert c1["items"] == {"bathing": 2, "cleaning": 1, "medication": 1}
    assert c1["billable_items"] == {"bathing": 1, "cleaning": 1, "medication": 1}
    assert c1["billable_minutes"] == 30 + 5 + 25
    assert c1["held_minutes"] == 30
    c2 = got[("care-north", "c-2")]
    assert (c2["planned"], c2["performed"], c2["unfinished"], c2["missed"]) == (1, 0, 1, 0), \
        "a cancelled plan is not planned; a visit never checked out took its plan"
    c3 = got[("site-03", "c-3")]
    assert (c3["planned"], c3["performed"], c3["pending"], c3["missed"],
            c3["billable_minutes"]) == (1, 1, 1, 0, 0.0), "December 1st local is not November"
    north = got[("care-north", "*")]
    assert (north["planned"], north["performed"], north["verified"], north["flagged"]) == (
        4, 3, 2, 1)
    total = got[("*", "*")]
    assert (total["planned"], total["performed"], total["verified"], total["flagged"],
            total["pending"], total["unfinished"], total["missed"], total["billable_minutes"]
            ) == (5, 4, 2, 1, 1, 1, 1, 60.0)
    assert [m.plan for m in report.missed] == ["p-3"]
    assert len(report.visits) == 5
    assert all(v.record_seq is not None for v in report.visits
               if v.status in ("verified", "flagged"))


def test_the_report_of_one_institution_has_only_its_sites(station: Station) -> None:
    now = small_month(station)
    report = station.report(now, institution="care-north")
    assert {v.site for v in report.visits} == {"site-01", "site-02"}
    assert report.total.planned == 4
    assert [i.institution for i in report.institutions] == ["care-north"]


def test_csv_and_page_say_what_the_report_says(station: Station) -> None:
    report = station.report(small_month(station))
    rows = list(csv.DictReader(io.StringIO(supervision_csv(report, "caregivers"))))
    total = next(r for r in rows if (r["institution"], r["caregiver"]) == ("*", "*"))
    assert (int(total["performed"]), int(total["verified"]), float(total["billable_minutes"])
            ) == (4, 2, 60.0)
    assert total["reasons"] == "no_recording:1;too_short:1"
    visits = list(csv.DictReader(io.StringIO(supervision_csv(report, "visits"))))
    assert Counter(v["status"] for v in visits) == Counter(
        {"verified": 2, "flagged": 1, "pending": 1, "unfinished": 1})
    missed = csv.DictReader(io.StringIO(supervision_csv(report, "missed")))
    assert [r["plan"] for r in missed] == ["p-3"]
    page = supervision_html(report)
    assert page.startswith("<!doctype html>")
    assert page.count("<svg role=\"img\"") == 3, "three charts"
    assert "too_short" in page
    assert "p-3" in page
    assert "<script" not in page
    with pytest.raises(ValueError, match="no table"):
        supervision_csv(report, "nothing")


def test_unverifiable_visits_are_billable_counted_apart_and_listed(station: Station) -> None:
    # A home whose infrared sends no people count: the visit is neither verified nor flagged.
    # It is billable (every other check passed) and its minutes are shown apart.
    station.visit("site-01", "bed-1", "c-1", local("2026-11-02", "09:05"), 40, ("bathing",))
    station.visit("site-01", "bed-2", "c-1", local("2026-11-03", "09:05"), 30, ("cleaning",),
                  uncounted=True)
    station.visit("site-01", "bed-2", "c-1", local("2026-11-04", "09:05"), 30, ("bathing",),
                  reasons=("no_recording",), uncounted=True)
    station.settle(local("2026-11-29", "00:00"))
    report = station.report(local("2026-11-30", "00:00"))
    c1 = figures(report)[("care-north", "c-1")]
    assert {k: c1[k] for k in ("performed", "verified", "unverifiable", "flagged",
                               "billable_minutes", "unverifiable_minutes", "held_minutes")} == {
        "performed": 3, "verified": 1, "unverifiable": 1, "flagged": 1,
        "billable_minutes": 30 + 25, "unverifiable_minutes": 25, "held_minutes": 30}
    assert c1["reasons"] == {"no_recording": 1}
    [line] = [v for v in report.visits if v.status == "unverifiable"]
    assert (line.reasons, line.billable_minutes) == (("not_sensed",), 25.0)
    rows = list(csv.DictReader(io.StringIO(supervision_csv(report, "caregivers"))))
    total = next(r for r in rows if (r["institution"], r["caregiver"]) == ("*", "*"))
    assert (total["unverifiable"], total["unverifiable_minutes"]) == ("1", "25.0")
    visits = list(csv.DictReader(io.StringIO(supervision_csv(report, "visits"))))
    assert Counter(v["status"] for v in visits) == Counter(
        {"verified": 1, "unverifiable": 1, "flagged": 1})
    page = supervision_html(report)
    assert "Unverifiable visits (1)" in page
    assert "not_sensed" in page


def test_a_visit_under_a_reused_visit_id_is_flagged_for_attention_not_left_out(
        station: Station) -> None:
    # A badge that always sends the same visit id: the log cannot chain the second visit under
    # that key and sets it aside (visit_id_reused), so it had no service record and was
    # missing from the report, its plan counted missed (issue #14).
    station.plan("site-01", "bed-1", "p-1", "c-1", "2026-11-02", "09:00", "10:00", ["bathing"])
    station.plan("site-01", "bed-1", "p-2", "c-1", "2026-11-03", "09:00", "10:00", ["bathing"])
    common: dict[str, Any] = {"site": "site-01", "bed": "bed-1", "caregiver": "c-1",
                              "visit": "v-same", "source": "badge", "method": "nfc",
                              "device": "bg-1"}
    for day, n in (("2026-11-02", 1), ("2026-11-03", 2), ("2026-11-04", 3)):
        at = local(day, "09:05")
        for event, when, services in (("check_in", at, None),
                                      ("check_out", at + 40 * MIN, ("bathing",))):
            if n == 3 and event == "check_out":
                continue  # never checked out
            station.log.append([VisitEvent(origin=f"bg-1/{n}/{event}", at=when, event=event,
                                           services=services, **common)], now_ms=when,
                               set_aside_refused=True)
    station.log.record_judged([JudgedVisit(
        site="site-01", bed="bed-1", caregiver="c-1", visit="v-same",
        judged_at=local("2026-11-02", "09:46"), measured={"verdict": "verified", "reasons": []})])
    station.settle(local("2026-11-29", "00:00"))
    report = station.report(local("2026-11-30", "00:00"))
    got = [(v.day, v.status, v.reasons, v.plan, v.billable_minutes, v.record_seq is None)
           for v in sorted(report.visits, key=lambda v: v.check_in_at)]
    assert got == [("2026-11-02", "verified", (), "p-1", 30.0, False),
                   ("2026-11-03", "flagged", ("visit_id_reused",), "p-2", 0.0, True),
                   ("2026-11-04", "unfinished", ("visit_id_reused",), None, 0.0, True)]
    c1 = figures(report)[("care-north", "c-1")]
    assert {k: c1[k] for k in ("performed", "verified", "flagged", "unfinished", "missed",
                               "billable_minutes", "held_minutes")} == {
        "performed": 2, "verified": 1, "flagged": 1, "unfinished": 1, "missed": 0,
        "billable_minutes": 30, "held_minutes": 30}
    assert c1["reasons"] == {"visit_id_reused": 1}
    assert "visit_id_reused" in supervision_html(report)


def test_a_visit_under_a_reused_visit_id_shows_the_detectors_own_reasons(
        station: Station) -> None:
    # Its line said visit_id_reused only (issue #14, F6), though the detector judged it as a
    # visit of its own (too short) and keeps that judgement under visit#check-in time.
    common: dict[str, Any] = {"site": "site-01", "bed": "bed-1", "caregiver": "c-1",
                              "visit": "v-same", "source": "badge", "method": "nfc",
                              "device": "bg-1"}
    ats = [local("2026-11-02", "09:05"), local("2026-11-03", "09:05"),
           local("2026-11-04", "09:05")]
    for n, at in enumerate(ats):
        for event, when in (("check_in", at), ("check_out", at + 40 * MIN)):
            station.log.append([VisitEvent(origin=f"bg-1/{n}/{event}", at=when, event=event,
                                           services=("bathing",) if event == "check_out"
                                           else None, **common)], now_ms=when,
                               set_aside_refused=True)
    station.log.record_judged([
        JudgedVisit(site="site-01", bed="bed-1", caregiver="c-1", visit="v-same",
                    judged_at=ats[0] + 41 * MIN,
                    measured={"verdict": "verified", "reasons": []}),
        JudgedVisit(site="site-01", bed="bed-1", caregiver="c-1", visit=f"v-same#{ats[1]}",
                    judged_at=ats[1] + 41 * MIN,
                    measured={"verdict": "flagged", "reasons": ["too_short"],
                              "claimed_minutes": 40.0, "sensed_minutes": 4.0}),
        JudgedVisit(site="site-01", bed="bed-1", caregiver="c-1", visit=f"v-same#{ats[2]}",
                    judged_at=ats[2] + 41 * MIN,
                    measured={"verdict": "unverifiable", "reasons": [],
                              "unverifiable": ["not_sensed"]})])
    station.settle(local("2026-11-29", "00:00"))
    report = station.report(local("2026-11-30", "00:00"))
    got = [(v.status, v.reasons, v.claimed_minutes, v.sensed_minutes)
           for v in sorted(report.visits, key=lambda v: v.check_in_at)]
    assert got == [("verified", (), 40.0, None),
                   ("flagged", ("visit_id_reused", "too_short"), 40.0, 4.0),
                   ("flagged", ("visit_id_reused", "not_sensed"), None, None)]
    assert figures(report)[("care-north", "c-1")]["reasons"] == {
        "visit_id_reused": 2, "too_short": 1, "not_sensed": 1}
    assert "too_short" in supervision_html(report)
    assert "visit_id_reused;too_short" in supervision_csv(report, "visits")


def test_month_ranges_are_the_sites_local_months() -> None:
    start, end = month_range("2026-11", SHANGHAI)
    assert start == local("2026-11-01", "00:00")
    assert end == local("2026-12-01", "00:00")
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_range("2026-13", SHANGHAI)
    with pytest.raises(ValueError, match="twice"):
        institution_of(["a=b", "a=c"])
    with pytest.raises(ValueError, match="site=institution"):
        institution_of(["a"])


def test_a_seeded_months_totals_match_an_independent_count_of_the_log(
        station: Station) -> None:
    rng = random.Random(14)
    sites = ["site-01", "site-02", "site-03"]
    visits = []
    for n in range(240):
        day = f"2026-{rng.choice(['10', '11', '11', '11', '12'])}-{rng.randint(1, 28):02d}"
        minutes = rng.choice([None, 5.0, 20.0, 35.0, 60.0])
        visits.append((local(day, f"{rng.randint(0, 23):02d}:{rng.choice(['00', '30'])}"), n,
                       minutes, tuple(rng.sample(["bathing", "cleaning", "rehab", "medication"],
                                                 rng.randint(0, 2))),
                       rng.choice([(), (), (), ("too_short",), ("nobody_sensed", "overlap")])))
    for check_in, n, minutes, services, reasons in sorted(visits):  # recorded as they happen
        if check_in < local("2026-11-25", "00:00"):  # and settled as they come due
            station.settle(check_in)
        station.visit(sites[n % 3], f"bed-{n % 7}", f"c-{n % 5}", check_in, minutes, services,
                      reasons if minutes is not None else (), uncounted=n % 2 == 1)
    station.settle(local("2026-11-25", "00:00"))  # later visits stay pending
    report = station.report(local("2026-12-31", "00:00"))

    # Straight from the log: each November check-in, its check-out and its latest record.
    records = station.log.query(newest_first=False, limit=10_000)
    latest = {(r.site, r.bed, r.caregiver, r.visit): r for r in records if r.event == "service"}
    outs = {(r.site, r.bed, r.caregiver, r.visit): r for r in records if r.event == "check_out"}
    expected: Counter[str] = Counter()
    billable = unverifiable_minutes = 0.0
    for r in records:
        month = dt.datetime.fromtimestamp(r.at / 1000, SHANGHAI).strftime("%Y-%m")
        if r.event != "check_in" or month != "2026-11":
            continue
        k = (r.site, r.bed, r.caregiver, r.visit)
        if k not in outs:
            expected["unfinished"] += 1
            continue
        expected["performed"] += 1
        verdict = latest[k].detail["verdict"] if k in latest else "pending"  # type: ignore[index]
        expected[verdict] += 1
        if verdict in ("verified", "unverifiable"):
            billable += CATALOGUE.minutes(outs[k].services or ())
        if verdict == "unverifiable":
            unverifiable_minutes += CATALOGUE.minutes(outs[k].services or ())
    total = report.total
    assert (total.performed, total.verified, total.unverifiable, total.flagged, total.pending,
            total.unfinished) == (expected["performed"], expected["verified"],
                                  expected["unverifiable"], expected["flagged"],
                                  expected["pending"], expected["unfinished"])
    assert total.performed > 50
    assert total.flagged > 5
    assert total.unverifiable > 5
    assert total.pending > 5
    assert round(total.billable_minutes, 1) == round(billable, 1)
    assert round(total.unverifiable_minutes, 1) == round(unverifiable_minutes, 1)
    assert total.performed == (total.verified + total.unverifiable + total.flagged
                               + total.pending)
    assert total.performed == sum(t.performed for t in report.caregivers)
    assert total.performed + total.unfinished == len(report.visits)
