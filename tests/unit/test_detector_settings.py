"""The detectors' and the storm folding's limits come from the gateway's settings (issue 17:
they were constants): how often the detectors judge, how many unregistered beds and devices
they watch, and when alerts of one type on a site become a storm."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from devices.registry import Registry
from gateway.config import Settings
from gateway.detect.alerting import detector_limits, load_detectors, storms_from_settings

REGISTRY = Registry.from_mapping({"sites": {"s1": {"beds": {"b1": {}}}}})


def test_the_detectors_take_their_limits_from_the_settings() -> None:
    settings = Settings(detector_evaluate_interval_s=5, unregistered_watched_beds=7,
                        unregistered_watched_devices=9)
    detectors = load_detectors(REGISTRY, timezone="Asia/Shanghai",
                               **detector_limits(settings))
    fleets = {id(d.fleet) for d in detectors}  # type: ignore[attr-defined]
    assert len(fleets) == 1, "one fleet shared"
    fleet = detectors[0].fleet  # type: ignore[attr-defined]
    assert fleet.evaluate_interval_ms == 5_000
    assert (fleet.quarantine.max_beds, fleet.quarantine.max_devices) == (7, 9)
    # Judged on 5 s boundaries of message time, not every minute.
    offline = next(d for d in detectors if d.name == "device_offline")
    offline.evaluate(1_000)
    assert offline._next_evaluation == 5_000  # type: ignore[attr-defined]


def test_the_device_replacement_window_is_a_setting() -> None:
    settings = Settings(device_replacement_window_s=1_800)
    detectors = load_detectors(REGISTRY, timezone="UTC", **detector_limits(settings))
    offline = next(d for d in detectors if d.name == "device_offline")
    assert offline.replacement_window_ms == 1_800_000  # type: ignore[attr-defined]


def test_the_defaults_are_a_minute_and_the_documented_caps() -> None:
    limits = detector_limits(Settings())
    assert limits == {"evaluate_interval_ms": 60_000, "max_unregistered_beds": 1_000,
                      "max_unregistered_devices": 4_000,
                      "device_replacement_window_ms": 7_200_000}


def test_storms_take_their_threshold_and_window_from_the_settings() -> None:
    storms = storms_from_settings(Settings(alert_storm_threshold=3, alert_storm_window_s=30),
                                  REGISTRY)
    assert (storms.threshold, storms.window_ms) == (3, 30_000)


@pytest.mark.parametrize("field", ["detector_evaluate_interval_s", "alert_storm_threshold"])
def test_a_zero_interval_or_threshold_is_refused(field: str) -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({field: 0})
