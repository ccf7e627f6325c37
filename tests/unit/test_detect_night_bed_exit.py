from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest

from alerts.model import Finding
from devices import Message, Registry
from gateway.detect import NightBedExitDetector
from tests.unit.detect_warmup import shared_run
from tests.unit.test_detect_support import (
    HOUR,
    MINUTE,
    SITE,
    at,
    cleared,
    infrared,
    opened,
    run,
    vitals,
)


def detector(zone: str = "Asia/Shanghai", registry: Registry | None = None
             ) -> NightBedExitDetector:
    return NightBedExitDetector(registry or Registry(), timezone=zone)


def run_new(zone: str, traffic: list[tuple[int, Message]], *, start: int, end: int,
            step: int = 10_000) -> list[Finding]:
    """``run(detector(zone), ...)``, from the nights shared with a test run before
    (:mod:`tests.unit.detect_warmup`)."""
    return shared_run(("night_bed_exit", zone), lambda: detector(zone), traffic, start=start,
                      end=end, step=step)


def bed_sensor(bed: str, start: int, end: int, *, in_bed: bool,
               site: str = SITE) -> list[tuple[int, Message]]:
    return [(t + 300, vitals(bed, t, in_bed=in_bed, heart=60.0 if in_bed else None,
                             breathing=14.0 if in_bed else None, site=site))
            for t in range(start, end, MINUTE)]


def night(bed: str, evening: int, left: int, back: int | None, morning: int,
          site: str = SITE) -> list[tuple[int, Message]]:
    traffic = bed_sensor(bed, evening, left, in_bed=True, site=site)
    traffic += bed_sensor(bed, left, back or morning, in_bed=False, site=site)
    if back is not None:
        traffic += bed_sensor(bed, back, morning, in_bed=True, site=site)
    return traffic


def test_out_of_bed_at_night_without_return_is_reported_then_cleared_on_return() -> None:
    zone = "Asia/Shanghai"
    evening = at("2026-11-02", "21:00", zone)
    left, back = at("2026-11-03", "01:30", zone), at("2026-11-03", "02:40", zone)
    findings = run_new(zone, night("b1", evening, left, back, back + HOUR),
                   start=evening, end=back + HOUR)
    [raised] = opened(findings)
    assert raised.started_at == left
    assert 30 * MINUTE <= raised.at - left <= 32 * MINUTE
    assert raised.evidence["left_bed_local"] == "01:30"
    [clear] = cleared(findings)
    assert back <= clear.at <= back + 2 * MINUTE


def test_a_short_trip_at_night_is_not_reported() -> None:
    zone = "Asia/Shanghai"
    evening = at("2026-11-02", "21:00", zone)
    left = at("2026-11-03", "02:00", zone)
    traffic = night("b1", evening, left, left + 20 * MINUTE, left + 2 * HOUR)
    assert run_new(zone, traffic, start=evening, end=left + 2 * HOUR) == []


def test_up_in_the_evening_and_morning_is_not_a_night_exit() -> None:
    zone = "Asia/Shanghai"
    evening = at("2026-11-02", "19:00", zone)
    left = at("2026-11-02", "21:30", zone)  # before night_start 22:00, out until 23:30
    morning_up = at("2026-11-03", "06:10", zone)
    traffic = night("b1", evening, left, left + 2 * HOUR, morning_up)
    traffic += bed_sensor("b1", morning_up, morning_up + 3 * HOUR, in_bed=False)
    assert run_new(zone, traffic, start=evening, end=morning_up + 3 * HOUR) == []


