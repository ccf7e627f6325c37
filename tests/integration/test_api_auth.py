"""Alert API security against the real gateway process (real mosquitto, real uvicorn).

Every operation under ``/api`` in the live OpenAPI document is called without a key, with
wrong keys and with a revoked key: each must answer 401. Roles: a viewer cannot acknowledge,
resolve or check in (403); a dispatcher can.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.load import publish_all
from tests.servers import GatewayProcess, Mosquitto

pytestmark = pytest.mark.integration

ADMIN_KEY = secrets.token_urlsafe(32)  # a bootstrap key must be a random secret


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("api-auth")
    broker = Mosquitto(root / "mosquitto")
    broker.start()
    # Wrong keys from one address on purpose, far more than a minute's budget (the limit
    # itself is tested in test_http_hardening.py).
    process = GatewayProcess(root / "gateway", mqtt_url=broker.url,
                             env={"HOMECARE_API_KEY": ADMIN_KEY,
                                  "HOMECARE_API_AUTH_FAILURES_PER_MINUTE": "100000"})
    try:
        process.start()
        process.wait_connected()
        process.broker = broker  # type: ignore[attr-defined]
        yield process
    finally:
        process.stop()
        broker.stop()


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def create_key(gateway: GatewayProcess, name: str, role: str) -> str:
    response = httpx.post(f"{gateway.url}/api/v1/keys", headers=admin(),
                          json={"name": name, "role": role}, timeout=10)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def operations(gateway: GatewayProcess) -> list[tuple[str, str, dict[str, Any]]]:
    spec = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
    found = [(method.upper(), path, op) for path, item in spec["paths"].items()
             for method, op in item.items() if path.startswith("/api")]
    assert len(found) >= 15, "the OpenAPI document lists the API"
    return found


def concrete(path: str) -> str:
    """A callable URL for a templated path (parameters filled with valid-looking ids)."""
    return re.sub(r"\{[^}]+\}", "x-1", path)


def example_body(op: dict[str, Any]) -> dict[str, Any] | None:
    if "requestBody" not in op:
        return None
    return {"note": "n", "name": "n-1", "role": "viewer", "site": "s", "bed": "b",
            "caregiver": "c", "visit": "v", "services": []}


def call(client: httpx.Client, method: str, path: str, op: dict[str, Any],
         headers: dict[str, str]) -> httpx.Response:
    body = example_body(op)
    return client.request(method, concrete(path), headers=headers,
                          content=json.dumps(body).encode() if body is not None else None)


BAD_HEADERS = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer not-a-key"},
    {"Authorization": f"Bearer {ADMIN_KEY}x"},
    {"Authorization": f"Basic {ADMIN_KEY}"},
    {"Authorization": f"Token {ADMIN_KEY}"},
    {"X-API-Key": ADMIN_KEY},
]


def test_no_api_operation_answers_without_a_valid_key(gateway: GatewayProcess) -> None:
    checked = 0
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for method, path, op in operations(gateway):
            for headers in BAD_HEADERS:
                response = call(client, method, path, op, headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.json()["error"] == "unauthorized"
                assert response.headers["www-authenticate"].lower().startswith("bearer")
                checked += 1
    assert checked >= 15 * len(BAD_HEADERS)


def test_a_revoked_key_opens_nothing(gateway: GatewayProcess) -> None:
    token = create_key(gateway, "soon-revoked", "admin")
    good = httpx.get(f"{gateway.url}/api/v1/keys",
                     headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert good.status_code == 200
    revoked = httpx.delete(f"{gateway.url}/api/v1/keys/soon-revoked", headers=admin(),
                           timeout=10)
    assert revoked.status_code == 200
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for method, path, op in operations(gateway):
            response = call(client, method, path, op, {"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, (method, path, response.text)


def test_health_readiness_metrics_and_docs_need_no_key(gateway: GatewayProcess) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert httpx.get(f"{gateway.url}{path}", timeout=10).status_code == 200, path


def test_docs_page_loads_nothing_from_outside_the_gateway(gateway: GatewayProcess) -> None:
    page = httpx.get(f"{gateway.url}/docs", timeout=10).text
    sources = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', page)
    assert any(source.endswith("swagger-ui-bundle.js") for source in sources), page
    for source in sources:
        assert source.startswith("/"), f"{source} is not served by the gateway"
        assert httpx.get(f"{gateway.url}{source}", timeout=10).status_code == 200, source
    assert "/openapi.json" in page


def press_button(gateway: GatewayProcess, bed: str) -> str:
    """Publish a real button press over MQTT; the id of the alert it opens."""
    broker: Mosquitto = gateway.broker  # type: ignore[attr-defined]
    payload = json.dumps({"ts": int(time.time() * 1000), "seq": 1, "event": "press"}).encode()

    async def publish() -> None:
        async with asyncio.timeout(30):
            await publish_all(broker.url, [
                (f"homecare/v1/site-auth/{bed}/button/btn-{bed}/event", payload)])

    asyncio.run(publish())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        items = httpx.get(f"{gateway.url}/api/v1/alerts", params={"bed": bed},
                          headers=admin(), timeout=10).json()["items"]
        if items:
            alert_id: str = items[0]["id"]
            return alert_id
        time.sleep(0.05)
    raise TimeoutError(f"no alert for {bed}\n{gateway.log_tail()}")


def test_a_viewer_reads_but_cannot_handle_alerts_or_check_in(gateway: GatewayProcess) -> None:
    viewer = {"Authorization": f"Bearer {create_key(gateway, 'viewer-a', 'viewer')}"}
    alert_id = press_button(gateway, "bed-v")
    assert httpx.get(f"{gateway.url}/api/v1/alerts/{alert_id}", headers=viewer,
                     timeout=10).status_code == 200
    visit = {"site": "site-auth", "bed": "bed-v", "caregiver": "c-1", "visit": "v-1"}
    for path, body in [(f"/api/v1/alerts/{alert_id}/acknowledge", {"note": "x"}),
                       (f"/api/v1/alerts/{alert_id}/resolve", {"note": "x", "outcome": "other"}),
                       ("/api/v1/visits/check-in", visit),
                       ("/api/v1/visits/check-out", {**visit, "services": ["bath"]}),
                       ("/api/v1/keys", {"name": "mine", "role": "admin"})]:
        response = httpx.post(f"{gateway.url}{path}", headers=viewer, json=body, timeout=10)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"] == "forbidden"
    alert = httpx.get(f"{gateway.url}/api/v1/alerts/{alert_id}", headers=viewer,
                      timeout=10).json()
    assert alert["status"] == "open", "nothing changed"


def test_a_dispatcher_handles_alerts_and_checks_in_under_its_own_name(
        gateway: GatewayProcess) -> None:
    dispatcher = {"Authorization": f"Bearer {create_key(gateway, 'dispatch-d', 'dispatcher')}"}
    alert_id = press_button(gateway, "bed-d")
    acked = httpx.post(f"{gateway.url}/api/v1/alerts/{alert_id}/acknowledge",
                       headers=dispatcher, timeout=10)
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == "dispatch-d"
    resolved = httpx.post(f"{gateway.url}/api/v1/alerts/{alert_id}/resolve",
                          headers=dispatcher,
                          json={"note": "called back, all well", "outcome": "handled_by_phone"},
                          timeout=10)
    assert resolved.status_code == 200
    assert resolved.json()["resolved_by"] == "dispatch-d"
    visit = {"site": "site-auth", "bed": "bed-d", "caregiver": "c-2", "visit": "v-2"}
    checked_in = httpx.post(f"{gateway.url}/api/v1/visits/check-in", headers=dispatcher,
                            json=visit, timeout=10)
    assert checked_in.status_code == 201
    assert checked_in.json()["actor"] == "dispatch-d"
    for path in ("/api/v1/keys", "/api/v1/audit"):
        assert httpx.get(f"{gateway.url}{path}", headers=dispatcher,
                         timeout=10).status_code == 403
    audit = httpx.get(f"{gateway.url}/api/v1/audit", params={"actor": "dispatch-d"},
                      headers=admin(), timeout=10).json()["items"]
    assert [(e["action"], e["target"], e["status"]) for e in reversed(audit)] == [
        ("POST", f"/api/v1/alerts/{alert_id}/acknowledge", 200),
        ("POST", f"/api/v1/alerts/{alert_id}/resolve", 200),
        ("POST", "/api/v1/visits/check-in", 201)]


def test_keys_made_with_the_cli_work_in_the_running_gateway_and_revoke_at_once(
        gateway: GatewayProcess) -> None:
    import subprocess
    import sys

    data_dir = str(Path(gateway.env["HOMECARE_DATA_DIR"]))
    made = subprocess.run(
        [sys.executable, "-m", "homecare.cli", "keys", "create", "--role", "viewer",
         "--name", "cli-made", "--data-dir", data_dir],
        capture_output=True, text=True, timeout=60, check=True)
    token = made.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{gateway.url}/api/v1/beds", headers=headers, timeout=10
                     ).status_code == 200
    subprocess.run([sys.executable, "-m", "homecare.cli", "keys", "revoke", "cli-made",
                    "--data-dir", data_dir], capture_output=True, timeout=60, check=True)
    assert httpx.get(f"{gateway.url}/api/v1/beds", headers=headers, timeout=10
                     ).status_code == 401
