"""Handling an alert against the real gateway process (real mosquitto): assignment, comments,
the response checklist, calls to the resident and their contacts, and the outcome code
required to resolve: each in the alert's history with who and when, on the event stream, in
the audit log; the outcome in the alert and in ``homecare_alert_outcomes_total``. The
checklists and outcome codes come from the settings."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.load import publish_all
from tests.integration.test_api_alerts import EventStream
from tests.servers import GatewayProcess, Mosquitto

pytestmark = pytest.mark.integration

ADMIN_KEY = secrets.token_urlsafe(32)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SITE = "site-01"
OUTCOMES = "false_alarm,handled_by_phone,caregiver_sent,family_came,ambulance_called,other"


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env={
        "HOMECARE_API_KEY": ADMIN_KEY,
        # A station's own outcome code and checklist item, in its own words.
        "HOMECARE_ALERT_OUTCOMES": OUTCOMES + ",moved_to_hospital",
        "HOMECARE_ALERT_CHECKLIST_EMERGENCY_BUTTON": "call_resident,call_first_contact,"
                                                     "send_caregiver,检查门锁"})
    process.start()
    try:
        process.wait_connected()
        process.broker = mosquitto  # type: ignore[attr-defined]
        yield process
    finally:
        process.stop()
    assert process.returncode == 0, process.log_tail()


def key(gateway: GatewayProcess, name: str, role: str) -> dict[str, str]:
    response = httpx.post(f"{gateway.url}/api/v1/keys", headers=ADMIN,
                          json={"name": name, "role": role}, timeout=10)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def press(gateway: GatewayProcess, bed: str) -> dict[str, Any]:
    broker: Mosquitto = gateway.broker  # type: ignore[attr-defined]
    body = {"ts": int(time.time() * 1000), "seq": 1, "event": "press"}
    topic = f"homecare/v1/{SITE}/{bed}/button/btn-{bed[-4:]}/event"

    async def publish() -> None:
        async with asyncio.timeout(30):
            await publish_all(broker.url, [(topic, json.dumps(body).encode())])

    asyncio.run(publish())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        items = httpx.get(f"{gateway.url}/api/v1/alerts", params={"bed": bed}, headers=ADMIN,
                          timeout=10).json()["items"]
        if items:
            return dict(items[0])
        time.sleep(0.05)
    raise TimeoutError(f"no alert for {bed}\n{gateway.log_tail()}")


def test_each_handling_step_is_in_the_history_on_the_stream_and_audited(
        gateway: GatewayProcess) -> None:
    anna = key(gateway, "anna", "dispatcher")
    key(gateway, "bo", "dispatcher")
    viewer = key(gateway, "vic", "viewer")
    httpx.put(f"{gateway.url}/api/v1/residents/{SITE}/bed-0001", headers=ADMIN, timeout=10,
              json={"display_name": "Han Jing (synthetic)", "phone": "010-5555-1101",
                    "contacts": [{"name": "Han Tao (synthetic)", "relation": "son",
                                  "phone": "138 0555 1102"}]}).raise_for_status()
    alert = press(gateway, "bed-0001")
    base = f"{gateway.url}/api/v1/alerts/{alert['id']}"
    stream = EventStream(f"{gateway.url}/api/v1/alerts/stream", viewer)
    try:
        assert httpx.post(f"{base}/comments", headers=viewer, json={"text": "x"},
                          timeout=10).status_code == 403
        steps: list[tuple[str, dict[str, Any] | None, int]] = [
            ("assign", None, 200),                                  # to the caller
            ("assign", {"to": "bo"}, 200),
            ("unassign", None, 200),
            ("assign", None, 200),
            ("comments", {"text": "Line busy, trying again in a minute."}, 201),
            ("checklist", {"item": "call_resident"}, 200),
            ("checklist", {"item": "检查门锁"}, 200),
            ("checklist", {"item": "检查门锁", "done": False}, 200),
            ("calls", {"contact": 0, "result": "no_answer"}, 201),
            ("calls", {"contact": 1, "result": "answered"}, 201),
        ]
        for path, body, status in steps:
            response = httpx.post(f"{base}/{path}", headers=anna, json=body, timeout=10)
            assert response.status_code == status, (path, response.text)
        handled = response.json()
        assert handled["status"] == "open", "handling is not acknowledging"
        assert handled["assigned_to"] == "anna"
        assert handled["checklist"] == ["call_resident"]
        assert [(c["contact"], c["result"], c["by"]) for c in handled["contact_calls"]] == [
            (0, "no_answer", "anna"), (1, "answered", "anna")]
        assert handled["next_escalation_at"] == alert["next_escalation_at"]

        # Refused: not on this type's checklist (400), a contact the profile lacks (400),
        # assigning to a viewer (400), an item no checklist has (422).
        for path, body, status, error in [
                ("checklist", {"item": "consider_ambulance"}, 400, "not_on_checklist"),
                ("calls", {"contact": 2, "result": "answered"}, 400, "no_such_contact"),
                ("assign", {"to": "vic"}, 400, "not_a_dispatcher"),
                ("checklist", {"item": "dance"}, 422, "invalid_request")]:
            response = httpx.post(f"{base}/{path}", headers=anna, json=body, timeout=10)
            assert (response.status_code, response.json()["error"]) == (status, error), path

        no_outcome = httpx.post(f"{base}/resolve", headers=anna, timeout=10,
                                json={"note": "She had dropped the phone."})
        assert no_outcome.status_code == 422
        assert no_outcome.json()["detail"][0]["loc"] == ["body", "outcome"]
        assert "outcome code" in no_outcome.json()["detail"][0]["msg"]
        resolved = httpx.post(f"{base}/resolve", headers=anna, timeout=10, json={
            "note": "She had dropped the phone.", "outcome": "moved_to_hospital"})
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["outcome"] == "moved_to_hospital"
        after = httpx.post(f"{base}/comments", headers=anna, json={"text": "late"}, timeout=10)
        assert after.status_code == 409

        actions = ["assigned", "assigned", "unassigned", "assigned", "commented",
                   "checklist_checked", "checklist_checked", "checklist_unchecked",
                   "contact_called", "contact_called", "resolved"]
        events = stream.take(len(actions))
    finally:
        stream.close()
    assert [event for _, event, _ in events] == actions
    comment = next(data for _, event, data in events if event == "commented")
    assert (comment["actor"], comment["note"]) == ("anna", "Line busy, trying again in a "
                                                           "minute.")
    assert events[-1][2]["alert"]["outcome"] == "moved_to_hospital"

    history = httpx.get(base, headers=viewer, timeout=10).json()["history"]
    assert [(h["action"], h["actor"]) for h in history][1:] == [(a, "anna") for a in actions]
    assert [h["note"] for h in history if h["action"].startswith("assigned")] == [
        "anna", "bo", "anna"]
    assert [h["assigned_to"] for h in history][1:4] == ["anna", "bo", None]
    calls = [h["contact_call"] for h in history if h["action"] == "contact_called"]
    assert [(c["contact"], c["result"]) for c in calls] == [(0, "no_answer"), (1, "answered")]
    assert history[-1]["outcome"] == "moved_to_hospital"
    assert all(h["at"] >= alert["opened_at"] for h in history)

    audit = httpx.get(f"{gateway.url}/api/v1/audit", headers=ADMIN, params={"actor": "anna"},
                      timeout=10).json()["items"]
    written = [(e["target"].rsplit("/", 1)[-1], e["status"]) for e in reversed(audit)]
    assert written[:len(steps)] == [(path, status) for path, _, status in steps]

    metrics = gateway.metrics()
    assert metrics['homecare_alert_outcomes_total{outcome="moved_to_hospital",'
                   'type="emergency_button"}'] == 1


def test_the_stations_checklists_and_outcome_codes_are_served_and_documented(
        gateway: GatewayProcess) -> None:
    viewer = key(gateway, "vic", "viewer")
    handling = httpx.get(f"{gateway.url}/api/v1/handling", headers=viewer, timeout=10).json()
    assert handling["outcomes"] == [*OUTCOMES.split(","), "moved_to_hospital"]
    assert handling["checklists"]["emergency_button"][-1] == "检查门锁"
    assert handling["checklists"]["fall"][-1] == "consider_ambulance"
    assert httpx.get(f"{gateway.url}/api/v1/me", headers=viewer, timeout=10).json() == {
        "name": "vic", "role": "viewer"}
    spec = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
    resolve = spec["components"]["schemas"]["ResolveBody"]
    assert resolve["required"] == ["note", "outcome"]
    assert resolve["properties"]["outcome"]["enum"] == handling["outcomes"]
    for path in ("/api/v1/alerts/{alert_id}/assign", "/api/v1/alerts/{alert_id}/comments",
                 "/api/v1/alerts/{alert_id}/checklist", "/api/v1/alerts/{alert_id}/calls",
                 "/api/v1/residents/{site}/{bed}", "/api/v1/residents/import"):
        assert path in spec["paths"], path
