"""A visit whose home's infrared runs behind is settled once, with the detector's judgement
(issue #14).

The detector waits before judging a checked-out visit until its home's infrared has come up
to the check-out, while that infrared keeps coming (up to 12 h); settling waited for the
judgement ``judged_within_ms`` (7 min) at most, so a home whose infrared ran more than that
behind had every visit settled ``unverifiable``/``not_judged`` first and revised after: two
records upstream per visit, the family's included, the first saying the sensors could not
confirm a visit they then did. And settling took visits strictly in check-out order, so the
visit waiting held every other home's records behind it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.engine import AlertEngine
from alerts.model import VisitEvent
from alerts.plans import DEFAULT_CATALOGUE, Catalogue
from alerts.servicelog import JudgedVisit, ServiceLog, ServiceRecord
from alerts.servicerecords import Settlement
from alerts.store import AlertStore
from devices import Registry
from gateway.config import Settings
from gateway.detect import ServiceAnomalyDetector
from gateway.detect.service_anomaly import FRESH_MS
from gateway.runtime import awaited_within_ms, judged_within_ms
from tests.unit.test_detect_support import HOUR, MINUTE, infrared
from tests.unit.test_service_checks import NINE, ZONE, Traffic

CATALOGUE = Catalogue.parse(DEFAULT_CATALOGUE)
SETTINGS = Settings()
SETTLE = round(SETTINGS.service_record_settle_s * 1000)  # 10 min
WITHIN = judged_within_ms(SETTINGS)  # 7 min
AWAITED = awaited_within_ms(SETTINGS)  # 12 h 22 min
START = NINE - 3 * HOUR
STEP = 30_000


class Home:
    """A gateway's service path in one process: the service log, the service_anomaly
    detector reading the app's check-ins and check-outs from it, its findings committed as
    alerts, and settling asking the detector what it still holds, as the runtime wires them."""

    def __init__(self, tmp_path: Path, *, asked: bool = True) -> None:
        self.log = ServiceLog(tmp_path / "servicelog.sqlite3")
        self.store = AlertStore(tmp_path / "alerts.sqlite3")
        self.engine = AlertEngine(self.store)
        self.detector = ServiceAnomalyDetector(Registry(), timezone=ZONE)
        self.detector.configure(visit_log=self.log)
        self.settlement = Settlement(
            self.log, alerts=self.store, catalogue=CATALOGUE, settle_ms=SETTLE,
            started_ms=START, judged_within_ms=WITHIN, awaited_within_ms=AWAITED,
            awaiting=self.detector.awaiting_judgement if asked else None)
        self.settled_at: dict[str, list[int]] = {}

    def close(self) -> None:
        self.log.close()
        self.store.close()

    def run(self, traffic: Traffic, visits: list[tuple[int, VisitEvent]], *, end: int,
            start: int = START) -> None:
        """Feed the infrared (by receipt) and the app's events (into the log at their
        receipt), evaluate the detector and settle every ``STEP``, as the gateway does."""
        pending = sorted(traffic, key=lambda pair: pair[0])
        events = sorted(visits, key=lambda pair: pair[0])
        i = j = 0
        now = start
        while now <= end:
            batch = []
            while i < len(pending) and pending[i][0] < now:
                batch.append(pending[i])
                i += 1
            if batch:
                self.detector.update([m for _, m in batch], [r for r, _ in batch])
            while j < len(events) and events[j][0] < now:
                self.log.append([events[j][1]], now_ms=events[j][0])
                j += 1
            findings = self.detector.evaluate(now)
            if findings:
                self.engine.apply(findings, now)
                self.engine.commit()
            for record in self.settlement.settle(now):
                self.settled_at.setdefault(record.visit, []).append(now)
            now += STEP

    def records(self, visit: str) -> list[ServiceRecord]:
        return list(self.log.query(visit=visit, event="service", newest_first=False))


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    made = Home(tmp_path)
    yield made
    made.close()


def app(bed: str, visit: str, event: str, at: int, services: tuple[str, ...] | None = None,
        caregiver: str = "c-1") -> tuple[int, VisitEvent]:
    """An app's check-in or check-out, recorded 20 s after its time."""
    return at + 20_000, VisitEvent(
        origin=f"api:s1/{bed}/{caregiver}/{visit}/{event}", at=at, site="s1", bed=bed,
        caregiver=caregiver, visit=visit, event=event, source="api", method="app",
        services=services, actor="app")


