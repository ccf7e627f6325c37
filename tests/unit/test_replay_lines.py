"""``homecare replay`` never drops a line of recorded traffic silently: what it cannot read is
counted per reason, with line numbers, and fails the command unless accepted."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from homecare.replay import replay_file

T0 = 1_795_510_800_000
PRESS = "homecare/v1/s1/b1/button/btn-b1/event"
T_REASON = "t is not an integer epoch ms"


def press(t: object, seq: int) -> bytes:
    payload = json.dumps({"ts": T0 + seq, "seq": seq, "event": "press"})
    # json.dumps writes 1.7955108e12 as 1795510800000.0; a hand-made line as some tools do.
    text = json.dumps({"t": "T", "topic": PRESS, "payload": payload}).replace('"T"', str(t))
    return text.encode() + b"\n"


def test_lines_with_a_float_t_are_reported_per_reason_with_line_numbers() -> None:
    lines = [press(T0, 1), b"\n", press("1795510800000.5", 2), b"not json\n",
             press("1.7955108e12", 3), press(T0 + 4 * 3_600_000, 4)]
    alerts, summary = replay_file(io.BytesIO(b"".join(lines)), None, timezone="UTC")
    assert summary.unreadable_lines == 3
    assert summary.unreadable == {T_REASON: 2, "not JSON": 1}
    assert summary.unreadable_at == {T_REASON: [3, 5], "not JSON": [4]}
    report = summary.report()
    assert f"unreadable: 2 lines: {T_REASON} (line 3, line 5)" in report
    assert "unreadable: 1 line: not JSON (line 4)" in report
    assert [a.type.value for a in alerts].count("emergency_button") == 2


def test_only_the_first_line_numbers_of_a_reason_are_kept() -> None:
    lines = [press(f"{T0 + k}.5", k) for k in range(1, 9)]
    _, summary = replay_file(io.BytesIO(b"".join(lines)), None, timezone="UTC")
    assert summary.unreadable == {T_REASON: 8}
    assert summary.unreadable_report() == [
        f"unreadable: 8 lines: {T_REASON} (line 1, line 2, line 3, line 4, line 5, ...)"]


def _cli(traffic: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "homecare.cli", "replay", str(traffic),
                           "--alerts", str(out), "--timezone", "UTC", *extra],
                          capture_output=True, text=True, timeout=120, check=False)


def test_homecare_replay_fails_on_a_file_of_float_t_unless_told_to_skip(tmp_path: Path) -> None:
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_bytes(b"".join(press(f"{T0 + k * 3_600_000}.0", k) for k in range(3)))
    out = tmp_path / "alerts.jsonl"
    failed = _cli(traffic, out, "--quiet")
    assert failed.returncode == 1, failed.stderr
    assert f"unreadable: 3 lines: {T_REASON} (line 1, line 2, line 3)" in failed.stderr
    assert "3 of 3 lines could not be read" in failed.stderr
    assert "--skip-unreadable" in failed.stderr
    accepted = _cli(traffic, out, "--skip-unreadable")
    assert accepted.returncode == 0, accepted.stderr
    assert "lines: 3 (3 unreadable)" in accepted.stderr
    assert T_REASON in accepted.stderr
    assert out.read_text() == ""
