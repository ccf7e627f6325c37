"""The zone a plan's local times are read in (issue #14, a fresh verifier): with no zone in
the registry or the settings (the machine on UTC, the station in Beijing), ``homecare plans
import`` stored the times as UTC without a word, 8 hours off. Now every import says which zone
each site's times are read in, and a site with no zone configured is refused unless the zone
is given (``--timezone``, the API's ``timezone``); a given zone that contradicts a configured
one is refused too."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerts import PlanStore
from devices.registry import Registry
from homecare.cli import app
from tests.unit.test_api_app import Harness, build

runner = CliRunner()
SCHEDULE = ("site,bed,plan,caregiver,date,start,end,services\n"
            "bj-chaoyang,bed-A,P1,cg-wang,2026-12-02,09:00,09:30,meal_assist\n")
NINE_IN_BEIJING = round(dt.datetime(2026, 12, 2, 9, 0, tzinfo=zoneinfo.ZoneInfo(
    "Asia/Shanghai")).timestamp() * 1000)


@pytest.fixture(autouse=True)
def no_zone_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOMECARE_TIMEZONE", raising=False)
    monkeypatch.setenv("TZ", "UTC")  # the server's clock, not the station's


def station(tmp_path: Path, registry: str = "") -> tuple[Path, Path, Path]:
    data = tmp_path / "data"
    data.mkdir()
    sites = tmp_path / "sites.toml"
    sites.write_text(registry or "[sites.bj-chaoyang.beds.bed-A]\n", encoding="utf-8")
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{data}"\nregistry_file = "{sites}"\n', encoding="utf-8")
    schedule = tmp_path / "december.csv"
    schedule.write_text(SCHEDULE, encoding="utf-8")
    return config, data, schedule


def stored(data: Path) -> list[int]:
    with PlanStore(data / "plans.sqlite3") as store:
        return [p.start_ms for p in store.list()]


def test_without_a_zone_the_import_is_refused_not_read_as_utc(tmp_path: Path) -> None:
    config, data, schedule = station(tmp_path)
    result = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert (f"{schedule}: no time zone is configured for site bj-chaoyang (the registry's "
            "timezone, or the timezone setting): its times would be read as the machine's "
            "(UTC); give the zone the file's times are in (such as --timezone Asia/Shanghai, "
            "or timezone in the request) or configure it") in result.stderr
    assert "nothing was imported" in result.stderr
    assert stored(data) == []


def test_a_zone_given_is_used_and_said(tmp_path: Path) -> None:
    config, data, schedule = station(tmp_path)
    result = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config),
                                 "--timezone", "Asia/Shanghai"])
    assert result.exit_code == 0, result.output
    assert (f"homecare plans: the times of {schedule} are read in: bj-chaoyang "
            "Asia/Shanghai (given)") in result.stderr
    assert stored(data) == [NINE_IN_BEIJING]


def test_a_configured_zone_is_said_and_a_contradicting_one_refused(tmp_path: Path) -> None:
    config, data, schedule = station(tmp_path, '[defaults]\ntimezone = "Asia/Shanghai"\n'
                                               "[sites.bj-chaoyang.beds.bed-A]\n")
    wrong = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config),
                                "--timezone", "Europe/Berlin"])
    assert wrong.exit_code == 1
    assert ("site bj-chaoyang's zone is Asia/Shanghai (configured), not Europe/Berlin as "
            "given") in wrong.stderr
    unknown = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config),
                                  "--timezone", "Beijing"])
    assert unknown.exit_code == 2
    assert "unknown time zone 'Beijing'" in unknown.stderr
    assert stored(data) == []
    result = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "are read in: bj-chaoyang Asia/Shanghai (configured)" in result.stderr
    assert stored(data) == [NINE_IN_BEIJING]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = build(tmp_path, registry=Registry.from_mapping(
        {"sites": {"bj-chaoyang": {"beds": {"bed-A": {}}}}}),
        plans=PlanStore(tmp_path / "plans.sqlite3"))
    try:
        yield harness
    finally:
        await harness.client.aclose()


async def test_the_api_refuses_a_site_without_a_zone_unless_given(api: Harness) -> None:
    refused = await api.client.post("/api/v1/plans/import", json={"csv": SCHEDULE},
                                    headers=api.auth("admin"))
    assert refused.status_code == 400
    assert refused.json()["error"] == "no_timezone"
    assert refused.json()["detail"][0]["msg"].startswith(
        "no time zone is configured for site bj-chaoyang")
    plan = {"bed": "bed-A", "caregiver": "cg-wang", "date": "2026-12-02", "start": "09:00",
            "end": "09:30", "services": ["meal_assist"]}
    put = await api.client.put("/api/v1/plans/bj-chaoyang/P1", json=plan,
                               headers=api.auth("admin"))
    assert put.status_code == 400
    assert put.json()["error"] == "no_timezone"
    listed = await api.client.get("/api/v1/plans", headers=api.auth("viewer"))
    assert listed.json()["items"] == []
    done = await api.client.post("/api/v1/plans/import",
                                 json={"csv": SCHEDULE, "timezone": "Asia/Shanghai"},
                                 headers=api.auth("admin"))
    assert done.status_code == 200, done.text
    assert done.json()["zones"] == {"bj-chaoyang": "Asia/Shanghai (given)"}
    listed = await api.client.get("/api/v1/plans", headers=api.auth("viewer"))
    assert [p["start_ms"] for p in listed.json()["items"]] == [NINE_IN_BEIJING]
    put = await api.client.put("/api/v1/plans/bj-chaoyang/P2",
                               json={**plan, "timezone": "Asia/Shanghai"},
                               headers=api.auth("admin"))
    assert put.status_code == 201, put.text
