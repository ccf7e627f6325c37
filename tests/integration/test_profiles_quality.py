"""Issue #12's measuring stick: ordinary lives must not raise alerts.

A diverse population (every person profile of :mod:`simulators.profiles` on two beds: 22
beds, 5 days, a fixed seed, incidents at the default rate; sized to keep the suite short, the
README's commands run larger ones) is simulated, replayed through the whole pipeline by the
``homecare`` command and scored per alert type and per profile by ``homecare evaluate
--bed-profiles``. The target is recall >= 0.95 for every type that has labels and at most 0.1
false alerts per bed-day, held over these 5 days with the warm-up included (the detectors'
safe defaults while a person's hours and night trips are not learnt: an ordinary TV, an hour
for a person up and about) and from the third day on (after two days of warm-up); the
README's acceptance run is larger (50 beds x 14 days x 3 seeds). A replay with two restarts
in the middle must give the very same alerts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulators.profiles import PROFILES

PER_PROFILE, DAYS, SEED = 2, 5, 12
WARM_UP_DAYS = 2
BEDS = PER_PROFILE * len(PROFILES)
TARGET_FALSE_PER_BED_DAY = 0.1
TARGET_RECALL = 0.95

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def homecare(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "homecare.cli", *args], capture_output=True,
                          text=True, timeout=1100, check=False)
    assert done.returncode == 0, done.stderr
    return done


def homecare_started(*args: str, out: Path) -> subprocess.Popen[bytes]:
    """A ``homecare`` command started beside the test's own work (its output in ``out``);
    :func:`finished` waits for it."""
    with out.open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "homecare.cli", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def finished(process: subprocess.Popen[bytes], out: Path) -> None:
    try:
        process.wait(timeout=1100)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, out.read_text(errors="replace")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The evaluation (``--json``) of the diverse population, and the replay's summary."""
    tmp = tmp_path_factory.mktemp("profiles")
    traffic, labels, registry = tmp / "traffic.jsonl", tmp / "labels.jsonl", tmp / "sites.toml"
    profiles, alerts = tmp / "profiles.jsonl", tmp / "alerts.jsonl"
    homecare("simulate", "--beds", str(BEDS), "--days", str(DAYS), "--seed", str(SEED),
             "--profiles", "diverse", "--quiet", "--out", str(traffic), "--labels", str(labels),
             "--registry", str(registry), "--bed-profiles", str(profiles))
    # The replay with two restarts runs beside the plain one and the scoring (the two do not
    # share a file; it was the fixture's longest step after the plain replay).
    restarted, restarted_out = tmp / "restarted.jsonl", tmp / "restarted.out"
    restarting = homecare_started(
        "replay", str(traffic), "--alerts", str(restarted), "--registry", str(registry),
        "--restart-after-h", "40", "--restart-after-h", "77.5", out=restarted_out)
    try:
        replayed = homecare("replay", str(traffic), "--alerts", str(alerts), "--registry",
                            str(registry))
        report: dict[str, Any] = json.loads(homecare(
            "evaluate", "--labels", str(labels), "--alerts", str(alerts), "--json",
            "--bed-days", str(BEDS * DAYS), "--bed-profiles", str(profiles)).stdout)
        text = homecare("evaluate", "--labels", str(labels), "--alerts", str(alerts),
                        "--bed-days", str(BEDS * DAYS), "--bed-profiles", str(profiles)).stdout
        # After the warm-up (the first two days: nights, hours and sounds being learnt), the same
        # population scored on what it raised from then on.
        start = min(json.loads(line)["t"] for line in _head(traffic, 1000))
        learnt_from = start + WARM_UP_DAYS * 86_400_000
        later_alerts, later_labels = tmp / "later-alerts.jsonl", tmp / "later-labels.jsonl"
        later_alerts.write_bytes(b"".join(line for line in alerts.read_bytes().splitlines(True)
                                          if json.loads(line)["opened_at"] >= learnt_from))
        later_labels.write_bytes(b"".join(line for line in labels.read_bytes().splitlines(True)
                                          if json.loads(line)["start"] >= learnt_from))
        later: dict[str, Any] = json.loads(homecare(
            "evaluate", "--labels", str(later_labels), "--alerts", str(later_alerts), "--json",
            "--bed-days", str(BEDS * (DAYS - WARM_UP_DAYS))).stdout)
    except BaseException:
        restarting.kill()
        restarting.wait()
        raise
    finished(restarting, restarted_out)
    return {"report": report, "replay": replayed.stderr, "text": text,
            "alerts": alerts.read_bytes(), "restarted": restarted.read_bytes(), "later": later}


def _head(path: Any, lines: int) -> list[bytes]:
    with path.open("rb") as handle:
        return [line for _, line in zip(range(lines), handle, strict=False) if line.strip()]


def _failures(report: dict[str, Any]) -> list[str]:
    failures = [f"{row['type']}: recall {row['recall']}" for row in report["types"]
                if row["labels"] and row["recall"] < TARGET_RECALL]
    overall = next(row for row in report["types"] if row["type"] == "all")
    if overall["false_per_bed_day"] > TARGET_FALSE_PER_BED_DAY:
        failures.append(f"{overall['false_per_bed_day']} false alerts per bed-day")
    return failures


def test_every_profile_replays_without_a_dead_letter(run: dict[str, Any]) -> None:
    summary = run["replay"]
    assert re.search(r"\(0 unreadable\)", summary), summary
    assert re.search(r"dead letters 0\b", summary), summary


def test_the_report_counts_every_profile_over_its_own_bed_days(run: dict[str, Any]) -> None:
    rows = {row["profile"]: row for row in run["report"]["profiles"]}
    assert list(rows) == list(PROFILES)
    for row in rows.values():
        assert row["beds"] == PER_PROFILE
        assert row["bed_days"] == PER_PROFILE * DAYS
        assert set(row["types"]) == {t["type"] for t in run["report"]["types"]} - {"all"}
    total = sum(row["false_alerts"] for row in rows.values())
    assert total == next(t for t in run["report"]["types"] if t["type"] == "all")[
        "false_alerts"]
    assert "false alerts per bed-day by profile and alert type" in run["text"]
    assert sum(row["labels"] for row in rows.values()) > 10, "incidents still happen"


def test_a_restart_in_the_middle_of_the_replay_gives_the_same_alerts(
        run: dict[str, Any]) -> None:
    """Issue #12: learnt routines and running episodes survive a restart (a detector snapshot
    written, every in-memory part dropped, restored from the file)."""
    assert run["alerts"].count(b"\n") > 20
    assert run["restarted"] == run["alerts"]


def test_once_the_routines_are_learnt_ordinary_lives_raise_at_most_a_tenth_of_a_false_alert(
        run: dict[str, Any]) -> None:
    """Issue #12's target, from the third day on (the README gives the full acceptance run:
    50 beds x 14 days x 3 seeds, warm-up included, under 0.1)."""
    assert not _failures(run["later"]), run["later"]["types"]


def test_ordinary_lives_raise_at_most_a_tenth_of_a_false_alert_per_bed_day(
        run: dict[str, Any]) -> None:
    """Warm-up included (until issue #12's safe defaults for the first days, a strict expected
    failure: the first TV evenings and an insomniac's first spells weighed too much)."""
    assert not _failures(run["report"]), run["text"]
