"""``homecare config check`` names every problem of the settings file, the environment and the
registry at once; an unknown ``HOMECARE_*`` variable is a problem there and stops the gateway
at start."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.config import OTHER_VARIABLES, load, unknown_variables
from gateway.errors import ConfigError
from homecare.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_homecare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("HOMECARE_"):
            monkeypatch.delenv(key)


def _line(output: str, *parts: str) -> str:
    """The one output line holding every part."""
    lines = [line for line in output.splitlines() if all(part in line for part in parts)]
    assert len(lines) == 1, f"no single line with {parts} in:\n{output}"
    return lines[0]


def test_every_problem_is_named_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        'spool_overflow = "explode"\n'
        "[mqtt]\n"
        "keepalive_s = 2\n"
        'urll = "mqtt://127.0.0.1:1883"\n')
    registry = tmp_path / "registry.toml"
    registry.write_text('[sites.site-01]\ntimezone = "Asia/Shangai"\n')
    monkeypatch.setenv("HOMECARE_MQTT_URLL", "mqtt://127.0.0.1:1883")
    monkeypatch.setenv("HOMECARE_BATCH_MAX_POINTS", "many")
    monkeypatch.setenv("HOMECARE_INFLUX_TOKEN_FILE", str(tmp_path / "missing-token"))
    monkeypatch.setenv("HOMECARE_MQTT_TLS_CA_FILE", str(tmp_path / "missing-ca.pem"))
    monkeypatch.setenv("HOMECARE_REGISTRY_FILE", str(registry))

    result = runner.invoke(app, ["config", "check", "--config", str(config)])

    out = result.stdout
    assert result.exit_code == 1, out
    assert "8 problems" in out, out
    _line(out, str(config), "[mqtt] keepalive_s (mqtt_keepalive_s)", "greater than or equal to 5",
          "(got 2)")
    _line(out, str(config), "[mqtt] urll", "unknown setting", "did you mean mqtt_url")
    _line(out, str(config), "spool_overflow", "'drop_oldest' or 'block'", "'explode'")
    _line(out, "environment: HOMECARE_MQTT_URLL", "unknown variable",
          "did you mean HOMECARE_MQTT_URL?")
    _line(out, "environment: HOMECARE_BATCH_MAX_POINTS", "valid integer", "'many'")
    _line(out, "environment: HOMECARE_INFLUX_TOKEN_FILE", "no such file")
    _line(out, "environment: HOMECARE_MQTT_TLS_CA_FILE", "no such file")
    # The registry is read too, although the settings have problems.
    _line(out, f"registry {registry}: sites.site-01.timezone", "'Asia/Shangai'")


def test_the_registry_is_checked(tmp_path: Path) -> None:
    registry = tmp_path / "registry.toml"
    registry.write_text('[sites.site-01]\ntimezone = "Asia/Shangai"\n'
                        '[sites.site-01.beds.bed-1]\nfamily_webhook = "https://family.test/h"\n')
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path}"\nregistry_file = "{registry}"\n')
    bad = runner.invoke(app, ["config", "check", "-c", str(config)])
    assert bad.exit_code == 1, bad.stdout
    _line(bad.stdout, f"registry {registry}: sites.site-01.timezone",
          "unknown IANA time zone 'Asia/Shangai'")

    registry.write_text('[sites.site-01]\ntimezone = "Asia/Shanghai"\n'
                        '[sites.site-01.beds.bed-1]\nfamily_webhook = "https://family.test/h"\n')
    unsigned = runner.invoke(app, ["config", "check", "-c", str(config)])
    assert unsigned.exit_code == 1, unsigned.stdout
    _line(unsigned.stdout, "sites.site-01.beds.bed-1.family_webhook", "upstream_secret")


def test_every_registry_problem_is_named_at_once(tmp_path: Path) -> None:
    """A fresh tester needed seven runs for a registry with seven problems: the check stopped
    at the first. Now each one is named, however many beds and devices they are in."""
    registry = tmp_path / "registry.toml"
    registry.write_text(
        '[defaults]\nheartbeat_s = -1\ncolour = "red"\n'
        '[sites."site 01"]\n'
        '[sites.site-02]\ntimezone = "Europe/Berlin"\n'
        '[sites.site-02.beds.bed-0001.settings]\nnight_start = "25:99"\nheart_rate_max = "fast"\n'
        '[sites.site-02.beds.bed-0001.devices.btn-0001]\nkind = "toaster"\n'
        '[sites.site-02.beds.bed-0002.devices.btn-0002]\nkind = "button"\nheartbeat_s = 0\n'
        '[sites.site-03]\ntimezone = "Nowhere/Zone"\n')
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path}"\nregistry_file = "{registry}"\n')
    bad = runner.invoke(app, ["config", "check", "-c", str(config)])
    assert bad.exit_code == 1, bad.stdout
    where = f"registry {registry}: "
    for key, words in [("defaults.colour", "unknown key"),
                       ("defaults.heartbeat_s", "positive"),
                       ("sites", "'site 01'"),
                       ("sites.site-02.beds.bed-0001.settings.night_start", "HH:MM"),
                       ("sites.site-02.beds.bed-0001.settings.heart_rate_max", "'fast'"),
                       ("sites.site-02.beds.bed-0001.devices.btn-0001.kind", "one of"),
                       ("sites.site-02.beds.bed-0002.devices.btn-0002.heartbeat_s", "positive"),
                       ("sites.site-03.timezone", "'Nowhere/Zone'")]:
        _line(bad.stdout, where + key, words)
    assert "8 problems" in bad.stdout, bad.stdout
    # A second tester's: two wrong defaults, a site's unknown key, a wrong kind, and the same
    # device id listed again (each used to hide the ones after it).
    registry.write_text(
        '[defaults]\nheartbeat_s = -1\ntimezone = "Nowhere/City"\n'
        '[sites.site-01]\ncolour = "red"\n'
        '[sites.site-01.beds.bed-0001.devices.btn-0001]\nkind = "buttn"\n'
        '[sites.site-01.beds.bed-0002.devices.btn-0001]\nkind = "button"\n')
    bad = runner.invoke(app, ["config", "check", "-c", str(config)])
    for key, words in [("defaults.heartbeat_s", "positive"),
                       ("defaults.timezone", "'Nowhere/City'"),
                       ("sites.site-01.colour", "unknown key"),
                       ("sites.site-01.beds.bed-0001.devices.btn-0001.kind", "one of"),
                       ("sites.site-01.beds.bed-0002.devices.btn-0001", "already listed")]:
        _line(bad.stdout, where + key, words)
    assert "5 problems" in bad.stdout, bad.stdout


def test_a_good_configuration_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ntimezone = "Asia/Shanghai"\n'
                      '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n')
    monkeypatch.setenv("HOMECARE_LOG_FORMAT", "json")
    # Used by docker-compose.yml outside the settings: not unknown.
    monkeypatch.setenv("HOMECARE_REGISTRY", "./deploy/registry.example.toml")
    result = runner.invoke(app, ["config", "check", "--config", str(config)])
    assert result.exit_code == 0, result.stdout
    assert result.stdout.startswith("homecare config check: OK"), result.stdout
    assert str(config) in result.stdout


def test_the_examples_in_the_repository_pass(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMECARE_DATA_DIR", str(tmp_path))
    for secret in ("MQTT_PASSWORD", "MQTT_URGENT_PASSWORD", "INFLUX_TOKEN", "UPSTREAM_SECRET"):
        path = tmp_path / secret.lower()
        path.write_text("0123456789abcdef-0123456789abcdef\n")
        monkeypatch.setenv(f"HOMECARE_{secret}_FILE", str(path))
    result = runner.invoke(app, ["config", "check", "-c", str(ROOT / "deploy/gateway.example.toml"),
                                 "--registry", str(ROOT / "deploy/registry.example.toml")])
    assert result.exit_code == 0, result.stdout


def test_values_of_secrets_are_not_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMECARE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HOMECARE_API_KEY", "password1")
    monkeypatch.setenv("HOMECARE_MQTT_URL", "ftp://gateway:hunter2-secret@127.0.0.1")
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 1, result.stdout
    _line(result.stdout, "environment: HOMECARE_API_KEY")
    _line(result.stdout, "environment: HOMECARE_MQTT_URL")
    assert "password1" not in result.stdout
    assert "hunter2" not in result.stdout


def test_unknown_variables_get_the_closest_setting() -> None:
    environ = {"HOMECARE_INFLUX_TOKENFILE": "x", "HOMECARE_DATA_DIR": "/d", "homecare_timezon": "",
               "HOMECARE_WHATEVER": "1", "HOME": "/root", **dict.fromkeys(OTHER_VARIABLES, "")}
    assert unknown_variables(environ) == [
        ("HOMECARE_INFLUX_TOKENFILE", "HOMECARE_INFLUX_TOKEN_FILE"),
        ("HOMECARE_WHATEVER", None),
        ("homecare_timezon", "HOMECARE_TIMEZONE")]


def _project_files() -> list[Path]:
    """The project's own text files (not the virtualenv, caches, data or results)."""
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and d not in ("__pycache__", "results", "artifacts", "data")]
        out.extend(Path(folder, name) for name in files
                   if Path(name).suffix in TEXT_SUFFIXES or name in ("Makefile", "Dockerfile"))
    return out


TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".example", ".service", ".sh",
                 ".conf", ".env", ".txt", ".cfg", ".ini"}
MISSPELT_ON_PURPOSE = {"gateway/config.py", "homecare/configcheck.py",
                       "tests/unit/test_config_check.py",
                       "tests/integration/test_gateway_config_live.py",
                       "tests/integration/test_gateway_start.py"}


def test_every_homecare_variable_the_repository_uses_is_known() -> None:
    """Variables written anywhere in the project (docs, compose, systemd, tests) are settings
    or listed in OTHER_VARIABLES, so setting them never stops a gateway."""
    used: dict[str, str] = {}
    for path in _project_files():
        where = str(path.relative_to(ROOT))
        if where in MISSPELT_ON_PURPOSE:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for name in re.findall(r"HOMECARE_[A-Z0-9_]*[A-Z0-9]", text):
            used.setdefault(name, where)
    used.pop("HOMECARE_HISTORY", None)  # README: HOMECARE_HISTORY_* (a family of settings)
    assert len(used) > 20, "the scan found almost nothing"
    unknown = unknown_variables(dict.fromkeys(used, ""))
    assert unknown == [], [(name, used[name]) for name, _ in unknown]


def test_sessions_sharing_one_broker_user_are_named(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """On the shipped broker (use_username_as_clientid) two connections as one user take over
    each other: the urgent session and MQTT pages need users of their own (issue #17)."""
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ntimezone = "Asia/Shanghai"\n'
                      '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nusername = "gateway"\n')
    monkeypatch.setenv("HOMECARE_NOTIFY_MQTT_URL", "mqtt://gateway:pw@127.0.0.1:1883")
    result = runner.invoke(app, ["config", "check", "--config", str(config)])
    assert result.exit_code == 0, result.stdout
    assert "urgent MQTT session connects as 'gateway'" in result.stdout
    assert "MQTT pages (notify_mqtt_url) connect to the devices' broker as 'gateway'" in \
        result.stdout
    monkeypatch.setenv("HOMECARE_MQTT_URGENT_USERNAME", "gateway-urgent")
    monkeypatch.setenv("HOMECARE_NOTIFY_MQTT_URL", "mqtt://pager:pw@127.0.0.1:1883")
    result = runner.invoke(app, ["config", "check", "--config", str(config)])
    assert "connects as" not in result.stdout, result.stdout
    assert "MQTT pages" not in result.stdout, result.stdout


