"""Device simulators: realistic beds, scripted incidents with labels, faults, load.

Offline, a run is recorded traffic (JSONL) plus ground-truth labels, byte-identical for a
seed; live, every device is an MQTT client publishing at real or accelerated time. Nothing
outside tests, benchmarks and the CLI imports this package (STYLE.md).

>>> import io, datetime as dt
>>> sim = offline(SimConfig(beds=1, seed=1), start=dt.date(2026, 11, 2), days=0.01)
>>> summary = write(sim, io.BytesIO())
>>> summary.messages > 0
True
"""

from devices.errors import ConfigError
from simulators.cli import simulate
from simulators.config import (
    DEFAULT_START,
    DEFAULT_TIMEZONE,
    BedSpec,
    ForcedIncident,
    SimConfig,
    TelemetryConfig,
    bed_profiles,
    bed_specs,
)
from simulators.faults import FAULT_KINDS
from simulators.live import LiveStats, run_live
from simulators.load import PublishResult, pregenerate, publish_all
from simulators.mqtt import Publisher
from simulators.offline import Summary, traffic_line, write
from simulators.profiles import PROFILES, Profile, parse_profiles
from simulators.registry_toml import registry_toml
from simulators.service_visits import (
    EXPECTED_REASON,
    INJECTED_KINDS,
    SERVICE_KINDS,
    AppEvent,
    MissedTruth,
    ServiceRun,
    VisitTruth,
    service_simulation,
)
from simulators.stream import Simulation, live, offline
from simulators.traffic import Action, Emission

__all__ = [
    "DEFAULT_START",
    "DEFAULT_TIMEZONE",
    "EXPECTED_REASON",
    "FAULT_KINDS",
    "INJECTED_KINDS",
    "PROFILES",
    "SERVICE_KINDS",
    "Action",
    "AppEvent",
    "BedSpec",
    "ConfigError",
    "Emission",
    "ForcedIncident",
    "LiveStats",
    "MissedTruth",
    "Profile",
    "PublishResult",
    "Publisher",
    "ServiceRun",
    "SimConfig",
    "Simulation",
    "Summary",
    "TelemetryConfig",
    "VisitTruth",
    "bed_profiles",
    "bed_specs",
    "live",
    "offline",
    "parse_profiles",
    "pregenerate",
    "publish_all",
    "registry_toml",
    "run_live",
    "service_simulation",
    "simulate",
    "traffic_line",
    "write",
]
