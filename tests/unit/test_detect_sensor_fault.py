from __future__ import annotations

import random

from devices import Message, Registry
from devices.devicetime import ClockWindow
from gateway.detect import Fleet, SensorFaultDetector
from tests.unit.test_detect_support import (
    HOUR,
    MINUTE,
    at,
    audio,
    cleared,
    infrared,
    message,
    opened,
    run,
    status,
    vitals,
)

ZONE = "UTC"
T0 = at("2026-11-02", "08:00", ZONE)


def detector() -> SensorFaultDetector:
    return SensorFaultDetector(Registry(), timezone=ZONE)


def live_vitals(start: int, end: int, *, flat: tuple[float, float] | None = None,
                heart: float | None = None) -> list[tuple[int, Message]]:
    rng = random.Random(start)
    out = []
    for t in range(start, end, MINUTE):
        hr, br = flat or (round(64 + rng.gauss(0, 1.5), 1), round(14 + rng.gauss(0, 0.6), 1))
        out.append((t + 200, vitals("b1", t, heart=heart if heart is not None else hr,
                                    breathing=br, samples=6)))
    return out


def test_flatlined_vital_signs_are_a_stuck_sensor_until_they_move_again() -> None:
    traffic = live_vitals(T0, T0 + HOUR) + live_vitals(T0 + HOUR, T0 + 2 * HOUR,
                                                       flat=(66.2, 15.1))
    traffic += live_vitals(T0 + 2 * HOUR, T0 + 3 * HOUR)
    findings = run(detector(), traffic, start=T0, end=T0 + 3 * HOUR)
    [raised] = opened(findings)
    assert raised.episode == "fs-b1"
    assert raised.evidence["faults"] == ["stuck"]
    assert raised.evidence["stuck"] == {"heart_rate": 66.2, "breathing_rate": 15.1}
    assert raised.at - (T0 + HOUR) <= 13 * MINUTE
    assert len(cleared(findings)) == 1


def test_repeated_movement_counts_and_zero_movement_are_not_stuck() -> None:
    still = [(t + 100, infrared("b1", t, motion=0)) for t in range(T0, T0 + 3 * HOUR, MINUTE)]
    ones = [(t + 100, infrared("b1", t, motion=1))
            for t in range(T0 + 3 * HOUR, T0 + 3 * HOUR + 12 * MINUTE, MINUTE)]
    assert run(detector(), still + ones, start=T0, end=T0 + 4 * HOUR) == []
    stuck = [(t + 100, infrared("b1", t, motion=9)) for t in range(T0, T0 + HOUR, MINUTE)]
    [raised] = opened(run(detector(), stuck, start=T0, end=T0 + HOUR))
    assert raised.evidence["stuck"] == {"motion": 9.0}


def test_impossible_readings_are_reported_but_not_a_single_one() -> None:
    one = [*live_vitals(T0, T0 + HOUR), (T0 + HOUR, audio("b1", T0 + HOUR, 185.0))]
    assert opened(run(detector(), one, start=T0, end=T0 + 2 * HOUR)) == []
    many = live_vitals(T0, T0 + HOUR, heart=400.0)
    [raised] = opened(run(detector(), many, start=T0, end=T0 + HOUR))
    assert raised.evidence["faults"] == ["impossible"]
    assert raised.evidence["impossible_value"] == 400.0
    negative = [(T0 + m * MINUTE, audio("b1", T0 + m * MINUTE, -40.0)) for m in range(5)]
    assert len(opened(run(detector(), negative, start=T0, end=T0 + HOUR))) == 1