def test_the_oncall_file_is_checked_like_the_gateway_reads_it(tmp_path: Path) -> None:
    """The gateway refuses to start on a bad on-call file: the check names every problem of
    it, each with its entry (issue #13: it printed OK, and the gateway exited 2)."""
    oncall = tmp_path / "oncall.toml"
    oncall.write_text(
        '[[staff]]\nid = "anna"\nname = "Anna"\nrole = "dispatcher"\n'
        '[[shifts]]\nname = "day"\nstart = "8:00"\n'
        '[[shifts]]\nname = "night"\nstart = "20:00"\n'
        '[[duty]]\nsite = "*"\nshift = "night"\ndispatchers = ["zed"]\n'
        '[[chains]]\nname = "falls"\nsteps = [{recipients = ["dispatchers_on_duty"], '
        'wait_s = "soon"}]\n')
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ntimezone = "Asia/Shanghai"\n'
                      f'oncall_file = "{oncall}"\n')
    bad = runner.invoke(app, ["config", "check", "-c", str(config)])
    out = bad.stdout
    assert bad.exit_code == 1, out
    assert "3 problems" in out, out
    _line(out, f"oncall_file {oncall}: shifts[0].start", "HH:MM")
    _line(out, f"oncall_file {oncall}: duty[0].dispatchers", "'zed' is no dispatcher")
    _line(out, f"oncall_file {oncall}: chains[0]", "wait_s")

    oncall.write_text(
        '[[staff]]\nid = "anna"\nname = "Anna"\nrole = "dispatcher"\n'
        '[[duty]]\nsite = "*"\nshift = "day"\ndispatchers = ["anna"]\n')
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ntimezone = "Asia/Shanghai"\n'
                      f'oncall_file = "{oncall}"\nreport_shifts = ["day=08:00"]\n')
    good = runner.invoke(app, ["config", "check", "-c", str(config)])
    assert good.exit_code == 0, good.stdout
    assert f"oncall_file {oncall}" in good.stdout


