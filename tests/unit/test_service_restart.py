"""An open visit is judged after a gateway restart as without one (issue #14, defect D4 of a
fresh tester): a restart while a visit was open lost the infrared samples it had sensed before
it when its check-in had come after its home's samples (a badge or app late by minutes, while
the home's infrared was on time): such a visit takes its samples from the recent samples once
its check-out is known, or :data:`~gateway.detect.service_anomaly.CATCH_UP_MS` after, and
neither the recent samples nor the visits waiting for them were in the snapshot. After the
restart the visit counted only the samples after it (1 of 22), and one nobody came to was not
``nobody_sensed``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alerts import ServiceLog
from gateway.detect._visits import RecentSamples
from gateway.detect.service_anomaly import ServiceAnomalyDetector
from tests.unit.test_detect_support import HOUR, MINUTE, badge, run
from tests.unit.test_service_checks import NINE, T0, Traffic, detector, home, recording

END = NINE + 3 * HOUR
CHECK_OUT = NINE + 40 * MINUTE


def traffic(people: int, badge_late: int) -> Traffic:
    """A household of one (a couple's count when ``people`` is 1: nobody came) at home all
    morning, reported every minute on time; a visit from :data:`NINE` to :data:`CHECK_OUT`
    (the infrared counting ``people`` then) whose check-in comes ``badge_late`` after it."""
    return (home("b1", T0, NINE) + home("b1", NINE, CHECK_OUT, people)
            + home("b1", CHECK_OUT, END)
            + [(NINE + badge_late + 50, badge("b1", NINE, "check_in", "v-1")),
               (CHECK_OUT + 50, badge("b1", CHECK_OUT, "check_out", "v-1",
                                      services=["cleaning"]))]
            + recording("b1", NINE + 30_000, CHECK_OUT - 30_000, "au-1"))


def judgement(tmp_path: Path, name: str, pairs: Traffic, *,
              restart: tuple[int, int] | None = None) -> dict[str, Any]:
    """What the detector kept of v-1 over ``pairs``; ``restart``: a snapshot taken at the
    first time and restored into a new detector which starts at the second, receiving then
    what came in between (the broker's queue)."""
    service_log = ServiceLog(tmp_path / f"{name}.sqlite3")
    try:
        checker: ServiceAnomalyDetector = detector()
        checker.configure(visit_log=service_log)
        if restart is None:
            run(checker, pairs, start=T0, end=END)
        else:
            stop, start = restart
            run(checker, [p for p in pairs if p[0] < stop], start=T0, end=stop)
            assert [v.visit for v in checker.open_visits()] == ["v-1"]
            blob = checker.state()
            checker = detector()
            checker.configure(visit_log=service_log)
            checker.restore(blob)
            run(checker, [(max(r, start), m) for r, m in pairs if r >= stop],
                start=start, end=END)
        kept = service_log.judged("s1", "b1", "c-1", "v-1")
        assert kept is not None, "judged"
        return {k: v for k, v in kept.measured.items() if k != "judged_at"}
    finally:
        service_log.close()


@pytest.mark.parametrize("badge_late", [0, 20 * MINUTE], ids=["badge_on_time", "badge_late"])
@pytest.mark.parametrize(("people", "verdict", "reasons"),
                         [(2, "verified", []), (1, "flagged", ["nobody_sensed"])],
                         ids=["honest", "nobody_came"])
@pytest.mark.parametrize("down", [0, 3 * MINUTE], ids=["clean_restart", "down_3_min"])
def test_an_open_visit_is_judged_after_a_restart_as_without_one(
        tmp_path: Path, people: int, verdict: str, reasons: list[str], badge_late: int,
        down: int) -> None:
    pairs = traffic(people, badge_late)
    live = judgement(tmp_path, "live", pairs)
    assert live["verdict"] == verdict
    assert live["reasons"] == reasons
    assert live["infrared_samples"] == 40
    # Restarted a minute after the check-in came (its samples, if they came first, not yet
    # counted) and again in the middle of the visit.
    for stop in (NINE + badge_late + MINUTE + 10_000, NINE + 25 * MINUTE + 10_000):
        restarted = judgement(tmp_path, f"restart{stop}", pairs, restart=(stop, stop + down))
        assert restarted == live


def test_the_samples_kept_are_each_beds_latest_from_its_time_even_once_the_ring_wrapped() -> None:
    ring = RecentSamples(capacity=4096)
    rng = np.random.default_rng(7)
    for _ in range(5):  # wraps: 5,000 samples into 4,096 slots
        k = 1000
        ring.add(rng.integers(0, 6, k).astype(np.int32), np.arange(k) * 1000 + rng.integers(
            0, 10**6), rng.integers(0, 4, k), rng.integers(0, 4, k))
    since = {1: 300_000, 4: 0}
    restored = RecentSamples()
    restored.load(ring.dump(since), [10, 11, 12, 13, 14, 15])
    bed, t, people, seen = ring.of([1, 4])
    expected = sorted(zip(np.where(bed == 1, 11, 14).tolist(), t.tolist(), people.tolist(),
                          seen.tolist(), strict=True))
    expected = [s for s in expected if s[1] >= since[s[0] - 10]]
    got = sorted(zip(*(a.tolist() for a in restored.of([11, 14])), strict=True))
    assert got == expected
    assert ring.dump({}) == []
    assert RecentSamples().dump(since) == []
