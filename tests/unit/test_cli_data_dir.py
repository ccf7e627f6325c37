"""The tools that work on the gateway's data directory (``homecare keys``, ``homecare
upstream``) find it as the gateway does, say which file they used, and never start a new,
empty one in the current directory by mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerts.keys import KeyStore
from homecare.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_homecare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper().startswith("HOMECARE_"):
            monkeypatch.delenv(key)
    monkeypatch.setattr("homecare.cli.DEFAULT_CONFIG", tmp_path / "etc" / "gateway.toml",
                        raising=False)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")


def _installed(tmp_path: Path) -> Path:
    """A settings file where the Debian install puts it, naming the gateway's data dir."""
    config = tmp_path / "etc" / "gateway.toml"
    config.parent.mkdir()
    config.write_text(f'data_dir = "{tmp_path / "var"}"\n')
    (tmp_path / "var").mkdir()
    return config


def test_keys_create_as_the_readme_shows_writes_to_the_installed_gateways_data_dir(
        tmp_path: Path) -> None:
    config = _installed(tmp_path)
    created = runner.invoke(app, ["keys", "create", "--role", "dispatcher", "--name", "anna"])
    assert created.exit_code == 0, created.output
    store = tmp_path / "var" / "keys.sqlite3"
    assert store.is_file()
    assert not (tmp_path / "work" / "data").exists(), "no new data dir in the current directory"
    assert str(store) in created.stderr
    assert str(config) in created.stderr
    token = created.stdout.strip().splitlines()[-1]
    key = KeyStore(store).authenticate(token)
    assert key is not None
    assert key.name == "anna"


def test_the_environment_wins_over_the_settings_file_as_in_the_gateway(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(tmp_path)
    monkeypatch.setenv("HOMECARE_DATA_DIR", str(tmp_path / "elsewhere"))
    created = runner.invoke(app, ["keys", "create", "--name", "bob"])
    assert created.exit_code == 0, created.output
    assert (tmp_path / "elsewhere" / "keys.sqlite3").is_file()
    assert "HOMECARE_DATA_DIR" in created.stderr


def test_no_new_data_dir_is_started_in_the_current_directory(tmp_path: Path) -> None:
    for args in (["keys", "create", "--name", "anna"], ["keys", "list"],
                 ["keys", "revoke", "anna"], ["upstream", "status"]):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 1, (args, refused.output)
        assert "--config" in refused.stderr, refused.stderr
        assert "HOMECARE_DATA_DIR" in refused.stderr, refused.stderr
        assert not (tmp_path / "work" / "data").exists(), args


def test_the_current_directory_is_used_when_a_gateway_keeps_its_data_there(
        tmp_path: Path) -> None:
    (tmp_path / "work" / "data").mkdir()
    created = runner.invoke(app, ["keys", "create", "--name", "anna"])
    assert created.exit_code == 0, created.output
    assert (tmp_path / "work" / "data" / "keys.sqlite3").is_file()
    assert str(tmp_path / "work" / "data" / "keys.sqlite3") in created.stderr


def test_an_explicit_data_dir_is_created_and_named(tmp_path: Path) -> None:
    target = tmp_path / "fresh"
    created = runner.invoke(app, ["keys", "create", "--name", "anna", "--data-dir", str(target)])
    assert created.exit_code == 0, created.output
    assert (target / "keys.sqlite3").is_file()
    assert str(target / "keys.sqlite3") in created.stderr


def test_a_settings_file_naming_the_default_data_dir_is_followed_and_said(
        tmp_path: Path) -> None:
    """A fresh tester (issue #16): with ``data_dir = "data"`` in the settings file (the
    default's value, written out) and no ./data, ``keys create`` said the file "does not set
    one"."""
    config = tmp_path / "etc" / "gateway.toml"
    config.parent.mkdir()
    config.write_text('data_dir = "data"\n')
    created = runner.invoke(app, ["keys", "create", "--name", "anna"])
    assert created.exit_code == 0, created.output
    assert (tmp_path / "work" / "data" / "keys.sqlite3").is_file()
    assert f"data_dir of {config}" in created.stderr
