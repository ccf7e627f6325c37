"""``homecare replay`` runs the service checks as the gateway does (issue #14, D-D of a fresh
tester): the ``service_*`` settings' thresholds, the plans given (``--plans``, the CSV
``homecare plans import`` takes), and each visit judged counted by verdict; what a replay
cannot check (visits through the caregiver app, which are not MQTT traffic) is said in its
output. Before, the replay's detector ran on its built-in defaults, with no plans and nothing
said."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from devices import Registry
from gateway.config import Settings
from homecare.replay import APP_VISITS_NOTE, plans_from_csv, replay_file

MINUTE = 60_000
HOUR = 3_600_000
T0 = round(dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC).timestamp() * 1000)
NINE = T0 + HOUR
PLANS = ("site,bed,plan,caregiver,date,start,end,services\n"
         "s1,b1,p-1,c-1,2026-11-02,09:00,10:00,medication\n"
         "s1,b1,p-2,c-1,2026-11-02,11:00,11:30,cleaning\n")
"""p-1: the visit nobody came to; p-2: a plan no visit took."""


def _line(t: int, topic: str, body: dict[str, Any], seq: int) -> tuple[int, bytes]:
    payload = json.dumps({**body, "seq": seq})
    return t, json.dumps({"t": t, "topic": topic, "payload": payload}).encode() + b"\n"


def recorded() -> bytes:
    """A bed's morning as recorded traffic: the resident alone at home (the infrared counts
    one, moving, every minute from 08:00 to 15:00), and a badge checked in at 09:00 and out
    at 09:45 billing medication: a visit nobody came to."""
    lines = [_line(t + 100, "homecare/v1/s1/b1/infrared/ir-b1/telemetry",
                   {"ts": t, "samples": [{"t": t, "presence": True, "motion": 3,
                                          "people": 1, "zone": "room"}]}, n)
             for n, t in enumerate(range(T0, T0 + 7 * HOUR, MINUTE), 1)]
    badge = "homecare/v1/s1/b1/badge/bg-c-1/event"
    lines.append(_line(NINE + 50, badge, {"ts": NINE, "event": "check_in", "caregiver": "c-1",
                                          "visit": "v-1", "method": "nfc"}, 1))
    lines.append(_line(NINE + 45 * MINUTE + 50, badge,
                       {"ts": NINE + 45 * MINUTE, "event": "check_out", "caregiver": "c-1",
                        "visit": "v-1", "method": "nfc", "services": ["medication"]}, 2))
    return b"".join(line for _, line in sorted(lines))


def test_a_replayed_visit_nobody_came_to_is_judged_with_the_gateway_service_settings() -> None:
    settings = Settings(timezone="UTC", service_anomaly_severity="high")
    alerts, summary = replay_file(io.BytesIO(recorded()), None, settings=settings)
    [raised] = [a for a in alerts if a.type.value == "service_anomaly"]
    assert raised.evidence["anomaly"] == "nobody_sensed"
    assert (raised.evidence["visit"], raised.evidence["caregiver"]) == ("v-1", "c-1")
    assert raised.severity.value == "high", "the service_anomaly_severity setting"
    assert summary.visits == {"flagged": 1}
    assert summary.plans is None
    assert summary.service_report() == (
        "service checks: 1 visit judged (flagged 1), no plans given (--plans): no visit judged "
        f"unplanned or outside its window, no plan missed; {APP_VISITS_NOTE}")
    assert summary.service_report() in summary.report()


def test_a_replay_checks_visits_against_the_plans_given_across_a_restart() -> None:
    settings = Settings(timezone="UTC")
    plans, problems = plans_from_csv(PLANS, settings=settings, registry=Registry())
    assert plans is not None, problems
    try:
        runs = [replay_file(io.BytesIO(recorded()), None, settings=settings, plans=plans,
                            restart_after_ms=restarts) for restarts in ((), (int(1.5 * HOUR),))]
    finally:
        plans.close()
    (alerts, summary), (restarted, restarted_summary) = runs
    raised = {a.evidence.get("plan") if a.evidence.get("anomaly") == "missed"
              else a.evidence.get("visit"): a.evidence for a in alerts
              if a.type.value == "service_anomaly"}
    assert set(raised) == {"v-1", "p-2"}, raised
    assert raised["v-1"]["anomaly"] == "nobody_sensed"
    assert raised["p-2"]["anomaly"] == "missed", "the plan no visit took"
    assert summary.plans == 2
    assert summary.visits == {"flagged": 1}
    assert "against 2 plans" in summary.service_report()
    encode = msgspec.json.encode
    assert [encode(a) for a in restarted] == [encode(a) for a in alerts]
    assert (restarted_summary.restarts, restarted_summary.visits) == (1, {"flagged": 1})


def test_plans_that_cannot_be_read_are_refused_by_row() -> None:
    bad = PLANS.replace("medication", "haircut")
    plans, problems = plans_from_csv(bad, settings=Settings(timezone="UTC"),
                                     registry=Registry())
    assert plans is None
    [problem] = problems
    assert "row 2" in problem
    assert "haircut" in problem


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "homecare.cli", "replay", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_homecare_replay_takes_plans_and_says_what_it_checked(tmp_path: Path) -> None:
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_bytes(recorded())
    (tmp_path / "plans.csv").write_text(PLANS)
    out = tmp_path / "alerts.jsonl"
    done = _cli(str(traffic), "--alerts", str(out), "--timezone", "UTC",
                "--plans", str(tmp_path / "plans.csv"))
    assert done.returncode == 0, done.stderr
    raised = sorted(json.loads(line)["evidence"]["anomaly"] for line in out.read_text()
                    .splitlines() if json.loads(line)["type"] == "service_anomaly")
    assert raised == ["missed", "nobody_sensed"]
    assert "service checks: 1 visit judged (flagged 1), against 2 plans" in done.stderr
    assert APP_VISITS_NOTE in done.stderr
    (tmp_path / "bad.csv").write_text(PLANS.replace("medication", "haircut"))
    refused = _cli(str(traffic), "--alerts", str(out), "--timezone", "UTC",
                   "--plans", str(tmp_path / "bad.csv"))
    assert refused.returncode == 2, refused.stderr
    assert "row 2" in refused.stderr
    assert "nothing replayed" in refused.stderr
