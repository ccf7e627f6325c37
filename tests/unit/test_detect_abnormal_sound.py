from __future__ import annotations

import random

import pytest

from alerts.model import Finding
from devices import Message, Registry
from gateway.detect import AbnormalSoundDetector
from tests.unit.test_detect_support import (
    HOUR,
    MINUTE,
    at,
    audio,
    cleared,
    infrared,
    opened,
    run,
)

ZONE = "UTC"
T0 = at("2026-11-02", "06:00", ZONE)


def detector(registry: Registry | None = None) -> AbnormalSoundDetector:
    return AbnormalSoundDetector(registry or Registry(), timezone=ZONE)


def room(start: int, end: int, level: float, *, voice: bool = False, step: int = 15_000,
         seed: int = 1) -> list[tuple[int, Message]]:
    rng = random.Random(seed)
    return [(t + 100, audio("b1", t, round(level + rng.gauss(0, 1.3), 1), voice=voice))
            for t in range(start, end, step)]


def quiet_morning() -> list[tuple[int, Message]]:
    return room(T0, T0 + 3 * HOUR, 34.0) + room(T0 + 3 * HOUR, T0 + 4 * HOUR, 49.0, voice=True)


def test_distress_far_above_the_rooms_baseline_is_reported_and_clears() -> None:
    start = T0 + 4 * HOUR
    traffic = quiet_morning() + room(start, start + 10 * MINUTE, 76.0, voice=True)
    traffic += room(start + 10 * MINUTE, start + HOUR, 34.0)
    findings = run(detector(), traffic, start=T0, end=start + HOUR)
    [raised] = opened(findings)
    assert raised.started_at is not None
    assert start <= raised.started_at <= start + MINUTE
    assert raised.at - start <= 4 * MINUTE
    assert raised.evidence["above_db"] > 35
    [clear] = cleared(findings)
    assert clear.at <= start + 14 * MINUTE


def test_tv_loud_talk_and_spikes_are_not_abnormal() -> None:
    start = T0 + 4 * HOUR
    traffic = quiet_morning()
    traffic += room(start, start + HOUR, 50.0, voice=True)  # TV, talk: +16 dB
    traffic += [(start + HOUR + 100, audio("b1", start + HOUR, 95.0, voice=True))]  # a door
    traffic += room(start + HOUR + 15_000, start + 2 * HOUR, 34.0)
    assert run(detector(), traffic, start=T0, end=start + 2 * HOUR) == []


def test_loud_without_voice_is_not_distress() -> None:
    start = T0 + 4 * HOUR
    traffic = quiet_morning() + room(start, start + 15 * MINUTE, 78.0, voice=False)
    assert opened(run(detector(), traffic, start=T0, end=start + HOUR)) == []


def test_impossible_levels_are_left_to_sensor_fault() -> None:
    start = T0 + 4 * HOUR
    traffic = quiet_morning() + room(start, start + 30 * MINUTE, 185.0, voice=True)
    assert opened(run(detector(), traffic, start=T0, end=start + HOUR)) == []


def test_the_threshold_comes_from_the_beds_settings() -> None:
    registry = Registry.from_mapping({"sites": {"s1": {"beds": {"b1": {"settings": {
        "sound_db_above_baseline": 12}}}}}})
    start = T0 + 4 * HOUR
    traffic = room(T0, start, 34.0) + room(start, start + 10 * MINUTE, 50.0, voice=True)
    assert len(opened(run(detector(registry), traffic, start=T0, end=start + HOUR))) == 1
    assert opened(run(detector(), traffic, start=T0, end=start + HOUR)) == []


def test_late_batches_and_a_long_gap() -> None:
    start = T0 + 10 * HOUR
    traffic = room(T0, T0 + 2 * HOUR, 34.0)  # then nothing for 8 hours
    traffic += room(start, start + 40 * MINUTE, 34.0)
    traffic += room(start + 40 * MINUTE, start + 50 * MINUTE, 77.0, voice=True)
    late = [(r + (2 * MINUTE if i % 4 == 0 else 0), m) for i, (r, m) in enumerate(traffic)]
    [raised] = opened(run(detector(), late, start=T0, end=start + 2 * HOUR))
    assert raised.started_at is not None
    assert start + 40 * MINUTE <= raised.started_at <= start + 41 * MINUTE


def test_a_recorder_reporting_every_five_minutes_is_judged_on_its_last_two_samples() -> None:
    start = T0 + 4 * HOUR
    traffic = room(T0, start, 34.0, step=5 * MINUTE)
    traffic += room(start, start + 30 * MINUTE, 76.0, voice=True, step=5 * MINUTE)
    [raised] = opened(run(detector(), traffic, start=T0, end=start + 30 * MINUTE))
    assert raised.at - start <= 12 * MINUTE
    one_loud = room(T0, start, 34.0, step=5 * MINUTE)
    one_loud += room(start, start + MINUTE, 76.0, voice=True, step=5 * MINUTE)
    one_loud += room(start + 5 * MINUTE, start + HOUR, 34.0, step=5 * MINUTE)
    assert opened(run(detector(), one_loud, start=T0, end=start + HOUR)) == []


