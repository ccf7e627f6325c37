"""``homecare plans import``: a care institution's schedule of visits into the gateway's plan
file, every bad row named (and then nothing imported), the same file twice changing nothing,
the windows in each site's zone from the registry, audited with the operator's name."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

from typer.testing import CliRunner

from alerts.keys import KeyStore
from alerts.planstore import PlanStore
from homecare.cli import app

runner = CliRunner()
SCHEDULE = ("site,bed,plan,caregiver,date,start,end,services\n"
            "site-01,bed-0001,p-1,c001,2026-11-02,08:30,10:35,bathing;medication\n"
            "site-02,bed-0101,p-2,c007,2026-11-02,08:30,10:35,cleaning\n")
REGISTRY = """
[defaults]
timezone = "Asia/Shanghai"

[sites.site-01.beds.bed-0001]

[sites.site-02]
timezone = "Europe/Berlin"

[sites.site-03]
timezone = "America/New_York"

[sites.site-03.beds.bed-0301]
"""


def local_ms(date: str, time: str, zone: str) -> int:
    moment = dt.datetime.fromisoformat(f"{date}T{time}").replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return round(moment.timestamp() * 1000)


def gateway(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    data.mkdir()
    registry = tmp_path / "sites.toml"
    registry.write_text(REGISTRY, encoding="utf-8")
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{data}"\nregistry_file = "{registry}"\n', encoding="utf-8")
    return config, data


def test_import_then_again_changes_nothing_and_is_audited(tmp_path: Path) -> None:
    config, data = gateway(tmp_path)
    schedule = tmp_path / "november.csv"
    schedule.write_text(SCHEDULE, encoding="utf-8")
    first = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == ["row 2 site-01/p-1: created",
                                         "row 3 site-02/p-2: created"]
    assert "created 2, updated 0, unchanged 0" in first.stderr
    with PlanStore(data / "plans.sqlite3") as store:
        shanghai, berlin = store.get("site-01", "p-1"), store.get("site-02", "p-2")
    assert shanghai is not None
    assert berlin is not None
    assert shanghai.start_ms == local_ms("2026-11-02", "08:30", "Asia/Shanghai")
    assert berlin.start_ms == local_ms("2026-11-02", "08:30", "Europe/Berlin")
    assert shanghai.updated_by.startswith("cli")
    again = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config)])
    assert again.exit_code == 0
    assert "created 0, updated 0, unchanged 2" in again.stderr
    keys = KeyStore(data / "keys.sqlite3")
    audit = keys.audit_log()
    keys.close()
    assert [(e.action, e.target, e.detail) for e in reversed(audit)] == [
        ("IMPORT", "plans from november.csv", "created 2, updated 0, unchanged 0"),
        ("IMPORT", "plans from november.csv", "created 0, updated 0, unchanged 2")]


def test_a_bad_file_is_refused_row_by_row_and_nothing_is_imported(tmp_path: Path) -> None:
    config, data = gateway(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(SCHEDULE.replace("c007", "Wang Mei").replace("cleaning", "haircut"),
                   encoding="utf-8")
    result = runner.invoke(app, ["plans", "import", str(bad), "--config", str(config)])
    assert result.exit_code == 1
    assert f"{bad}: row 3, caregiver: not an id" in result.stderr
    assert f"{bad}: row 3, services: unknown service code haircut" in result.stderr
    assert "2 problems" in result.stderr
    assert "nothing was imported" in result.stderr
    assert "Wang Mei" not in result.output
    assert not (data / "plans.sqlite3").exists()


def test_a_dry_run_says_what_would_change_and_writes_nothing(tmp_path: Path) -> None:
    config, data = gateway(tmp_path)
    schedule = tmp_path / "november.csv"
    schedule.write_text(SCHEDULE, encoding="utf-8")
    result = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config),
                                 "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would be created 2" in result.stderr
    with PlanStore(data / "plans.sqlite3") as store:
        assert store.list() == []


def test_the_stations_own_catalogue_decides_which_codes_are_known(tmp_path: Path) -> None:
    config, _ = gateway(tmp_path)
    schedule = tmp_path / "wounds.csv"
    schedule.write_text("site,bed,plan,caregiver,date,start,end,services\n"
                        "site-01,bed-0001,p-9,c001,2026-11-02,08:30,10:35,wound_care\n",
                        encoding="utf-8")
    refused = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config)])
    assert refused.exit_code == 1
    config.write_text(config.read_text() + 'service_catalogue = ["wound_care:20:recorded"]\n',
                      encoding="utf-8")
    taken = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config)])
    assert taken.exit_code == 0, taken.output


def test_a_non_utf8_file_is_refused_with_advice(tmp_path: Path) -> None:
    config, _ = gateway(tmp_path)
    schedule = tmp_path / "gbk.csv"
    schedule.write_bytes(SCHEDULE.replace("p-1", "计划").encode("gbk"))
    result = runner.invoke(app, ["plans", "import", str(schedule), "--config", str(config)])
    assert result.exit_code == 1
    assert "not UTF-8" in result.stderr


def test_rows_the_registry_does_not_place_and_absurd_dates_are_refused_per_row(
        tmp_path: Path) -> None:
    # Until 2026-12-01 the first three were imported (site-77's times read in UTC) and the
    # last one ended in a traceback (OverflowError).
    config, data = gateway(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("site,bed,plan,caregiver,date,start,end,services\n"
                   "site-77,bed-0001,p-1,c001,2026-11-02,08:30,10:35,bathing\n"
                   "site-01,bed-0301,p-2,c001,2026-11-02,08:30,10:35,bathing\n"
                   "site-03,bed-0399,p-3,c001,2026-11-02,08:30,10:35,bathing\n"
                   "site-01,bed-0001,p-4,c001,9999-12-31,23:00,01:00,bathing\n",
                   encoding="utf-8")
    result = runner.invoke(app, ["plans", "import", str(bad), "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines() == [
        f"{bad}: row 2, site: not a site of the registry (its time zone and beds are unknown)",
        f"{bad}: row 3, bed: the registry lists this bed under another site",
        f"{bad}: row 4, bed: not a bed of this site in the registry",
        f"{bad}: row 5, date: outside the dates plans may have (2000-01-01 to 2099-12-31)",
        f"homecare plans: 4 problems in {bad}; nothing was imported"]
    assert not (data / "plans.sqlite3").exists()
    one = tmp_path / "one.csv"
    one.write_text(SCHEDULE.replace("site-02", "site-77"), encoding="utf-8")
    result = runner.invoke(app, ["plans", "import", str(one), "--config", str(config)])
    assert f"homecare plans: 1 problem in {one}; nothing was imported" in result.stderr
