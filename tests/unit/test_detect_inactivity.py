from __future__ import annotations

import random

from devices import Message, Registry
from gateway.detect import InactivityDetector
from tests.unit.test_detect_support import HOUR, MINUTE, at, cleared, infrared, opened, run

ZONE = "Europe/Berlin"


def detector() -> InactivityDetector:
    return InactivityDetector(Registry(), timezone=ZONE)


def home(bed: str, start: int, end: int, *, motion: int = 0, presence: bool = True,
         step: int = MINUTE) -> list[tuple[int, Message]]:
    return [(t + 200, infrared(bed, t, motion=motion, presence=presence))
            for t in range(start, end, step)]


def test_still_person_at_home_is_reported_after_the_minimum_and_cleared_by_movement() -> None:
    t0 = at("2026-11-02", "08:00", ZONE)
    still = t0 + 60 * MINUTE
    traffic = (home("b1", t0, still, motion=3) + home("b1", still, still + 150 * MINUTE)
               + home("b1", still + 150 * MINUTE, still + 160 * MINUTE, motion=4))
    findings = run(detector(), traffic, start=t0, end=still + 170 * MINUTE)
    [raised] = opened(findings)
    assert raised.started_at == still - MINUTE  # the last movement
    assert 120 * MINUTE <= raised.at - raised.started_at <= 123 * MINUTE
    assert raised.evidence["threshold_minutes"] == 120.0
    [clear] = cleared(findings)
    assert clear.at >= still + 150 * MINUTE


def test_nobody_home_is_not_inactivity() -> None:
    t0 = at("2026-11-02", "09:00", ZONE)
    traffic = home("b1", t0, t0 + 5 * HOUR, presence=False)
    assert run(detector(), traffic, start=t0, end=t0 + 5 * HOUR) == []


def test_coming_home_restarts_the_still_run() -> None:
    t0 = at("2026-11-02", "09:00", ZONE)
    traffic = (home("b1", t0, t0 + 100 * MINUTE) + home("b1", t0 + 100 * MINUTE,
               t0 + 110 * MINUTE, presence=False) + home("b1", t0 + 110 * MINUTE,
                                                         t0 + 200 * MINUTE))
    assert opened(run(detector(), traffic, start=t0, end=t0 + 200 * MINUTE)) == []


def test_a_silent_sensor_is_not_stillness_and_a_gap_restarts_the_run() -> None:
    t0 = at("2026-11-02", "08:00", ZONE)
    # Still for 100 min, then the sensor is silent for 6 h, then still again for 100 min.
    traffic = home("b1", t0, t0 + 100 * MINUTE) + home("b1", t0 + 7 * HOUR,
                                                        t0 + 8 * HOUR + 40 * MINUTE)
    assert opened(run(detector(), traffic, start=t0, end=t0 + 9 * HOUR)) == []


def test_usual_stillness_at_an_hour_raises_that_hours_threshold_only() -> None:
    day1 = at("2026-11-02", "00:00", ZONE)
    traffic: list[tuple[int, Message]] = []
    for day in range(3):
        base = day1 + day * 24 * HOUR
        traffic += home("b1", base + 8 * HOUR, base + 14 * HOUR, motion=2)
        traffic += home("b1", base + 14 * HOUR, base + 15 * HOUR + 50 * MINUTE)  # a long nap
        traffic += home("b1", base + 15 * HOUR + 50 * MINUTE, base + 22 * HOUR, motion=2)
    day4 = day1 + 3 * 24 * HOUR
    traffic += home("b1", day4 + 8 * HOUR, day4 + 9 * HOUR, motion=2)
    traffic += home("b1", day4 + 9 * HOUR, day4 + 11 * HOUR + 20 * MINUTE)  # 140 min at 09:00
    traffic += home("b1", day4 + 11 * HOUR + 20 * MINUTE, day4 + 14 * HOUR, motion=2)
    traffic += home("b1", day4 + 14 * HOUR, day4 + 16 * HOUR + 20 * MINUTE)  # 140 min at 14:00
    traffic += home("b1", day4 + 16 * HOUR + 20 * MINUTE, day4 + 18 * HOUR, motion=2)
    findings = opened(run(detector(), traffic, start=day1, end=day4 + 18 * HOUR,
                          step=MINUTE))
    assert [f.started_at for f in findings] == [day4 + 9 * HOUR - MINUTE]
    assert findings[0].evidence["usual_minutes"] < 40


