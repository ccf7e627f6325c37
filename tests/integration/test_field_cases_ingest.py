"""Field cases F1 and F2 (``../shared/field-cases``), live: mosquitto and a real gateway.

F1: three poison messages (invalid UTF-8 inside string values of known fields) and then an
emergency press from another bed. The gateway keeps running, the poison messages are dead
letters with their reason and raw bytes (acknowledged: a restart does not meet them again), and
the press is a critical call.

F2: a button that sets the retain flag on every publish. Its press is handled (resolved through
the API); the gateway is restarted (SIGTERM, start). On the same persistent session with MQTT 5
the broker does not send the retained press again (Retain Handling 1); with MQTT 3.1.1, or on a
new session, it does, flagged retained: stored state, never a new call. The alert engine does
not even see it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.broker import BrokerUrl
from simulators.mqtt import Publisher
from tests.ingest import publish
from tests.servers import GatewayProcess, Mosquitto, sqlite_rows, wait_for

pytestmark = [pytest.mark.integration]

F1 = Path(__file__).parents[1] / "data" / "field-cases" / "F1-non-utf8.jsonl"
KEY = secrets.token_urlsafe(32)  # a bootstrap key must be a random secret


def _f1_messages() -> list[tuple[str, bytes]]:
    out = []
    for line in F1.read_text().splitlines():
        record = json.loads(line)
        payload = (base64.b64decode(record["payload_b64"]) if "payload_b64" in record
                   else record["payload"].encode())
        out.append((record["topic"], payload))
    return out


def _alerts(db: Path, **match: str) -> list[dict[str, Any]]:
    rows = sqlite_rows(db, "SELECT alert FROM alerts ORDER BY opened_at, id")
    alerts = (json.loads(r[0]) for r in rows)
    return [a for a in alerts if all(a.get(k) == v for k, v in match.items())]


def _dead_letters(gateway: GatewayProcess) -> list[tuple[str, bytes, str, str]]:
    return sqlite_rows(gateway.data_dir / "deadletters.sqlite3",
                       "SELECT topic, payload, reason, detail FROM dead_letters ORDER BY id")


def test_field_case_f1_poison_messages_are_dead_letters_and_the_press_is_a_call(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    messages = _f1_messages()
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url)
    db = gateway.data_dir / "alerts.sqlite3"
    gateway.start()
    try:
        gateway.wait_connected()
        publish(mosquitto.url, messages)  # QoS 1
        [call] = wait_for(lambda: _alerts(db, type="emergency_button") or None,
                          "the press after the poison messages opened a call", timeout=20)
        letters = wait_for(lambda: d if len(d := _dead_letters(gateway)) == 3 else None,
                           "three dead letters", timeout=20)
        assert gateway.running, "the gateway keeps running"
    finally:
        gateway.stop()
    assert gateway.returncode == 0
    assert (call["site"], call["bed"], call["severity"]) == ("site-f1", "bed-f10b", "critical")
    assert sorted((t, p) for t, p, _, _ in letters) == sorted(messages[:3])
    assert {reason for _, _, reason, _ in letters} == {"invalid_utf8"}
    assert all("invalid UTF-8 at byte" in detail for *_, detail in letters)

    # Acknowledged: after a restart the broker has nothing of them to send again.
    gateway.start()
    try:
        gateway.wait_connected()
        publish(mosquitto.url, [(messages[3][0], b'{"ts":1,"seq":2,"event":"cancel"}')])
        wait_for(lambda: gateway.metric("homecare_messages_received_total") >= 1,
                 "the gateway receives after the restart")
        assert gateway.metric("homecare_messages_received_total") == 1
        assert len(_dead_letters(gateway)) == 3
    finally:
        gateway.stop()
    assert gateway.returncode == 0


def _publish_retained(url: str, topic: str, payload: bytes) -> None:
    async def run() -> None:
        async with asyncio.timeout(20):
            publisher = Publisher(BrokerUrl.parse(url), client_id="btn-f2", reconnect=False)
            async with publisher:
                await publisher.publish(topic, payload, qos=1, retain=True)
                await publisher.drain()

    asyncio.run(run())


@pytest.mark.slow
@pytest.mark.parametrize(("protocol", "new_session"),
                         [("5", False), ("3.1.1", False), ("5", True)],
                         ids=["mqtt5-same-session", "mqtt311-same-session", "mqtt5-new-session"])
def test_field_case_f2_a_retained_press_after_a_restart_opens_no_new_call(
        mosquitto: Mosquitto, tmp_path: Path, protocol: str, new_session: bool) -> None:
    topic = "homecare/v1/site-f2/bed-f20/button/btn-f20/event"
    press = json.dumps({"ts": int(time.time() * 1000), "seq": 7, "event": "press"}).encode()
    env = {"HOMECARE_API_KEY": KEY, "HOMECARE_MQTT_PROTOCOL": protocol}
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=env)
    db = gateway.data_dir / "alerts.sqlite3"
    gateway.start()
    try:
        gateway.wait_connected()
        _publish_retained(mosquitto.url, topic, press)
        [call] = wait_for(lambda: _alerts(db, bed="bed-f20") or None, "the press is a call")
        assert (call["type"], call["severity"]) == ("emergency_button", "critical")
        response = httpx.post(f"{gateway.url}/api/v1/alerts/{call['id']}/resolve",
                              headers={"Authorization": f"Bearer {KEY}"},
                              json={"note": "Visited: the resident is fine.",
                                    "outcome": "caregiver_sent"}, timeout=10)
        assert response.status_code == 200, response.text
        assert gateway.metric("homecare_retained_events_total") == 0, "delivered live"
    finally:
        gateway.stop()
    assert gateway.returncode == 0

    if new_session:
        gateway.env["HOMECARE_MQTT_CLIENT_ID"] = f"{gateway.env['HOMECARE_MQTT_CLIENT_ID']}-2"
    gateway.start()
    try:
        gateway.wait_connected()
        # The broker sends retained messages right after the SUBACK, before anything
        # published later: once this marker is in, the retained press has been handled.
        marker = ("homecare/v1/site-f2/bed-f21/fall/fs-f21/status",
                  json.dumps({"ts": int(time.time() * 1000), "seq": 1,
                              "state": "online"}).encode())
        publish(mosquitto.url, [marker])
        wait_for(lambda: gateway.metric("homecare_messages_accepted_total")
                 >= 1 + (protocol == "3.1.1" or new_session), "the marker is in")
        retained = gateway.metric("homecare_retained_events_total")
        ignored = gateway.metric("homecare_alert_replays_ignored_total")
        calls = _alerts(db, bed="bed-f20")
        assert gateway.running
    finally:
        gateway.stop()
    assert gateway.returncode == 0
    assert [(c["id"], c["status"]) for c in calls] == [(call["id"], "resolved")], \
        "no new call from the retained press"
    assert retained == (1 if protocol == "3.1.1" or new_session else 0), \
        "MQTT 5 on the same session: the broker keeps the retained press to itself"
    assert ignored == 0, "a retained event never reaches the alert engine"


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_retained_press_published_while_the_gateway_is_down_is_still_a_call(
        mosquitto: Mosquitto, tmp_path: Path, protocol: str) -> None:
    """The broker queues it on the gateway's persistent session and delivers it as a new
    message (retain flag cleared, as MQTT requires for an established subscription): a call
    made during a restart is never taken for stored state."""
    topic = "homecare/v1/site-f2/bed-f22/button/btn-f22/event"
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url,
                             env={"HOMECARE_MQTT_PROTOCOL": protocol})
    db = gateway.data_dir / "alerts.sqlite3"
    gateway.start()
    try:
        gateway.wait_connected()
    finally:
        gateway.stop()
    press = json.dumps({"ts": int(time.time() * 1000), "seq": 3, "event": "press"}).encode()
    _publish_retained(mosquitto.url, topic, press)
    gateway.start()
    try:
        gateway.wait_connected()
        [call] = wait_for(lambda: _alerts(db, bed="bed-f22") or None,
                          "the press made while the gateway was down is a call", timeout=20)
        assert gateway.metric("homecare_retained_events_total") == 0
    finally:
        gateway.stop()
    assert (call["type"], call["severity"]) == ("emergency_button", "critical")
