"""Resident profiles against the real gateway process (real mosquitto, real HTTP receivers for
the city platform and a family's webhook on loopback): shown only to dispatcher and admin keys,
managed by admins (PUT, DELETE, CSV import with a problem per row, idempotent), audited, kept
in a private file, and never anywhere else: no upstream or family payload, no log line, no
answer to a viewer key carries any of it, while a whole alert is handled with calls to the
contacts. Synthetic people only (tests/fixtures/residents.csv)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.upstream import family_secret
from simulators.load import publish_all
from tests.servers import GatewayProcess, Mosquitto
from tests.upstream_receiver import Receiver

pytestmark = pytest.mark.integration

ADMIN_KEY = secrets.token_urlsafe(32)
SECRET = secrets.token_urlsafe(24)
SITE = "site-01"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "residents.csv"
CSV_TEXT = FIXTURE.read_text(encoding="utf-8")


def profile_values() -> list[str]:
    """Every distinctive value of the fixture's profiles (not ids, not one-word relations that
    occur inside other words), and each phone number's digits."""
    values: list[str] = []
    for row in csv.DictReader(io.StringIO(CSV_TEXT)):
        for column, cell in row.items():
            if not cell or column in ("site", "bed") or column.endswith("_relation"):
                continue
            values += [line.strip() for line in cell.splitlines() if line.strip()]
            if column.endswith("phone"):
                values.append(re.sub(r"\D", "", cell))
    values += ["neighbour", "daughter", "女婿"]
    return values


def find_profile(text: str) -> list[str]:
    return [value for value in profile_values() if value in text]


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    platform = Receiver(SECRET.encode())
    family = Receiver(family_secret(SECRET.encode(), SITE, "bed-0001"))
    platform.start()
    family.start()
    try:
        yield platform, family
    finally:
        platform.stop()
        family.stop()


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path, receivers: tuple[Receiver, Receiver]
            ) -> Iterator[GatewayProcess]:
    platform, family = receivers
    registry = tmp_path / "registry.toml"
    registry.write_text(f'[sites.{SITE}.beds.bed-0001]\nfamily_webhook = "{family.url}"\n'
                        f'[sites.{SITE}.beds.bed-0002]\n[sites.{SITE}.beds.bed-0003]\n',
                        encoding="utf-8")
    process = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env={
        "HOMECARE_API_KEY": ADMIN_KEY, "HOMECARE_REGISTRY_FILE": str(registry),
        "HOMECARE_UPSTREAM_URL": platform.url, "HOMECARE_UPSTREAM_SECRET": SECRET,
        "HOMECARE_LOG_LEVEL": "debug"})
    process.start()
    try:
        process.wait_connected()
        process.broker = mosquitto  # type: ignore[attr-defined]
        yield process
    finally:
        process.stop()
    assert process.returncode == 0, process.log_tail()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = auth(ADMIN_KEY)


def create_key(gateway: GatewayProcess, name: str, role: str) -> dict[str, str]:
    response = httpx.post(f"{gateway.url}/api/v1/keys", headers=ADMIN,
                          json={"name": name, "role": role}, timeout=10)
    assert response.status_code == 201, response.text
    return auth(response.json()["token"])


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


PROFILE = {
    "display_name": "Feng Yuying (synthetic)", "address": "Example Road 77\nFlat 7",
    "phone": "010-5555-7701", "medical_notes": "allergic to penicillin (synthetic)",
    "access_notes": "key safe behind the meter box (synthetic)",
    "contacts": [{"name": "Feng Lei (synthetic)", "relation": "grandson",
                  "phone": "+86 138 0555 7702"}]}