@pytest.mark.parametrize(("zone", "date"), [
    ("Europe/Berlin", "2026-03-29"),      # 02:00 -> 03:00
    ("Europe/Berlin", "2026-10-25"),      # 03:00 -> 02:00
    ("America/New_York", "2026-11-01"),   # 02:00 -> 01:00
    ("Australia/Sydney", "2026-10-04"),   # 02:00 -> 03:00
    ("Asia/Kolkata", "2026-06-01"),       # +05:30, no DST
])
def test_night_follows_the_sites_zone_across_dst(zone: str, date: str) -> None:
    registry = Registry.from_mapping({"sites": {
        "here": {"timezone": zone}, "there": {"timezone": "Pacific/Auckland"}}})
    evening = at(date, "00:00", zone) - 3 * HOUR
    left = at(date, "01:15", zone)
    morning = at(date, "07:30", zone)
    traffic = night("b1", evening, left, None, morning, site="here")
    traffic += night("b1", evening, left, None, morning, site="there")  # same UTC moments
    findings = run(detector(registry=registry), traffic, start=evening, end=morning)
    raised = opened(findings)
    local_in_auckland = (left - at(date, "00:00", "Pacific/Auckland")) % (24 * HOUR)
    auckland_night = not 6 * HOUR <= local_in_auckland < 22 * HOUR
    assert [f.site for f in raised] == (["here", "there"] if auckland_night else ["here"])
    assert raised[0].started_at == left
    assert raised[0].evidence["left_bed_local"] == "01:15"


def test_per_bed_night_window_is_used() -> None:
    registry = Registry.from_mapping({"sites": {SITE: {"beds": {"b1": {"settings": {
        "night_start": "20:00", "night_end": "07:00", "bed_exit_return_min": 15}}}}}})
    zone = "UTC"
    evening = at("2026-11-02", "19:00", zone)
    left = at("2026-11-02", "20:30", zone)
    findings = run(detector(zone, registry), night("b1", evening, left, None, left + HOUR),
                   start=evening, end=left + HOUR)
    [raised] = opened(findings)
    assert 15 * MINUTE <= raised.at - left <= 17 * MINUTE


def test_infrared_zone_stands_in_while_the_bed_sensor_is_silent() -> None:
    zone = "UTC"
    evening = at("2026-11-02", "21:00", zone)
    left = at("2026-11-03", "02:00", zone)
    traffic = bed_sensor("b1", evening, evening + HOUR, in_bed=True)  # then the sensor dies
    traffic += [(t + 200, infrared("b1", t, zone="bed" if t < left else "room", motion=1))
                for t in range(evening, left + HOUR, MINUTE)]
    [raised] = opened(run_new(zone, traffic, start=evening, end=left + HOUR))
    assert raised.started_at == left


def test_a_stuck_infrared_zone_does_not_override_the_bed_sensor() -> None:
    zone = "UTC"
    evening = at("2026-11-02", "21:00", zone)
    traffic = bed_sensor("b1", evening, evening + 9 * HOUR, in_bed=True)
    traffic += [(t + 200, infrared("b1", t, zone="room", motion=7))
                for t in range(evening, evening + 9 * HOUR, MINUTE)]
    assert run_new(zone, traffic, start=evening, end=evening + 9 * HOUR) == []


def test_no_data_for_hours_forgets_where_the_person_was() -> None:
    zone = "UTC"
    evening = at("2026-11-02", "21:00", zone)
    left = at("2026-11-03", "01:00", zone)
    # Out of bed at 01:00, both sensors silent until 04:00, out of bed for 20 min more.
    traffic = bed_sensor("b1", evening, left, in_bed=True)
    traffic += bed_sensor("b1", left, left + 5 * MINUTE, in_bed=False)
    traffic += bed_sensor("b1", left + 3 * HOUR, left + 3 * HOUR + 20 * MINUTE, in_bed=False)
    traffic += bed_sensor("b1", left + 3 * HOUR + 20 * MINUTE, left + 4 * HOUR, in_bed=True)
    assert opened(run_new(zone, traffic, start=evening, end=left + 4 * HOUR)) == []


def test_batches_out_of_order_give_the_same_alert() -> None:
    zone = "UTC"
    evening = at("2026-11-02", "21:00", zone)
    left, back = at("2026-11-03", "01:30", zone), at("2026-11-03", "02:45", zone)
    traffic = night("b1", evening, left, back, back + HOUR)
    shuffled = [(r + (3 * MINUTE if i % 3 == 0 else 0), m) for i, (r, m) in enumerate(traffic)]
    a = run_new(zone, traffic, start=evening, end=back + HOUR)
    b = run_new(zone, shuffled, start=evening, end=back + HOUR)
    assert [f.started_at for f in opened(a)] == [f.started_at for f in opened(b)] == [left]
    assert len(cleared(b)) == 1



