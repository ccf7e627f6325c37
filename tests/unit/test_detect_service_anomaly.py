from __future__ import annotations

from pathlib import Path

from alerts.errors import ServiceLogUnavailable
from alerts.servicelog import ServiceLog
from devices import Message, Registry
from gateway.detect import ServiceAnomalyDetector
from tests.unit.test_detect_support import (
    HOUR,
    MINUTE,
    at,
    badge,
    cleared,
    infrared,
    message,
    opened,
    run,
)

ZONE = "UTC"
T0 = at("2026-11-02", "09:00", ZONE)
CHECK_IN = T0 + HOUR


def detector() -> ServiceAnomalyDetector:
    return ServiceAnomalyDetector(Registry(), timezone=ZONE)


def home(start: int, end: int, people: int = 1) -> list[tuple[int, Message]]:
    return [(t + 100, infrared("b1", t, motion=3, people=people))
            for t in range(start, end, MINUTE)]


def recorded(start: int, stop: int) -> list[tuple[int, Message]]:
    """The home's audio recorder covering ``[start, stop]`` (items that must be recorded)."""
    clip = {"clip": f"au-{start}"}
    return [(start + 50, message("b1", "audio", "au-b1", "event",
                                 {"ts": start, "event": "recording_started", **clip})),
            (stop + 50, message("b1", "audio", "au-b1", "event",
                                {"ts": stop, "event": "recording_stopped", **clip,
                                 "duration_s": (stop - start) / 1000, "sha256": "0" * 64}))]


def visit(length_min: int, services: list[str], *, people: int = 2, check_out: bool = True
          ) -> list[tuple[int, Message]]:
    leave = CHECK_IN + length_min * MINUTE
    traffic = home(T0, CHECK_IN) + home(CHECK_IN, leave, people) + home(leave, leave + 3 * HOUR)
    traffic += recorded(CHECK_IN, leave)
    traffic.append((CHECK_IN + 50, badge("b1", CHECK_IN, "check_in", "v-1")))
    if check_out:
        traffic.append((leave + 50, badge("b1", leave, "check_out", "v-1", services=services)))
    return traffic


def test_a_consistent_visit_is_not_an_anomaly() -> None:
    traffic = visit(45, ["bathing", "medication"])
    assert run(detector(), traffic, start=T0, end=CHECK_IN + 5 * HOUR) == []


def test_checked_in_and_out_but_nobody_came() -> None:
    traffic = visit(45, ["bathing", "medication"], people=1)
    [raised] = opened(run(detector(), traffic, start=T0, end=CHECK_IN + 5 * HOUR))
    assert raised.episode == "c-1/v-1"
    assert raised.evidence["anomaly"] == "nobody_sensed"
    assert raised.started_at == CHECK_IN
    assert raised.at - (CHECK_IN + 45 * MINUTE) <= 3 * MINUTE


def test_visit_much_shorter_than_the_services_claimed() -> None:
    traffic = visit(6, ["bathing", "cleaning", "rehab", "medication"])
    [raised] = opened(run(detector(), traffic, start=T0, end=CHECK_IN + 5 * HOUR))
    assert raised.evidence["anomaly"] == "too_short"
    assert raised.evidence["claimed_minutes"] == 90.0
    assert raised.evidence["stayed_minutes"] == 6.0


def test_missing_check_out_is_reported_after_the_caregiver_left_and_a_late_one_clears() -> None:
    traffic = visit(25, [], check_out=False)
    findings = run(detector(), traffic, start=T0, end=CHECK_IN + 5 * HOUR)
    [raised] = opened(findings)
    assert raised.evidence["anomaly"] == "no_checkout"
    left = CHECK_IN + 25 * MINUTE
    assert left + 15 * MINUTE <= raised.at <= left + 25 * MINUTE
    check_out = badge("b1", CHECK_IN + 4 * HOUR, "check_out", "v-1", services=["medication"])
    late = [*traffic, (CHECK_IN + 4 * HOUR, check_out)]
    findings = run(detector(), late, start=T0, end=CHECK_IN + 5 * HOUR)
    assert [f.active for f in findings] == [True, False]
    assert cleared(findings)[0].episode == "c-1/v-1"


def test_without_infrared_data_a_missing_check_out_is_still_reported() -> None:
    traffic = [(CHECK_IN, badge("b1", CHECK_IN, "check_in", "v-2"))]
    [raised] = opened(run(detector(), traffic, start=T0, end=CHECK_IN + 5 * HOUR))
    assert 4 * HOUR <= raised.at - CHECK_IN <= 4 * HOUR + 2 * MINUTE
    assert raised.evidence["anomaly"] == "no_checkout"


