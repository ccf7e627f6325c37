from __future__ import annotations

import random

from devices import Message, Registry
from gateway.detect import VitalSignsDetector
from tests.unit.test_detect_support import (
    HOUR,
    MINUTE,
    at,
    cleared,
    message,
    opened,
    run,
    vitals,
)

ZONE = "UTC"
T0 = at("2026-11-02", "00:00", ZONE)


def detector(registry: Registry | None = None) -> VitalSignsDetector:
    return VitalSignsDetector(registry or Registry(), timezone=ZONE)


def in_bed(start: int, end: int, *, heart: float = 64.0, breathing: float = 14.5,
           seed: int = 1, impossible: bool = False) -> list[tuple[int, Message]]:
    rng = random.Random(seed)
    out = []
    for t in range(start, end, MINUTE):
        hr = round(heart + rng.gauss(0, 1.5), 1)
        br = round(breathing + rng.gauss(0, 0.6), 1)
        out.append((t + 300, vitals("b1", t, heart=300.0 if impossible else hr, breathing=br,
                                    samples=6)))
    return out


def test_sustained_high_heart_rate_is_reported_with_evidence_and_clears() -> None:
    start = T0 + 3 * HOUR
    traffic = in_bed(T0, start) + in_bed(start, start + 20 * MINUTE, heart=148.0)
    traffic += in_bed(start + 20 * MINUTE, start + HOUR)
    findings = run(detector(), traffic, start=T0, end=start + HOUR)
    [raised] = opened(findings)
    assert raised.started_at is not None
    assert start - MINUTE <= raised.started_at <= start + MINUTE
    assert raised.at - start <= 7 * MINUTE
    assert raised.evidence["heart_rate"] > 140
    assert raised.evidence["heart_rate_normal"][1] <= 130
    [clear] = cleared(findings)
    assert start + 20 * MINUTE <= clear.at <= start + 28 * MINUTE


def test_far_outside_the_persons_own_range_within_absolute_limits() -> None:
    start = T0 + 3 * HOUR
    traffic = in_bed(T0, start, heart=66.0) + in_bed(start, start + 20 * MINUTE, heart=45.0)
    [raised] = opened(run(detector(), traffic, start=T0, end=start + 30 * MINUTE))
    assert raised.evidence["heart_rate_normal"][0] > 45


def test_slow_breathing_is_reported() -> None:
    start = T0 + 3 * HOUR
    traffic = in_bed(T0, start) + in_bed(start, start + 20 * MINUTE, breathing=6.0)
    [raised] = opened(run(detector(), traffic, start=T0, end=start + 30 * MINUTE))
    assert "breathing_rate" in raised.evidence


def test_a_single_spike_and_impossible_readings_are_not_vital_signs() -> None:
    start = T0 + 3 * HOUR
    traffic = in_bed(T0, start) + in_bed(start, start + 2 * MINUTE, heart=150.0)
    traffic += in_bed(start + 2 * MINUTE, start + HOUR)
    traffic += in_bed(start + HOUR, start + 2 * HOUR, impossible=True)
    assert opened(run(detector(), traffic, start=T0, end=start + 2 * HOUR)) == []


def test_limits_come_from_the_beds_settings() -> None:
    registry = Registry.from_mapping({"sites": {"s1": {"beds": {"b1": {"settings": {
        "heart_rate_max": 90}}}}}})
    traffic = in_bed(T0, T0 + 20 * MINUTE, heart=97.0)
    assert len(opened(run(detector(registry), traffic, start=T0, end=T0 + 30 * MINUTE))) == 1
    assert opened(run(detector(), traffic, start=T0, end=T0 + 30 * MINUTE)) == []


def test_leaving_bed_clears_and_a_long_gap_is_harmless() -> None:
    start = T0 + 3 * HOUR
    traffic = in_bed(T0, start) + in_bed(start, start + 15 * MINUTE, heart=150.0)
    traffic += [(t + 300, vitals("b1", t, in_bed=False)) for t in
                range(start + 15 * MINUTE, start + HOUR, MINUTE)]
    traffic += in_bed(start + 10 * HOUR, start + 11 * HOUR)
    findings = run(detector(), traffic, start=T0, end=start + 11 * HOUR)
    assert [f.active for f in findings] == [True, False]
    assert cleared(findings)[0].at <= start + 35 * MINUTE


