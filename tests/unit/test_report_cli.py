"""``homecare report supervision``: the month's report from the data directory as CSV, JSON or
the printable page, to standard output or a file, with the station's settings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from homecare.cli import app
from tests.unit.test_supervision import Station, small_month

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    station = Station(tmp_path)
    small_month(station)
    for store in (station.log, station.store, station.plans):
        store.close()
    monkeypatch.setenv("HOMECARE_TIMEZONE", "Asia/Shanghai")
    monkeypatch.setenv("HOMECARE_SERVICE_INSTITUTIONS", "site-01=care-north,site-02=care-north")
    return tmp_path


def test_the_months_report_as_csv_json_and_page(data_dir: Path) -> None:
    base = ["report", "supervision", "--month", "2026-11", "--data-dir", str(data_dir)]
    table = runner.invoke(app, base)
    assert table.exit_code == 0, table.output
    rows = {(r["institution"], r["caregiver"]): r
            for r in csv.DictReader(io.StringIO(table.stdout))}
    assert (rows[("*", "*")]["performed"], rows[("*", "*")]["verified"],
            rows[("*", "*")]["billable_minutes"]) == ("4", "2", "60.0")
    assert rows[("care-north", "c-1")]["reasons"] == "no_recording:1;too_short:1"
    as_json = runner.invoke(app, [*base, "--format", "json", "--institution", "site-03"])
    assert json.loads(as_json.stdout)["total"]["pending"] == 1
    page = data_dir / "supervision.html"
    written = runner.invoke(app, [*base, "--format", "html", "--out", str(page)])
    assert written.exit_code == 0, written.output
    assert "4 visits performed (2 verified, 1 flagged, 1 pending), 60 billable minutes" in \
        written.stderr
    assert page.read_text().count('<svg role="img"') == 3


def test_a_bad_month_or_table_is_refused(data_dir: Path) -> None:
    base = ["report", "supervision", "--data-dir", str(data_dir)]
    assert runner.invoke(app, [*base, "--month", "2026-13"]).exit_code == 2
    assert runner.invoke(app, [*base, "--month", "2026-11", "--table", "x"]).exit_code == 2
    assert runner.invoke(app, [*base, "--month", "2026-11", "--format", "pdf"]).exit_code == 2
