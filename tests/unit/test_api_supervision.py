"""``GET /api/v1/reports/supervision`` in process: dispatcher and admin keys only; the month's
report as JSON, as a CSV table, or as the printable page under its own policy; the same
figures as the report built from the stores."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alerts.planstore import PlanStore
from alerts.supervision import supervision_report
from devices.registry import Registry
from tests.unit.test_api_app import Harness, build
from tests.unit.test_supervision import CATALOGUE, INSTITUTIONS, SHANGHAI, Station, small_month

REGISTRY = {"defaults": {"timezone": "Asia/Shanghai"},
            "sites": {"site-01": {"beds": {"bed-1": {}}}}}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Harness, Station]]:
    harness = build(tmp_path / "api", registry=Registry.from_mapping(REGISTRY),
                    plans=PlanStore(tmp_path / "api" / "plans.sqlite3"),
                    institutions=INSTITUTIONS)
    station = Station(tmp_path / "api")
    station.log = harness.ctx.service_log
    station.store = harness.store
    station.engine = harness.engine
    assert harness.ctx.plans is not None
    station.plans = harness.ctx.plans
    harness.now[0] = small_month(station)
    try:
        yield harness, station
    finally:
        await harness.client.aclose()


async def test_the_months_report_for_dispatchers_as_json_csv_and_page(
        api: tuple[Harness, Station]) -> None:
    harness, station = api
    url = "/api/v1/reports/supervision"
    refused = await harness.client.get(url, params={"month": "2026-11"},
                                       headers=harness.auth("viewer"))
    assert refused.status_code == 403
    answer = await harness.client.get(url, params={"month": "2026-11"},
                                      headers=harness.auth("dispatcher"))
    assert answer.status_code == 200, answer.text
    report = answer.json()
    expected = supervision_report(log=station.log, plans=station.plans, catalogue=CATALOGUE,
                                  month="2026-11", zone_of=lambda site: SHANGHAI,
                                  institutions=INSTITUTIONS, now_ms=harness.now[0])
    assert report["total"] == expected.total.to_json()
    assert (report["total"]["performed"], report["total"]["verified"],
            report["total"]["billable_minutes"]) == (4, 2, 60.0)
    assert [i["institution"] for i in report["institutions"]] == ["care-north", "site-03"]
    assert len(report["visits"]) == 5
    table = await harness.client.get(url, params={"month": "2026-11", "format": "csv",
                                                  "table": "visits",
                                                  "institution": "care-north"},
                                     headers=harness.auth("admin"))
    assert table.headers["content-type"].startswith("text/csv")
    assert "supervision-2026-11-care-north-visits.csv" in table.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert sorted(r["status"] for r in rows) == ["flagged", "unfinished", "verified",
                                                 "verified"]
    page = await harness.client.get(url, params={"month": "2026-11", "format": "html"},
                                    headers=harness.auth("dispatcher"))
    assert page.headers["content-type"].startswith("text/html")
    assert "style-src 'sha256-" in page.headers["content-security-policy"]
    assert "script" not in page.headers["content-security-policy"]
    assert page.text.count('<svg role="img"') == 3


async def test_a_month_is_yyyy_mm(api: tuple[Harness, Station]) -> None:
    harness, _ = api
    for month in ("2026-13", "2026-1", "november"):
        bad = await harness.client.get("/api/v1/reports/supervision", params={"month": month},
                                       headers=harness.auth("dispatcher"))
        assert bad.status_code == 422, month


async def test_the_report_states_the_chain_and_a_bad_one_prominently(
        api: tuple[Harness, Station], tmp_path: Path) -> None:
    # A fresh verifier: the report trusted a tampered log without a word.
    from tests.unit.test_servicelog import tamper

    harness, station = api
    url = "/api/v1/reports/supervision"
    sound = await harness.client.get(url, params={"month": "2026-11"},
                                     headers=harness.auth("dispatcher"))
    assert sound.headers["x-service-log-chain"].startswith("sound; records=")
    assert sound.json()["chain"]["sound"] is True
    assert sound.json()["chain"]["headline"].startswith("Service log chain: sound up to")
    tamper(tmp_path / "api" / "servicelog.sqlite3",
           "UPDATE service_log SET services = '[\"bath\",\"rehab\"]' WHERE seq = 2")
    assert not station.log.audit().ok  # the gateway's background full verification
    for format in ("json", "html", "csv"):
        answer = await harness.client.get(url, params={"month": "2026-11", "format": format},
                                          headers=harness.auth("dispatcher"))
        assert answer.headers["x-service-log-chain"].startswith("NOT SOUND"), format
        assert "first_bad_seq=2" in answer.headers["x-service-log-chain"]
    assert answer.status_code == 200
    page = await harness.client.get(url, params={"month": "2026-11", "format": "html"},
                                    headers=harness.auth("dispatcher"))
    assert '<div class="chain bad">Service log chain NOT SOUND (first bad record 2' in page.text
    chain = (await harness.client.get(url, params={"month": "2026-11"},
                                      headers=harness.auth("dispatcher"))).json()["chain"]
    assert (chain["sound"], chain["first_bad_seq"]) == (False, 2)