# --- the person's own night (issue #12) -----------------------------------------------------


def clock(date: str, time: str, zone: str, days: int = 0) -> int:
    return at(str(dt.date.fromisoformat(date) + dt.timedelta(days=days)), time, zone)


def spans(bed: str, parts: Sequence[tuple[int, int, bool]], every: int = 5 * MINUTE
          ) -> list[tuple[int, Message]]:
    """A bed sensor reporting every ``every`` through ``(start, end, in_bed)`` spans."""
    traffic = []
    for start, end, in_bed in parts:
        traffic += [(t + 300, vitals(bed, t, in_bed=in_bed, heart=60.0 if in_bed else None,
                                     breathing=14.0 if in_bed else None))
                    for t in range(start, end, every)]
    return traffic


def room(bed: str, start: int, end: int, *, every: int = 5 * MINUTE, home: bool = True,
         zone: str | None = "room", people: int = 1) -> list[tuple[int, Message]]:
    """The infrared sensor through ``[start, end)``: someone home in ``zone``, or nobody."""
    return [(t + 200, infrared(bed, t, presence=home, people=people if home else 0,
                               zone=zone if home else None, motion=2 if home else 0))
            for t in range(start, end, every)]


def sleep(first: str, count: int, zone: str, *, bedtimes: Sequence[str],
          wakes: Sequence[str], trips: dict[int, tuple[str, int]] | None = None
          ) -> tuple[list[tuple[int, Message]], int, int]:
    """``count`` nights from the evening of ``first``: in bed at ``bedtimes[n]``, up for good
    at ``wakes[n]`` the next morning (both cycled), out of bed for ``minutes`` from ``left`` on
    the nights ``n`` of ``trips``; from noon of ``first`` to noon after the last night.
    Returns the bed sensor's traffic, its start and its end."""
    parts: list[tuple[int, int, bool]] = []
    start = clock(first, "12:00", zone)
    up_since = start
    for n in range(count):
        bedtime = clock(first, bedtimes[n % len(bedtimes)], zone, n)
        wake = clock(first, wakes[n % len(wakes)], zone, n + 1)
        parts.append((up_since, bedtime, False))
        trip = (trips or {}).get(n)
        if trip is None:
            parts.append((bedtime, wake, True))
        else:
            left = clock(first, trip[0], zone, n + (1 if trip[0] < "12:00" else 0))
            back = min(left + trip[1] * MINUTE, wake)
            parts += [(bedtime, left, True), (left, back, False), (back, wake, True)]
        up_since = wake
    end = clock(first, "12:00", zone, count)
    parts.append((up_since, end, False))
    return spans("b1", parts), start, end


def hhmm(local: str) -> int:
    hours, minutes = local.split(":")
    return int(hours) * 60 + int(minutes)


EARLY_WAKES = ["05:10", "04:55", "05:40", "05:05", "05:25", "04:50", "05:30", "05:15"]
EARLY_BEDTIMES = ["20:15", "20:40", "20:05", "20:30"]


def test_an_early_riser_up_at_their_usual_time_is_not_a_night_exit_once_learnt() -> None:
    zone = "Europe/Berlin"  # the nights cross the end of summer time (2026-10-25)
    traffic, start, end = sleep("2026-10-19", 12, zone, bedtimes=EARLY_BEDTIMES,
                                wakes=EARLY_WAKES)
    findings = opened(run_new(zone, traffic, start=start, end=end, step=5 * MINUTE))
    # Warm-up: until one night is learnt, night is the registry's 22:00-06:00, but up in its
    # last 90 minutes after hours in bed is the morning (it raised the first one before).
    assert findings == []


