"""The sample configs in deploy/ load with the real loaders, so a copy-and-edit starts."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from devices import Kind, Registry
from gateway.config import load

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(autouse=True)
def _no_homecare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HOMECARE_"):
            monkeypatch.delenv(key)


def test_gateway_example_config_loads(tmp_path: Path) -> None:
    for name in ("mqtt_password", "mqtt_urgent_password", "influx_token", "upstream_secret"):
        (tmp_path / name).write_text("secret\n")
    text = (DEPLOY / "gateway.example.toml").read_text()
    config = tmp_path / "gateway.toml"
    config.write_text(text.replace("/etc/homecare/secrets", str(tmp_path)))
    settings = load(config)
    assert settings.mqtt_username == "gateway"
    assert settings.mqtt_urgent_username == "gateway-urgent", "its own user: client id = user"
    assert settings.secret("mqtt_urgent_password") == "secret"
    assert settings.influx_api == "v2"
    assert settings.secret("influx_token") == "secret"
    assert settings.registry_file == Path("/etc/homecare/registry.toml")
    assert settings.alert_escalation_critical_s == (60.0, 180.0)
    assert settings.alert_escalation_low_s == ()
    assert settings.alert_cancel_window_s == 60.0
    assert settings.upstream_url is None, "upstream is the station's choice: commented out"
    assert settings.upstream_source == "hub-01"
    uncommented = text.replace('# url = "https://platform.example', 'url = "https://platform.example')
    config.write_text(uncommented.replace("/etc/homecare/secrets", str(tmp_path)).replace(
        "# secret_file = ", "secret_file = "))
    settings = load(config)
    assert settings.upstream_url == "https://platform.example/homecare/ingest"
    assert settings.secret("upstream_secret") == "secret"
    assert settings.clock_window_s == 7 * 86_400, "[clock] window_s"
    assert settings.influx_auth_retry_s == 60.0, "[influx] auth_retry_s"
    assert (settings.history_max_concurrent, settings.history_max_waiting,
            settings.history_timeout_s) == (4, 8, 10.0), "[history]"


def test_registry_example_loads_with_overrides() -> None:
    registry = Registry.load(DEPLOY / "registry.example.toml")
    bed = registry.bed("site-01", "bed-0001")
    assert bed is not None
    assert bed.settings.heart_rate_max == 110
    assert bed.devices["fs-0001"].kind is Kind.FALL
    assert registry.timezone("site-02") == "Asia/Urumqi"
    other = registry.bed("site-01", "bed-0002")
    assert other is not None
    assert other.settings.heart_rate_max == 130


def test_compose_mounts_and_builds_only_files_that_exist() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    for path in re.findall(r"(?:- |:-)\./(deploy/[\w./-]+?)(?=[:}])", compose):
        assert (ROOT / path).exists(), path  # a file, or a directory (grafana/)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "dockerfile: deploy/Dockerfile" in compose
    for line in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for source in line.split():
            if source != "README.md":  # the image build needs it; the tests do not
                assert (ROOT / source).exists(), source
    # Every package the project installs is in the image (the `homecare` command lives in
    # homecare/: without it the image's entry point cannot start).
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]
                ["include"]]
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.MULTILINE))
    assert set(packages) <= copied, f"the Dockerfile does not copy {set(packages) - copied}"
    entry = pyproject["project"]["scripts"]["homecare"].split(":")[0].split(".")[0]
    assert entry in copied


def test_systemd_unit_runs_the_gateway_with_its_config() -> None:
    unit = (DEPLOY / "systemd" / "homecare-gateway.service").read_text()
    assert re.search(r"^ExecStart=\S*homecare gateway --config /etc/homecare/gateway.toml"
                     r" --standby$", unit, re.MULTILINE)
    assert re.search(r"^Restart=always$", unit, re.MULTILINE)
