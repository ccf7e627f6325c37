from __future__ import annotations

import pytest

from devices import Message, Registry
from gateway.detect import NightBedExitDetector
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
    findings = run(detector(zone), night("b1", evening, left, back, back + HOUR),
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
    assert run(detector(zone), traffic, start=evening, end=left + 2 * HOUR) == []


def test_up_in_the_evening_and_morning_is_not_a_night_exit() -> None:
    zone = "Asia/Shanghai"
    evening = at("2026-11-02", "19:00", zone)
    left = at("2026-11-02", "21:30", zone)  # before night_start 22:00, out until 23:30
    morning_up = at("2026-11-03", "06:10", zone)
    traffic = night("b1", evening, left, left + 2 * HOUR, morning_up)
    traffic += bed_sensor("b1", morning_up, morning_up + 3 * HOUR, in_bed=False)
    assert run(detector(zone), traffic, start=evening, end=morning_up + 3 * HOUR) == []


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
    [raised] = opened(run(detector(zone), traffic, start=evening, end=left + HOUR))
    assert raised.started_at == left


def test_a_stuck_infrared_zone_does_not_override_the_bed_sensor() -> None:
    zone = "UTC"
    evening = at("2026-11-02", "21:00", zone)
    traffic = bed_sensor("b1", evening, evening + 9 * HOUR, in_bed=True)
    traffic += [(t + 200, infrared("b1", t, zone="room", motion=7))
                for t in range(evening, evening + 9 * HOUR, MINUTE)]
    assert run(detector(zone), traffic, start=evening, end=evening + 9 * HOUR) == []


def test_no_data_for_hours_forgets_where_the_person_was() -> None:
    zone = "UTC"
    evening = at("2026-11-02", "21:00", zone)
    left = at("2026-11-03", "01:00", zone)
    # Out of bed at 01:00, both sensors silent until 04:00, out of bed for 20 min more.
    traffic = bed_sensor("b1", evening, left, in_bed=True)
    traffic += bed_sensor("b1", left, left + 5 * MINUTE, in_bed=False)
    traffic += bed_sensor("b1", left + 3 * HOUR, left + 3 * HOUR + 20 * MINUTE, in_bed=False)
    traffic += bed_sensor("b1", left + 3 * HOUR + 20 * MINUTE, left + 4 * HOUR, in_bed=True)
    assert opened(run(detector(zone), traffic, start=evening, end=left + 4 * HOUR)) == []


def test_batches_out_of_order_give_the_same_alert() -> None:
    zone = "UTC"
    evening = at("2026-11-02", "21:00", zone)
    left, back = at("2026-11-03", "01:30", zone), at("2026-11-03", "02:45", zone)
    traffic = night("b1", evening, left, back, back + HOUR)
    shuffled = [(r + (3 * MINUTE if i % 3 == 0 else 0), m) for i, (r, m) in enumerate(traffic)]
    a = run(detector(zone), traffic, start=evening, end=back + HOUR)
    b = run(detector(zone), shuffled, start=evening, end=back + HOUR)
    assert [f.started_at for f in opened(a)] == [f.started_at for f in opened(b)] == [left]
    assert len(cleared(b)) == 1