def test_an_early_riser_up_at_night_is_still_reported_with_their_night_as_evidence() -> None:
    zone = "Europe/Berlin"
    traffic, start, end = sleep("2026-10-19", 9, zone, bedtimes=EARLY_BEDTIMES,
                                wakes=EARLY_WAKES, trips={8: ("01:30", 120)})
    findings = run_new(zone, traffic, start=start, end=end, step=5 * MINUTE)
    left = clock("2026-10-19", "01:30", zone, 9)
    [raised] = [f for f in opened(findings) if f.started_at == left]
    assert 30 * MINUTE <= raised.at - left <= 36 * MINUTE
    evidence = raised.evidence
    assert evidence["night_rule"] == "learnt"
    assert evidence["nights_learnt"] == 6  # weekday nights (this is a Tuesday night)
    assert 5 * 60 <= hhmm(evidence["usual_wake_local"]) <= 5 * 60 + 15
    assert 20 * 60 + 10 <= hhmm(evidence["usual_bedtime_local"]) <= 20 * 60 + 30
    night_start, night_end = evidence["night_local"].split("-")
    assert night_start == "22:00"  # never before the registry's night
    assert 4 * 60 <= hhmm(night_end) <= 4 * 60 + 45
    assert evidence["return_limit_minutes"] == 30


def test_weekday_and_weekend_nights_are_learnt_apart() -> None:
    zone = "UTC"
    # From Monday 2026-11-02: in bed at 21:00, up at 05:00 on weekdays, 06:50 at weekends.
    first = dt.date(2026, 11, 2)
    wakes = ["06:50" if (first + dt.timedelta(days=n + 1)).weekday() >= 5 else "05:00"
             for n in range(19)]
    wakes[16] = "04:40"  # Thursday 2026-11-19: a little early, still the morning
    wakes[18] = "05:05"  # Saturday 2026-11-21: up before five past five, at the weekend
    traffic, start, end = sleep("2026-11-02", 19, zone, bedtimes=["21:00"], wakes=wakes)
    findings = opened(run_new(zone, traffic, start=start, end=end, step=5 * MINUTE))
    learnt = [f for f in findings if f.evidence["night_rule"] == "learnt"]
    assert [f.started_at for f in learnt] == [at("2026-11-21", "05:05", zone)]
    assert learnt[0].evidence["night_type"] == "weekend"
    assert learnt[0].evidence["usual_wake_local"] == "06:45"  # the last moment seen in bed
    # The warm-up's first Tuesday morning (up at 05:00 after 8 hours in bed) is the morning.
    assert [f for f in findings if f.evidence["night_rule"] == "registry"] == []


def test_learnt_nights_survive_a_restart() -> None:
    zone = "Asia/Shanghai"
    traffic, start, end = sleep("2026-11-02", 8, zone, bedtimes=EARLY_BEDTIMES,
                                wakes=EARLY_WAKES)
    middle = clock("2026-11-02", "03:30", zone, 7)  # in bed since the evening
    before = detector(zone)
    run(before, [p for p in traffic if p[0] < middle], start=start, end=middle,
        step=5 * MINUTE)
    after = detector(zone)
    after.restore(before.state())
    rest = [p for p in traffic if p[0] >= middle]
    assert opened(run(after, rest, start=middle, end=end, step=5 * MINUTE)) == []
    assert opened(run_new(zone, rest, start=middle, end=end, step=5 * MINUTE))


INSOMNIA = [25, 38, 44, 31, 40, 28, 42, 35, 33, 41]


def test_usual_sleepless_spells_are_not_reported_but_a_long_absence_is() -> None:
    zone = "UTC"
    trips = {n: ("02:10", minutes) for n, minutes in enumerate(INSOMNIA)}
    trips[len(INSOMNIA)] = ("01:40", 150)
    traffic, start, end = sleep("2026-11-02", len(INSOMNIA) + 1, zone, bedtimes=["21:30"],
                                wakes=["07:00"], trips=trips)
    findings = opened(run_new(zone, traffic, start=start, end=end, step=5 * MINUTE))
    # Warm-up: until five night trips are learnt, the registry's 30 minutes, as before.
    warm_up = clock("2026-11-02", "12:00", zone, 5)
    assert [f.at < warm_up for f in findings] == [True] * (len(findings) - 1) + [False]
    long_absence = findings[-1]
    assert long_absence.started_at == clock("2026-11-02", "01:40", zone, len(INSOMNIA) + 1)
    evidence = long_absence.evidence
    assert 40 <= evidence["usual_night_trip_minutes"] <= 44
    # The 44-minute spell raised the alert in the warm-up (limit 30): learnt all the same,
    # as every trip back in bed within the ceiling is until five are known.
    assert evidence["night_trips_learnt"] == len(INSOMNIA)
    limit = evidence["return_limit_minutes"]
    assert 44 < limit <= 60
    assert limit * MINUTE <= long_absence.at - long_absence.started_at <= (limit + 6) * MINUTE


