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
    assert ("4 visits performed (2 verified, 0 unverifiable, 1 flagged, 1 pending), 60 "
            "billable minutes (0 unverifiable)") in written.stderr
    assert page.read_text().count('<svg role="img"') == 3


def test_a_bad_month_or_table_is_refused(data_dir: Path) -> None:
    base = ["report", "supervision", "--data-dir", str(data_dir)]
    assert runner.invoke(app, [*base, "--month", "2026-13"]).exit_code == 2
    assert runner.invoke(app, [*base, "--month", "2026-11", "--table", "x"]).exit_code == 2
    assert runner.invoke(app, [*base, "--month", "2026-11", "--format", "pdf"]).exit_code == 2


def _flagged_turned_verified(path: Path) -> int:
    """A fresh verifier's forgery: a flagged service record edited into a verified one, it
    and every record after it re-hashed, and the stored head (and checkpoint) fixed."""
    import sqlite3

    from alerts.servicelog import _COLUMNS, _row_body, chain_hash

    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER IF EXISTS service_log_no_update")
    seq = next(s for s, detail in db.execute(
        "SELECT seq, detail FROM service_log WHERE event = 'service' ORDER BY seq")
        if json.loads(detail)["verdict"] == "flagged")
    detail = json.loads(db.execute("SELECT detail FROM service_log WHERE seq = ?",
                                   (seq,)).fetchone()[0])
    detail.update(verdict="verified", reasons=[])
    db.execute("UPDATE service_log SET detail = ? WHERE seq = ?", (json.dumps(detail), seq))
    prev = db.execute("SELECT hash FROM service_log WHERE seq = ?", (seq - 1,)).fetchone()[0]
    for row in db.execute(f"SELECT {_COLUMNS} FROM service_log WHERE seq >= ? ORDER BY seq",
                          (seq,)).fetchall():
        digest = chain_hash(prev, _row_body(row))
        db.execute("UPDATE service_log SET prev_hash = ?, hash = ? WHERE seq = ?",
                   (prev, digest, row[0]))
        prev = digest
    db.execute("UPDATE chain_head SET hash = ?", (prev,))
    db.execute("DELETE FROM verify_checkpoint")
    db.commit()
    db.close()
    return seq


def test_the_report_states_the_chain_and_a_tampered_one_loudly(data_dir: Path) -> None:
    # A fresh verifier: after a re-hashed edit turning a flagged verdict into verified, the
    # report billed the visit with exit status 0 and no word of the chain.
    import sqlite3

    path = data_dir / "servicelog.sqlite3"
    kept = sqlite3.connect(path).execute("SELECT seq, hash FROM service_log").fetchall()
    heads = data_dir / "heads.txt"
    heads.write_text("".join(f"{seq} {digest}\n" for seq, digest in kept))
    base = ["report", "supervision", "--month", "2026-11", "--data-dir", str(data_dir)]
    clean = runner.invoke(app, [*base, "--heads", str(heads)])
    assert clean.exit_code == 0, clean.output
    assert f"Service log chain: sound up to record {len(kept)} (against {len(kept)} heads " \
        "kept elsewhere)" in clean.stderr
    seq = _flagged_turned_verified(path)
    own_links = runner.invoke(app, [*base, "--format", "json"])
    assert own_links.exit_code == 0, "re-hashed: its own links cannot tell"
    assert "its own links; no head kept elsewhere given" in own_links.stderr
    assert json.loads(own_links.stdout)["chain"]["kept_heads"] == 0
    page = data_dir / "forged.html"
    forged = runner.invoke(app, [*base, "--format", "html", "--out", str(page), "--heads",
                                 str(heads)])
    assert forged.exit_code == 3, forged.output
    assert f"Service log chain NOT SOUND (first bad record {seq};" in forged.stderr
    assert "cannot be trusted" in forged.stderr
    assert '<div class="chain bad">Service log chain NOT SOUND' in page.read_text()
    as_json = runner.invoke(app, [*base, "--format", "json", "--heads", str(heads)])
    chain = json.loads(as_json.stdout)["chain"]
    assert (as_json.exit_code, chain["sound"], chain["first_bad_seq"]) == (3, False, seq)