def test_a_recorder_reporting_every_second_needs_the_sustain_time() -> None:
    start = T0 + 4 * HOUR
    warm = room(T0 + 3 * HOUR, start, 34.0, step=1_000)
    brief = warm + room(start, start + 60_000, 76.0, voice=True, step=1_000)
    brief += room(start + 60_000, start + 15 * MINUTE, 34.0, step=1_000)
    assert opened(run(detector(), brief, start=T0 + 3 * HOUR, end=start + 15 * MINUTE)) == []
    long = warm + room(start, start + 10 * MINUTE, 76.0, voice=True, step=1_000)
    [raised] = opened(run(detector(), long, start=T0 + 3 * HOUR, end=start + 10 * MINUTE))
    assert 2 * MINUTE <= raised.at - start <= 4 * MINUTE


# --- the room's life: the usual level of each hour, its pattern, who is home (issue #12) ------

DAY = 24 * HOUR
EVENING = 19 * HOUR - 6 * HOUR  # 19:00 after T0 (06:00)
TICK = 2 * MINUTE
"""Evaluation step of the tests that replay days."""


def tv(start: int, end: int, level: float, *, step: int = 30_000,
       seed: int = 2) -> list[tuple[int, Message]]:
    """A TV or radio: a steady level, voice in three samples of four."""
    rng = random.Random(seed)
    return [(t + 100, audio("b1", t, round(level + rng.gauss(0, 1.5), 1),
                            voice=rng.random() < 0.75)) for t in range(start, end, step)]


def people(start: int, end: int, count: int, *, step: int = 5 * MINUTE
           ) -> list[tuple[int, Message]]:
    """The infrared sensor's view: ``count`` people (0: nobody home)."""
    return [(t + 100, infrared("b1", t, motion=2 if count else 0, presence=count > 0,
                               people=count)) for t in range(start, end, step)]


def day(n: int, *, tv_db: float | None = 62.0, tv_from: int = 19, tv_to: int = 22,
        quiet_db: float = 34.0, home: bool = True) -> list[tuple[int, Message]]:
    """Day ``n`` from 06:00 to 06:00: a quiet room, the TV in the evening, one person home
    (or nobody, and an empty home's hum)."""
    start = T0 + n * DAY
    if not home:
        return room(start, start + DAY, 28.0, step=MINUTE, seed=n) + people(start, start + DAY, 0)
    on, off = start + (tv_from - 6) * HOUR, start + (tv_to - 6) * HOUR
    traffic = people(start, start + DAY, 1)
    if tv_db is None:
        return traffic + room(start, start + DAY, quiet_db, step=MINUTE, seed=n)
    traffic += room(start, on, quiet_db, step=MINUTE, seed=n)
    traffic += tv(on, off, tv_db, seed=n)
    return traffic + room(off, start + DAY, quiet_db - 4, step=MINUTE, seed=n + 100)


def calls_for_help(start: int, end: int, *, step: int = 20_000) -> list[tuple[int, Message]]:
    """Calls for help: every other sample a shout (88 dB, voice)."""
    rng = random.Random(5)
    return [(t + 100, audio("b1", t, round(88 + rng.gauss(0, 2.0), 1), voice=True))
            for t in range(start, end, 2 * step)]


def instead(traffic: list[tuple[int, Message]], start: int, end: int,
            heard: list[tuple[int, Message]]) -> list[tuple[int, Message]]:
    """``traffic`` with what was heard and seen from ``start`` to ``end`` replaced."""
    return [(r, m) for r, m in traffic if not start <= m.payload.ts < end] + heard


def after(findings: list[Finding], moment: int) -> list[Finding]:
    return [f for f in opened(findings) if f.at >= moment]


def test_evening_tv_at_its_usual_hour_is_ordinary() -> None:
    traffic = [pair for n in range(4) for pair in day(n, tv_db=62.0)]
    findings = run(detector(), traffic, start=T0, end=T0 + 4 * DAY, step=TICK)
    assert after(findings, T0 + DAY) == []  # the first evening is the warm-up


def test_loud_tv_of_a_hard_of_hearing_resident_is_ordinary() -> None:
    levels = [70.0, 74.0, 66.0, 76.0, 72.0]
    traffic = [pair for n, level in enumerate(levels)
               for pair in day(n, tv_db=level, tv_from=16, tv_to=23, quiet_db=36.0)]
    findings = run(detector(), traffic, start=T0, end=T0 + 5 * DAY, step=TICK)
    assert after(findings, T0 + DAY) == []