def test_long_exits_that_raised_the_alert_are_not_learnt_as_usual_night_trips() -> None:
    """A person whose usual night trip is 10 minutes, then out of bed for 50 minutes on five
    nights: each is reported. Learning the reported exits as usual trips raised the limit to an
    hour after the second, and the next three were missed."""
    zone = "UTC"
    trips = dict.fromkeys(range(6), ("02:00", 10)) | dict.fromkeys(range(6, 11), ("02:00", 50))
    traffic, start, end = sleep("2026-11-02", 11, zone, bedtimes=["21:30"], wakes=["07:00"],
                                trips=trips)
    findings = opened(run_new(zone, traffic, start=start, end=end, step=5 * MINUTE))
    exits = [clock("2026-11-02", "02:00", zone, n + 1) for n in range(6, 11)]
    assert [f.started_at for f in findings] == exits
    for raised in findings:
        assert raised.evidence["usual_night_trip_minutes"] == 10.0
        assert raised.evidence["night_trips_learnt"] == 6
        assert raised.evidence["return_limit_minutes"] == 30
        assert raised.at - raised.started_at <= 36 * MINUTE


def test_out_of_bed_at_night_is_always_reported_after_the_ceiling() -> None:
    """Night trips that grow longer over the weeks (each a little over the limit of its night)
    become this person's usual, but never lift the limit over the ceiling."""
    zone = "UTC"
    long_trips = [38, 40, 41, 39, 42, 52, 55, 60, 66, 70, 75, 80, 85, 78, 84, 82]
    trips = {n: ("01:00", minutes) for n, minutes in enumerate(long_trips)}
    trips[len(long_trips)] = ("01:20", 240)
    traffic, start, end = sleep("2026-11-02", len(long_trips) + 1, zone, bedtimes=["21:30"],
                                wakes=["07:00"], trips=trips)
    findings = opened(run_new(zone, traffic, start=start, end=end, step=5 * MINUTE))
    last = findings[-1]
    assert last.started_at == clock("2026-11-02", "01:20", zone, len(long_trips) + 1)
    assert last.evidence["return_limit_minutes"] == 90
    assert 90 * MINUTE <= last.at - last.started_at <= 96 * MINUTE


# --- nobody home, and a second resident --------------------------------------------------------


def test_no_night_exit_while_nobody_is_home_even_across_a_data_gap() -> None:
    zone = "UTC"
    evening, morning = at("2026-11-02", "21:00", zone), at("2026-11-03", "07:00", zone)
    leaves, back = at("2026-11-03", "09:00", zone), at("2026-11-05", "10:00", zone)
    outage = at("2026-11-04", "23:00", zone)  # the home's network is down for 40 minutes
    parts = [(evening, morning, True), (morning, outage, False),
             (outage + 40 * MINUTE, back + 3 * HOUR, False)]
    traffic = spans("b1", parts)
    traffic += room("b1", evening, leaves) + room("b1", leaves, outage, home=False)
    traffic += room("b1", outage + 40 * MINUTE, back, home=False)
    traffic += room("b1", back, back + 3 * HOUR)
    assert opened(run_new(zone, traffic, start=evening, end=back + 3 * HOUR,
                      step=5 * MINUTE)) == []