def test_profiles_are_shown_to_dispatchers_only_changed_by_admins_audited_and_private(
        gateway: GatewayProcess) -> None:
    viewer = create_key(gateway, "viewer-v", "viewer")
    dispatcher = create_key(gateway, "dispatch-d", "dispatcher")
    url = f"{gateway.url}/api/v1/residents/{SITE}/bed-0007"
    assert httpx.put(url, headers=dispatcher, json=PROFILE, timeout=10).status_code == 403
    created = httpx.put(url, headers=ADMIN, json=PROFILE, timeout=10)
    assert created.status_code == 200, created.text
    assert created.json()["updated_by"] == "bootstrap"
    refused = httpx.get(url, headers=viewer, timeout=10)
    assert refused.status_code == 403
    assert find_profile(refused.text) == []
    shown = httpx.get(url, headers=dispatcher, timeout=10).json()
    assert {k: shown[k] for k in PROFILE} == PROFILE
    listed = f"{gateway.url}/api/v1/residents"
    assert httpx.get(listed, headers=viewer, timeout=10).status_code == 403
    assert httpx.get(listed, params={"site": SITE, "bed": "bed-0007"}, headers=dispatcher,
                     timeout=10).json()["items"] == [shown]
    assert httpx.get(listed, params={"site": SITE, "bed": "bed-0008"}, headers=dispatcher,
                     timeout=10).json() == {"items": [], "next_cursor": None}
    again = httpx.put(url, headers=ADMIN, json=PROFILE, timeout=10).json()
    assert again["updated_at"] == shown["updated_at"], "the same profile changes nothing"
    bad = httpx.put(url, headers=ADMIN, json={**PROFILE, "phone": "ring me"}, timeout=10)
    assert bad.status_code == 422
    assert "ring me" not in bad.text, "errors never repeat the value"
    assert httpx.get(f"{gateway.url}/api/v1/residents/{SITE}/bed-0999", headers=dispatcher,
                     timeout=10).status_code == 404
    assert httpx.delete(url, headers=dispatcher, timeout=10).status_code == 403
    assert httpx.delete(url, headers=ADMIN, timeout=10).status_code == 204
    assert httpx.get(url, headers=dispatcher, timeout=10).status_code == 404

    audit = httpx.get(f"{gateway.url}/api/v1/audit", headers=ADMIN, timeout=10).json()["items"]
    writes = [(e["actor"], e["action"], e["status"]) for e in reversed(audit)
              if e["target"] == f"/api/v1/residents/{SITE}/bed-0007"]
    assert writes == [("dispatch-d", "PUT", 403), ("bootstrap", "PUT", 200),
                      ("bootstrap", "PUT", 200), ("bootstrap", "PUT", 422),
                      ("dispatch-d", "DELETE", 403), ("bootstrap", "DELETE", 204)]
    data = gateway.data_dir
    for name in ("residents.sqlite3", "residents.sqlite3-wal", "residents.sqlite3-shm"):
        assert stat.S_IMODE(os.stat(data / name).st_mode) == 0o600, name


def test_a_csv_import_names_every_bad_row_imports_all_or_nothing_and_is_idempotent(
        gateway: GatewayProcess) -> None:
    dispatcher = create_key(gateway, "dispatch-i", "dispatcher")
    url = f"{gateway.url}/api/v1/residents/import"
    assert httpx.post(url, headers=dispatcher, json={"csv": CSV_TEXT},
                      timeout=10).status_code == 403
    broken = CSV_TEXT.replace("010-5555-0101", "no phone").replace(
        "Sun Deshan (synthetic)", "")
    refused = httpx.post(url, headers=ADMIN, json={"csv": broken}, timeout=10)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_csv"
    assert [(p["row"], p["column"]) for p in refused.json()["detail"]] == [
        (2, "phone"), (4, "display_name")]
    assert "no phone" not in refused.text
    assert httpx.get(f"{gateway.url}/api/v1/residents/{SITE}/bed-0002", headers=dispatcher,
                     timeout=10).status_code == 404, "nothing was imported"
    dry = httpx.post(url, headers=ADMIN, json={"csv": CSV_TEXT, "dry_run": True},
                     timeout=10).json()
    assert (dry["dry_run"], dry["created"]) == (True, 3)
    first = httpx.post(url, headers=ADMIN, json={"csv": CSV_TEXT}, timeout=10).json()
    assert (first["created"], first["updated"], first["unchanged"]) == (3, 0, 0)
    assert [(r["row"], r["bed"], r["result"]) for r in first["rows"]] == [
        (2, "bed-0001", "created"), (3, "bed-0002", "created"), (4, "bed-0003", "created")]
    again = httpx.post(url, headers=ADMIN, json={"csv": CSV_TEXT}, timeout=10).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    shown = httpx.get(f"{gateway.url}/api/v1/residents/{SITE}/bed-0001", headers=dispatcher,
                      timeout=10).json()
    assert [c["relation"] for c in shown["contacts"]] == ["son", "neighbour"]
    assert shown["access_notes"].startswith("Key safe")


