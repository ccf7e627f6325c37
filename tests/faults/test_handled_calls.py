"""A call that was handled never comes back as a new call, live: mosquitto and a real gateway.

A press opens its call, a dispatcher resolves it through the API, the gateway is restarted (an
upgrade: SIGTERM, start); the device then sends the very same press again (not retained: a
re-send after a reconnect). The gateway's duplicate window is empty after the restart, so only
the alert engine's durable memory of handled events stands between that press and a second
call. A genuinely new press of the same button still calls, and so does one delivered late.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ingest import publish
from tests.servers import GatewayProcess, Mosquitto, sqlite_rows, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "site-11"
KEY = secrets.token_urlsafe(32)  # a bootstrap key must be a random secret


def _press(bed: str, device: str, seq: int, ts: int) -> tuple[str, bytes]:
    return (f"homecare/v1/{SITE}/{bed}/button/{device}/event",
            json.dumps({"ts": ts, "seq": seq, "event": "press"}).encode())


def _calls(db: Path, bed: str) -> list[dict[str, Any]]:
    rows = sqlite_rows(db, "SELECT alert FROM alerts ORDER BY opened_at, id")
    return [a for a in (json.loads(r[0]) for r in rows)
            if a["site"] == SITE and a["bed"] == bed and a["type"] == "emergency_button"]


def test_a_resolved_press_sent_again_after_a_restart_opens_no_second_call(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url,
                             env={"HOMECARE_API_KEY": KEY})
    db = gateway.data_dir / "alerts.sqlite3"
    auth = {"Authorization": f"Bearer {KEY}"}
    now = int(time.time() * 1000)
    press = _press("bed-0001", "btn-1", 7, now)
    gateway.start()
    try:
        gateway.wait_connected()
        publish(mosquitto.url, [press])
        [call] = wait_for(lambda: _calls(db, "bed-0001") or None, "the call opened")
        response = httpx.post(f"{gateway.url}/api/v1/alerts/{call['id']}/resolve", headers=auth,
                              json={"note": "Called back: pressed by mistake.",
                                    "outcome": "false_alarm"}, timeout=10)
        assert response.status_code == 200, response.text
    finally:
        gateway.stop()
    assert gateway.returncode == 0

    gateway.start()
    try:
        gateway.wait_connected()
        publish(mosquitto.url, [press])
        wait_for(lambda: gateway.metric("homecare_alert_replays_ignored_total") == 1,
                 "the press sent again is recognised as handled")
        # Then a new press of another bed, and one of this button: both are calls.
        publish(mosquitto.url, [_press("bed-0002", "btn-2", 1, now + 1_000)])
        wait_for(lambda: _calls(db, "bed-0002") or None, "the other bed's call opened")
        assert [c["incident"][-2:] for c in _calls(db, "bed-0001")] == ["#1"]
        assert _calls(db, "bed-0001")[0]["status"] == "resolved"

        # A press delayed five minutes in the network, newer than any handled: a call.
        late = _press("bed-0001", "btn-1", 8, int(time.time() * 1000) - 5 * 60_000)
        publish(mosquitto.url, [late])
        calls = wait_for(lambda: c if len(c := _calls(db, "bed-0001")) == 2 else None,
                         "the late press opened a call")
        assert calls[1]["status"] == "open"
        assert calls[1]["evidence"]["seq"] == 8
        response = httpx.get(f"{gateway.url}/api/v1/alerts/{calls[1]['id']}", headers=auth,
                             timeout=10)
        assert response.json()["history"][0]["action"] == "opened"
        assert gateway.metric("homecare_alert_replays_ignored_total") == 1
    finally:
        gateway.stop()
    assert gateway.returncode == 0
    remembered = sqlite_rows(db, "SELECT site, bed, device, call, seq FROM handled_events"
                                 " WHERE site = ? ORDER BY bed", (SITE,))
    assert remembered == [(SITE, "bed-0001", "btn-1", 1, 8), (SITE, "bed-0002", "btn-2", 1, 1)]
