"""The alert API in process (ASGI, no sockets): auth, roles, errors, limits, audit.

The harness here (``api`` fixture) is shared by the other ``test_api_*`` unit modules: a
FastAPI app with the API installed on real stores in a temp dir (SQLite) and a settable clock.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from alerts.api import MAX_BODY_BYTES, ApiContext, install
from alerts.engine import AlertEngine
from alerts.keys import KEY_USE_KEPT_MS, KEY_USE_WRITE_MS, KeyStore, Role
from alerts.livestate import LiveState
from alerts.model import Alert, AlertType, Finding, Severity
from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from devices.codec import Codec, Message
from devices.registry import Registry

T0 = 1_763_884_800_000
BOOTSTRAP = secrets.token_urlsafe(32)


@dataclass
class Harness:
    app: FastAPI
    ctx: ApiContext
    engine: AlertEngine
    store: AlertStore
    keys: KeyStore
    client: httpx.AsyncClient
    tokens: dict[str, str] = field(default_factory=dict)
    now: list[int] = field(default_factory=lambda: [T0])
    close_streams: object = None

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def open_alert(self, bed: str = "bed-1", type: AlertType = AlertType.FALL,
                   severity: Severity = Severity.CRITICAL, at: int | None = None,
                   site: str = "site-01", episode: str = "") -> Alert:
        at = self.now[0] if at is None else at
        changes = self.engine.apply([Finding(type=type, site=site, bed=bed, at=at,
                                             severity=severity, episode=episode,
                                             summary=f"{type} on {bed}",
                                             evidence={"device": f"dev-{bed}"})], at)
        self.engine.commit()
        return changes[-1].alert

    def feed(self, *messages: tuple[str, str], received: int | None = None) -> None:
        codec = Codec()
        decoded = [codec.decode(topic, payload.encode()) for topic, payload in messages]
        assert all(isinstance(m, Message) for m in decoded), decoded
        at = self.now[0] if received is None else received
        self.ctx.live.accept(decoded, [at] * len(decoded))  # type: ignore[arg-type]
        for m in decoded:
            assert isinstance(m, Message)
            self.ctx.registry.ensure(m.address)


def build(tmp_path: Path, *, registry: Registry | None = None, **options: object) -> Harness:
    keys = KeyStore(tmp_path / "keys.sqlite3", bootstrap_token=BOOTSTRAP)
    store = AlertStore(tmp_path / "alerts.sqlite3")
    engine = AlertEngine(store)
    now = [T0]
    ctx = ApiContext(keys=keys, registry=registry or Registry(),
                     live=LiveState(started_ms=T0 - 3_600_000),
                     service_log=ServiceLog(tmp_path / "servicelog.sqlite3"),
                     alert_store=store, engine=engine, clock=lambda: now[0],
                     **options)  # type: ignore[arg-type]
    app = FastAPI()
    close = install(app, ctx)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                               base_url="http://testserver")
    harness = Harness(app=app, ctx=ctx, engine=engine, store=store, keys=keys, client=client,
                      now=now, close_streams=close)
    harness.tokens["admin"] = BOOTSTRAP
    for role in Role:
        if role is not Role.ADMIN:
            harness.tokens[role.value] = keys.create(f"{role.value}-1", role, actor="test")[1]
    return harness


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = build(tmp_path)
    try:
        yield harness
    finally:
        await harness.client.aclose()


# --- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer"}, {"Authorization": "Bearer nope"},
    {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": f"bearer{BOOTSTRAP}"},
    {"Authorization": "Bearer " + "x" * 5000}])
async def test_every_api_path_answers_401_without_a_valid_key(
        api: Harness, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/api/v1/alerts"), ("GET", "/api/v1/alerts/stream"),
                         ("POST", "/api/v1/alerts/X/resolve"), ("GET", "/api/v1/keys"),
                         ("GET", "/api/v1/no-such-route"), ("GET", "/api"),
                         ("DELETE", "/api/v1/keys/viewer-1")]:
        response = await api.client.request(method, path, headers=headers, json={"note": "x"})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_revoked_key_is_refused_at_once(api: Harness) -> None:
    first = await api.client.get("/api/v1/alerts", headers=api.auth("viewer"))
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    api.keys.revoke("viewer-1", actor="test")
    response = await api.client.get("/api/v1/alerts", headers=api.auth("viewer"))
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": "invalid or revoked API key"}


async def test_keys_that_worked_before_a_restart_are_served_at_once_from_a_locked_address(
        tmp_path: Path) -> None:
    """One careless client behind a station's address must not lock out, after a restart, the
    keys that worked there within the day (they were remembered in memory only)."""
    before = build(tmp_path)
    try:
        for role in ("dispatcher", "admin"):  # a stored key, and the bootstrap key
            ok = await before.client.get("/api/v1/me", headers=before.auth(role))
            assert ok.status_code == 200, role
    finally:
        await before.client.aclose()
    before.keys.close()
    keys = KeyStore(tmp_path / "keys.sqlite3", bootstrap_token=BOOTSTRAP)
    ctx = ApiContext(keys=keys, registry=Registry(), live=LiveState(started_ms=T0),
                     service_log=ServiceLog(tmp_path / "servicelog-2.sqlite3"),
                     auth_failures_per_minute=3)
    app = FastAPI()
    install(app, ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as client:
        for _ in range(3):  # the careless client, from the same address
            wrong = {"Authorization": f"Bearer hck_0123456789ab_{'x' * 43}"}
            assert (await client.get("/api/v1/me", headers=wrong)).status_code == 401
        locked = await client.get("/api/v1/me", headers=wrong)
        assert locked.status_code == 429
        assert locked.headers["retry-after"]
        for role in ("dispatcher", "admin"):
            served = await client.get("/api/v1/me", headers=before.auth(role))
            assert served.status_code == 200, role
        never = await client.get("/api/v1/me", headers={
            "Authorization": f"Bearer {keys.create('other', Role.VIEWER, actor='t')[1]}"})
        assert never.status_code == 429, "a key not used within the day waits out the lockout"
    keys.close()


def test_a_keys_use_is_written_at_most_every_ten_minutes_and_kept_a_day(
        tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.sqlite3")
    _, token = keys.create("anna", Role.DISPATCHER, actor="test", now_ms=T0)
    keys.note_use(token, now_ms=T0)
    keys.note_use(token, now_ms=T0 + 60_000)  # not written: a flush per request is too dear
    assert [at for _, at in keys.recent_uses(since_ms=0)] == [T0]
    keys.note_use(token, now_ms=T0 + KEY_USE_WRITE_MS)
    assert [at for _, at in keys.recent_uses(since_ms=0)] == [T0 + KEY_USE_WRITE_MS]
    _, other = keys.create("li", Role.VIEWER, actor="test", now_ms=T0)
    keys.note_use(other, now_ms=T0 + KEY_USE_WRITE_MS + KEY_USE_KEPT_MS + 1)
    assert [at for _, at in keys.recent_uses(since_ms=0)] == [
        T0 + KEY_USE_WRITE_MS + KEY_USE_KEPT_MS + 1], "a use older than a day is dropped"
    keys.close()


async def test_roles_gate_writes_with_403(api: Harness) -> None:
    alert = api.open_alert()
    for path, body in [(f"/api/v1/alerts/{alert.id}/acknowledge", {}),
                       (f"/api/v1/alerts/{alert.id}/resolve", {"note": "done"}),
                       ("/api/v1/visits/check-in",
                        {"site": "s", "bed": "b", "caregiver": "c-1", "visit": "v-1"})]:
        response = await api.client.post(path, json=body, headers=api.auth("viewer"))
        assert response.status_code == 403, path
        assert response.json()["error"] == "forbidden"
    for method, path in [("GET", "/api/v1/keys"), ("POST", "/api/v1/keys"),
                         ("DELETE", "/api/v1/keys/viewer-1"), ("GET", "/api/v1/audit")]:
        response = await api.client.request(method, path, headers=api.auth("dispatcher"),
                                            json={"name": "x", "role": "viewer"})
        assert response.status_code == 403, path


async def test_health_endpoints_of_the_app_need_no_key(api: Harness) -> None:
    @api.app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/openapi.json")).status_code == 200


# --- errors and limits ------------------------------------------------------------------------


async def test_bodies_over_64_kib_are_refused_with_413(api: Harness) -> None:
    alert = api.open_alert()
    response = await api.client.post(
        f"/api/v1/alerts/{alert.id}/resolve", headers=api.auth("dispatcher"),
        content=b'{"note": "' + b"x" * MAX_BODY_BYTES + b'"}',
        )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    response = await api.client.post(
        f"/api/v1/alerts/{alert.id}/resolve", content=chunks(),
        headers={**api.auth("dispatcher"), "Content-Type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("query", [
    "limit=0", "limit=1001", "status=closed", "site=" + "x" * 65, "site=a%20b",
    "since=-1", "cursor=" + "a" * 600, "severity=urgent", "until=9007199254740993"])
async def test_bad_query_parameters_are_422_without_echoing_input(
        api: Harness, query: str) -> None:
    response = await api.client.get(f"/api/v1/alerts?{query}", headers=api.auth("viewer"))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert all(set(item) == {"loc", "msg", "type"} for item in body["detail"])


async def test_an_unknown_alert_is_404_and_a_bad_transition_409(api: Harness) -> None:
    response = await api.client.post("/api/v1/alerts/NOPE/acknowledge",
                                     headers=api.auth("dispatcher"))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert (await api.client.get("/api/v1/alerts/NOPE", headers=api.auth("viewer"))
            ).status_code == 404
    alert = api.open_alert()
    ack = f"/api/v1/alerts/{alert.id}/acknowledge"
    assert (await api.client.post(ack, headers=api.auth("dispatcher"))).status_code == 200
    again = await api.client.post(ack, headers=api.auth("dispatcher"))
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"


async def test_unexpected_errors_are_a_json_500_without_a_trace(api: Harness) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    api.store.list_alerts = broken  # type: ignore[method-assign, assignment]
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app,
                                                             raise_app_exceptions=False),
                               base_url="http://testserver")
    response = await client.get("/api/v1/alerts", headers=api.auth("viewer"))
    await client.aclose()
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error",
                               "detail": "internal error; it has been logged"}
    assert "secret" not in response.text


async def test_the_alert_routes_answer_503_without_an_alert_engine(tmp_path: Path) -> None:
    harness = build(tmp_path)
    harness.ctx.alert_store = None
    harness.ctx.engine = None
    response = await harness.client.get("/api/v1/alerts", headers=harness.auth("viewer"))
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    await harness.client.aclose()


# --- keys and audit ---------------------------------------------------------------------------


async def test_admin_creates_lists_and_revokes_keys_and_every_write_is_audited(
        api: Harness) -> None:
    created = await api.client.post("/api/v1/keys", headers=api.auth("admin"),
                                    json={"name": "alice", "role": "dispatcher"})
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["role"], body["created_by"]) == ("alice", "dispatcher",
                                                                 "bootstrap")
    token = body["token"]
    alert = api.open_alert()
    acked = await api.client.post(f"/api/v1/alerts/{alert.id}/acknowledge",
                                  headers={"Authorization": f"Bearer {token}"},
                                  json={"note": "on my way"})
    assert acked.status_code == 200
    assert acked.json()["acknowledged_by"] == "alice"
    assert (await api.client.post("/api/v1/keys", headers=api.auth("admin"),
                                  json={"name": "alice", "role": "viewer"})).status_code == 409
    listed = (await api.client.get("/api/v1/keys", headers=api.auth("admin"))).json()
    assert "token" not in str(listed)
    assert sorted(k["name"] for k in listed["items"]) == ["alice", "dispatcher-1", "viewer-1"]
    revoked = await api.client.delete("/api/v1/keys/alice", headers=api.auth("admin"))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_by"] == "bootstrap"
    assert (await api.client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
            ).status_code == 401
    assert (await api.client.delete("/api/v1/keys/alice", headers=api.auth("admin"))
            ).status_code == 404
    audit = (await api.client.get("/api/v1/audit", headers=api.auth("admin"))).json()["items"]
    assert [(e["actor"], e["action"], e["target"], e["status"]) for e in audit] == [
        ("bootstrap", "DELETE", "/api/v1/keys/alice", 404),
        ("bootstrap", "DELETE", "/api/v1/keys/alice", 200),
        ("bootstrap", "POST", "/api/v1/keys", 409),
        ("alice", "POST", f"/api/v1/alerts/{alert.id}/acknowledge", 200),
        ("bootstrap", "POST", "/api/v1/keys", 201),
    ]


async def test_key_names_are_validated(api: Harness) -> None:
    for name, status in (("bootstrap", 400), ("System", 400), ("a b", 422), ("", 422)):
        response = await api.client.post("/api/v1/keys", headers=api.auth("admin"),
                                         json={"name": name, "role": "viewer"})
        assert response.status_code == status, name
    response = await api.client.post("/api/v1/keys", headers=api.auth("admin"),
                                     json={"name": "bob", "role": "root"})
    assert response.status_code == 422


async def test_openapi_declares_bearer_auth_on_every_api_operation(api: Harness) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    operations = [(path, method, op) for path, item in spec["paths"].items()
                  for method, op in item.items() if path.startswith("/api/")]
    assert len(operations) >= 14
    for path, method, op in operations:
        assert op.get("security") == [{"ApiKey": []}], (method, path)
        assert "401" in op["responses"], (method, path)


async def test_unknown_query_parameters_are_refused(api: Harness) -> None:
    response = await api.client.get("/api/v1/alerts", params={"staus": "open"},
                                    headers=api.auth("viewer"))
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["query", "staus"], "msg": "unknown query parameter", "type": "extra_forbidden"}]
    ok = await api.client.get("/api/v1/alerts/stream",
                              params={"follow": "false", "last_event_id": 0},
                              headers=api.auth("viewer"))
    assert ok.status_code == 200
