"""``homecare simulate`` offline through the command line (typer's CliRunner)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import typer
from typer.testing import CliRunner

from devices import Codec, Message
from simulators.cli import simulate

app = typer.Typer()
app.command()(simulate)
runner = CliRunner()


def test_offline_run_writes_traffic_labels_fault_log_and_summary(tmp_path: Path) -> None:
    out, labels, faults = tmp_path / "traffic.jsonl", tmp_path / "labels.jsonl", tmp_path / "f"
    result = runner.invoke(app, [
        "--beds", "3", "--days", "1", "--seed", "4", "--out", str(out), "--labels", str(labels),
        "--faults", "--fault-log", str(faults), "--incidents-per-bed-day", "2",
        "--timezone", "Europe/Berlin", "--start", "2026-03-29"])  # a 23-hour DST day
    assert result.exit_code == 0, result.output
    assert "messages:" in result.output
    assert "labels: 6" in result.output
    assert "faults:" in result.output
    lines = out.read_bytes().splitlines()
    assert len(lines) > 10_000
    first = msgspec.json.decode(lines[0])
    assert set(first) == {"t", "topic", "payload"}
    assert len(labels.read_bytes().splitlines()) == 6
    assert faults.read_bytes()


def test_out_dash_writes_traffic_to_stdout() -> None:
    result = runner.invoke(app, ["--beds", "1", "--days", "0.05", "--out", "-", "--quiet"])
    assert result.exit_code == 0
    codec = Codec()
    lines = [msgspec.json.decode(raw) for raw in result.stdout.splitlines()]
    assert lines
    assert all(isinstance(codec.decode(d["topic"], d["payload"].encode()), Message)
               for d in lines)


def test_timezones_and_sites_spread_beds(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    result = runner.invoke(app, ["--beds", "4", "--sites", "2", "--days", "0.05", "--out",
                                 str(out), "--timezone", "Asia/Shanghai,Europe/London",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    beds = {tuple(msgspec.json.decode(raw)["topic"].split("/")[2:4])
            for raw in out.read_bytes().splitlines()}
    assert beds == {("site-01", "bed-0001"), ("site-01", "bed-0002"), ("site-02", "bed-0003"),
                    ("site-02", "bed-0004")}


@pytest.mark.parametrize(("args", "message"), [
    (["--beds", "2"], "exactly one of --out"),
    (["--out", "-", "--mqtt-url", "mqtt://127.0.0.1:1"], "exactly one of --out"),
    (["--out", "-", "--timezone", "Mars/Olympus"], "unknown IANA time zone"),
    (["--out", "-", "--incident", "meteor"], "unknown type"),
    (["--out", "-", "--incident", "fall@bed-0099", "--beds", "2"], "not one of the simulated"),
    (["--out", "-", "--start", "yesterday"], "YYYY-MM-DD"),
    (["--mqtt-url", "http://127.0.0.1", "--duration", "1"], "mqtt://"),
])
def test_bad_options_fail_with_a_message_naming_them(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert message in result.output


def test_help_documents_every_option() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--beds", "--days", "--seed", "--start", "--sites", "--timezone", "--out",
                   "--labels", "--faults", "--fault-rate", "--incidents-per-bed-day",
                   "--incident", "--bed", "--mqtt-url", "--speed", "--duration", "--rate",
                   "--quiet"):
        assert option in result.output