def test_an_open_visit_survives_a_restart() -> None:
    traffic = visit(30, ["medication", "vitals_check"], people=1)
    before = detector()
    run(before, [p for p in traffic if p[0] < CHECK_IN + 10 * MINUTE], start=T0,
        end=CHECK_IN + 10 * MINUTE)
    after = detector()
    after.restore(before.state())
    rest = [p for p in traffic if p[0] >= CHECK_IN + 10 * MINUTE]
    [raised] = opened(run(after, rest, start=CHECK_IN + 11 * MINUTE, end=CHECK_IN + 3 * HOUR))
    assert raised.evidence["anomaly"] == "nobody_sensed"


def test_open_visits_with_one_visit_id_at_two_beds_survive_a_restart_apart() -> None:
    # Keyed by site, bed, caregiver and visit id in the snapshot too: after the restart a
    # check-out at b2 closes b2's visit, not b1's, and b1's still raises its own anomaly.
    both = [(t + 100, infrared(bed, t, motion=3, people=1)) for bed in ("b1", "b2")
            for t in range(T0, CHECK_IN + 6 * HOUR, MINUTE)]
    both += [(CHECK_IN + 50, badge("b1", CHECK_IN, "check_in", "v-1")),
             (CHECK_IN + 60, badge("b2", CHECK_IN, "check_in", "v-1", caregiver="c-2"))]
    before = detector()
    run(before, [p for p in both if p[0] < CHECK_IN + 10 * MINUTE], start=T0,
        end=CHECK_IN + 10 * MINUTE)
    after = detector()
    after.restore(before.state())
    assert sorted((v.bed_id, v.caregiver, v.visit) for v in after.open_visits()) == [
        ("b1", "c-1", "v-1"), ("b2", "c-2", "v-1")]
    leave = CHECK_IN + 40 * MINUTE
    rest = [p for p in both if p[0] >= CHECK_IN + 10 * MINUTE]
    rest.append((leave + 50, badge("b2", leave, "check_out", "v-1", caregiver="c-2",
                                   services=["medication"])))
    findings = run(after, rest, start=CHECK_IN + 11 * MINUTE, end=CHECK_IN + 6 * HOUR)
    assert sorted((f.bed, f.episode, f.evidence["anomaly"]) for f in opened(findings)) == [
        ("b1", "c-1/v-1", "no_checkout"), ("b2", "c-2/v-1", "nobody_sensed")]


def test_open_visits_of_a_snapshot_from_before_visits_were_keyed_are_kept() -> None:
    # The snapshot format of the detector before visits were keyed (a list of visits by visit
    # id, with the fleet's bed number): an upgrade forgot its open visits, and so a caregiver
    # who never checked out was never reported.
    import msgspec

    before = detector()
    traffic = [(CHECK_IN + 50, badge("b1", CHECK_IN, "check_in", "v-3"))]
    run(before, traffic, start=T0, end=CHECK_IN + 10 * MINUTE)
    saved = msgspec.msgpack.decode(before.state())
    saved["extra"] = [{"visit": "v-3", "bed": 0, "caregiver": "c-1", "check_in": CHECK_IN,
                       "people_before": 0, "samples_before": 0, "check_out": None,
                       "services": [], "decided_at": None, "anomaly": None},
                      {"visit": "v-2", "bed": 0, "caregiver": "c-1", "check_in": T0,
                       "people_before": 0, "samples_before": 0, "check_out": T0 + 1,
                       "services": [], "decided_at": T0 + 2, "anomaly": None}]
    after = detector()
    after.restore(msgspec.msgpack.encode(saved))
    assert [(v.site, v.bed_id, v.caregiver, v.visit) for v in after.open_visits()] == [
        ("s1", "b1", "c-1", "v-3")]
    [raised] = opened(run(after, [], start=CHECK_IN + 11 * MINUTE, end=CHECK_IN + 5 * HOUR))
    assert (raised.episode, raised.evidence["anomaly"]) == ("c-1/v-3", "no_checkout")


def test_check_out_without_check_in_and_unknown_services() -> None:
    traffic = home(T0, T0 + 2 * HOUR)
    traffic.append((T0 + HOUR, badge("b1", T0 + HOUR, "check_out", "v-9", services=["x"])))
    assert run(detector(), traffic, start=T0, end=T0 + 3 * HOUR) == []


def couple_visit(length_min: int, services: list[str], *, during: int,
                 check_out: bool = True) -> list[tuple[int, Message]]:
    """An elderly couple (two people at home for the day before), then a visit during which
    the infrared sensor counts ``during`` people."""
    leave = CHECK_IN + length_min * MINUTE
    traffic = (home(T0 - 24 * HOUR, CHECK_IN, people=2) + home(CHECK_IN, leave, during)
               + home(leave, leave + 3 * HOUR, people=2) + recorded(CHECK_IN, leave))
    traffic.append((CHECK_IN + 50, badge("b1", CHECK_IN, "check_in", "v-1")))
    if check_out:
        traffic.append((leave + 50, badge("b1", leave, "check_out", "v-1", services=services)))
    return traffic