def test_the_example_oncall_file_passes(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ntimezone = "Asia/Shanghai"\n'
                      f'oncall_file = "{ROOT / "deploy/oncall.example.toml"}"\n')
    result = runner.invoke(app, ["config", "check", "-c", str(config)])
    assert result.exit_code == 0, result.stdout


def test_the_oncall_rosters_coverage_gaps_are_noted(tmp_path: Path) -> None:
    """A roster with no dispatcher on duty at a site for a while is valid (the gateway starts)
    but calls there reach the console only: the check names each gap, per site in its zone."""
    oncall = tmp_path / "oncall.toml"
    oncall.write_text(
        '[[staff]]\nid = "anna"\nname = "Anna"\nrole = "dispatcher"\n'
        '[[shifts]]\nname = "day"\nstart = "08:00"\n'
        '[[shifts]]\nname = "night"\nstart = "20:00"\n'
        '[[duty]]\nsite = "*"\nshift = "day"\ndispatchers = ["anna"]\n'
        '[[duty]]\nsite = "site-02"\nshift = "night"\ndispatchers = ["anna"]\n')
    registry = tmp_path / "registry.toml"
    registry.write_text('[sites.site-01]\ntimezone = "Asia/Shanghai"\n'
                        '[sites.site-02]\ntimezone = "Asia/Shanghai"\n')
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ntimezone = "Asia/Shanghai"\n'
                      f'oncall_file = "{oncall}"\nregistry_file = "{registry}"\n')
    result = runner.invoke(app, ["config", "check", "-c", str(config)])
    out = result.stdout
    assert result.exit_code == 0, out
    gaps = [line for line in out.splitlines() if "no dispatcher on duty" in line]
    # Every night of the week at site-01 (site-02 has its own): 7, or 8 when the check runs
    # at night (tonight's rest and the same night a week on, cut at the week's end).
    assert len(gaps) in (7, 8), out
    assert all(line.startswith(f"note: oncall_file {oncall}: no dispatcher on duty at site-01 "
                               "from ") and line.endswith("(Asia/Shanghai): calls there reach "
                                                          "the console only")
               for line in gaps), out
    assert sum("T20:00+08:00 to " in line and "T08:00+08:00 (" in line for line in gaps) >= 6


