"""``homecare replay`` on bad input: poison messages are dead letters, never the end of the run;
retained events in recorded traffic are stored state, never a new call."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from devices import Message
from gateway.detect.alerting import AlertingStage
from gateway.ingest.pipeline import INTERNAL_ERROR
from homecare.replay import replay_file

F1 = Path(__file__).parents[1] / "data" / "field-cases" / "F1-non-utf8.jsonl"
T0 = 1_795_510_800_000
PRESS = "homecare/v1/site-r/bed-0001/button/btn-1/event"
STATUS = "homecare/v1/site-r/bed-0001/button/btn-1/status"


def traffic(tmp_path: Path, lines: list[dict[str, object]]) -> Path:
    path = tmp_path / "traffic.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(line) + b"\n" for line in lines))
    return path


def test_replay_of_field_case_f1_gives_three_dead_letters_and_one_critical_call() -> None:
    alerts, summary = replay_file(F1, None, timezone="UTC")
    assert [(a.type.value, a.severity.value, a.bed) for a in alerts] == [
        ("emergency_button", "critical", "bed-f10b")]
    assert summary.dead_letters == {"invalid_utf8": 3}
    assert summary.lines == 4


def test_homecare_replay_command_on_f1_exits_0_and_reports_the_dead_letters(
        tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    run = subprocess.run([sys.executable, "-m", "homecare.cli", "replay", str(F1), "--alerts",
                          str(out), "--timezone", "UTC"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert "dead letters 3 (invalid_utf8 3)" in run.stderr
    (alert,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (alert["type"], alert["severity"]) == ("emergency_button", "critical")


def test_a_retained_press_in_recorded_traffic_opens_no_alert(tmp_path: Path) -> None:
    press = {"topic": PRESS, "payload": json.dumps({"ts": T0, "seq": 7, "event": "press"})}
    status = {"topic": STATUS, "retain": True,
              "payload": json.dumps({"ts": T0, "seq": 6, "state": "online"})}
    alerts, summary = replay_file(
        traffic(tmp_path, [{"t": T0, **status}, {"t": T0 + 1, **press, "retain": True}]),
        None, timezone="UTC")
    assert alerts == []
    assert summary.retained_events == 1
    assert summary.dead_letters == {}
    assert "retained events 1 (stored, not calls)" in summary.report()[0]
    # The same press published now (not from the broker's retained store) is a call.
    alerts, _ = replay_file(traffic(tmp_path, [{"t": T0 + 1, **press}]), None, timezone="UTC")
    assert [a.type.value for a in alerts] == ["emergency_button"]


def test_replay_goes_on_when_a_stage_raises_on_one_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = AlertingStage.accept

    def accept(self: AlertingStage, messages: Sequence[Message],
               received_ms: Sequence[int]) -> None:
        if any(m.payload.seq == 1 for m in messages):
            raise ZeroDivisionError("a rule's bug")
        original(self, messages, received_ms)

    monkeypatch.setattr(AlertingStage, "accept", accept)
    lines = [{"t": T0 + seq, "topic": PRESS.replace("bed-0001", f"bed-000{seq}"),
              "payload": json.dumps({"ts": T0, "seq": seq, "event": "press"})}
             for seq in (1, 2)]
    alerts, summary = replay_file(traffic(tmp_path, lines), None, timezone="UTC")
    assert [a.bed for a in alerts] == ["bed-0002"]
    assert summary.dead_letters == {INTERNAL_ERROR: 1}
