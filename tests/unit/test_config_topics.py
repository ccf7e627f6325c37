"""``mqtt_topic``: one topic filter or several, so that one gateway serves a group of sites."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config import load
from gateway.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_homecare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HOMECARE_"):
            monkeypatch.delenv(key)


def test_the_default_is_every_device_topic() -> None:
    assert load(None).mqtt_topic == ("homecare/v1/#",)


def test_several_filters_in_the_settings_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[mqtt]\ntopic = ["homecare/v1/site-01/#", "homecare/v1/site-03/#"]\n')
    assert load(config).mqtt_topic == ("homecare/v1/site-01/#", "homecare/v1/site-03/#")


def test_several_filters_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMECARE_MQTT_TOPIC", "homecare/v1/site-01/#, homecare/v1/site-03/#")
    assert load(None).mqtt_topic == ("homecare/v1/site-01/#", "homecare/v1/site-03/#")
    monkeypatch.setenv("HOMECARE_MQTT_TOPIC", "homecare/v1/site-02/#")
    assert load(None).mqtt_topic == ("homecare/v1/site-02/#",)


@pytest.mark.parametrize("topic", ["", "homecare/v1/site-#", "homecare/#/site-01",
                                   "homecare/v1/site+/#", "homecare/v1/site-01/#,"
                                   "homecare/v1/site-01/#"])
def test_a_bad_filter_stops_the_start_naming_the_setting(monkeypatch: pytest.MonkeyPatch,
                                                         topic: str) -> None:
    monkeypatch.setenv("HOMECARE_MQTT_TOPIC", topic)
    with pytest.raises(ConfigError, match="mqtt_topic"):
        load(None)
