"""``homecare acl``: one broker rule per listed device binding it to its site, bed and kind;
passwords made once, kept on every later run, shown only in files of mode 0600."""

from __future__ import annotations

import base64
import json
import logging
import re
import stat
import textwrap
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devices import Registry
from devices.errors import ConfigError
from homecare.acl import (
    PASSWORD_FILE,
    check_password,
    hash_password,
    read_password_file,
    render_acl,
    write_broker_files,
)
from homecare.cli import app

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = """
[sites.site-01.beds.bed-0007.devices.btn-0007]
kind = "button"
[sites.site-01.beds.bed-0007.devices.fs-0007]
kind = "fall"
[sites.site-01.beds.bed-0007.devices.badge-c01]
kind = "badge"
[sites.site-01.beds.bed-0099.devices.btn-0099]
kind = "button"
"""
MOSQUITTO_PASSWD_LINE = ("u1:$7$101$OSWkxMi4jKshe8fy$QKgKv4uTPpWxF06ymYLR+mPgWc8gfsKjFM/z1+hRwS"
                         "6JeNbCMMOkakFB6U5PIfqejlXlIibeiiKTMoJcoCsrrA==")
"""Written by Debian's ``mosquitto_passwd -b passwd u1 secret`` (Mosquitto 2.0.11)."""


def load(text: str = REGISTRY) -> Registry:
    return Registry.from_mapping(tomllib.loads(text))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def rules(acl: str) -> list[str]:
    return [line for line in acl.splitlines() if line and not line.startswith("#")]


def test_each_device_may_write_only_its_own_site_bed_and_kind() -> None:
    assert rules(render_acl(load())) == [
        "user gateway", "topic read homecare/v1/#",
        # The urgent session, a user of its own (the broker makes the user the client id).
        "user gateway-urgent", "topic read homecare/v1/+/+/button/+/event",
        "topic read homecare/v1/+/+/fall/+/event",
        "user btn-0007", *own("homecare/v1/site-01/bed-0007/button/btn-0007"),
        "user fs-0007", *own("homecare/v1/site-01/bed-0007/fall/fs-0007"),
        # A badge travels with its caregiver between the beds of its site.
        "user badge-c01", *own("homecare/v1/site-01/+/badge/badge-c01"),
        "user btn-0099", *own("homecare/v1/site-01/bed-0099/button/btn-0099"),
    ]


def own(device_topic: str) -> list[str]:
    """A device's rules: its own topics, the contract's three channels only (no ``/+``: a
    device could fill the broker with retained messages on channels of its own making)."""
    return [f"topic write {device_topic}/{channel}" for channel in ("telemetry", "event",
                                                                    "status")]


def test_no_pattern_rule_lets_a_device_write_under_its_id_on_any_bed() -> None:
    acl = render_acl(load())
    assert not [line for line in rules(acl) if line.startswith("pattern")]
    assert "%u" not in "\n".join(rules(acl))


def test_the_gateway_user_is_checked() -> None:
    with pytest.raises(ConfigError, match="device id"):
        render_acl(load(), gateway_user="btn-0007")
    with pytest.raises(ConfigError, match="gateway user"):
        render_acl(load(), gateway_user="gate way\ntopic write #")
    with pytest.raises(ConfigError, match="device id"):  # its urgent user would be a device
        render_acl(load(text=REGISTRY.replace("btn-0099]", "gw-urgent]")), gateway_user="gw")
    with pytest.raises(ConfigError, match="a name of its own"):
        render_acl(load(), gateway_user=["gw", "gw-urgent"])


def test_each_gateway_on_the_broker_gets_its_two_users(tmp_path: Path) -> None:
    """The broker makes the user name the client id: two gateways need two users each."""
    assert [line for line in rules(render_acl(load(), gateway_user=["gw-a", "gw-b"]))
            if line.startswith("user gw")] == [
        "user gw-a", "user gw-a-urgent", "user gw-b", "user gw-b-urgent"]
    done = write_broker_files(load(), tmp_path, gateway_user=["gw-a", "gw-b"])
    assert done.created[:4] == ("gw-a", "gw-a-urgent", "gw-b", "gw-b-urgent")
    assert done.devices == 4


def test_the_shipped_example_acl_is_the_one_generated_from_the_example_registry() -> None:
    registry = Registry.load(ROOT / "deploy" / "registry.example.toml")
    assert (ROOT / "deploy" / "mosquitto" / "acl").read_text() == render_acl(registry)


def test_hashes_are_what_mosquitto_passwd_writes_and_the_broker_checks() -> None:
    _, hashed = MOSQUITTO_PASSWD_LINE.split(":", 1)
    assert check_password("secret", hashed)
    assert not check_password("Secret", hashed)
    salt = hashed.split("$")[3]
    assert hash_password("secret", salt=base64.b64decode(salt)) == hashed
    fresh = hash_password("secret")
    assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", fresh)
    assert fresh != hash_password("secret")  # a new salt each time
    assert not check_password("secret", "$6$abc$def")
    assert not check_password("secret", "garbage")