def test_a_consistently_skewed_clock_is_a_fault_a_single_bad_timestamp_is_not() -> None:
    def statuses(offset: int, count: int, start: int) -> list[tuple[int, Message]]:
        return [(start + k * 5 * MINUTE, status("b1", "infrared", start + k * 5 * MINUTE,
                                                ts=start + k * 5 * MINUTE + offset))
                for k in range(count)]
    single = statuses(0, 3, T0) + statuses(-400 * 24 * HOUR, 1, T0 + 15 * MINUTE)
    single += statuses(0, 3, T0 + 20 * MINUTE)
    assert run(detector(), single, start=T0, end=T0 + HOUR) == []
    skewed = statuses(0, 3, T0) + statuses(5 * HOUR, 4, T0 + 15 * MINUTE)
    skewed += statuses(0, 2, T0 + 40 * MINUTE)
    findings = run(detector(), skewed, start=T0, end=T0 + HOUR)
    [raised] = opened(findings)
    assert raised.evidence["faults"] == ["clock_skew"]
    assert raised.evidence["clock_offset_s"] == 5 * 3600.0
    assert raised.started_at == T0 + 15 * MINUTE
    assert len(cleared(findings)) == 1


def test_last_will_timestamps_are_not_clock_skew() -> None:
    wills = [(T0 + k * HOUR, status("b1", "audio", T0 + k * HOUR, state="offline", seq=0,
                                    ts=T0 - 40 * HOUR)) for k in range(3)]
    assert run(detector(), wills, start=T0, end=T0 + 4 * HOUR) == []


def test_a_backlog_of_old_messages_uploaded_at_once_is_not_clock_skew() -> None:
    # A home network held three hours of readings; the device sends them within seconds.
    back = T0 + 3 * HOUR
    backlog = [(back + k * 100, infrared("b1", T0 + k * 5 * MINUTE, motion=k % 4))
               for k in range(36)]
    backlog += [(back + MINUTE * (k + 1),
                 infrared("b1", back + MINUTE * (k + 1), motion=k % 4)) for k in range(30)]
    assert run(detector(), backlog, start=back, end=back + 40 * MINUTE, step=MINUTE) == []