def test_a_couple_whose_caregiver_never_came_is_an_anomaly() -> None:
    # The spouse is the second person; nobody more came.
    traffic = couple_visit(45, ["bathing", "medication"], during=2)
    findings = run(detector(), traffic, start=T0 - 24 * HOUR, end=CHECK_IN + 5 * HOUR)
    [raised] = opened(findings)
    assert raised.evidence["anomaly"] == "nobody_sensed"
    assert raised.evidence["household_people"] == 2


def test_a_couple_visited_by_the_caregiver_is_no_anomaly() -> None:
    traffic = couple_visit(45, ["bathing", "medication"], during=3)
    assert run(detector(), traffic, start=T0 - 24 * HOUR, end=CHECK_IN + 5 * HOUR) == []


def test_a_caregiver_who_left_a_couple_without_checking_out_is_reported() -> None:
    traffic = couple_visit(25, [], during=3, check_out=False)
    findings = run(detector(), traffic, start=T0 - 24 * HOUR, end=CHECK_IN + 3 * HOUR)
    [raised] = opened(findings)
    assert raised.evidence["anomaly"] == "no_checkout"
    left = CHECK_IN + 25 * MINUTE
    assert left + 15 * MINUTE <= raised.at <= left + 25 * MINUTE


def couple_days(night_people: int, ghosts: set[int]) -> list[tuple[int, Message]]:
    """Four days of an elderly couple as a sensor sees them: by day both moving, the spouse in
    view nine minutes in ten; asleep from 21:00 to 07:00, no motion, the sensor counting
    ``night_people``. A 45-minute visit at 10:00 each day: on the ``ghosts`` days the caregiver
    never came (the couple as before), on the others the caregiver counted (3 people) nearly
    throughout."""
    start = T0 - 9 * HOUR  # midnight
    traffic = []
    for day in range(4):
        midnight = start + day * 24 * HOUR
        check_in, leave = midnight + 10 * HOUR, midnight + 10 * HOUR + 45 * MINUTE
        for n, t in enumerate(range(midnight, midnight + 24 * HOUR, MINUTE)):
            asleep = not 7 * HOUR <= t - midnight < 21 * HOUR
            people = night_people if asleep else 1 if n % 10 == 3 else 2
            if check_in <= t < leave and day not in ghosts:
                people = 2 if n % 10 == 3 else 3
            traffic.append((t + 100, infrared("b1", t, motion=0 if asleep else 3,
                                              people=people)))
        traffic += recorded(check_in, leave)
        traffic += [(check_in + 50, badge("b1", check_in, "check_in", f"v-{day}")),
                    (leave + 50, badge("b1", leave, "check_out", f"v-{day}",
                                       services=["bathing", "medication"]))]
    return traffic


def test_a_couple_asleep_is_still_a_household_of_two_by_morning() -> None:
    # A fresh verifier's couple: learnt from every sample, ten hours of the couple asleep
    # (counted as one, or as nobody) made a household of one by the morning (and the first
    # sample after a night with nothing learnt weighed as much as the night), so the spouse
    # was taken for the caregiver and the visits that never happened were missed.
    for night_people in (1, 0):
        found = run(detector(), couple_days(night_people, ghosts={1, 3}), start=T0 - 9 * HOUR,
                    end=T0 + 4 * 24 * HOUR)
        assert sorted((f.episode, f.evidence["anomaly"], f.evidence["household_people"])
                      for f in opened(found)) == [("c-1/v-1", "nobody_sensed", 2),
                                                  ("c-1/v-3", "nobody_sensed", 2)], night_people


def test_a_new_bed_is_a_household_of_one_until_a_day_shows_otherwise() -> None:
    # The first visit of a new bed whose sensor counts two: the second person is taken for
    # the caregiver (the safe default), so nothing is claimed against an honest caregiver.
    traffic = [(t + 100, infrared("b1", t, motion=3, people=2))
               for t in range(T0, CHECK_IN + 4 * HOUR, MINUTE)]
    traffic.append((CHECK_IN + 50, badge("b1", CHECK_IN, "check_in", "v-1")))
    leave = CHECK_IN + 45 * MINUTE
    traffic.append((leave + 50, badge("b1", leave, "check_out", "v-1", services=["medication"])))
    traffic += recorded(CHECK_IN, leave)
    assert run(detector(), traffic, start=T0, end=CHECK_IN + 4 * HOUR) == []


