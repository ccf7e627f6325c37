"""The ``homecare`` command line: one sub-command per job (DESIGN.md, "Interfaces")."""

from __future__ import annotations

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
