"""The response checklists and outcome codes as settings: shipped defaults, the TOML file and
the environment, a bad value named by its setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import DEFAULT_CHECKLISTS, DEFAULT_OUTCOMES, AlertType
from gateway.config import CHECKLIST_SETTINGS, Settings, load
from gateway.errors import ConfigError


def test_the_defaults_are_shipped_for_every_alert_type_with_a_checklist() -> None:
    plan = Settings().response_plan()
    assert plan.outcomes == DEFAULT_OUTCOMES
    for alert_type in AlertType:
        assert plan.checklist(alert_type) == DEFAULT_CHECKLISTS.get(alert_type, ())
    assert set(CHECKLIST_SETTINGS.values()) <= set(Settings.model_fields)


def test_a_station_sets_its_own_items_and_codes_in_the_file_or_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[alert]\nchecklist_fall = ["call_resident", "检查门锁"]\n'
                      'outcomes = ["false_alarm", "other"]\n', encoding="utf-8")
    plan = load(config).response_plan()
    assert plan.checklist("fall") == ("call_resident", "检查门锁")
    assert plan.outcomes == ("false_alarm", "other")
    monkeypatch.setenv("HOMECARE_ALERT_CHECKLIST_LOW_BATTERY", "")
    monkeypatch.setenv("HOMECARE_ALERT_OUTCOMES", "handled_by_phone, other")
    plan = load(config).response_plan()
    assert plan.checklist("low_battery") == ()
    assert plan.outcomes == ("handled_by_phone", "other")


def test_a_bad_code_or_item_stops_the_start_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMECARE_ALERT_OUTCOMES", "False Alarm")
    monkeypatch.setenv("HOMECARE_ALERT_CHECKLIST_FALL", "call_resident,call_resident")
    with pytest.raises(ConfigError) as refused:
        load()
    message = str(refused.value)
    assert "alert_outcomes (HOMECARE_ALERT_OUTCOMES): outcome code 'False Alarm'" in message
    assert "alert_checklist_fall (HOMECARE_ALERT_CHECKLIST_FALL)" in message
