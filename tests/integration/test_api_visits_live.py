"""The service log keeps only visits that make sense, end to end: badges over real mosquitto
through the real gateway process, and the app's check-in/out through its API (real uvicorn).
A badge check-out without a check-in is set aside with its reason, never chained; the API
answers 404 for a bed nobody knows and 409 for a check-out without an open check-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_api_alerts import ADMIN, ADMIN_KEY, now_ms, publish
from tests.servers import GatewayProcess, Mosquitto, running_gateway, wait_for

pytestmark = pytest.mark.integration

BADGE = "homecare/v1/site-v/bed-0001/badge/bd-0001/event"


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path / "gateway", mosquitto.url,
                         {"HOMECARE_API_KEY": ADMIN_KEY}) as process:
        yield process


def get(gateway: GatewayProcess, path: str) -> Any:
    response = httpx.get(f"{gateway.url}/api/v1{path}", headers=ADMIN, timeout=10)
    response.raise_for_status()
    return response.json()


def post(gateway: GatewayProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.url}/api/v1{path}", headers=ADMIN, json=body, timeout=10)


def test_only_visits_that_make_sense_enter_the_chain_from_badges_and_the_app(
        mosquitto: Mosquitto, gateway: GatewayProcess) -> None:
    t = now_ms()
    publish(mosquitto, [
        (BADGE, {"ts": t, "seq": 1, "event": "check_out", "caregiver": "c-1",
                 "visit": "v-orphan", "method": "nfc", "services": ["bath"]}),
        (BADGE, {"ts": t + 1, "seq": 2, "event": "check_in", "caregiver": "c-1",
                 "visit": "v-1", "method": "nfc"}),
        (BADGE, {"ts": t + 2, "seq": 3, "event": "check_out", "caregiver": "c-1",
                 "visit": "v-1", "method": "nfc", "services": ["meds"]}),
    ])
    wait_for(lambda: len(get(gateway, "/service-logs")["items"]) >= 2
             and get(gateway, "/service-logs/refused")["items"], "badge events recorded",
             timeout=20)
    chained = get(gateway, "/service-logs")["items"]
    assert [(r["visit"], r["event"], r["source"]) for r in reversed(chained)] == [
        ("v-1", "check_in", "badge"), ("v-1", "check_out", "badge")]
    [refused] = get(gateway, "/service-logs/refused")["items"]
    assert (refused["visit"], refused["event"], refused["reason"], refused["device"]) == (
        "v-orphan", "check_out", "no_check_in", "bd-0001")

    visit = {"site": "site-v", "bed": "bed-0001", "caregiver": "c-2", "visit": "v-2"}
    assert post(gateway, "/visits/check-in", {**visit, "bed": "bed-9999"}).status_code == 404
    assert post(gateway, "/visits/check-in", {**visit, "site": "site-x"}).status_code == 404
    orphan = post(gateway, "/visits/check-out", {**visit, "visit": "v-orphan"})
    assert orphan.status_code == 409
    assert orphan.json()["detail"]["reason"] == "no_check_in"
    badge_visit = post(gateway, "/visits/check-out", {**visit, "caregiver": "c-1",
                                                      "visit": "v-1"})
    assert badge_visit.json()["detail"]["reason"] == "already_checked_out"
    assert post(gateway, "/visits/check-in", visit).status_code == 201
    assert post(gateway, "/visits/check-in", {**visit, "bed": "bed 1"}).status_code == 422
    assert post(gateway, "/visits/check-out", visit).status_code == 201
    assert post(gateway, "/visits/check-out", visit).status_code == 200

    check = get(gateway, "/service-logs/verify")
    assert (check["ok"], check["records"]) == (True, 4)
    events = [(r["visit"], r["event"]) for r in reversed(get(gateway, "/service-logs")["items"])]
    assert events == [("v-1", "check_in"), ("v-1", "check_out"), ("v-2", "check_in"),
                      ("v-2", "check_out")]
