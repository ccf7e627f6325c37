"""A SIGKILL while calls from devices the registry does not list wait in their lane (issue #17).

5,000 made-up buttons press at once, a listed one behind them; the listed call opens its alert
first, and the gateway is killed while the made-up ones are still being taken, a slice at a
time. Nothing of theirs was acknowledged before it was handled (the urgent session's copies
after the alert commit, the main session's after the spool's), so after the restart the broker
delivers the rest again: every press has its one alert and its one point, the listed one too.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.ingest import publish, start_gateway
from tests.servers import GatewayProcess, Mosquitto, sqlite_rows, wait_for
from tests.urgent import sessions_connected, spooled_lines, stored

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MADE_UP = 5_000
SITE, BED = "site-listed", "bed-0001"
LISTED = f"homecare/v1/{SITE}/{BED}/button/btn-0001/event"


def _press(topic: str) -> tuple[str, bytes]:
    return topic, json.dumps({"ts": time.time_ns() // 1_000_000, "seq": 1,
                              "event": "press"}).encode()


def _alerts(gateway: GatewayProcess) -> Counter[tuple[str, str]]:
    rows = sqlite_rows(gateway.data_dir / "alerts.sqlite3", "SELECT alert FROM alerts")
    return Counter((a["site"], a["bed"]) for a in (json.loads(r[0]) for r in rows)
                   if a["type"] == "emergency_button")


def test_a_kill_while_made_up_calls_wait_loses_none_and_repeats_none(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    registry = tmp_path / "registry.toml"
    registry.write_text(f'[sites.{SITE}.beds.{BED}.devices.btn-0001]\nkind = "button"\n',
                        encoding="utf-8")
    env = {"HOMECARE_REGISTRY_FILE": str(registry),
           "HOMECARE_MQTT_CLIENT_ID": f"gw-unlisted-{tmp_path.name}"[:60]}
    made_up = [_press(f"homecare/v1/x-{i:05d}/bed/button/btn-x{i:05d}/event")
               for i in range(MADE_UP)]
    gateway = start_gateway(tmp_path, mosquitto.url, None, **env)
    try:
        wait_for(lambda: sessions_connected(gateway.metrics()), "both sessions connected")
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGSTOP)  # the broker queues all of it for both
        try:
            publish(mosquitto.url, [*made_up, _press(LISTED)])
        finally:
            gateway.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: _alerts(gateway)[(SITE, BED)], "the listed call's alert", timeout=60)
    finally:
        gateway.kill()
    at_kill = _alerts(gateway)
    print(f"at the kill: {sum(at_kill.values()) - 1} of {MADE_UP} made-up calls' alerts stored")
    assert sum(at_kill.values()) <= MADE_UP + 1

    restarted = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=gateway.env,
                               port=gateway.port)
    restarted.start()
    try:
        restarted.wait_connected()
        wait_for(lambda: sum(_alerts(restarted).values()) >= MADE_UP + 1,
                 "every call's alert after the restart", timeout=180)
        wait_for(lambda: restarted.metric("homecare_inbox_depth") == 0
                 and restarted.metric("homecare_unlisted_calls_waiting") == 0
                 and sum(n for k, n in stored(restarted.data_dir / "spool").items()
                         if k.startswith("button_event/")) >= MADE_UP + 1,
                 "every call stored", timeout=180)
    finally:
        restarted.stop()
    assert restarted.returncode == 0, restarted.log_tail()
    alerts = _alerts(restarted)
    assert set(alerts) == {(SITE, BED)} | {(f"x-{i:05d}", "bed") for i in range(MADE_UP)}
    assert set(alerts.values()) == {1}, "a call opened a second alert"
    # Stored at least once each; a call the kill caught between the spool's commit and its
    # acknowledgement is stored again, the same series and timestamp: the database keeps one
    # (README: idempotent writes), so those must be the very same point.
    points: dict[tuple[str, str], set[str]] = {}
    written = 0
    for line in spooled_lines(restarted.data_dir / "spool"):
        if line.startswith("button_event,"):
            written += 1
            series, _, rest = line.partition(" ")
            points.setdefault((series, rest.rsplit(" ", 1)[-1]), set()).add(line)
    print(f"{written - len(points)} calls written again after the kill")
    assert len(points) == MADE_UP + 1
    assert {len(lines) for lines in points.values()} == {1}, "a call stored as two points"
