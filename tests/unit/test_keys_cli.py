"""``homecare keys``: create prints the token once, list never shows tokens, revoke works."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerts.keys import KeyStore, Role
from homecare.cli import app

runner = CliRunner()


def test_create_list_revoke(tmp_path: Path) -> None:
    data = str(tmp_path)
    created = runner.invoke(app, ["keys", "create", "--role", "dispatcher", "--name", "alice",
                                  "--data-dir", data])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("hck_")
    store = KeyStore(tmp_path / "keys.sqlite3")
    key = store.authenticate(token)
    assert key is not None
    assert (key.name, key.role) == ("alice", Role.DISPATCHER)
    assert key.created_by.startswith("cli")

    listed = runner.invoke(app, ["keys", "list", "--data-dir", data])
    assert listed.exit_code == 0
    assert "alice" in listed.stdout
    assert "dispatcher" in listed.stdout
    assert token not in listed.stdout
    secret = token[len("hck_") + 13:]  # hck_<12 hex id>_<secret>; the secret may hold "_"
    assert len(secret) == 43
    assert secret not in listed.stdout

    duplicate = runner.invoke(app, ["keys", "create", "--name", "alice", "--data-dir", data])
    assert duplicate.exit_code == 1

    revoked = runner.invoke(app, ["keys", "revoke", "alice", "--data-dir", data])
    assert revoked.exit_code == 0
    assert store.authenticate(token) is None
    assert "alice" not in runner.invoke(app, ["keys", "list", "--data-dir", data]).stdout
    assert "alice" in runner.invoke(app, ["keys", "list", "--all", "--data-dir", data]).stdout
    assert runner.invoke(app, ["keys", "revoke", "alice", "--data-dir", data]).exit_code == 1


def test_bad_roles_and_names_are_refused(tmp_path: Path) -> None:
    bad_role = runner.invoke(app, ["keys", "create", "--name", "x", "--role", "root",
                                   "--data-dir", str(tmp_path)])
    assert bad_role.exit_code == 2
    bad_name = runner.invoke(app, ["keys", "create", "--name", "system",
                                   "--data-dir", str(tmp_path)])
    assert bad_name.exit_code == 1


def test_the_data_dir_comes_from_the_settings(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMECARE_DATA_DIR", str(tmp_path / "gw"))
    created = runner.invoke(app, ["keys", "create", "--name", "bob"])
    assert created.exit_code == 0, created.output
    assert (tmp_path / "gw" / "keys.sqlite3").is_file()


def test_keys_create_on_a_fresh_data_directory_makes_a_private_key_store(
        tmp_path: Path) -> None:
    """A verifier's finding (issue #13): `homecare keys create` before the gateway's first start
    wrote keys.sqlite3 (key hashes, the audit log) with mode 0644 under umask 022."""
    old = os.umask(0o022)
    try:
        result = runner.invoke(app, ["keys", "create", "--role", "viewer", "--name", "wall",
                                     "--data-dir", str(tmp_path / "data")])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.stdout
    for path in (tmp_path / "data").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
