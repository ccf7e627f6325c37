"""Service log and visit routes in process: check-in/out by the app, idempotent retries,
filters, pages, chain verification."""

from __future__ import annotations

from tests.unit.test_api_app import T0, Harness, api

__all__ = ["api"]

VISIT = {"site": "site-01", "bed": "bed-0007", "caregiver": "c-012", "visit": "v-88"}


async def test_check_in_and_out_are_recorded_with_the_key_name_and_chained(
        api: Harness) -> None:
    checked_in = await api.client.post("/api/v1/visits/check-in", json=VISIT,
                                       headers=api.auth("dispatcher"))
    assert checked_in.status_code == 201
    record = checked_in.json()
    assert (record["seq"], record["event"], record["source"], record["method"],
            record["actor"], record["at"]) == (1, "check_in", "api", "app", "dispatcher-1", T0)
    assert record["prev_hash"] == "0" * 64
    api.now[0] = T0 + 1_800_000
    out = await api.client.post("/api/v1/visits/check-out",
                                json={**VISIT, "services": ["bath", "meds"]},
                                headers=api.auth("dispatcher"))
    assert out.status_code == 201
    assert out.json()["services"] == ["bath", "meds"]
    assert out.json()["prev_hash"] == record["hash"]
    retry = await api.client.post("/api/v1/visits/check-in", json=VISIT,
                                  headers=api.auth("admin"))
    assert retry.status_code == 200
    assert retry.json() == record, "a retried check-in returns the first record"
    check = (await api.client.get("/api/v1/service-logs/verify",
                                  headers=api.auth("viewer"))).json()
    assert check["ok"] is True
    assert check["records"] == 2
    assert check["head_hash"] == out.json()["hash"]


async def test_service_logs_are_filtered_and_paged_newest_first(api: Harness) -> None:
    for i in range(5):
        api.now[0] = T0 + i * 1000
        body = {**VISIT, "caregiver": f"c-{i % 2}", "visit": f"v-{i}"}
        assert (await api.client.post("/api/v1/visits/check-in", json=body,
                                      headers=api.auth("dispatcher"))).status_code == 201
    page = (await api.client.get("/api/v1/service-logs", params={"limit": 2},
                                 headers=api.auth("viewer"))).json()
    assert [r["seq"] for r in page["items"]] == [5, 4]
    rest = (await api.client.get("/api/v1/service-logs",
                                 params={"cursor": page["next_cursor"]},
                                 headers=api.auth("viewer"))).json()
    assert [r["seq"] for r in rest["items"]] == [3, 2, 1]
    assert rest["next_cursor"] is None
    by_caregiver = (await api.client.get(
        "/api/v1/service-logs", params={"caregiver": "c-1", "since": T0 + 2000},
        headers=api.auth("viewer"))).json()
    assert [r["visit"] for r in by_caregiver["items"]] == ["v-3"]
    by_bed = (await api.client.get(
        "/api/v1/service-logs", params={"site": "site-01", "bed": "bed-0001"},
        headers=api.auth("viewer"))).json()
    assert by_bed["items"] == []


async def test_visit_bodies_are_validated(api: Harness) -> None:
    for body in [{**VISIT, "caregiver": "Jane Doe"},  # names are not pseudonymous ids
                 {**VISIT, "site": "x" * 65},
                 {k: v for k, v in VISIT.items() if k != "visit"},
                 {**VISIT, "extra": 1},
                 {**VISIT, "services": ["ok"] * 101}]:
        response = await api.client.post("/api/v1/visits/check-out", json=body,
                                         headers=api.auth("dispatcher"))
        assert response.status_code == 422, body


async def test_a_failing_service_log_is_503_and_records_nothing(api: Harness) -> None:
    from gateway.servicelog import ServiceLogUnavailable

    def failing(*args: object, **kwargs: object) -> None:
        raise ServiceLogUnavailable("service log write failed: disk I/O error")

    api.ctx.service_log.append = failing  # type: ignore[method-assign, assignment]
    response = await api.client.post("/api/v1/visits/check-in", json=VISIT,
                                      headers=api.auth("dispatcher"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "unavailable"
