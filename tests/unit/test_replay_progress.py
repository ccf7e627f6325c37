"""``homecare replay`` and ``homecare evaluate`` say how far they are (a bar on a terminal,
periodic lines otherwise), and replay warns loudly when it has no time zone to judge day and
night by."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from homecare import progress
from homecare.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_homecare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("HOMECARE_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two beds for a few hours: traffic, labels and the registry with the sites' zones."""
    where = tmp_path_factory.mktemp("sim")
    traffic, labels, registry = where / "traffic.jsonl", where / "labels.jsonl", where / "r.toml"
    made = runner.invoke(app, ["simulate", "--beds", "2", "--days", "0.25", "--out", str(traffic),
                               "--labels", str(labels), "--registry", str(registry), "--quiet",
                               "--incidents-per-bed-day", "4"])
    assert made.exit_code == 0, made.output
    return traffic, labels, registry


def _progress_lines(text: str, what: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(rf"^{what}: (?:at|done) (\d+)% ", text, re.M)]


def test_replay_without_a_time_zone_warns_loudly(recorded: tuple[Path, Path, Path],
                                                 tmp_path: Path) -> None:
    whole, _, registry = recorded
    # The warning is about the traffic's sites, not its length: its first 200 lines (both
    # beds, minutes of simulated time) replay in a moment four times over.
    traffic = tmp_path / "head.jsonl"
    with whole.open("rb") as lines:
        traffic.write_bytes(b"".join(line for _, line in zip(range(200), lines, strict=False)))
    out = tmp_path / "alerts.jsonl"
    bare = runner.invoke(app, ["replay", str(traffic), "--alerts", str(out), "--quiet"])
    assert bare.exit_code == 0, bare.output
    warning = bare.stderr
    assert "WARNING" in warning, warning
    assert "no time zone" in warning
    assert "--timezone" in warning
    assert "this machine's zone" in warning

    other = tmp_path / "other.toml"
    other.write_text('[sites.site-99]\ntimezone = "Asia/Shanghai"\n')
    unlisted = runner.invoke(app, ["replay", str(traffic), "--alerts", str(out), "--quiet",
                                   "--registry", str(other)])
    assert unlisted.exit_code == 0, unlisted.output
    assert "WARNING: no time zone for 1 site (site-01;" in unlisted.stderr, unlisted.stderr

    for given in (["--timezone", "Asia/Shanghai"], ["--registry", str(registry)]):
        quiet = runner.invoke(app, ["replay", str(traffic), "--alerts", str(out), *given])
        assert quiet.exit_code == 0, quiet.output
        assert "WARNING" not in quiet.stderr, (given, quiet.stderr)


def test_replay_reports_its_progress_in_lines_when_not_on_a_terminal(
        recorded: tuple[Path, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    traffic, _, registry = recorded
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)
    monkeypatch.setattr(progress, "LINES_PER_UPDATE", 100)
    lines = traffic.read_bytes().count(b"\n")
    assert lines > 500
    done = runner.invoke(app, ["replay", str(traffic), "--alerts", str(tmp_path / "a.jsonl"),
                               "--registry", str(registry)])
    assert done.exit_code == 0, done.output
    shares = _progress_lines(done.stderr, "replay")
    assert len(shares) >= lines // 100, done.stderr
    assert shares == sorted(shares)
    assert shares[-1] == 100
    assert "lines: " in done.stderr, "the summary still follows"

    quiet = runner.invoke(app, ["replay", str(traffic), "--alerts", str(tmp_path / "a.jsonl"),
                                "--registry", str(registry), "--quiet"])
    assert _progress_lines(quiet.stderr, "replay") == []


def test_a_short_replay_prints_no_progress_lines(recorded: tuple[Path, Path, Path],
                                                 tmp_path: Path) -> None:
    traffic, _, registry = recorded
    done = runner.invoke(app, ["replay", str(traffic), "--alerts", str(tmp_path / "a.jsonl"),
                               "--registry", str(registry)])
    assert done.exit_code == 0, done.output
    assert _progress_lines(done.stderr, "replay") == []


def test_evaluate_reports_its_progress(recorded: tuple[Path, Path, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    traffic, labels, registry = recorded
    alerts = tmp_path / "alerts.jsonl"
    assert runner.invoke(app, ["replay", str(traffic), "--alerts", str(alerts), "--registry",
                               str(registry), "--quiet"]).exit_code == 0
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)
    scored = runner.invoke(app, ["evaluate", "--labels", str(labels), "--alerts", str(alerts),
                                 "--json"])
    assert scored.exit_code == 0, scored.output
    shares = _progress_lines(scored.stderr, "evaluate")
    assert shares, scored.stderr
    assert shares[-1] == 100
    assert scored.stdout.lstrip().startswith("{"), "the report on stdout is untouched"


def test_on_a_terminal_progress_is_a_bar() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with progress.Progress("replay", 1000, console=console) as shown:
        shown.update(500)
    assert "replay" in screen.getvalue()
    assert "50%" in screen.getvalue()