def test_an_honest_visit_is_judged_with_what_the_sensors_saw_and_it_is_kept(
        tmp_path: Path) -> None:
    # Measurements came only with a finding: a verified visit's service record had no sensed
    # time and no recordings. Every judged visit now leaves its measurements in the service
    # log's file (not chained: its service record chains them), where settling reads them.
    log = ServiceLog(tmp_path / "servicelog.sqlite3")
    try:
        honest = detector()
        honest.configure(visit_log=log)
        traffic = visit(45, ["bathing", "medication"])
        assert run(honest, traffic, start=T0, end=CHECK_IN + 2 * HOUR) == []
        judged = log.judged("s1", "b1", "c-1", "v-1")
        assert judged is not None
        m = judged.measured
        assert (m["verdict"], m["reasons"]) == ("verified", [])
        assert (m["check_in_ms"], m["check_out_ms"]) == (CHECK_IN, CHECK_IN + 45 * MINUTE)
        assert (m["stayed_minutes"], m["claimed_minutes"], m["household_people"]) == (
            45.0, 45.0, 1)
        assert m["sensed_minutes"] == 45.0
        assert m["infrared_samples"] == m["samples_with_caregiver"] >= 40
        assert (m["recording_required"], m["recording_coverage"]) == (
            ["bathing", "medication"], 1.0)
        [clip] = m["recordings"]
        assert (clip["clip"], clip["device"], clip["started_ms"], clip["stopped_ms"],
                clip["duration_s"], clip["sha256"]) == (
            f"au-{CHECK_IN}", "au-b1", CHECK_IN, CHECK_IN + 45 * MINUTE, 2700.0, "0" * 64)
        assert log.judged("s1", "b1", "c-1", "v-2") is None
    finally:
        log.close()


class BrokenLog:
    """A service log whose file cannot be written (a full disk)."""

    def __init__(self, log: ServiceLog) -> None:
        self.log = log

    def query(self, **kwargs: object) -> list[object]:
        return []

    def head(self) -> tuple[int, str]:
        return self.log.head()

    def record_judged(self, visits: object) -> None:
        raise ServiceLogUnavailable("disk full", store="servicelog")


def test_a_judgement_not_written_yet_survives_a_restart(tmp_path: Path) -> None:
    log = ServiceLog(tmp_path / "servicelog.sqlite3")
    try:
        before = detector()
        before.configure(visit_log=BrokenLog(log))  # type: ignore[arg-type]
        traffic = visit(45, ["bathing", "medication"])
        run(before, traffic, start=T0, end=CHECK_IN + 2 * HOUR)
        after = detector()
        after.configure(visit_log=log)
        after.restore(before.state())
        run(after, [], start=CHECK_IN + 2 * HOUR + MINUTE, end=CHECK_IN + 2 * HOUR + MINUTE)
        judged = log.judged("s1", "b1", "c-1", "v-1")
        assert judged is not None
        assert judged.measured["sensed_minutes"] == 45.0
    finally:
        log.close()


def test_a_check_in_delivered_after_its_check_out_closes_the_visit() -> None:
    # A fresh verifier's badge (reordered delivery): the check-out at 10:45 reached the
    # gateway first, the check-in (device time 10:00) a minute after it. The check-out was
    # dropped and the honest visit ended with a missing check-out; it is one visit now, from
    # the check-in's own device time, and judged as such. Across a restart in between too.
    leave = CHECK_IN + 45 * MINUTE
    traffic = home(T0, CHECK_IN) + home(CHECK_IN, leave, 2) + home(leave, leave + 3 * HOUR)
    traffic += recorded(CHECK_IN, leave)
    traffic.append((leave + 50, badge("b1", leave, "check_out", "v-1", services=["bathing"])))
    traffic.append((leave + 60_000, badge("b1", CHECK_IN, "check_in", "v-1")))
    assert run(detector(), traffic, start=T0, end=CHECK_IN + 5 * HOUR) == []
    before = detector()
    run(before, [p for p in traffic if p[0] < leave + 30_000], start=T0, end=leave + 30_000)
    after = detector()
    after.restore(before.state())
    rest = [p for p in traffic if p[0] >= leave + 30_000]
    assert run(after, rest, start=leave + 40_000, end=CHECK_IN + 5 * HOUR) == []
    [visit] = after._done.values()
    assert (visit.check_in, visit.check_out, visit.services) == (CHECK_IN, leave, ["bathing"])


def test_a_check_out_before_a_later_check_in_is_not_its_visits() -> None:
    traffic = home(T0, CHECK_IN + 6 * HOUR)
    traffic.append((CHECK_IN + 50, badge("b1", CHECK_IN, "check_out", "v-1")))
    traffic.append((CHECK_IN + 60_050, badge("b1", CHECK_IN + 60_000, "check_in", "v-1")))
    findings = opened(run(detector(), traffic, start=T0, end=CHECK_IN + 6 * HOUR))
    assert [f.evidence["anomaly"] for f in findings] == ["no_checkout"]