def test_late_and_reordered_batches_give_the_same_alert() -> None:
    t0 = at("2026-11-02", "08:00", ZONE)
    traffic = home("b1", t0, t0 + 60 * MINUTE, motion=2) + home("b1", t0 + 60 * MINUTE,
                                                                 t0 + 4 * HOUR)
    in_order = opened(run(detector(), traffic, start=t0, end=t0 + 4 * HOUR))
    rng = random.Random(3)
    late = [(r + rng.randrange(0, 4 * MINUTE), m) for r, m in traffic]
    reordered = opened(run(detector(), late, start=t0, end=t0 + 4 * HOUR))
    assert [f.started_at for f in reordered] == [f.started_at for f in in_order]
    assert abs(reordered[0].at - in_order[0].at) <= 5 * MINUTE


def test_threshold_comes_from_the_beds_settings() -> None:
    registry = Registry.from_mapping({"sites": {"s1": {"beds": {"b1": {"settings": {
        "inactivity_min_minutes": 45, "inactivity_factor": 1.5}}}}}})
    t0 = at("2026-11-02", "09:00", ZONE)
    findings = run(InactivityDetector(registry, timezone=ZONE), home("b1", t0, t0 + HOUR),
                   start=t0, end=t0 + HOUR)
    [raised] = opened(findings)
    assert raised.evidence["threshold_minutes"] == 45.0


def test_a_second_infrared_sensor_in_an_empty_room_does_not_end_the_still_run() -> None:
    t0 = at("2026-11-02", "08:00", ZONE)
    still = t0 + 60 * MINUTE

    def bathroom(start: int, end: int) -> list[tuple[int, Message]]:
        return [(t + 300, infrared("b1", t + 20_000, motion=0, presence=False, people=0,
                                   zone=None, device="ir-bath")) for t in range(start, end, MINUTE)]

    traffic = home("b1", t0, still, motion=3) + home("b1", still, still + 150 * MINUTE)
    traffic += bathroom(t0, still + 150 * MINUTE)
    [raised] = opened(run(detector(), traffic, start=t0, end=still + 150 * MINUTE))
    assert raised.started_at == still - MINUTE
    # The person going to the other room is movement there: no alert.
    moved = home("b1", t0, still, motion=3) + home("b1", still, still + 60 * MINUTE)
    moved += bathroom(t0, still + 60 * MINUTE)
    moved += [(t + 300, infrared("b1", t, motion=2, device="ir-bath", zone="bathroom"))
              for t in range(still + 60 * MINUTE, still + 70 * MINUTE, MINUTE)]
    moved += home("b1", still + 70 * MINUTE, still + 150 * MINUTE, presence=False)
    assert opened(run(detector(), moved, start=t0, end=still + 150 * MINUTE)) == []


def test_a_sensor_reporting_every_half_hour_is_not_a_series_of_gaps() -> None:
    t0 = at("2026-11-02", "06:00", ZONE)
    still = t0 + 4 * HOUR
    half_hour = 30 * MINUTE
    traffic = home("b1", t0, still, motion=3, step=half_hour)
    traffic += home("b1", still, still + 4 * HOUR, step=half_hour)
    [raised] = opened(run(detector(), traffic, start=t0, end=still + 4 * HOUR))
    assert raised.at - raised.started_at <= 3 * HOUR
    # ... and its silence for hours is still a gap, not stillness.
    gap = home("b1", t0, still, motion=3, step=half_hour)
    gap += home("b1", still + 6 * HOUR, still + 7 * HOUR + 30 * MINUTE, step=half_hour)
    assert opened(run(detector(), gap, start=t0, end=still + 7 * HOUR + 30 * MINUTE)) == []
