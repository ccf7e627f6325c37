"""Plan routes in process: the catalogue, idempotent upserts keyed by site and plan id, a
clear problem per field or row (400, never the value), all-or-nothing imports, pages by
window, roles (viewers read, admins change) and the audit of every change."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alerts import PlanStore
from devices.registry import Registry
from tests.unit.test_api_app import Harness, build

REGISTRY = {"defaults": {"timezone": "Asia/Shanghai"},
            "sites": {"site-01": {"beds": {"bed-0001": {}, "bed-0002": {}}},
                      "site-02": {"timezone": "Europe/Berlin", "beds": {"bed-0101": {}}}}}
PLAN = {"bed": "bed-0001", "caregiver": "c001", "date": "2026-11-02", "start": "08:30",
        "end": "10:35", "services": ["bathing", "medication"]}
CSV = ("site,bed,plan,caregiver,date,start,end,services\n"
       "site-01,bed-0001,p-1,c001,2026-11-02,08:30,10:35,bathing;medication\n"
       "site-01,bed-0002,p-2,c001,2026-11-02,10:30,12:35,cleaning\n"
       "site-02,bed-0101,p-3,c009,2026-11-02,14:00,16:05,rehab\n")


def local_ms(date: str, time: str, zone: str) -> int:
    moment = dt.datetime.fromisoformat(f"{date}T{time}").replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return round(moment.timestamp() * 1000)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = build(tmp_path, registry=Registry.from_mapping(REGISTRY),
                    plans=PlanStore(tmp_path / "plans.sqlite3"))
    try:
        yield harness
    finally:
        await harness.client.aclose()


async def put(api: Harness, site: str, plan: str, body: dict[str, Any],
              role: str = "admin") -> Any:
    return await api.client.put(f"/api/v1/plans/{site}/{plan}", json=body,
                                headers=api.auth(role))


async def test_the_catalogue_lists_the_stations_items(api: Harness) -> None:
    answer = await api.client.get("/api/v1/plans/catalogue", headers=api.auth("viewer"))
    assert answer.status_code == 200
    items = {i["code"]: i for i in answer.json()["items"]}
    assert items["bathing"] == {"code": "bathing", "minutes": 30.0, "recording": True}
    assert items["cleaning"]["recording"] is False


async def test_a_put_is_an_idempotent_upsert_in_the_sites_zone(api: Harness) -> None:
    created = await put(api, "site-01", "p-1", PLAN)
    assert created.status_code == 201, created.text
    plan = created.json()
    assert plan["start_ms"] == local_ms("2026-11-02", "08:30", "Asia/Shanghai")
    assert (plan["updated_by"], plan["services"]) == ("bootstrap", ["bathing", "medication"])
    again = await put(api, "site-01", "p-1", PLAN)
    assert again.status_code == 200
    assert again.json() == plan, "the same plan again changes nothing"
    moved = await put(api, "site-01", "p-1", {**PLAN, "start": "09:00"})
    assert moved.status_code == 200
    assert moved.json()["start"] == "09:00"
    berlin = await put(api, "site-02", "p-9", {**PLAN, "bed": "bed-0101"})
    assert berlin.json()["start_ms"] == local_ms("2026-11-02", "08:30", "Europe/Berlin")
    got = await api.client.get("/api/v1/plans/site-01/p-1", headers=api.auth("viewer"))
    assert got.json()["start"] == "09:00"


async def test_a_bad_plan_names_each_field_without_its_value(api: Harness) -> None:
    answer = await put(api, "site-01", "p-1", {**PLAN, "date": "2026-02-30",
                                               "services": ["bathing", "haircut"]})
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "invalid_plan"
    assert [(p["column"], p["msg"][:26]) for p in body["detail"]] == [
        ("date", "not a date (YYYY-MM-DD)"), ("services", "unknown service code hairc")]
    shape = await put(api, "site-01", "p-1", {**PLAN, "caregiver": "Wang Mei"})
    assert shape.status_code == 422
    assert "Wang Mei" not in shape.text


async def test_an_import_is_all_or_nothing_with_a_problem_per_row(api: Harness) -> None:
    bad = CSV.replace("c009", "Li Ping")
    refused = await api.client.post("/api/v1/plans/import", json={"csv": bad},
                                    headers=api.auth("admin"))
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_csv"
    assert refused.json()["detail"] == [{"row": 4, "column": "caregiver",
                                         "msg": "not an id (printable characters, no spaces, "
                                                "/ or \\, not starting with = + - @, at most "
                                                "128)"}]
    assert "Li Ping" not in refused.text
    listed = await api.client.get("/api/v1/plans", headers=api.auth("viewer"))
    assert listed.json()["items"] == []
    dry = await api.client.post("/api/v1/plans/import", json={"csv": CSV, "dry_run": True},
                                headers=api.auth("admin"))
    assert (dry.json()["created"], dry.json()["dry_run"]) == (3, True)
    done = await api.client.post("/api/v1/plans/import", json={"csv": CSV},
                                 headers=api.auth("admin"))
    assert done.status_code == 200
    assert [(r["row"], r["plan"], r["result"]) for r in done.json()["rows"]] == [
        (2, "p-1", "created"), (3, "p-2", "created"), (4, "p-3", "created")]
    again = await api.client.post("/api/v1/plans/import", json={"csv": CSV},
                                  headers=api.auth("admin"))
    assert again.json()["unchanged"] == 3


async def test_plans_are_listed_by_window_with_filters_and_pages(api: Harness) -> None:
    await api.client.post("/api/v1/plans/import", json={"csv": CSV}, headers=api.auth("admin"))
    page = (await api.client.get("/api/v1/plans", params={"limit": 2},
                                 headers=api.auth("viewer"))).json()
    assert [p["plan"] for p in page["items"]] == ["p-1", "p-2"]
    rest = (await api.client.get("/api/v1/plans", params={"cursor": page["next_cursor"]},
                                 headers=api.auth("viewer"))).json()
    assert [p["plan"] for p in rest["items"]] == ["p-3"]
    assert rest["next_cursor"] is None
    one_bed = (await api.client.get("/api/v1/plans", params={"site": "site-01",
                                                               "bed": "bed-0002"},
                                    headers=api.auth("viewer"))).json()
    assert [p["plan"] for p in one_bed["items"]] == ["p-2"]
    later = (await api.client.get(
        "/api/v1/plans", params={"since": local_ms("2026-11-02", "11:00", "Asia/Shanghai")},
        headers=api.auth("viewer"))).json()
    assert [p["plan"] for p in later["items"]] == ["p-2", "p-3"]


async def test_only_admins_change_plans_and_every_change_is_audited(api: Harness) -> None:
    for role in ("viewer", "dispatcher"):
        assert (await put(api, "site-01", "p-1", PLAN, role=role)).status_code == 403
    assert (await put(api, "site-01", "p-1", PLAN)).status_code == 201
    deleted = await api.client.delete("/api/v1/plans/site-01/p-1", headers=api.auth("admin"))
    assert deleted.status_code == 204
    gone = await api.client.get("/api/v1/plans/site-01/p-1", headers=api.auth("viewer"))
    assert gone.status_code == 404
    again = await api.client.delete("/api/v1/plans/site-01/p-1", headers=api.auth("admin"))
    assert again.status_code == 404
    audit = [(e.action, e.target) for e in api.keys.audit_log() if "/plans" in e.target]
    assert ("PUT", "/api/v1/plans/site-01/p-1") in audit
    assert ("DELETE", "/api/v1/plans/site-01/p-1") in audit


async def test_without_a_plan_store_the_routes_answer_503(tmp_path: Path) -> None:
    harness = build(tmp_path)
    try:
        answer = await harness.client.get("/api/v1/plans", headers=harness.auth("viewer"))
        assert answer.status_code == 503
    finally:
        await harness.client.aclose()


async def test_a_site_or_bed_the_registry_does_not_list_is_refused(api: Harness) -> None:
    unknown_site = await put(api, "site-77", "p-1", PLAN)
    assert unknown_site.status_code == 400, unknown_site.text
    assert [(p["column"], p["msg"][:26]) for p in unknown_site.json()["detail"]] == [
        ("site", "not a site of the registry")]
    other_sites = await put(api, "site-01", "p-1", {**PLAN, "bed": "bed-0101"})
    assert other_sites.status_code == 400
    assert "under another site" in other_sites.json()["detail"][0]["msg"]
    rows = CSV + "site-77,bed-0001,p-4,c001,2026-11-02,08:30,09:30,cleaning\n"
    refused = await api.client.post("/api/v1/plans/import", json={"csv": rows},
                                    headers=api.auth("admin"))
    assert refused.status_code == 400
    assert [(p["row"], p["column"]) for p in refused.json()["detail"]] == [(5, "site")]
    assert "site-77" not in refused.text


async def test_a_date_out_of_range_is_a_clear_400_not_a_500(api: Harness) -> None:
    # 9999-12-31 23:00-01:00 ended past the last datetime: 500 internal_error until 2026-12-01.
    for date in ("9999-12-31", "0001-01-01"):
        answer = await put(api, "site-01", "p-1", {**PLAN, "date": date, "start": "23:00",
                                                   "end": "01:00"})
        assert answer.status_code == 400, answer.text
        assert answer.json()["detail"][0]["column"] == "date"


async def test_a_month_of_a_large_station_is_imported_in_one_request(api: Harness) -> None:
    # 64 KiB (about 1,000 rows) was the limit until 2026-12-01 (413).
    rows = [f"site-01,bed-000{1 + n % 2},p-{n:06d},c{n % 40:03d},2026-11-{1 + n % 30:02d},"
            f"{8 + n % 10:02d}:00,{9 + n % 10:02d}:30,bathing;medication" for n in range(24_800)]
    text = CSV.split("\n", 1)[0] + "\n" + "\n".join(rows) + "\n"
    assert len(text.encode()) > 1_800_000
    done = await api.client.post("/api/v1/plans/import", json={"csv": text, "dry_run": True},
                                 headers=api.auth("admin"))
    assert done.status_code == 200, done.text[:300]
    assert done.json()["created"] == 24_800
    # Still bounded: past 4 MiB is 413, and other routes keep 64 KiB.
    huge = await api.client.post("/api/v1/plans/import", json={"csv": text * 3},
                                 headers=api.auth("admin"))
    assert huge.status_code == 413
    big_put = await put(api, "site-01", "p-1", {**PLAN, "pad": "x" * 70_000})
    assert big_put.status_code == 413
