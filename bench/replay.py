"""Replay speed: recorded traffic through the whole pipeline, in simulated bed-hours per second.

The traffic is a simulated run with faults (``homecare simulate --faults``), written to a
temporary JSONL file and replayed by :func:`homecare.replay.replay_file`: read, decode,
deduplicate, dead-letter, immediate rules, the eight detectors and the alert engine on an
in-memory store, ticked every simulated 10 s. Simulation time is not in the figure.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from devices import Registry
from homecare.replay import replay_file
from simulators.config import SimConfig
from simulators.offline import write
from simulators.registry_toml import registry_toml
from simulators.stream import offline


def run(*, quick: bool = False) -> dict[str, Any]:
    beds, days = (20, 0.5) if quick else (200, 1.0)
    config = SimConfig(beds=beds, seed=1, faults=True)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        traffic = Path(tmp) / "traffic.jsonl"
        with traffic.open("wb") as out:
            written = write(offline(config, start=dt.date(2026, 11, 2), days=days), out)
        registry = Registry.from_mapping(tomllib.loads(registry_toml(config)))
        alerts, summary = replay_file(traffic, None, registry=registry)
    return {
        "beds": beds,
        "simulated_hours": round(summary.simulated_hours, 2),
        "messages": written.messages,
        "sim_bed_hours_per_s": round(summary.bed_hours_per_s, 1),
        "messages_per_s": round(summary.lines / summary.elapsed_s),
        "replay_s": round(summary.elapsed_s, 2),
        "alerts": len(alerts),
    }