def test_replay_refuses_a_misspelt_variable_as_the_gateway_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh tester (issue #16): ``homecare replay`` ignored ``HOMECARE_TIMEZNE`` silently
    (its help says the variables apply as for the gateway, which refuses them)."""
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text("")
    monkeypatch.setenv("HOMECARE_TIMEZNE", "Asia/Shanghai")
    done = runner.invoke(app, ["replay", str(traffic), "--alerts", str(tmp_path / "a.jsonl")])
    assert done.exit_code == 2, done.output
    assert "unknown environment variable HOMECARE_TIMEZNE (did you mean HOMECARE_TIMEZONE?)" \
        in done.output
    assert "nothing replayed" in done.output
    assert not (tmp_path / "a.jsonl").exists()


def test_config_example_prints_the_settings_reference_an_install_does_not_ship(
        tmp_path: Path) -> None:
    """A fresh tester (issue #16): ``gateway --help`` named deploy/gateway.example.toml, which
    a wheel install does not include; ``homecare config example`` prints it (TOML; its secret
    files are the install's paths, checked by the sample's own tests)."""
    import tomllib

    done = runner.invoke(app, ["config", "example"])
    assert done.exit_code == 0, done.output
    assert done.stdout == (ROOT / "deploy" / "gateway.example.toml").read_text(encoding="utf-8")
    assert tomllib.loads(done.stdout)
    assert "homecare config example" in " ".join(
        runner.invoke(app, ["gateway", "--help"]).output.split())


def test_keys_create_refuses_a_misspelt_variable_as_the_gateway_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh tester (issue #16): with ``HOMECARE_DATADIR`` set, ``homecare keys create``
    wrote its key into ./data, not where the variable meant (the gateway refuses to start
    with it, so the key would have gone to another gateway's directory or nowhere)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("HOMECARE_DATADIR", str(tmp_path / "elsewhere"))
    done = runner.invoke(app, ["keys", "create", "--name", "anna", "--role", "dispatcher"])
    assert done.exit_code == 2, done.output
    assert "unknown environment variable HOMECARE_DATADIR (did you mean HOMECARE_DATA_DIR?)" \
        in done.output
    assert not (tmp_path / "data" / "keys.sqlite3").exists()
    done = runner.invoke(app, ["keys", "create", "--name", "anna", "--role", "dispatcher",
                               "--data-dir", str(tmp_path / "data")])
    assert done.exit_code == 0, done.output  # told where: the environment is not read


def test_config_check_finds_what_would_fail_later(tmp_path: Path) -> None:
    """A fresh tester (issue #16): config check said OK to a data directory nothing can be
    made in (/proc: root passes the permission bits, the gateway then never became ready), a
    shared subscription the README says never to use, and a setting written twice (the section
    silently won)."""
    config = tmp_path / "gateway.toml"
    config.write_text('data_dir = "/proc/homecare-nope"\nmqtt_url = "mqtt://a:1883"\n'
                      '[mqtt]\nurl = "mqtt://b:1883"\ntopic = ["$share/g/homecare/v1/#"]\n')
    done = runner.invoke(app, ["config", "check", "-c", str(config)])
    assert done.exit_code == 1, done.output
    _line(done.output, f"{config}: data_dir", "/proc/homecare-nope cannot be created")
    _line(done.output, f"{config}: [mqtt] url", "the same setting as mqtt_url")
    _line(done.output, f"{config}: [mqtt] topic", "shared subscription")
    with pytest.raises(ConfigError, match="mqtt_url is written twice"):
        load(config)