def samples(bed: str, start: int, end: int, people: Any, *, behind: int = 0) -> Traffic:
    """One infrared sample a minute, ``people(t)`` counted, received ``behind`` after its
    device time."""
    return [(t + behind + 100, infrared(bed, t, motion=3, people=people(t), site="s1"))
            for t in range(start, end, MINUTE)]


def visit(bed: str, name: str, check_in: int, check_out: int, services: tuple[str, ...],
          caregiver: str = "c-1") -> list[tuple[int, VisitEvent]]:
    return [app(bed, name, "check_in", check_in, caregiver=caregiver),
            app(bed, name, "check_out", check_out, services, caregiver)]


def present(since: int, until: int) -> Any:
    """A household of one, and the caregiver from ``since`` to ``until``."""
    return lambda t: 2 if since <= t < until else 1


@pytest.mark.parametrize("behind", [15 * MINUTE, 30 * MINUTE])
@pytest.mark.parametrize("short", [True, False])
def test_a_visit_whose_infrared_runs_behind_settles_once_with_its_judgement(
        home: Home, behind: int, short: bool) -> None:
    # b1's infrared comes 15 or 30 min behind. Its caregiver checked in at 09:00 and out at
    # 09:40 billing cleaning (25 min): present 09:00-09:10 only (too_short), or throughout
    # (verified). Settled before at 09:50 unverifiable/not_judged, revised when the judgement
    # came (09:56 or 10:11): two records upstream, the family's included.
    check_in, check_out = NINE, NINE + 40 * MINUTE
    end = check_out + behind + 2 * HOUR
    until = check_in + (10 * MINUTE if short else 40 * MINUTE)
    home.run(samples("b1", START, end, present(check_in, until), behind=behind),
             visit("b1", "v-1", check_in, check_out, ("cleaning",)), end=end)
    [record] = home.records("v-1")
    assert record.detail is not None
    assert (record.detail["verdict"], record.detail["reasons"],
            record.detail["unverifiable"]) == (
        ("flagged", ["too_short"], []) if short else ("verified", [], []))
    assert "revision" not in record.detail
    assert "judged_at" in record.detail["evidence"]
    assert home.log.judged_after_settling() == []
    # Settled at its first pass after the judgement, not at the ordinary 10 min.
    [settled] = home.settled_at["v-1"]
    assert settled > check_out + 20_000 + SETTLE
    assert not home.detector.awaiting_judgement("s1", "b1", "c-1", "v-1")


def test_a_visit_waiting_holds_no_other_homes_records(home: Home) -> None:
    # b1's infrared 30 min behind, its visit checked out first (09:40); b2's on time, its
    # visit checked out at 09:45. Settled in strict check-out order, b2's record waited
    # behind b1's; now it is settled at its own time, b1's once its judgement came.
    end = NINE + 4 * HOUR
    traffic = samples("b1", START, end, present(NINE, NINE + 40 * MINUTE), behind=30 * MINUTE)
    traffic += samples("b2", START, end, present(NINE + 5 * MINUTE, NINE + 45 * MINUTE))
    visits = visit("b1", "v-1", NINE, NINE + 40 * MINUTE, ("cleaning",))
    visits += visit("b2", "v-2", NINE + 5 * MINUTE, NINE + 45 * MINUTE, ("cleaning",), "c-2")
    home.run(traffic, visits, end=end)
    b2_out = NINE + 45 * MINUTE + 20_000
    assert home.settled_at["v-2"] == [b2_out + SETTLE + STEP - (b2_out + SETTLE) % STEP]
    [b1_at] = home.settled_at["v-1"]
    assert b1_at > home.settled_at["v-2"][0], "b1's visit waited for its judgement alone"
    got = [(r.visit, r.detail["verdict"], r.detail.get("revision"))
           for r in home.log.query(event="service", newest_first=False) if r.detail]
    assert got == [("v-2", "verified", None), ("v-1", "verified", None)]
    # The cursor stayed before b1's check-out while it waited, and is past both now.
    assert home.log.settlement_cursor()[0] == max(
        r.seq for r in home.log.query(event="check_out"))
    assert home.log.verify(full=True).ok