def test_a_sound_steady_for_long_is_ordinary_even_at_an_unusual_hour() -> None:
    start = T0 + EVENING
    traffic = room(T0, start, 34.0, step=30_000) + tv(start, start + 4 * HOUR, 66.0)
    findings = run(detector(), traffic, start=T0, end=start + 4 * HOUR, step=30_000)
    assert len(opened(findings)) <= 1  # before it is known to last, it may look like distress
    [clear] = cleared(findings)
    assert clear.at <= start + 45 * MINUTE
    assert clear.evidence["reason"] == "steady"


def test_calls_for_help_during_evening_tv_are_raised() -> None:
    traffic = [pair for n in range(4) for pair in day(n, tv_db=62.0)]
    incident = T0 + 3 * DAY + EVENING + 90 * MINUTE  # 20:30 on the fourth evening
    traffic += calls_for_help(incident, incident + 6 * MINUTE)  # TV between the calls
    findings = run(detector(), traffic, start=T0, end=T0 + 4 * DAY, step=TICK)
    [raised] = after(findings, T0 + DAY)
    assert incident <= raised.at <= incident + 5 * MINUTE
    evidence = raised.evidence
    assert evidence["usual_db"] == pytest.approx(62.0, abs=2.0)
    assert evidence["hour"] == 20
    assert evidence["pattern"] == "screams"
    assert evidence["peak_db"] > 80
    assert evidence["median_db"] < 75  # the TV between the calls
    assert evidence["voice_share"] >= 0.5
    assert evidence["people"] == 1


def test_a_family_visit_talking_is_conversation() -> None:
    traffic = [pair for n in range(3) for pair in day(n, tv_db=None)]
    visit = T0 + 2 * DAY + 9 * HOUR  # 15:00 on the third day
    rng = random.Random(9)
    talk = people(visit, visit + 3 * HOUR, 4, step=MINUTE)
    talk += [(t + 100, audio("b1", t, round(rng.uniform(60.0, 72.0), 1),
                            voice=rng.random() < 0.9))
            for t in range(visit, visit + 3 * HOUR, 20_000)]
    talk += [(t + 100, audio("b1", t + 10_000, 86.0, voice=True))  # a child shouting
             for t in range(visit, visit + 3 * HOUR, 20 * MINUTE)]
    traffic = instead(traffic, visit, visit + 3 * HOUR, talk)
    findings = run(detector(), traffic, start=T0, end=T0 + 3 * DAY, step=TICK)
    assert opened(findings) == []


def test_an_extreme_level_is_raised_even_with_visitors() -> None:
    traffic = [pair for n in range(2) for pair in day(n, tv_db=None)]
    fight = T0 + DAY + 9 * HOUR
    traffic = instead(traffic, fight, fight + 10 * MINUTE,
                      people(fight, fight + 10 * MINUTE, 3, step=MINUTE)
                      + room(fight, fight + 10 * MINUTE, 92.0, voice=True, step=20_000))
    findings = run(detector(), traffic, start=T0, end=T0 + 2 * DAY, step=TICK)
    [raised] = opened(findings)
    assert fight <= raised.at <= fight + 5 * MINUTE
    assert raised.evidence["people"] == 3


def test_the_baseline_is_not_learnt_while_nobody_is_home() -> None:
    traffic = day(0) + day(1) + day(2, home=False) + day(3, home=False)
    back = T0 + 4 * DAY + 6 * HOUR  # 12:00
    traffic += people(back, T0 + 5 * DAY, 1)
    traffic += room(back, T0 + 4 * DAY + EVENING, 38.0, step=30_000)
    traffic += tv(T0 + 4 * DAY + EVENING, T0 + 4 * DAY + EVENING + 3 * HOUR, 62.0)
    findings = run(detector(), traffic, start=T0, end=T0 + 5 * DAY, step=TICK)
    assert after(findings, T0 + DAY) == []


def test_the_condition_clears_at_this_hours_usual_so_a_later_incident_is_new() -> None:
    traffic = [pair for n in range(3) for pair in day(n, tv_db=60.0)]
    evening = T0 + 3 * DAY + EVENING
    distress = evening - 15 * MINUTE  # 18:45: calls for help, then the usual TV at once
    traffic += people(T0 + 3 * DAY, T0 + 4 * DAY, 1)
    traffic += room(T0 + 3 * DAY, distress, 34.0, step=30_000)
    traffic += room(distress, distress + 7 * MINUTE, 85.0, voice=True, step=20_000)
    traffic += tv(distress + 7 * MINUTE, evening + 3 * HOUR, 60.0)
    incident = evening + 90 * MINUTE
    traffic += calls_for_help(incident, incident + 6 * MINUTE)
    findings = run(detector(), traffic, start=T0, end=T0 + 4 * DAY, step=TICK)
    first, second = after(findings, T0 + DAY)
    assert distress <= first.at <= distress + 5 * MINUTE
    assert incident <= second.at <= incident + 5 * MINUTE
    [clear, *_] = [f for f in cleared(findings) if f.at > first.at]
    assert clear.at <= distress + 15 * MINUTE