def test_out_of_order_batches_give_the_same_alert() -> None:
    start = T0 + 3 * HOUR
    traffic = in_bed(T0, start) + in_bed(start, start + 20 * MINUTE, heart=150.0)
    late = [(r + (3 * MINUTE if i % 2 else 0), m) for i, (r, m) in enumerate(traffic)]
    a = opened(run(detector(), traffic, start=T0, end=start + HOUR))
    b = opened(run(detector(), late, start=T0, end=start + HOUR))
    assert len(a) == len(b) == 1
    assert abs(a[0].started_at - b[0].started_at) <= 2 * MINUTE  # type: ignore[operator]


def every_period(start: int, end: int, period: int, *, heart: float,
                 seed: int = 2) -> list[tuple[int, Message]]:
    """One single-sample message per ``period``: a sensor reporting at another rate."""
    rng = random.Random(seed)
    return [(t + 300, vitals("b1", t, heart=round(heart + rng.gauss(0, 1.5), 1),
                             breathing=round(14.5 + rng.gauss(0, 0.6), 1)))
            for t in range(start, end, period)]


def test_a_sensor_reporting_once_a_minute_is_judged_on_its_last_samples() -> None:
    start = T0 + 3 * HOUR
    traffic = every_period(T0, start, MINUTE, heart=64.0)
    traffic += every_period(start, start + 30 * MINUTE, MINUTE, heart=148.0)
    traffic += every_period(start + 30 * MINUTE, start + 2 * HOUR, MINUTE, heart=64.0)
    findings = run(detector(), traffic, start=T0, end=start + 2 * HOUR)
    [raised] = opened(findings)
    assert raised.at - start <= 12 * MINUTE
    [clear] = cleared(findings)
    assert clear.at - (start + 30 * MINUTE) <= 12 * MINUTE
    # ... and a few high readings are still a spike, not a sustained condition.
    spike = every_period(T0, start, MINUTE, heart=64.0)
    spike += every_period(start, start + 4 * MINUTE, MINUTE, heart=148.0)
    spike += every_period(start + 4 * MINUTE, start + HOUR, MINUTE, heart=64.0)
    assert opened(run(detector(), spike, start=T0, end=start + HOUR)) == []


def test_a_sensor_reporting_every_five_minutes_still_raises_a_long_condition() -> None:
    start = T0 + 3 * HOUR
    traffic = every_period(T0, start, 5 * MINUTE, heart=64.0)
    traffic += every_period(start, start + HOUR, 5 * MINUTE, heart=148.0)
    [raised] = opened(run(detector(), traffic, start=T0, end=start + HOUR))
    assert raised.at - start <= 25 * MINUTE


def test_a_sensor_reporting_every_second_needs_minutes_not_seconds() -> None:
    start = T0 + 3 * HOUR
    fast = 1_000
    traffic = every_period(T0 + 2 * HOUR, start, fast, heart=64.0)
    traffic += every_period(start, start + 90_000, fast, heart=150.0)  # 90 s of agitation
    traffic += every_period(start + 90_000, start + 20 * MINUTE, fast, heart=64.0)
    assert opened(run(detector(), traffic, start=T0 + 2 * HOUR, end=start + 20 * MINUTE)) == []
    sustained = every_period(T0 + 2 * HOUR, start, fast, heart=64.0)
    sustained += every_period(start, start + 15 * MINUTE, fast, heart=150.0)
    [raised] = opened(run(detector(), sustained, start=T0 + 2 * HOUR,
                          end=start + 15 * MINUTE))
    assert 3 * MINUTE <= raised.at - start <= 7 * MINUTE


def test_a_batch_dated_into_the_next_hour_hides_no_later_real_samples() -> None:
    """One batch whose samples run 50-59 minutes ahead of its receipt (a fresh verifier's
    hostile device, within a batch's span of its own ``ts``) must not hold the bed's window
    there: the real fast heart rate after it is still found, and nothing is placed after its
    receipt."""
    start = T0 + 3 * HOUR
    ahead = [{"t": start + 50 * MINUTE + i * MINUTE, "in_bed": True, "heart_rate": 70.0,
              "breathing_rate": 14.0} for i in range(10)]
    odd = message("b1", "fall", "fs-b1", "telemetry", {"ts": start, "samples": ahead})
    traffic = [*in_bed(T0, start), (start + 300, odd)]
    traffic += in_bed(start + MINUTE, start + 20 * MINUTE, heart=150.0)
    [raised] = opened(run(detector(), traffic, start=T0, end=start + 25 * MINUTE))
    assert raised.at - start <= 8 * MINUTE
    assert raised.started_at is not None
    assert raised.started_at <= raised.at
    assert raised.evidence["heart_rate"] > 140
