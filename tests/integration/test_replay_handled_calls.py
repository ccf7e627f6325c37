"""``homecare replay`` on recorded traffic in which a button sends the same press twice, hours
apart (a re-send after a reconnect, beyond the duplicate window): one call, not two, even
though the replay's simulated dispatcher resolved the first one meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

T0 = 1_763_884_800_000
MINUTE = 60_000
TOPIC = "homecare/v1/s1/bed-0001/button/btn-1"


def _line(t: int, channel: str, payload: dict[str, object]) -> str:
    return json.dumps({"t": t, "topic": f"{TOPIC}/{channel}", "payload": json.dumps(payload)})


def test_the_same_press_twice_hours_apart_is_one_call_in_replay(tmp_path: Path) -> None:
    press = {"ts": T0, "seq": 7, "event": "press"}
    lines = [_line(T0 + 40, "event", press)]
    # A status every 2 minutes for 3 hours: 90 messages, beyond the 64-message duplicate window.
    lines += [_line(T0 + k * 2 * MINUTE, "status",
                    {"ts": T0 + k * 2 * MINUTE, "seq": 7 + k, "state": "online",
                     "heartbeat_s": 300}) for k in range(1, 91)]
    lines.append(_line(T0 + 185 * MINUTE, "event", press))  # the very same press again
    lines.append(_line(T0 + 190 * MINUTE, "event", {"ts": T0 + 190 * MINUTE, "seq": 98,
                                                    "event": "press"}))  # a new call
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text("\n".join(lines) + "\n")
    out = tmp_path / "alerts.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "homecare.cli", "replay", str(traffic), "--alerts", str(out),
         "--timezone", "UTC", "--dispatcher-after-min", "5"],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    calls = [a for a in map(json.loads, out.read_text().splitlines())
             if a["type"] == "emergency_button"]
    assert [(a["opened_at"], a["evidence"]["seq"]) for a in calls] == [
        (T0 + 40, 7), (T0 + 190 * MINUTE, 98)]
    assert calls[0]["status"] == "resolved"
    assert calls[0]["occurrences"] == 1


def test_replay_judges_stale_cancels_with_the_configured_clock_window(tmp_path: Path) -> None:
    """A cancel older than the call it would cancel is stale only while both device clocks
    are inside the clock window (``clock_window_s``); replay's engine takes the setting like
    the gateway's."""
    from gateway.config import Settings
    from homecare.replay import replay_file

    lines = [_line(T0 + 40, "event", {"ts": T0, "seq": 8, "event": "press"}),
             # seq 7, older than the press by seq and device time, its device time 2 days
             # before its receipt: a late old message, or a reset clock if not trusted
             _line(T0 + 86_400_000, "event", {"ts": T0 - 86_400_000, "seq": 7,
                                              "event": "cancel"})]
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text("\n".join(lines) + "\n")

    def cancelled(window_s: int) -> bool:
        alerts, _ = replay_file(traffic, None, timezone="UTC",
                                settings=Settings(clock_window_s=window_s),
                                dispatcher_after_ms=3 * 86_400_000)  # still open at the cancel
        [call] = [a for a in alerts if a.type == "emergency_button"]
        return "cancelled_at" in call.evidence

    assert not cancelled(7 * 86_400), "within a 7-day window the older cancel is stale"
    assert cancelled(86_400), "outside a 1-day window its clock is not trusted: it counts"