def test_coming_home_late_after_days_away_is_not_a_night_exit() -> None:
    zone = "UTC"
    evening, morning = at("2026-11-02", "21:00", zone), at("2026-11-03", "07:00", zone)
    leaves = at("2026-11-03", "09:00", zone)
    back, bedtime = at("2026-11-04", "22:30", zone), at("2026-11-04", "23:20", zone)
    end = at("2026-11-05", "07:00", zone)
    # Both sensors fall quiet half an hour after everybody left (nothing to report).
    parts = [(evening, morning, True), (morning, leaves + 30 * MINUTE, False),
             (back, bedtime, False), (bedtime, end, True)]
    traffic = spans("b1", parts) + room("b1", evening, leaves)
    traffic += room("b1", leaves, leaves + 30 * MINUTE, home=False) + room("b1", back, end)
    assert opened(run_new(zone, traffic, start=evening, end=end, step=5 * MINUTE)) == []


def test_leaving_the_bed_and_the_home_at_night_is_reported() -> None:
    zone = "UTC"
    evening, left = at("2026-11-02", "21:00", zone), at("2026-11-03", "01:00", zone)
    end = left + 2 * HOUR
    traffic = spans("b1", [(evening, left, True), (left, end, False)], every=MINUTE)
    traffic += room("b1", evening, left, zone="bed") + room("b1", left, left + 3 * MINUTE,
                                                            zone="door", every=MINUTE)
    traffic += room("b1", left + 3 * MINUTE, end, home=False, every=MINUTE)
    [raised] = opened(run_new(zone, traffic, start=evening, end=end))
    assert raised.started_at == left
    assert raised.evidence["home_empty"] is True


def test_a_second_resident_up_at_night_is_not_the_residents_bed_exit() -> None:
    zone = "UTC"
    evening, morning = at("2026-11-02", "21:00", zone), at("2026-11-03", "07:00", zone)
    up, down = at("2026-11-03", "01:00", zone), at("2026-11-03", "03:00", zone)
    # The resident's bed sensor reports slowly (every 45 minutes); the spouse walks about.
    traffic = spans("b1", [(evening, morning, True)], every=45 * MINUTE)
    traffic += room("b1", evening, up, zone="bed", people=2, every=MINUTE)
    traffic += room("b1", up, down, zone="room", people=2, every=MINUTE)
    traffic += room("b1", down, morning, zone="bed", people=2, every=MINUTE)
    assert opened(run_new(zone, traffic, start=evening, end=morning)) == []


def test_the_resident_leaving_the_bed_is_reported_beside_a_second_resident() -> None:
    zone = "UTC"
    evening, morning = at("2026-11-02", "21:00", zone), at("2026-11-03", "07:00", zone)
    left, back = at("2026-11-03", "02:00", zone), at("2026-11-03", "03:00", zone)
    traffic = spans("b1", [(evening, left, True), (left, back, False), (back, morning, True)],
                    every=MINUTE)
    traffic += room("b1", evening, morning, zone="bed", people=2, every=MINUTE)
    [raised] = opened(run_new(zone, traffic, start=evening, end=morning))
    assert raised.started_at == left


def test_a_night_whose_start_was_not_seen_teaches_no_bedtime() -> None:
    """A gateway installed (or back from a data gap) at 02:00 first sees the person in bed:
    that stretch says nothing of when they went to bed. Learning it as a 02:00 bedtime would
    make the next evening's 23:00 exit 'before their night' and miss it."""
    zone = "UTC"
    traffic, _, end = sleep("2026-11-02", 3, zone, bedtimes=["21:00"], wakes=["07:00"],
                            trips={1: ("23:00", 60)})
    first_seen = clock("2026-11-02", "02:00", zone, 1)
    late_start = [p for p in traffic if p[0] >= first_seen]
    findings = opened(run_new(zone, late_start, start=first_seen, end=end,
                          step=5 * MINUTE))
    left = clock("2026-11-02", "23:00", zone, 1)
    assert [f.started_at for f in findings] == [left]


# --- the warm-up's safe default for a person up and about (issue #12) ---------------------------


