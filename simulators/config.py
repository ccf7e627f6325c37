"""What to simulate: beds, sites, time zones, rates. Validated once, then frozen.

Everything that changes the generated traffic lives here, so that one ``SimConfig`` plus a seed
reproduces a run byte for byte.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import Final

from devices.errors import ConfigError
from devices.labels import ALERT_TYPES, BedProfile
from simulators.profiles import PROFILES, Profile

DEFAULT_START: Final = dt.date(2026, 11, 2)
"""Fixed default start date: a run never depends on the day it is made."""

DEFAULT_TIMEZONE: Final = "Asia/Shanghai"
DEFAULT_INCIDENTS_PER_BED_DAY: Final = 0.2
"""At 0.2, a 50-bed week holds 70 incidents: every one of the ten types seven times."""

DEFAULT_FAULT_RATE: Final = 0.002
"""Share of device messages hit by a fault when faults are on (about 75 per bed-week)."""

BEDS_PER_CAREGIVER: Final = 4
"""A caregiver serves this many beds of one site, one visit slot each, so never double-booked."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TelemetryConfig:
    """Message rates of the sensors (seconds). Defaults: one message a minute per sensor.

    Infrared and audio send either one sample per message or, on about half of the beds
    (chosen per bed from the seed), a batch of ``infrared_batch``/``audio_batch`` samples
    spread over the period, so both wire forms of the contract appear. The fall/vital-sign
    sensor always batches ``vitals_samples`` samples per message.
    """

    infrared_period_s: float = 60.0
    audio_period_s: float = 60.0
    vitals_period_s: float = 60.0
    vitals_samples: int = 6
    infrared_batch: int = 2
    audio_batch: int = 4
    heartbeat_s: float = 300.0
    button_heartbeat_s: float = 600.0
    keepalive_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("infrared_period_s", "audio_period_s", "vitals_period_s", "heartbeat_s",
                     "button_heartbeat_s", "keepalive_s"):
            if not 1.0 <= getattr(self, name) <= 86_400.0:
                raise ConfigError(f"{name}: must be between 1 and 86400 seconds")
        for name in ("vitals_samples", "infrared_batch", "audio_batch"):
            if not 1 <= getattr(self, name) <= 60:
                raise ConfigError(f"{name}: must be between 1 and 60")


@dataclass(frozen=True, kw_only=True, slots=True)
class ForcedIncident:
    """An incident asked for by name (``--incident fall --bed bed-0003``), placed early."""

    type: str
    bed: str

    def __post_init__(self) -> None:
        if self.type not in ALERT_TYPES:
            raise ConfigError(
                f"incident: unknown type {self.type!r}; one of {', '.join(ALERT_TYPES)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class SimConfig:
    beds: int = 10
    sites: int = 1
    timezones: tuple[str, ...] = (DEFAULT_TIMEZONE,)
    seed: int = 1
    incidents_per_bed_day: float = DEFAULT_INCIDENTS_PER_BED_DAY
    faults: bool = False
    fault_rate: float = DEFAULT_FAULT_RATE
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    forced: tuple[ForcedIncident, ...] = ()
    profiles: tuple[str, ...] = ("standard",)
    """Person profiles (:mod:`simulators.profiles`), assigned to the beds in turn."""

    def __post_init__(self) -> None:
        if not 1 <= self.beds <= 99_999:
            raise ConfigError("beds: must be between 1 and 99999")
        if not 1 <= self.sites <= min(self.beds, 99):
            raise ConfigError("sites: must be between 1 and min(beds, 99)")
        if not self.timezones:
            raise ConfigError("timezone: at least one IANA zone is needed")
        for name in self.timezones:
            try:
                zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"timezone: unknown IANA time zone {name!r}") from None
        if not 0 <= self.seed < 2**63:
            raise ConfigError("seed: must be a non-negative integer")
        if not 0.0 <= self.incidents_per_bed_day <= 24.0:
            raise ConfigError("incidents-per-bed-day: must be between 0 and 24")
        if not 0.0 <= self.fault_rate <= 0.5:
            raise ConfigError("fault-rate: must be between 0 and 0.5")
        if not self.profiles:
            raise ConfigError("profiles: name at least one profile")
        for name in self.profiles:
            if name not in PROFILES:
                raise ConfigError(f"profiles: unknown profile {name!r}; one of "
                                  f"{', '.join(PROFILES)}")
        known = {spec.bed for spec in bed_specs(self)}
        for forced in self.forced:
            if forced.bed not in known:
                raise ConfigError(f"bed: {forced.bed!r} is not one of the simulated beds")

    def profile(self, bed_index: int) -> Profile:
        """The profile of the bed with this index (0 for bed-0001)."""
        return PROFILES[self.profiles[bed_index % len(self.profiles)]]


@dataclass(frozen=True, kw_only=True, slots=True)
class BedSpec:
    """One simulated bed and the ids of its devices, all derived from the bed number."""

    index: int
    site: str
    bed: str
    timezone: str
    button: str
    infrared: str
    audio: str
    fall: str
    caregiver: str
    badge: str
    visit_slot: int


def site_id(site_index: int) -> str:
    return f"site-{site_index + 1:02d}"


def bed_specs(config: SimConfig) -> list[BedSpec]:
    """Beds in contiguous blocks per site; caregivers serve groups of beds within a site."""
    specs: list[BedSpec] = []
    caregivers_before = 0
    for site_index in range(config.sites):
        first = site_index * config.beds // config.sites
        last = (site_index + 1) * config.beds // config.sites
        timezone = config.timezones[site_index % len(config.timezones)]
        for position, index in enumerate(range(first, last)):
            number = index + 1
            caregiver = f"c{caregivers_before + position // BEDS_PER_CAREGIVER + 1:03d}"
            specs.append(BedSpec(
                index=index, site=site_id(site_index), bed=f"bed-{number:04d}",
                timezone=timezone, button=f"btn-{number:04d}", infrared=f"ir-{number:04d}",
                audio=f"au-{number:04d}", fall=f"fs-{number:04d}", caregiver=caregiver,
                badge=f"bg-{caregiver}", visit_slot=position % BEDS_PER_CAREGIVER,
            ))
        caregivers_before += -(-(last - first) // BEDS_PER_CAREGIVER)
    return specs


def bed_profiles(config: SimConfig) -> list[BedProfile]:
    """Each bed's profile, as the bed-profile records of :mod:`devices.labels`."""
    return [BedProfile(site=spec.site, bed=spec.bed, profile=config.profile(spec.index).name)
            for spec in bed_specs(config)]
