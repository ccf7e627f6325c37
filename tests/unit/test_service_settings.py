"""Service supervision settings: the service catalogue and the cross-checks' thresholds and
severity, from the defaults, the TOML file and the environment; a bad value named by its
setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import DEFAULT_CATALOGUE, Catalogue, Severity
from gateway.config import Settings, load
from gateway.detect.service_anomaly import ServiceChecks, service_checks
from gateway.errors import ConfigError


def test_the_defaults_are_the_contracts_catalogue_and_a_medium_severity() -> None:
    checks = service_checks(Settings())
    assert checks.catalogue == Catalogue.parse(DEFAULT_CATALOGUE)
    assert checks.severity is Severity.MEDIUM
    assert checks == ServiceChecks()


def test_a_station_sets_its_catalogue_and_thresholds_in_the_file_or_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[service]\ncatalogue = ["bathing:40:recorded", "wound_care:20:recorded"]\n'
                      'anomaly_severity = "high"\nshort_share = 0.4\n'
                      'window_tolerance_s = 1800\n', encoding="utf-8")
    checks = service_checks(load(config))
    assert checks.catalogue.recorded(["wound_care", "bathing"]) == ("wound_care", "bathing")
    assert checks.catalogue["bathing"].minutes == 40.0
    assert checks.severity is Severity.HIGH
    assert checks.short_share == 0.4
    assert checks.window_tolerance_ms == 1_800_000
    monkeypatch.setenv("HOMECARE_SERVICE_CATALOGUE", "medication:5, cleaning:25")
    monkeypatch.setenv("HOMECARE_SERVICE_MISSED_GRACE_S", "600")
    monkeypatch.setenv("HOMECARE_SERVICE_OPEN_VISITS_MAX", "50")
    checks = service_checks(load(config))
    assert checks.catalogue.entries() == ("medication:5", "cleaning:25")
    assert checks.missed_grace_ms == 600_000
    assert checks.open_visits_max == 50


def test_a_bad_catalogue_or_threshold_stops_the_start_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMECARE_SERVICE_CATALOGUE", "bathing:thirty")
    monkeypatch.setenv("HOMECARE_SERVICE_RECORDING_COVERAGE", "1.5")
    monkeypatch.setenv("HOMECARE_SERVICE_ANOMALY_SEVERITY", "urgent")
    with pytest.raises(ConfigError) as refused:
        load()
    message = str(refused.value)
    assert "service_catalogue (HOMECARE_SERVICE_CATALOGUE): 'bathing:thirty'" in message
    assert "service_recording_coverage (HOMECARE_SERVICE_RECORDING_COVERAGE)" in message
    assert "service_anomaly_severity (HOMECARE_SERVICE_ANOMALY_SEVERITY)" in message
