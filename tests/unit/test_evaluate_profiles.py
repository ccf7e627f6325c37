"""False alerts per profile: ``homecare simulate --profiles/--bed-profiles`` and ``homecare
evaluate --bed-profiles`` (typer's CliRunner), and the scoring behind them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devices import BedProfile, Label, read_bed_profiles
from homecare.cli import app
from homecare.evaluate import UNLISTED, AlertRecord, evaluate

runner = CliRunner()
DAY = 86_400_000


def alert(id_: str, bed: str, type_: str, opened: int) -> AlertRecord:
    return AlertRecord(id=id_, type=type_, site="s1", bed=bed, opened_at=opened)


def test_false_alerts_are_counted_per_profile_and_type_over_its_bed_days() -> None:
    labels = [Label("s1", "b1", "fall", 0, 60_000), Label("s1", "b3", "inactivity", 0, 60_000)]
    alerts = [alert("a", "b1", "fall", 500),                    # detects the fall
              alert("b", "b2", "abnormal_sound", 1_000),        # false, hard of hearing
              alert("c", "b2", "abnormal_sound", 2 * DAY),      # false, hard of hearing
              alert("d", "b3", "night_bed_exit", DAY),          # false, early riser
              alert("e", "b9", "device_offline", DAY)]          # false, a bed not listed
    beds = [BedProfile("s1", "b1", "standard"), BedProfile("s1", "b2", "hard_of_hearing"),
            BedProfile("s1", "b3", "early_riser"), BedProfile("s1", "b4", "early_riser")]
    scored = evaluate(labels, alerts, bed_days=40, profiles=beds)
    by = {p.profile: p for p in scored.profiles}
    assert list(by) == ["standard", "hard_of_hearing", "early_riser", UNLISTED]
    assert (by["early_riser"].beds, by["early_riser"].bed_days) == (2, 20.0)
    assert by["hard_of_hearing"].false_per_bed_day("abnormal_sound") == 0.2
    assert by["hard_of_hearing"].false_per_bed_day() == 0.2
    assert by["early_riser"].false_per_bed_day("night_bed_exit") == 0.05
    assert by["early_riser"].recall == 0.0
    assert by["standard"].recall == 1.0
    assert by["standard"].false_per_bed_day() == 0.0
    assert by[UNLISTED].false_alerts["device_offline"] == 1
    assert by[UNLISTED].false_per_bed_day() is None
    rows = {row["profile"]: row for row in scored.to_json()["profiles"]}
    assert rows["hard_of_hearing"]["types"]["abnormal_sound"] == {
        "labels": 0, "detected": 0, "false_alerts": 2, "false_per_bed_day": 0.2}
    assert rows["early_riser"]["labels"] == 1
    assert rows["early_riser"]["recall"] == 0.0
    table = scored.table()
    assert "false alerts per bed-day by profile" in table
    header = next(line for line in table.splitlines() if line.startswith("profile"))
    assert "abnormal_sound" in header
    assert "night_bed_exit" in header
    assert "vital_signs" not in header  # no false alert of that type anywhere


def test_without_bed_profiles_the_report_is_as_before() -> None:
    scored = evaluate([Label("s1", "b1", "fall", 0, 60_000)], [alert("a", "b1", "fall", 1)],
                      bed_days=1)
    assert scored.profiles == []
    assert scored.to_json()["profiles"] == []
    assert "by profile" not in scored.table()


def test_simulate_writes_bed_profiles_that_evaluate_reads(tmp_path: Path) -> None:
    traffic, labels = tmp_path / "traffic.jsonl", tmp_path / "labels.jsonl"
    profiles, alerts = tmp_path / "profiles.jsonl", tmp_path / "alerts.jsonl"
    result = runner.invoke(app, [
        "simulate", "--beds", "3", "--days", "0.1", "--profiles", "couple,insomnia", "--out",
        str(traffic), "--labels", str(labels), "--bed-profiles", str(profiles), "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_bed_profiles(profiles.read_bytes()) == [
        BedProfile("site-01", "bed-0001", "couple"), BedProfile("site-01", "bed-0002", "insomnia"),
        BedProfile("site-01", "bed-0003", "couple")]
    alerts.write_text(json.dumps({"id": "x", "type": "night_bed_exit", "site": "site-01",
                                  "bed": "bed-0002", "opened_at": 1}) + "\n")
    result = runner.invoke(app, ["evaluate", "--labels", str(labels), "--alerts", str(alerts),
                                 "--bed-days", "3", "--bed-profiles", str(profiles), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["profile"]: row for row in json.loads(result.stdout)["profiles"]}
    assert rows["insomnia"]["false_per_bed_day"] == 1.0
    assert rows["couple"]["bed_days"] == 2.0
    result = runner.invoke(app, ["evaluate", "--labels", str(labels), "--alerts", str(alerts),
                                 "--bed-profiles", str(profiles)])
    assert result.exit_code == 0, result.output
    assert "insomnia" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--profiles", "sleepwalker"], "unknown profile 'sleepwalker'"),
    (["--profiles", ","], "at least one profile"),
])
def test_unknown_profiles_fail_with_a_message_naming_them(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["simulate", "--out", "-", *args])
    assert result.exit_code != 0
    assert message in result.output


def test_unreadable_bed_profiles_are_a_clear_error(tmp_path: Path) -> None:
    labels, alerts, profiles = (tmp_path / name for name in ("l", "a", "p"))
    labels.write_text("")
    alerts.write_text("")
    profiles.write_text('{"site": "s1", "bed": "b1"}\n')
    result = runner.invoke(app, ["evaluate", "--labels", str(labels), "--alerts", str(alerts),
                                 "--bed-profiles", str(profiles)])
    assert result.exit_code == 2
    assert "unreadable input" in result.output
