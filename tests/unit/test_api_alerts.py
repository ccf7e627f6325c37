"""Alert routes in process: list with filters and cursor pages, one with history, acknowledge,
resolve with a note and an outcome code."""

from __future__ import annotations

from alerts.model import AlertType, Severity
from tests.unit.test_api_app import T0, Harness, api

__all__ = ["api"]


async def test_list_is_filtered_and_paged_without_repeats_or_gaps(api: Harness) -> None:
    opened = []
    for i in range(25):
        severity = (Severity.CRITICAL, Severity.HIGH, Severity.LOW)[i % 3]
        kind = (AlertType.FALL, AlertType.INACTIVITY, AlertType.LOW_BATTERY)[i % 3]
        opened.append(api.open_alert(bed=f"bed-{i}", type=kind, severity=severity,
                                     at=T0 + i * 1000))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        body = (await api.client.get("/api/v1/alerts", params=params,
                                     headers=api.auth("viewer"))).json()
        seen.extend(a["id"] for a in body["items"])
        cursor = body["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert pages == 4
    assert sorted(seen) == sorted(a.id for a in opened)
    assert len(set(seen)) == 25
    first = (await api.client.get("/api/v1/alerts", headers=api.auth("viewer"))).json()
    ranks = [(Severity(a["severity"]).rank, -a["opened_at"]) for a in first["items"]]
    assert ranks == sorted(ranks), "most severe first, then newest"

    critical = (await api.client.get(
        "/api/v1/alerts", params=[("severity", "critical"), ("severity", "low")],
        headers=api.auth("viewer"))).json()["items"]
    assert {a["severity"] for a in critical} == {"critical", "low"}
    assert len(critical) == 17
    by_bed = (await api.client.get(
        "/api/v1/alerts", params=[("bed", "bed-3"), ("bed", "bed-4"), ("site", "site-01")],
        headers=api.auth("viewer"))).json()["items"]
    assert sorted(a["bed"] for a in by_bed) == ["bed-3", "bed-4"]
    timed = (await api.client.get(
        "/api/v1/alerts", params={"since": T0 + 5000, "until": T0 + 8000, "type": "fall"},
        headers=api.auth("viewer"))).json()["items"]
    assert [a["bed"] for a in timed] == ["bed-6"]


async def test_a_cursor_the_gateway_did_not_make_is_400(api: Harness) -> None:
    response = await api.client.get("/api/v1/alerts", params={"cursor": "bm9wZQ"},
                                    headers=api.auth("viewer"))
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


async def test_acknowledge_then_resolve_records_who_when_and_notes_in_the_history(
        api: Harness) -> None:
    alert = api.open_alert(type=AlertType.EMERGENCY_BUTTON)
    api.now[0] = T0 + 30_000
    acked = await api.client.post(f"/api/v1/alerts/{alert.id}/acknowledge",
                                  headers=api.auth("dispatcher"))
    assert acked.status_code == 200
    assert acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "dispatcher-1"
    assert acked.json()["acknowledged_at"] == T0 + 30_000
    no_note = await api.client.post(f"/api/v1/alerts/{alert.id}/resolve", json={},
                                    headers=api.auth("dispatcher"))
    assert no_note.status_code == 422
    blank = await api.client.post(f"/api/v1/alerts/{alert.id}/resolve", json={"note": "  "},
                                  headers=api.auth("dispatcher"))
    assert blank.status_code == 422
    no_outcome = await api.client.post(f"/api/v1/alerts/{alert.id}/resolve",
                                       json={"note": "visited, person fine"},
                                       headers=api.auth("dispatcher"))
    assert no_outcome.status_code == 422
    [missing] = no_outcome.json()["detail"]
    assert missing["loc"] == ["body", "outcome"]
    assert "outcome code" in missing["msg"]
    unknown = await api.client.post(f"/api/v1/alerts/{alert.id}/resolve",
                                    json={"note": "visited", "outcome": "fine"},
                                    headers=api.auth("dispatcher"))
    assert unknown.status_code == 422
    assert "'false_alarm'" in unknown.json()["detail"][0]["msg"]  # the codes are named
    api.now[0] = T0 + 90_000
    resolved = await api.client.post(f"/api/v1/alerts/{alert.id}/resolve",
                                     json={"note": "visited, person fine",
                                           "outcome": "caregiver_sent"},
                                     headers=api.auth("admin"))
    assert resolved.status_code == 200
    body = resolved.json()
    assert (body["status"], body["resolved_by"], body["resolved_at"], body["note"],
            body["outcome"]) == ("resolved", "bootstrap", T0 + 90_000, "visited, person fine",
                                 "caregiver_sent")
    detail = (await api.client.get(f"/api/v1/alerts/{alert.id}",
                                   headers=api.auth("viewer"))).json()
    assert detail["evidence"] == {"device": "dev-bed-1", "calling_devices": ["dev-bed-1"]}
    assert [(h["action"], h["actor"], h["note"], h["status"], h["outcome"])
            for h in detail["history"]] == [
        ("opened", None, None, "open", None),
        ("acknowledged", "dispatcher-1", None, "acknowledged", None),
        ("resolved", "bootstrap", "visited, person fine", "resolved", "caregiver_sent")]
    assert [h["seq"] for h in detail["history"]] == [1, 2, 3]


async def test_resolving_an_open_alert_directly_is_allowed_once(api: Harness) -> None:
    alert = api.open_alert()
    path = f"/api/v1/alerts/{alert.id}/resolve"
    first = await api.client.post(path, json={"note": "spoke to her", "outcome": "false_alarm"},
                                  headers=api.auth("dispatcher"))
    assert first.status_code == 200
    again = await api.client.post(path, json={"note": "again", "outcome": "other"},
                                  headers=api.auth("dispatcher"))
    assert again.status_code == 409


async def test_unknown_fields_in_bodies_are_refused(api: Harness) -> None:
    alert = api.open_alert()
    response = await api.client.post(f"/api/v1/alerts/{alert.id}/acknowledge",
                                     json={"note": "x", "actor": "someone-else"},
                                     headers=api.auth("dispatcher"))
    assert response.status_code == 422
