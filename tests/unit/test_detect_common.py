"""The checks every detector passes (river's ``checks/common.py``, applied to our detectors).

Input: a day and a half of simulated traffic for three beds, with incidents of every type and
faults (duplicates, reordering, clock skew, bursts), decoded as the pipeline would.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence

import pytest

from alerts.model import Finding
from devices import Codec, Message, Registry, Rejected
from gateway.detect import DETECTORS, Detector, Fleet, build_detectors
from gateway.detect._base import DetectorBase
from simulators.config import SimConfig
from simulators.stream import offline
from tests.unit.test_detect_support import (
    MINUTE,
    at,
    audio,
    badge,
    infrared,
    run,
    status,
    vitals,
)

ZONE = "Asia/Shanghai"
STEP = 5 * MINUTE

Traffic = list[tuple[int, Message]]


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    sim = offline(SimConfig(beds=3, seed=4, faults=True, incidents_per_bed_day=5.0),
                  start=dt.date(2026, 11, 2), days=1.5)
    codec = Codec()
    decoded: Traffic = []
    for emission in sim.messages():
        message = codec.decode(emission.topic, emission.payload)
        if not isinstance(message, Rejected):
            decoded.append((emission.t, message))
    return decoded


def span(traffic: Traffic) -> tuple[int, int]:
    return traffic[0][0] // STEP * STEP, traffic[-1][0] + STEP


def fresh(cls: type[DetectorBase]) -> DetectorBase:
    return cls(Registry(), timezone=ZONE)


detectors = pytest.mark.parametrize("cls", DETECTORS, ids=[c.name for c in DETECTORS])


@detectors
def test_detector_has_the_protocol_and_finds_its_incidents(cls: type[DetectorBase],
                                                          traffic: Traffic) -> None:
    detector = fresh(cls)
    assert isinstance(detector, Detector)
    findings = run(detector, traffic, start=span(traffic)[0], end=span(traffic)[1], step=STEP)
    assert any(f.active for f in findings), "the traffic holds incidents of every type"
    assert {f.type for f in findings} == {cls.alert_type}


@detectors
def test_findings_are_edge_triggered_and_well_formed(cls: type[DetectorBase],
                                                     traffic: Traffic) -> None:
    findings = run(fresh(cls), traffic, start=span(traffic)[0], end=span(traffic)[1], step=STEP)
    state: dict[tuple[str, str, str], bool] = {}
    severity: dict[tuple[str, str, str], int] = {}
    for f in findings:
        key = (f.site, f.bed, f.episode)
        # A repeated active finding is allowed only to raise the severity (device_offline's
        # low note of a replacement under way, raised when none came).
        raises = f.active and state.get(key, False) and f.severity.rank < severity[key]
        assert raises or state.get(key, False) != f.active, f"repeated {f.active} for {key}"
        state[key] = f.active
        severity[key] = f.severity.rank
        assert f.started_at is not None
        assert f.started_at <= f.at
        assert f.summary
        assert all(isinstance(k, str) for k in f.evidence)


@detectors
def test_same_input_gives_the_same_findings(cls: type[DetectorBase], traffic: Traffic) -> None:
    start, end = span(traffic)
    first = run(fresh(cls), traffic, start=start, end=end, step=STEP)
    second = run(fresh(cls), traffic, start=start, end=end, step=STEP)
    assert first == second


@detectors
def test_input_is_not_mutated(cls: type[DetectorBase], traffic: Traffic) -> None:
    detector = fresh(cls)
    messages = [m for _, m in traffic[:5000]]
    received = [t for t, _ in traffic[:5000]]
    before = (copy.copy(messages), copy.copy(received))
    detector.update(messages, received)
    detector.evaluate(received[-1])
    detector.update(tuple(messages), tuple(received))
    detector.evaluate(received[-1] + 2 * MINUTE)
    assert (messages, received) == before


@detectors
def test_state_survives_save_and_restore(cls: type[DetectorBase], traffic: Traffic) -> None:
    start, end = span(traffic)
    middle = start + (end - start) // 2 // STEP * STEP
    whole = run(fresh(cls), traffic, start=start, end=end, step=STEP)
    before = fresh(cls)
    first_half = run(before, [p for p in traffic if p[0] < middle], start=start,
                     end=middle - STEP, step=STEP)
    blob = before.state()
    # A restarted gateway numbers beds in another order: state is restored by key.
    fleet = Fleet(Registry(), timezone=ZONE)
    for n in range(5):
        fleet.bed_index("elsewhere", f"bed-{n}")
    after = cls(fleet=fleet)
    after.restore(blob)
    second_half = run(after, [p for p in traffic if p[0] >= middle - STEP], start=middle,
                      end=end, step=STEP)
    assert first_half + second_half == whole
    assert after.state() != b""


@detectors
def test_state_of_one_detector_is_refused_by_another(cls: type[DetectorBase]) -> None:
    other = next(c for c in DETECTORS if c is not cls)
    with pytest.raises(ValueError):
        fresh(cls).restore(fresh(other).state())


@detectors
def test_missing_optional_fields_are_handled(cls: type[DetectorBase]) -> None:
    t = at("2026-11-02", "03:00", ZONE)
    sparse: Sequence[Message] = [
        infrared("b1", t, motion=None, people=None, zone=None),
        infrared("b1", t + 1000, presence=None, people=None, zone=None, motion=2),
        vitals("b1", t, in_bed=False),
        vitals("b1", t + 1000, in_bed=None, heart=61.0),
        audio("b1", t, None, voice=True),
        audio("b1", t + 1000, 41.0, voice=None),
        status("b1", "fall", t),
        status("b1", "infrared", t, state="offline", seq=0, ts=t - 86_400_000),
        badge("b1", t, "check_in", "v1"),
        badge("b1", t + 60_000, "check_out", "v1"),
    ]
    detector = fresh(cls)
    detector.update(sparse, [t + 2000] * len(sparse))
    findings = detector.evaluate(t + 3 * MINUTE) + detector.evaluate(t + 60 * MINUTE)
    assert all(f.bed == "b1" for f in findings)


@detectors
def test_unknown_beds_and_devices_appearing_mid_stream(cls: type[DetectorBase],
                                                      traffic: Traffic) -> None:
    detector = fresh(cls)
    start, end = span(traffic)
    middle = start + (end - start) // 2
    run(detector, [p for p in traffic if p[0] < middle], start=start, end=middle, step=STEP)
    newcomers: Traffic = []
    for k in range(300):
        t = middle + k * 10_000
        newcomers += [(t, infrared("x-new", t, motion=k % 3, site="s-new")),
                      (t, vitals("x-new", t, heart=60.0 + k % 5, breathing=14.0,
                                 site="s-new")),
                      (t, audio("x-new", t, 38.0 + k % 4, site="s-new"))]
    run(detector, newcomers, start=middle, end=middle + 60 * MINUTE, step=STEP)
    assert ("s-new", "x-new") in detector.fleet.bed_keys
    assert detector.beds.capacity >= detector.fleet.n_beds
    restored = fresh(cls)
    restored.restore(detector.state())
    assert ("s-new", "x-new") in restored.fleet.bed_keys


@detectors
def test_empty_batches_and_no_data(cls: type[DetectorBase]) -> None:
    detector = fresh(cls)
    detector.update([], [])
    assert detector.evaluate(0) == []
    assert detector.evaluate(at("2026-11-02")) == []
    restored = fresh(cls)
    restored.restore(detector.state())
    assert restored.evaluate(at("2026-11-03")) == []


@detectors
def test_mismatched_batch_is_refused(cls: type[DetectorBase]) -> None:
    t = at("2026-11-02")
    with pytest.raises(ValueError):
        fresh(cls).update([infrared("b1", t)], [t, t])


def test_build_detectors_gives_one_of_each_sharing_their_work(traffic: Traffic) -> None:
    built = build_detectors(Registry(), timezone=ZONE)
    assert [d.name for d in built] == [c.name for c in DETECTORS]
    assert len({id(d.fleet) for d in built if isinstance(d, DetectorBase)}) == 1
    start, end = span(traffic)
    shared: list[Finding] = []
    t, i = start, 0
    while t <= end:
        batch = []
        while i < len(traffic) and traffic[i][0] < t:
            batch.append(traffic[i])
            i += 1
        messages, received = [m for _, m in batch], [r for r, _ in batch]
        for detector in built:
            detector.update(messages, received)
        for detector in built:
            shared += detector.evaluate(t)
        t += STEP
    alone = [f for cls in DETECTORS
             for f in run(fresh(cls), traffic, start=start, end=end, step=STEP)]
    assert sorted(shared, key=repr) == sorted(alone, key=repr)
