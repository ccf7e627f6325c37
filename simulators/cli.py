"""``homecare simulate``: offline to JSONL traffic + labels, or live to an MQTT broker."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from devices.broker import BrokerUrl
from devices.errors import ConfigError
from devices.labels import ALERT_TYPES, encode_bed_profile
from simulators.config import (
    DEFAULT_FAULT_RATE,
    DEFAULT_INCIDENTS_PER_BED_DAY,
    DEFAULT_START,
    DEFAULT_TIMEZONE,
    ForcedIncident,
    SimConfig,
    TelemetryConfig,
    bed_profiles,
)
from simulators.errors import MqttError
from simulators.live import LiveStats, run_live
from simulators.offline import write
from simulators.profiles import MIXES, PROFILES, parse_profiles
from simulators.registry_toml import registry_toml
from simulators.stream import offline

_TYPES = ", ".join(ALERT_TYPES)
_PROFILES = ", ".join(PROFILES)


def simulate(
    beds: Annotated[int, typer.Option(help="Number of beds (ids bed-0001, bed-0002, ...).")] = 10,
    days: Annotated[float, typer.Option(
        help="Offline: simulated days, from local midnight of --start.")] = 1.0,
    seed: Annotated[int, typer.Option(
        help="Random seed; the same seed and options give byte-identical output.")] = 1,
    start: Annotated[str, typer.Option(
        metavar="DATE",
        help="Offline: first simulated day (YYYY-MM-DD), local to each site.")] = (
            DEFAULT_START.isoformat()),
    sites: Annotated[int, typer.Option(
        help="Spread the beds over this many sites (site-01, site-02, ...).")] = 1,
    timezone: Annotated[list[str] | None, typer.Option(
        metavar="ZONE",
        help="IANA time zone for day and night; repeat (or comma-separate) to give sites "
             f"different zones, assigned in turn. [default: {DEFAULT_TIMEZONE}]")] = None,
    out: Annotated[str | None, typer.Option(
        metavar="PATH",
        help="Offline: write recorded traffic (JSONL) to this file, '-' for stdout.")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="Write ground-truth incident labels (JSONL) to this file.")] = None,
    faults: Annotated[bool, typer.Option(
        help="Inject faults: malformed JSON, wrong types, unknown topics, oversize payloads, "
             "duplicates, reordering, clock skew, bursts.")] = False,
    fault_rate: Annotated[float, typer.Option(
        help="With --faults: share of device messages hit by a fault.")] = DEFAULT_FAULT_RATE,
    fault_log: Annotated[Path | None, typer.Option(
        help="Offline, with --faults: write every injected fault (t, kind, variant, topic) "
             "as JSONL.")] = None,
    incidents_per_bed_day: Annotated[float, typer.Option(
        help="Scripted incidents per bed per day, types dealt evenly from: " + _TYPES + ".")] = (
            DEFAULT_INCIDENTS_PER_BED_DAY),
    incident: Annotated[list[str] | None, typer.Option(
        metavar="TYPE[@BED]",
        help="Inject an incident soon after the start (repeatable); TYPE or TYPE@BED, "
             "TYPE one of: " + _TYPES + ".")] = None,
    bed: Annotated[str, typer.Option(
        help="The bed that --incident happens in, unless given as TYPE@BED.")] = "bed-0001",
    mqtt_url: Annotated[str | None, typer.Option(
        metavar="URL",
        help="Live: publish to this broker, mqtt://[user:pass@]host[:port] or mqtts://...")
    ] = None,
    speed: Annotated[float, typer.Option(
        help="Live: simulated seconds per real second (60 = a simulated minute per second).")
    ] = 1.0,
    duration: Annotated[float | None, typer.Option(
        help="Live: stop after this many real seconds (default: until Ctrl-C or SIGTERM).")
    ] = None,
    rate: Annotated[float | None, typer.Option(
        help="Live: publish a fixed load of this many messages per second instead of "
             "following the clock.")] = None,
    client_prefix: Annotated[str, typer.Option(
        help="Live: MQTT client ids are PREFIX-SITE-DEVICE.")] = "sim",
    infrared_period: Annotated[float, typer.Option(
        help="Seconds between infrared messages.")] = 60.0,
    audio_period: Annotated[float, typer.Option(help="Seconds between audio messages.")] = 60.0,
    vitals_period: Annotated[float, typer.Option(
        help="Seconds between fall/vital-sign messages.")] = 60.0,
    vitals_samples: Annotated[int, typer.Option(
        help="Vital-sign samples per message, evenly spaced over the period.")] = 6,
    heartbeat: Annotated[float, typer.Option(
        help="Status heartbeat (heartbeat_s) of the sensors; buttons use twice this.")] = 300.0,
    registry: Annotated[Path | None, typer.Option(
        help="Also write a registry TOML of the simulated sites (time zones), beds and "
             "devices (heartbeats), in the devices.Registry format.")] = None,
    profiles: Annotated[str, typer.Option(
        metavar="MIX",
        help="Person profiles, assigned to the beds in turn: 'standard' (the default person), "
             f"'{', '.join(MIXES)}' (every profile), or a comma list of: {_PROFILES}. "
             "Profiles change normal life only, never the labels.")] = "standard",
    bed_profiles_out: Annotated[Path | None, typer.Option(
        "--bed-profiles",
        help="Write each bed's profile (JSONL: site, bed, profile), for `homecare evaluate "
             "--bed-profiles`.")] = None,
    quiet: Annotated[bool, typer.Option(
        help="No progress display and no summary.")] = False,
) -> None:
    """Simulate home-care beds: realistic days, caregiver visits, scripted incidents with
    ground-truth labels, optional faults. Offline with --out, live with --mqtt-url."""
    err = Console(stderr=True)
    if (out is None) == (mqtt_url is None):
        raise typer.BadParameter("give exactly one of --out (offline) or --mqtt-url (live)")
    zones = tuple(z.strip() for raw in (timezone or [DEFAULT_TIMEZONE])
                  for z in raw.split(",") if z.strip())
    try:
        config = SimConfig(
            beds=beds, sites=sites, timezones=zones, seed=seed,
            incidents_per_bed_day=incidents_per_bed_day, faults=faults, fault_rate=fault_rate,
            telemetry=TelemetryConfig(
                infrared_period_s=infrared_period, audio_period_s=audio_period,
                vitals_period_s=vitals_period, vitals_samples=vitals_samples,
                heartbeat_s=heartbeat, button_heartbeat_s=2 * heartbeat),
            forced=tuple(_forced(spec, bed) for spec in incident or ()),
            profiles=parse_profiles(profiles),
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    show = not quiet and err.is_terminal
    if registry is not None:
        registry.write_text(registry_toml(config), encoding="utf-8")
    if bed_profiles_out is not None:
        bed_profiles_out.write_bytes(b"".join(encode_bed_profile(p)
                                              for p in bed_profiles(config)))
    if out is not None:
        try:
            first_day = dt.date.fromisoformat(start)
        except ValueError:
            raise typer.BadParameter(f"start: expected YYYY-MM-DD, got {start!r}") from None
        if not 0 < days <= 366:
            raise typer.BadParameter("days: must be more than 0 and at most 366")
        _offline(config, first_day, days, out, labels, fault_log, show, quiet, err)
    else:
        assert mqtt_url is not None
        try:
            BrokerUrl.parse(mqtt_url)
        except ValueError as exc:
            raise typer.BadParameter(f"--mqtt-url: {exc}") from None
        if speed <= 0 or (rate is not None and rate <= 0) or (duration is not None
                                                              and duration <= 0):
            raise typer.BadParameter("speed, rate and duration must be positive")
        _live(config, mqtt_url, speed, duration, rate, client_prefix, labels, show, quiet, err)


def _forced(spec: str, default_bed: str) -> ForcedIncident:
    type_, _, bed = spec.partition("@")
    return ForcedIncident(type=type_.strip(), bed=bed.strip() or default_bed)


@contextlib.contextmanager
def _open_out(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
    else:
        with open(path, "wb", buffering=1 << 20) as handle:
            yield handle


@contextlib.contextmanager
def _open_optional(path: Path | None) -> Iterator[BinaryIO | None]:
    if path is None:
        yield None
    else:
        with path.open("wb") as handle:
            yield handle


def _offline(config: SimConfig, first_day: dt.date, days: float, out: str,
             labels: Path | None, fault_log: Path | None, show: bool, quiet: bool,
             err: Console) -> None:
    sim = offline(config, start=first_day, days=days)
    progress = Progress(TextColumn("simulating"), BarColumn(),
                        TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                        console=err, disable=not show, transient=True)
    with progress, _open_out(out) as handle, _open_optional(labels) as labels_handle, \
            _open_optional(fault_log) as faults_handle:
        task = progress.add_task("simulating", total=1.0)
        summary = write(sim, handle, labels_out=labels_handle, faults_out=faults_handle,
                        progress=lambda done: progress.update(task, completed=done))
    if not quiet:
        for line in summary.lines():
            err.print(line, highlight=False)


def _live(config: SimConfig, url: str, speed: float, duration: float | None,
          rate: float | None, client_prefix: str, labels: Path | None, show: bool,
          quiet: bool, err: Console) -> None:
    async def main() -> LiveStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with Live(console=err, transient=True, auto_refresh=False) if show else \
                contextlib.nullcontext() as display, _open_optional(labels) as labels_handle:

            def tick(stats: LiveStats) -> None:
                if display is not None:
                    display.update(status_line(stats), refresh=True)

            return await run_live(config, url, speed=speed, duration_s=duration, rate=rate,
                                  stop=stop, client_prefix=client_prefix,
                                  labels_out=labels_handle, on_tick=tick)

    try:
        stats = asyncio.run(main())
    except (OSError, TimeoutError, MqttError) as exc:
        err.print(f"cannot reach the broker at {url}: {exc}")
        raise typer.Exit(2) from None
    if not quiet:
        err.print(status_line(stats), highlight=False)


def status_line(stats: LiveStats) -> str:
    """One line: simulated time, messages and rate, devices connected."""
    elapsed = max(stats.elapsed_s, 1e-9)
    sim_time = dt.datetime.fromtimestamp(stats.sim_now_ms / 1000, tz=dt.UTC)
    return (f"sim {sim_time:%Y-%m-%d %H:%M:%S}Z  published {stats.published:,} "
            f"({stats.published / elapsed:,.0f}/s)  devices {stats.connected}/{stats.devices}  "
            f"lag {stats.lag_s:.1f}s")