def test_a_visit_whose_sensor_went_silent_is_not_held(home: Home) -> None:
    # b1's infrared, 30 min behind, stops at 09:20 (device time, received 09:50) for good:
    # the detector stops waiting once it has heard nothing for 10 min (10:00) and judges the
    # visit with what came; settling holds it no longer than that (it was settled not_judged
    # at 09:50 and revised at 10:00).
    check_in, check_out = NINE, NINE + 40 * MINUTE
    end = NINE + 3 * HOUR
    home.run(samples("b1", START, NINE + 20 * MINUTE, present(NINE, NINE + 40 * MINUTE),
                     behind=30 * MINUTE),
             visit("b1", "v-1", check_in, check_out, ("cleaning",)), end=end)
    [record] = home.records("v-1")
    assert record.detail is not None
    judged_at = record.detail["evidence"]["judged_at"]
    assert judged_at <= NINE + 20 * MINUTE + 30 * MINUTE + FRESH_MS + STEP
    assert home.settled_at["v-1"] == [judged_at], "settled at the pass that judged it"
    assert not home.detector.awaiting_judgement("s1", "b1", "c-1", "v-1")


def test_a_visit_still_held_by_a_stalled_detector_settles_not_judged_at_the_hard_bound(
        tmp_path: Path) -> None:
    # A detector that says it still holds the visit but never judges it (stalled): the
    # record waits awaited_within_ms, then settles not_judged; a visit it does not hold
    # settles not_judged at judged_within_ms, as before.
    log = ServiceLog(tmp_path / "servicelog.sqlite3")
    store = AlertStore(tmp_path / "alerts.sqlite3")
    held = {("s1", "b1", "c-1", "v-1")}
    settlement = Settlement(log, alerts=store, catalogue=CATALOGUE, settle_ms=SETTLE,
                            started_ms=START, judged_within_ms=WITHIN,
                            awaited_within_ms=AWAITED,
                            awaiting=lambda *key: key in held)
    out = NINE + 40 * MINUTE
    for bed, name in (("b1", "v-1"), ("b2", "v-2")):
        for received, event in visit(bed, name, NINE, out, ("cleaning",)):
            log.append([event], now_ms=received)
    recorded = out + 20_000
    got = settlement.settle(recorded + SETTLE)
    assert [(r.visit, r.detail["unverifiable"]) for r in got if r.detail] == [
        ("v-2", ["not_judged"])], "v-2's detector holds nothing: settled, not behind v-1"
    assert settlement.settle(recorded + AWAITED - 1) == []
    [late] = settlement.settle(recorded + AWAITED)
    assert late.visit == "v-1"
    assert late.detail is not None
    assert late.detail["unverifiable"] == ["not_judged"]
    # Its judgement coming after all revises it, as any late judgement does.
    log.record_judged([JudgedVisit(site="s1", bed="b1", caregiver="c-1", visit="v-1",
                                   judged_at=recorded + AWAITED + MINUTE,
                                   measured={"verdict": "verified", "reasons": []})])
    [revised] = settlement.settle(recorded + AWAITED + 2 * MINUTE)
    assert revised.detail is not None
    assert revised.detail["revision"] == 2
    log.close()
    store.close()


def test_a_restored_detector_still_answers_for_the_visits_it_holds(home: Home) -> None:
    # The snapshot restores the visits waiting for their infrared, so settling after a
    # restart keeps waiting for them as before it.
    check_in, check_out = NINE, NINE + 40 * MINUTE
    behind = 30 * MINUTE
    cut = check_out + 25 * MINUTE  # checked out, its infrared not in yet
    traffic = samples("b1", START, NINE + 3 * HOUR, present(check_in, check_in + 10 * MINUTE),
                      behind=behind)
    visits = visit("b1", "v-1", check_in, check_out, ("cleaning",))
    home.run([p for p in traffic if p[0] < cut], visits, end=cut)
    assert home.detector.awaiting_judgement("s1", "b1", "c-1", "v-1")
    assert home.records("v-1") == []
    restored = ServiceAnomalyDetector(Registry(), timezone=ZONE)
    restored.configure(visit_log=home.log)
    restored.restore(home.detector.state())
    assert restored.awaiting_judgement("s1", "b1", "c-1", "v-1")
    assert not restored.awaiting_judgement("s1", "b1", "c-1", "v-2")
    home.detector = restored
    home.settlement = Settlement(
        home.log, alerts=home.store, catalogue=CATALOGUE, settle_ms=SETTLE,
        started_ms=cut, judged_within_ms=WITHIN, awaited_within_ms=AWAITED,
        awaiting=restored.awaiting_judgement)
    home.run([p for p in traffic if p[0] >= cut], [], start=cut, end=NINE + 3 * HOUR)
    [record] = home.records("v-1")
    assert record.detail is not None
    assert (record.detail["verdict"], record.detail["reasons"]) == ("flagged", ["too_short"])
