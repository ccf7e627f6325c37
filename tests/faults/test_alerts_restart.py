"""Open alerts and running escalation timers survive a gateway SIGKILL.

After the restart the same alerts are there in the same states, every escalation that fell due
while the gateway was dead is taken at once on the original timeline (timers honoured, not
reset), and nothing is duplicated: not the alerts, not the audit log, not a press the broker
delivers again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from alerts.escalation import Schedule
from simulators.load import pregenerate
from tests.ingest import publish, start_gateway
from tests.servers import GatewayProcess, Mosquitto, sqlite_rows, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CRITICAL = Schedule(steps_ms=(2000,), repeat_ms=2000)
HIGH = Schedule(steps_ms=(3000,), repeat_ms=3000)
ENV = {
    "HOMECARE_ALERT_ESCALATION_CRITICAL_S": "2",
    "HOMECARE_ALERT_REPEAT_CRITICAL_S": "2",
    "HOMECARE_ALERT_ESCALATION_HIGH_S": "3",
    "HOMECARE_ALERT_REPEAT_HIGH_S": "3",
    "HOMECARE_ALERT_CANCEL_WINDOW_S": "60",
}
SITE = "site-09"




def alerts(db_path: Path, site: str | None = SITE) -> dict[str, dict[str, Any]]:
    """The alerts of ``site`` (this test's beds; the background may raise detector alerts
    elsewhere), or of every site."""
    rows = sqlite_rows(db_path, "SELECT id, alert FROM alerts")
    found = {r[0]: json.loads(r[1]) for r in rows}
    return {k: a for k, a in found.items() if site is None or a["site"] == site}


def changes(db_path: Path) -> list[tuple[int, int, str, str]]:
    """``(seq, at, action, alert_id)`` of the audit log, in order."""
    return sqlite_rows(db_path, "SELECT seq, at, action, alert_id FROM changes ORDER BY seq")


def _event(bed: str, kind: str, device: str, seq: int, **fields: object) -> tuple[str, bytes]:
    payload = {"ts": int(time.time() * 1000), "seq": seq, **fields}
    return (f"homecare/v1/{SITE}/{bed}/{kind}/{device}/event", json.dumps(payload).encode())


def test_open_alerts_and_escalation_timers_survive_a_gateway_sigkill(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    press = _event("bed-0001", "button", "btn-1", 10, event="press")
    incidents = [
        press,
        _event("bed-0002", "fall", "fs-2", 20, event="fall_detected", confidence=0.9,
               posture="lying"),
        _event("bed-0003", "button", "btn-3", 30, event="long_press"),
        _event("bed-0003", "button", "btn-3", 31, event="cancel"),
    ]
    background = pregenerate(beds=30, n_messages=3_000, seed=31)
    gateway = start_gateway(tmp_path, mosquitto.url, None, **ENV)
    db = gateway.data_dir / "alerts.sqlite3"
    try:
        publish(mosquitto.url, background[:1_500] + incidents + background[1_500:])
        # Running timers: every alert has been escalated at least once before the kill.
        wait_for(lambda: len(alerts(db)) == 3 and all(
            a["escalation_level"] >= 1 for a in alerts(db).values()),
            "three alerts, each escalated once")
    finally:
        gateway.kill()

    before = alerts(db)
    everything_before = alerts(db, site=None)
    log_before = changes(db)
    by_bed = {a["bed"]: a for a in before.values()}
    assert (by_bed["bed-0001"]["type"], by_bed["bed-0001"]["severity"]) == (
        "emergency_button", "critical")
    assert (by_bed["bed-0002"]["type"], by_bed["bed-0002"]["severity"]) == ("fall", "critical")
    assert (by_bed["bed-0003"]["type"], by_bed["bed-0003"]["severity"]) == (
        "emergency_button", "high"), "cancelled within the window: downgraded"
    assert all(a["status"] == "open" for a in before.values())

    # While the gateway is dead: the same press reaches the broker again, and every timer
    # falls due (the critical ones by at least two steps).
    publish(mosquitto.url, [press])
    overdue_at = max(a["next_escalation_at"] for a in before.values()) + 2_500
    wait_for(lambda: time.time() * 1000 >= overdue_at, "timers overdue", timeout=30)

    restarted = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=gateway.env,
                               port=gateway.port)
    restarted.start()
    try:
        restarted.wait_connected()
        wait_for(lambda: restarted.metric("homecare_messages_accepted_total") >= 1,
                  "the press published again is processed")
        # The first tick after the start takes the overdue steps at once.
        wait_for(lambda: all(
            any(action == "escalated" and alert_id == a_id and seq > log_before[-1][0]
                for seq, _, action, alert_id in changes(db)) for a_id in before),
            "every alert escalated after the restart", timeout=30)
        after = alerts(db)
        everything_after = alerts(db, site=None)
        log_after = changes(db)
    finally:
        restarted.stop()

    assert after.keys() == before.keys(), "the same alerts, none added"
    assert everything_before.keys() <= everything_after.keys()
    unresolved = [a["incident"].rpartition("#")[0] for a in everything_after.values()
                  if a["status"] != "resolved"]
    assert len(unresolved) == len(set(unresolved)), "one unresolved alert per incident"
    for alert_id, old in before.items():
        new = after[alert_id]
        for field in ("incident", "type", "severity", "status", "opened_at", "site", "bed"):
            assert new[field] == old[field], (field, old, new)
        first = next((at for seq, at, action, a_id in log_after
                      if a_id == alert_id and action == "escalated"
                      and seq > log_before[-1][0]))
        schedule = CRITICAL if old["severity"] == "critical" else HIGH
        level, next_at, steps = schedule.advance(level=old["escalation_level"],
                                                 due=old["next_escalation_at"], now=first)
        assert steps >= 1
        restart_history = [(action, at) for seq, at, action, a_id in log_after
                           if a_id == alert_id and seq > log_before[-1][0]]
        assert restart_history[0] == ("escalated", first)
        if old["severity"] == "critical":
            assert steps >= 2, "the steps missed while dead are taken together"
        # ``next_at`` continues the original timeline (from the stored ``next_escalation_at``);
        # a reset timer would count from the restart instead.
        assert next_at is not None
        assert next_at > first
        if len(restart_history) == 1:
            assert (new["escalation_level"], new["next_escalation_at"]) == (level, next_at)
        else:
            assert new["escalation_level"] > level
    call = after[by_bed["bed-0001"]["id"]]
    assert call["occurrences"] == by_bed["bed-0001"]["occurrences"] == 1, \
        "the press delivered again is not folded in twice"
    assert [c[0] for c in log_after] == list(range(1, len(log_after) + 1)), "gap-free audit"
    assert log_after[:len(log_before)] == log_before, "history is append-only"
    opened = [c[3] for c in log_after if c[2] == "opened"]
    assert len(opened) == len(set(opened)) == len(everything_after), "each opened once"
    assert restarted.returncode == 0
