"""``homecare gateway``, the service, started without the rest of the ``homecare`` command.

A restart after a crash is the time the broker holds a station's messages and a dispatcher
waits: :mod:`homecare.entry` sends ``homecare gateway`` to :mod:`homecare.service` when its
arguments are the usual ones (no command-line library at all) and here otherwise (help, an
option to check), so the start imports neither the simulators nor the parameters of every
other command (a third of a start-up's imports at a high load, RELIABILITY.md). ``homecare
--help`` lists the same command (:mod:`homecare.cli`)."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["gateway_command", "run"]


def gateway_command(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="TOML settings file; every setting can be overridden by a "
        "HOMECARE_<NAME> environment variable.", exists=True, dir_okay=False)] = None,
    standby: Annotated[bool, typer.Option(
        "--standby", help="When another gateway already runs on the data directory, wait "
        "(imported, configured) and take over the moment it ends, even by SIGKILL, instead of "
        "refusing to start: a restart without the process start (deploy/README.md).")] = False,
) -> None:
    """Run the gateway service: MQTT in, decode, spool and time series out, alerts, the alert
    API and console, upstream delivery, until SIGTERM.

    Settings come from the TOML file given with --config and from HOMECARE_<NAME> environment
    variables, which win over the file. Every setting, with its default, unit and variable, is
    in the settings reference: `homecare config example` prints it as a commented sample to copy
    (deploy/gateway.example.toml in the repository), and the settings table in README.md. Check
    a configuration before starting with `homecare config check`. Bad settings and unknown
    HOMECARE_* variables stop the start (exit status 2)."""
    from homecare.service import serve

    status = serve(config, standby)
    if status:
        raise typer.Exit(status)


def run(args: Sequence[str]) -> None:
    """``homecare gateway ARGS``: the command alone, with the same options and help."""
    gc.enable()  # off for a plain start (homecare.service); this is not one
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                      rich_markup_mode=None,
                      context_settings={"max_content_width": 100})
    app.command()(gateway_command)
    app(args=list(args), prog_name="homecare gateway")
