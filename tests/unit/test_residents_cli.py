"""``homecare residents import``: a care institution's CSV file into the gateway's private
profile file, every bad row named (and then nothing imported), the same file twice changing
nothing, audited with the operator's name. Synthetic people only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from typer.testing import CliRunner

from alerts.keys import KeyStore
from alerts.residentstore import ResidentStore
from homecare.cli import app

runner = CliRunner()
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "residents.csv"


def test_import_then_again_changes_nothing_and_is_audited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    first = runner.invoke(app, ["residents", "import", str(FIXTURE), "--data-dir", str(data)])
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == ["row 2 site-01/bed-0001: created",
                                         "row 3 site-01/bed-0002: created",
                                         "row 4 site-01/bed-0003: created"]
    assert "created 3, updated 0, unchanged 0" in first.stderr
    path = data / "residents.sqlite3"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with ResidentStore(path) as store:
        profile = store.get("site-01", "bed-0001")
        assert profile is not None
        assert profile.updated_by.startswith("cli")
        assert [c.relation for c in profile.contacts] == ["son", "neighbour"]
    again = runner.invoke(app, ["residents", "import", str(FIXTURE), "--data-dir", str(data)])
    assert again.exit_code == 0
    assert "created 0, updated 0, unchanged 3" in again.stderr
    keys = KeyStore(data / "keys.sqlite3")
    audit = keys.audit_log()
    keys.close()
    assert [(e.action, e.target, e.detail) for e in reversed(audit)] == [
        ("IMPORT", "residents from residents.csv", "created 3, updated 0, unchanged 0"),
        ("IMPORT", "residents from residents.csv", "created 0, updated 0, unchanged 3")]
    assert all(e.actor.startswith("cli") for e in audit)


def test_a_bad_file_is_refused_row_by_row_and_nothing_is_imported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(FIXTURE.read_text(encoding="utf-8").replace("138 0555 0102", "ask Zhao")
                   .replace("bed-0003", "bed 3"), encoding="utf-8")
    result = runner.invoke(app, ["residents", "import", str(bad), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{bad}: row 2, contact1_phone: not a phone number" in result.stderr
    assert f"{bad}: row 4, bed: not an id" in result.stderr
    assert "2 problems" in result.stderr
    assert "nothing was imported" in result.stderr
    assert "ask Zhao" not in result.output
    assert not (tmp_path / "residents.sqlite3").exists()
    latin = tmp_path / "latin.csv"
    latin.write_bytes("site,bed,display_name\nsite-01,bed-1,Jos\xe9\n".encode("latin-1"))
    refused = runner.invoke(app, ["residents", "import", str(latin), "--data-dir",
                                  str(tmp_path)])
    assert refused.exit_code == 1
    assert "not UTF-8" in refused.stderr


def test_a_dry_run_says_what_would_change_and_writes_nothing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["residents", "import", str(FIXTURE), "--dry-run",
                                 "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "would be created 3" in result.stderr
    with ResidentStore(tmp_path / "residents.sqlite3") as store:
        assert store.count() == 0