def _wrong_unit_clock(unit: str) -> list[tuple[int, Message]]:
    """Two hours of audio every 30 s from a device whose clock counts ``unit`` instead of
    milliseconds, then an hour with the clock right again."""
    out = []
    for k in range(360):
        received = T0 + k * 30_000
        ts = (received // 1000 if unit == "s" else received * 1000) if k < 240 else received
        out.append((received, audio("b1", received - 100, 40.0 + k % 7, ts=ts)))
    return out


def test_a_clock_in_seconds_or_microseconds_is_one_fault_until_it_is_right_again() -> None:
    for unit in ("s", "us"):
        findings = run(detector(), _wrong_unit_clock(unit), start=T0, end=T0 + 3 * HOUR,
                       step=MINUTE)
        raised = opened(findings)
        assert len(raised) == 1, (unit, [f.summary for f in findings])
        assert raised[0].evidence["faults"] == ["clock_skew"]
        [back] = cleared(findings)
        assert T0 + 2 * HOUR <= back.at <= T0 + 2 * HOUR + 2 * MINUTE, unit


def test_a_time_in_the_wrong_unit_is_a_fault_from_its_first_message() -> None:
    got = T0 + 30_000
    # The fall sensor's batch: message time right, sample times in seconds.
    batch = message("b1", "fall", "fs-t", "telemetry", {"ts": got - 200, "samples": [
        {"t": got // 1000 - 20 + 10 * i, "heart_rate": 66 + i} for i in range(3)]})
    traffic = [(got, audio("b1", got, 41.0, ts=got // 1000, device="au-s")),
               (got, audio("b1", got, 41.0, ts=got * 1000, device="au-us")),
               (got, batch), (got, audio("b1", got, 41.0, ts=got - 300, device="au-ms"))]
    findings = run(detector(), traffic, start=T0, end=T0 + 2 * MINUTE, step=MINUTE)
    raised = {f.evidence["device"]: f.evidence for f in opened(findings)}
    assert sorted(raised) == ["au-s", "au-us", "fs-t"]
    assert [raised[d]["clock_unit"] for d in ("au-s", "au-us", "fs-t")] == ["s", "us", "s"]
    assert cleared(findings) == []


Y2000_MS = 946_684_805_000


def _button(ts: int) -> Message:
    return message("b1", "button", "btn-b1", "event", {"ts": ts, "event": "press"})


def test_a_lone_press_with_a_year_2000_clock_is_one_fault() -> None:
    # The button's only message all week: no run of 3 minutes can ever show.
    got = T0 + 30_000
    findings = run(detector(), [(got, _button(Y2000_MS))], start=T0, end=T0 + 2 * HOUR,
                   step=MINUTE)
    [raised] = opened(findings)
    assert raised.episode == "btn-b1"
    assert raised.evidence["faults"] == ["clock_skew"]
    assert raised.evidence["clock_offset_s"] == (Y2000_MS - got) / 1000
    assert "clock_unit" not in raised.evidence
    assert raised.started_at == got
    assert cleared(findings) == []


def test_a_year_2000_clock_is_one_fault_until_a_message_with_a_sane_time() -> None:
    presses = [(T0 + k * 3 * HOUR, _button(Y2000_MS + k * HOUR)) for k in range(2)]
    fixed = T0 + 5 * HOUR
    traffic = [*presses, (fixed, _button(fixed - 200))]
    findings = run(detector(), traffic, start=T0, end=T0 + 6 * HOUR, step=MINUTE)
    [raised] = opened(findings)
    assert raised.at <= T0 + 10 * MINUTE  # within its heartbeat, not at its next press
    [back] = cleared(findings)
    assert fixed <= back.at <= fixed + MINUTE


def test_a_time_beyond_a_shorter_clock_window_is_a_fault_from_its_first_message() -> None:
    # The detector judges by the gateway's window (clock_window_s), not a fixed one.
    got = T0 + 30_000
    traffic = [(got, _button(got - 2 * HOUR))]
    assert run(detector(), traffic, start=T0, end=T0 + HOUR, step=MINUTE) == []
    narrow = SensorFaultDetector(fleet=Fleet(Registry(), timezone=ZONE,
                                             clock_window=ClockWindow(behind_ms=HOUR)))
    assert len(opened(run(narrow, traffic, start=T0, end=T0 + HOUR, step=MINUTE))) == 1


def test_a_backlog_uploaded_within_the_clock_window_is_not_a_fault() -> None:
    # Six days of held-back presses and readings, sent within a minute of reconnecting.
    back = T0 + 6 * 24 * HOUR
    backlog = [(back + k * 100, _button(T0 + k * 6 * HOUR)) for k in range(24)]
    backlog += [(back + k * 100 + 50, audio("b1", T0 + k * 6 * HOUR, 40.0 + k % 5))
                for k in range(24)]
    backlog += [(back + MINUTE * (k + 1), audio("b1", back + MINUTE * (k + 1), 41.0 + k % 5))
                for k in range(30)]
    assert run(detector(), backlog, start=back, end=back + 40 * MINUTE, step=MINUTE) == []


def test_a_good_time_after_a_wrong_unit_in_the_same_batch_ends_the_clock_fault() -> None:
    """A fresh tester (2026-12-03): a status dated in seconds, then one dated right, handed
    over in one batch (as the detector journal hands a ``kill -9``'s messages back) left the
    fault raised: the good one was skipped. The clock fault that had cleared before the kill
    came back after the restart and stayed until the device's next message."""
    got = T0 + 30_000
    bad = status("b1", "fall", got, ts=got // 1000, device="fs-1")
    good = status("b1", "fall", got + 4_000, device="fs-1")
    together = detector()
    together.update([bad, good], [got, got + 4_000])
    assert together.evaluate(got + 5_000) == []
    # Apart, in two rounds: raised, then cleared by the good one.
    apart = detector()
    apart.update([bad], [got])
    [raised] = apart.evaluate(got + 1_000)
    assert (raised.active, raised.evidence["faults"]) == (True, ["clock_skew"])
    apart.update([good], [got + 4_000])
    [back] = apart.evaluate(got + 5 * MINUTE)
    assert not back.active
