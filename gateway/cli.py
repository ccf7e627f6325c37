"""The ``homecare`` command line: one sub-command per job (DESIGN.md, "Interfaces")."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from simulators.cli import simulate

app = typer.Typer(
    name="homecare",
    help="Home-care bed gateway: device ingest, time series, alerts, simulators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("simulate")(simulate)


@app.command("demo")
def demo(
    duration: Annotated[float | None, typer.Option(
        help="Stop after this many seconds (default: until Ctrl-C).")] = None,
    beds: Annotated[int, typer.Option(help="Simulated beds.")] = 20,
    speed: Annotated[float, typer.Option(
        help="Simulated seconds per real second (60: a day in 24 minutes).")] = 60.0,
    incidents_per_bed_day: Annotated[float, typer.Option(
        help="Scripted incidents per bed per simulated day (0.5 with 20 beds at speed 60: "
             "one every two to three minutes).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed of the simulation.")] = 1,
) -> None:
    """Everything on embedded defaults: an in-process MQTT broker, simulated beds publishing
    to it (an emergency button and a fall come within seconds) and a live view of the
    traffic. Ctrl-C stops."""
    asyncio.run(_demo(duration=duration, beds=beds, speed=speed, seed=seed,
                      incidents_per_bed_day=incidents_per_bed_day))


async def _demo(*, duration: float | None, beds: int, speed: float, seed: int,
                incidents_per_bed_day: float) -> None:
    from rich.console import Console
    from rich.live import Live

    from gateway.embedded_broker import EmbeddedBroker
    from simulators.config import ForcedIncident, SimConfig
    from simulators.live import run_live
    from simulators.monitor import TrafficMonitor, watch

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = SimConfig(beds=beds, seed=seed, incidents_per_bed_day=incidents_per_bed_day,
                       forced=(ForcedIncident(type="emergency_button", bed="bed-0001"),
                               ForcedIncident(type="fall", bed=f"bed-{min(beds, 2):04d}")))
    console = Console(stderr=True)
    monitor = TrafficMonitor()
    async with EmbeddedBroker() as broker:
        console.print(f"embedded broker at {broker.url}; Ctrl-C stops")
        ready = asyncio.Event()
        with Live(monitor, console=console, refresh_per_second=4):
            async with asyncio.TaskGroup() as tasks:
                watcher = tasks.create_task(watch(broker.url, monitor, ready=ready),
                                            name="demo-monitor")
                await ready.wait()
                await run_live(config, broker.url, speed=speed, duration_s=duration, stop=stop,
                               client_prefix="demo")
                watcher.cancel()


@app.command("gateway")
def gateway_command(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="TOML settings file; every setting can be overridden by a "
        "HOMECARE_<NAME> environment variable.", exists=True, dir_okay=False)] = None,
) -> None:
    """Run the gateway service: MQTT in, time series out, until SIGTERM."""
    from gateway.config import ConfigError
    from gateway.runner import main as run_gateway

    try:
        run_gateway(config)
    except ConfigError as exc:
        typer.echo(f"homecare gateway: {exc}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