def test_no_profile_field_reaches_upstream_a_family_the_log_or_a_viewer(
        gateway: GatewayProcess, receivers: tuple[Receiver, Receiver]) -> None:
    """A call on a bed with a profile and a family webhook, handled the whole way (assigned,
    commented, checklist, both contacts and the resident called, resolved with an outcome):
    every change goes upstream and the family's share to the family, and not one profile
    field with either."""
    platform, family = receivers
    viewer = create_key(gateway, "viewer-p", "viewer")
    dispatcher = create_key(gateway, "dispatch-p", "dispatcher")
    imported = httpx.post(f"{gateway.url}/api/v1/residents/import", headers=ADMIN,
                          json={"csv": CSV_TEXT}, timeout=10)
    assert imported.status_code == 200, imported.text
    alert = press(gateway, "bed-0001")
    base = f"{gateway.url}/api/v1/alerts/{alert['id']}"
    steps: list[tuple[str, dict[str, Any]]] = [
        ("assign", {}), ("comments", {"text": "Nobody answers at home; calling the family."}),
        ("calls", {"contact": 0, "result": "no_answer"}),
        ("checklist", {"item": "call_resident"}),
        ("calls", {"contact": 1, "result": "answered"}),
        ("calls", {"contact": 2, "result": "no_answer"}),
        ("checklist", {"item": "call_first_contact"})]
    for path, body in steps:
        response = httpx.post(f"{base}/{path}", headers=dispatcher, json=body, timeout=10)
        assert response.status_code in (200, 201), (path, response.text)
        assert find_profile(response.text) == []
    resolved = httpx.post(f"{base}/resolve", headers=dispatcher, timeout=10,
                          json={"note": "Son went over; she is fine.",
                                "outcome": "family_came"})
    assert resolved.status_code == 200, resolved.text
    history = httpx.get(base, headers=dispatcher, timeout=10).json()["history"]
    assert len(history) == 9  # opened, 7 handling changes, resolved

    # The platform gets every change in full; the family its share: the call opened and
    # resolved, without the handling (gateway/upstream/shares.py).
    assert platform.wait_for(len(history)), (len(platform.accepted), gateway.log_tail())
    assert family.wait_for(2), (len(family.accepted), gateway.log_tail())
    for receiver, actions in ((platform, [h["action"] for h in history]),
                              (family, ["opened", "resolved"])):
        changes = [d.body["change"] for d in receiver.accepted if d.body["kind"] ==
                   "alert_change" and d.body["change"]["alert"]["id"] == alert["id"]]
        assert [c["action"] for c in changes] == actions
        payloads = "\n".join(json.dumps(d.body, ensure_ascii=False) for d in receiver.accepted)
        assert find_profile(payloads) == [], "a profile field went upstream"
    last = [d.body["change"]["alert"] for d in platform.accepted
            if d.body["kind"] == "alert_change"][-1]
    assert (last["outcome"], [c["contact"] for c in last["contact_calls"]]) == (
        "family_came", [0, 1, 2])

    answers = [httpx.get(f"{gateway.url}{path}", headers=viewer, timeout=10) for path in (
        "/api/v1/alerts", f"/api/v1/alerts/{alert['id']}", "/api/v1/beds",
        f"/api/v1/beds/{SITE}/bed-0001", "/api/v1/alerts/stream?follow=false&last_event_id=0",
        f"/api/v1/residents/{SITE}/bed-0001", "/api/v1/handling", "/api/v1/me")]
    assert [a.status_code for a in answers] == [200] * 5 + [403, 200, 200]
    assert find_profile("\n".join(a.text for a in answers)) == []
    log = gateway.log_path.read_text(encoding="utf-8", errors="replace")
    assert "homecare.gateway" in log, "the log was written"
    assert find_profile(log) == [], "a profile field was logged"
