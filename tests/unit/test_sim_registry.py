"""The registry written for a simulated fleet loads with the device contract's registry."""

from __future__ import annotations

import tomllib

from devices import Registry
from simulators.config import SimConfig, TelemetryConfig
from simulators.registry_toml import registry_toml


def test_registry_lists_sites_zones_beds_and_device_heartbeats() -> None:
    config = SimConfig(beds=5, sites=2, timezones=("Asia/Shanghai", "Europe/Berlin"),
                       telemetry=TelemetryConfig(heartbeat_s=120, button_heartbeat_s=240))
    registry = Registry.from_mapping(tomllib.loads(registry_toml(config)))
    assert registry.timezone("site-01") == "Asia/Shanghai"
    assert registry.timezone("site-02") == "Europe/Berlin"
    beds = sorted(bed.id for bed in registry.beds())
    assert beds == [f"bed-{n:04d}" for n in range(1, 6)]
    bed = registry.bed("site-02", "bed-0005")
    assert bed is not None
    assert {d.id: d.heartbeat_s for d in bed.devices.values()} == {
        "btn-0005": 240, "ir-0005": 120, "au-0005": 120, "fs-0005": 120}
