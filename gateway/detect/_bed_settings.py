"""Each bed's thresholds and each device's heartbeat, from the registry, as arrays by number.

Detectors compare whole columns of samples with per-bed limits at once, so each numeric field
of :class:`~devices.registry.BedSettings` (:data:`THRESHOLDS`) is one float64 array indexed by
bed number. A bed in the registry gets its own settings, any other bed the registry's
defaults (it is registered on first sight, so a new sensor is never ignored). The same for a
device's promised ``heartbeat_s``. The arrays are filled when a bed or device is numbered
(:class:`~gateway.detect._numbering.Numbering`) and not changed after.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from devices.registry import BedSettings, Registry
from gateway.detect._table import grow

F64 = npt.NDArray[np.float64]

THRESHOLDS: Final = (
    "bed_exit_return_min", "inactivity_factor", "inactivity_min_minutes", "heart_rate_min",
    "heart_rate_max", "breathing_rate_min", "breathing_rate_max", "sound_db_above_baseline",
    "low_battery_pct",
)
"""The numeric BedSettings fields kept as arrays (the night window is local time's:
:class:`~gateway.detect._localtime.LocalClock`)."""


class BedSettingArrays:
    """``settings[name][bed]``: one registry setting of a bed, by bed number."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._arrays: dict[str, F64] = {name: np.zeros(0) for name in THRESHOLDS}
        self.device_heartbeat_ms: F64 = np.zeros(0, np.float64)
        """The heartbeat each device promises in the registry (else the default), in ms."""
        self.offline_factor = float(registry.defaults.offline_factor)
        """A device silent for its heartbeat times this is offline (registry ``defaults``)."""

    def __getitem__(self, name: str) -> F64:
        """The :data:`THRESHOLDS` field ``name`` by bed number (room for more rows than there
        are beds)."""
        return self._arrays[name]

    def add_bed(self, index: int, site: str, bed: str) -> BedSettings:
        """Fill in new bed number ``index``; returns its settings."""
        known = self.registry.bed(site, bed)
        settings = known.settings if known is not None else self.registry.defaults.settings
        size = index + 1
        for name in THRESHOLDS:
            array = self._arrays[name] = grow(self._arrays[name], size, 0.0)
            array[index] = float(getattr(settings, name))
        return settings

    def add_device(self, index: int, site: str, bed: str, device: str) -> None:
        """Fill in new device number ``index``."""
        self.device_heartbeat_ms = grow(self.device_heartbeat_ms, index + 1, 0.0)
        known = self.registry.bed(site, bed)
        registered = known.devices.get(device) if known is not None else None
        heartbeat_s = (registered.heartbeat_s if registered is not None
                       else self.registry.defaults.heartbeat_s)
        self.device_heartbeat_ms[index] = heartbeat_s * 1000.0
