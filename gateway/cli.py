"""The ``homecare`` command line: one sub-command per job (DESIGN.md, "Interfaces")."""

from __future__ import annotations

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


def main() -> None:
    app()