def test_files_are_written_with_modes_and_every_password_matches_its_hash(
        tmp_path: Path) -> None:
    done = write_broker_files(load(), tmp_path / "out")
    out = tmp_path / "out"
    assert mode(out / "acl") == 0o644
    assert mode(out / PASSWORD_FILE) == 0o600
    assert mode(out / "credentials") == 0o700
    assert done.created == ("gateway", "gateway-urgent", "btn-0007", "fs-0007", "badge-c01",
                            "btn-0099")
    assert done.devices == 4
    hashes = read_password_file(out / PASSWORD_FILE)
    assert list(hashes) == list(done.created)
    passwords = set()
    for user in done.created:
        path = out / "credentials" / f"{user}.json"
        assert mode(path) == 0o600
        credentials = json.loads(path.read_text())
        assert credentials["username"] == user
        assert len(credentials["password"]) >= 43  # 256 random bits, URL-safe base64
        assert check_password(credentials["password"], hashes[user])
        passwords.add(credentials["password"])
    assert len(passwords) == len(done.created)
    assert json.loads((out / "credentials" / "btn-0007.json").read_text())["acl"] == "\n".join(
        own("homecare/v1/site-01/bed-0007/button/btn-0007"))


def test_running_again_changes_nothing(tmp_path: Path) -> None:
    write_broker_files(load(), tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = write_broker_files(load(), tmp_path)
    assert again.created == again.restored == again.removed == ()
    assert len(again.kept) == 6
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_new_device_gets_a_password_and_the_others_keep_theirs(tmp_path: Path) -> None:
    write_broker_files(load(), tmp_path)
    old = read_password_file(tmp_path / PASSWORD_FILE)
    (tmp_path / "credentials" / "btn-0007.json").unlink()  # provisioned, then deleted
    grown = load(REGISTRY + '[sites.site-01.beds.bed-0099.devices.ir-0099]\nkind = "infrared"\n')
    done = write_broker_files(grown, tmp_path)
    assert done.created == ("ir-0099",)
    new = read_password_file(tmp_path / PASSWORD_FILE)
    assert {user: new[user] for user in old} == old
    assert (tmp_path / "credentials" / "ir-0099.json").exists()
    assert not (tmp_path / "credentials" / "btn-0007.json").exists()
    assert "user ir-0099" in (tmp_path / "acl").read_text()


def test_a_device_removed_from_the_registry_loses_its_password_and_rule(tmp_path: Path) -> None:
    write_broker_files(load(), tmp_path)
    shrunk = load(REGISTRY.replace('[sites.site-01.beds.bed-0099.devices.btn-0099]\n'
                                   'kind = "button"\n', ""))
    done = write_broker_files(shrunk, tmp_path)
    assert done.removed == ("btn-0099",)
    assert "btn-0099" not in read_password_file(tmp_path / PASSWORD_FILE)
    assert "btn-0099" not in (tmp_path / "acl").read_text()


def test_a_moved_device_keeps_its_password_and_gets_its_new_bed(tmp_path: Path) -> None:
    write_broker_files(load(), tmp_path)
    old = read_password_file(tmp_path / PASSWORD_FILE)
    moved = load(REGISTRY.replace("bed-0099.devices.btn-0099", "bed-0100.devices.btn-0099"))
    write_broker_files(moved, tmp_path)
    assert read_password_file(tmp_path / PASSWORD_FILE)["btn-0099"] == old["btn-0099"]
    assert "topic write homecare/v1/site-01/bed-0100/button/btn-0099/event" in (
        tmp_path / "acl").read_text()


def test_a_lost_password_file_is_made_again_from_the_credentials_kept(tmp_path: Path) -> None:
    write_broker_files(load(), tmp_path)
    password = json.loads((tmp_path / "credentials" / "fs-0007.json").read_text())["password"]
    (tmp_path / PASSWORD_FILE).unlink()
    done = write_broker_files(load(), tmp_path)
    assert done.created == ()
    assert len(done.restored) == 6
    assert check_password(password, read_password_file(tmp_path / PASSWORD_FILE)["fs-0007"])


def test_a_password_file_that_is_not_one_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    (tmp_path / PASSWORD_FILE).write_text("this is not a password file\n")
    with pytest.raises(ConfigError, match="passwd:1"):
        write_broker_files(load(), tmp_path)
    assert not (tmp_path / "acl").exists()
    assert not (tmp_path / "credentials").exists()


def test_hand_made_gateway_line_is_kept(tmp_path: Path) -> None:
    """An operator who made the gateway user with mosquitto_passwd keeps its password."""
    (tmp_path / PASSWORD_FILE).write_text("gateway" + MOSQUITTO_PASSWD_LINE[2:] + "\n")
    done = write_broker_files(load(), tmp_path)
    assert "gateway" in done.kept
    assert not (tmp_path / "credentials" / "gateway.json").exists()
    assert check_password("secret", read_password_file(tmp_path / PASSWORD_FILE)["gateway"])


def test_the_command_prints_and_logs_no_password(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    registry = tmp_path / "registry.toml"
    registry.write_text(textwrap.dedent(REGISTRY))
    out = tmp_path / "broker"
    with caplog.at_level(logging.DEBUG):
        result = CliRunner().invoke(app, ["acl", "--registry", str(registry),
                                          "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 devices" in result.output
    assert "btn-0007.json" in result.output
    for path in (out / "credentials").iterdir():
        password = json.loads(path.read_text())["password"]
        assert password not in result.output
        assert password not in caplog.text
    again = CliRunner().invoke(app, ["acl", "--registry", str(registry), "--out-dir", str(out)])
    assert again.exit_code == 0, again.output
    assert "0 new" in again.output


def test_the_command_without_a_registry_says_how_to_give_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOMECARE_REGISTRY_FILE", raising=False)
    result = CliRunner().invoke(app, ["acl", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--registry" in result.output