def up_at_night(moving_until: int, *, out_for: int, zone: str = "UTC"
                ) -> tuple[list[tuple[int, Message]], int, int]:
    """The first night of a new bed: in bed at 21:00, out of bed at 02:00 for ``out_for``
    minutes, the infrared seeing one person in the room moving until ``moving_until`` minutes
    after the exit, still after it."""
    evening, left = at("2026-11-02", "21:00", zone), at("2026-11-03", "02:00", zone)
    back, morning = left + out_for * MINUTE, left + 3 * HOUR
    traffic = night("b1", evening, left, back, morning)
    traffic += [(t + 200, infrared("b1", t, motion=2 if t < left + moving_until * MINUTE
                                   else 0, zone="room"))
                for t in range(left + MINUTE, back, MINUTE)]
    return sorted(traffic, key=lambda p: p[0]), left, morning


def test_an_insomniacs_first_sleepless_spell_up_and_about_is_not_reported() -> None:
    """No night trip known yet: up for 45 minutes, moving about at home, then back to bed is
    a sleepless spell (the warm-up gives a person up and about an hour), not a night exit."""
    traffic, left, morning = up_at_night(45, out_for=45)
    assert opened(run_new("UTC", traffic, start=left - HOUR, end=morning)) == []


def test_in_the_warm_up_a_person_still_out_of_bed_is_reported_at_the_registrys_limit() -> None:
    """Moving for 15 minutes, then still (on the floor): reported at 30 minutes as before the
    warm-up default; up and about for longer than an hour: reported at the hour, and the
    evidence says which limit was used and why."""
    traffic, left, morning = up_at_night(15, out_for=120)
    [raised] = opened(run_new("UTC", traffic, start=left - HOUR, end=morning))
    assert 30 * MINUTE <= raised.at - left <= 32 * MINUTE
    assert raised.evidence["return_limit_rule"] == "registry"
    traffic, left, morning = up_at_night(120, out_for=120)
    [raised] = opened(run_new("UTC", traffic, start=left - HOUR, end=morning))
    assert 60 * MINUTE <= raised.at - left <= 62 * MINUTE
    assert raised.evidence["return_limit_minutes"] == 60
    assert raised.evidence["return_limit_rule"] == "warm-up, up and about"


def test_a_person_with_sleepless_spells_up_and_about_longer_than_usual_is_not_reported() -> None:
    """After a week of 25-32 minute spells (limit 38), a 50-minute spell moving about at home
    is still a sleepless spell (up to an hour); the same spell with nobody seen moving (the bed
    sensor alone) is reported at the learnt limit; a person whose trips take 10 minutes is
    reported at 30 minutes, up and about or not."""
    zone = "UTC"
    spells = [25, 30, 28, 32, 30, 27, 31]
    trips = {n: ("02:10", minutes) for n, minutes in enumerate(spells)}
    trips[len(spells)] = ("02:00", 50)
    traffic, start, end = sleep("2026-11-02", len(spells) + 1, zone, bedtimes=["21:30"],
                                wakes=["07:00"], trips=trips)
    left = clock("2026-11-02", "02:00", zone, len(spells) + 1)
    about = room("b1", left + MINUTE, left + 50 * MINUTE)
    findings = opened(run_new(zone, sorted(traffic + about, key=lambda p: p[0]),
                          start=start, end=end, step=5 * MINUTE))
    assert [f for f in findings if f.started_at == left] == []
    [raised] = [f for f in opened(run_new(zone, traffic, start=start, end=end,
                                      step=5 * MINUTE)) if f.started_at == left]
    assert raised.evidence["return_limit_rule"] == "usual night trips"
    assert 35 <= raised.evidence["return_limit_minutes"] <= 40
    short = dict.fromkeys(range(7), ("02:10", 10)) | {7: ("02:00", 50)}
    traffic, start, end = sleep("2026-11-02", 8, zone, bedtimes=["21:30"], wakes=["07:00"],
                                trips=short)
    [raised] = opened(run_new(zone, sorted(traffic + about, key=lambda p: p[0]),
                          start=start, end=end, step=5 * MINUTE))
    assert raised.started_at == left
    assert raised.evidence["return_limit_minutes"] == 30
    assert raised.at - left <= 36 * MINUTE
