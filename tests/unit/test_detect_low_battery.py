from __future__ import annotations

from devices import Registry
from gateway.detect import LowBatteryDetector
from tests.unit.test_detect_support import HOUR, MINUTE, at, cleared, opened, run, status

ZONE = "UTC"
T0 = at("2026-11-02", "08:00", ZONE)


def levels(*pairs: tuple[int, float | None]) -> list[tuple[int, object]]:
    return [(T0 + m * MINUTE, status("b1", "fall", T0 + m * MINUTE, battery=level))
            for m, level in pairs]


def test_low_battery_is_reported_and_clears_only_well_above_the_threshold() -> None:
    traffic = levels((0, 40.0), (5, 14.6), (10, 14.0), (15, 16.0), (20, 19.0), (25, 100.0))
    findings = run(LowBatteryDetector(Registry(), timezone=ZONE), traffic,  # type: ignore[arg-type]
                   start=T0, end=T0 + HOUR)
    [raised] = opened(findings)
    assert raised.started_at == T0 + 5 * MINUTE
    assert raised.episode == "fs-b1"
    assert raised.evidence["battery_pct"] == 14.6
    [clear] = cleared(findings)
    assert clear.at >= T0 + 25 * MINUTE


def test_statuses_without_battery_change_nothing_and_settings_apply() -> None:
    registry = Registry.from_mapping({"sites": {"s1": {"beds": {"b1": {"settings": {
        "low_battery_pct": 30}}}}}})
    traffic = levels((0, 25.0), (5, None), (10, None))
    assert len(opened(run(LowBatteryDetector(registry, timezone=ZONE), traffic,  # type: ignore[arg-type]
                          start=T0, end=T0 + HOUR))) == 1
    assert run(LowBatteryDetector(Registry(), timezone=ZONE), traffic,  # type: ignore[arg-type]
               start=T0, end=T0 + HOUR) == []


def test_a_status_sent_long_ago_and_delivered_late_does_not_clear_the_alert() -> None:
    """Issue #17 (device time bounded in every view): a status sent two days ago (90 %), held by
    the home's network and delivered after a newer one (7 %), is older than what counts: the
    alert stays open at 7 %, as the bed page shows (``alerts.livestate``'s order)."""
    day = 24 * HOUR
    traffic = [(T0, status("b1", "fall", T0, battery=7.0)),
               (T0 + 5 * MINUTE, status("b1", "fall", T0 + 5 * MINUTE, ts=T0 - 2 * day,
                                        battery=90.0))]
    findings = run(LowBatteryDetector(Registry(), timezone=ZONE), traffic,  # type: ignore[arg-type]
                   start=T0, end=T0 + HOUR)
    [raised] = opened(findings)
    assert raised.evidence["battery_pct"] == 7.0
    assert cleared(findings) == []


def test_a_status_dated_far_ahead_counts_when_it_arrives_and_gives_way_to_the_next() -> None:
    """A clock outside the window (2099) orders by receipt: its 5 % counts when it arrives and
    the device's next real status (90 %) replaces it, whatever its date says."""
    far = at("2099-01-01", "00:00", ZONE)
    traffic = [(T0, status("b1", "fall", T0, ts=far, battery=5.0)),
               (T0 + 10 * MINUTE, status("b1", "fall", T0 + 10 * MINUTE, battery=90.0))]
    findings = run(LowBatteryDetector(Registry(), timezone=ZONE), traffic,  # type: ignore[arg-type]
                   start=T0, end=T0 + HOUR)
    [raised] = opened(findings)
    assert raised.evidence["battery_pct"] == 5.0
    [clear] = cleared(findings)
    assert clear.evidence["battery_pct"] == 90.0
