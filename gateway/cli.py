"""The ``homecare`` command line: one sub-command per job (DESIGN.md, "Interfaces")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from simulators.cli import simulate

if TYPE_CHECKING:
    from alerts.keys import KeyStore

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
    port: Annotated[int | None, typer.Option(
        help="HTTP port of the console and API on 127.0.0.1 [default: 8080, or a free port "
             "when 8080 is taken].")] = None,
    beds: Annotated[int, typer.Option(help="Simulated beds.")] = 20,
    speed: Annotated[float, typer.Option(
        help="Simulated seconds per real second (60: a day in 24 minutes).")] = 60.0,
    incidents_per_bed_day: Annotated[float, typer.Option(
        help="Scripted incidents per bed per simulated day (0.5 with 20 beds at speed 60: "
             "one every two to three minutes).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed of the simulation.")] = 1,
    data_dir: Annotated[Path | None, typer.Option(
        help="Keep the gateway's data (alerts, spool, keys) here [default: a temporary "
             "directory removed at exit].", file_okay=False)] = None,
) -> None:
    """Everything on embedded defaults: an in-process MQTT broker, simulated beds (an
    emergency call and a fall within seconds, then an incident every few minutes), the
    gateway, and the dispatcher console with the alert API on http://127.0.0.1:8080 (a
    dispatcher key is printed). Ctrl-C stops."""
    from gateway.demo import DemoOptions, run_demo

    if (duration is not None and duration <= 0) or speed <= 0 or beds < 1:
        raise typer.BadParameter("duration, speed and beds must be positive")
    if port is not None and not 1 <= port <= 65_535:
        raise typer.BadParameter("port must be between 1 and 65535")
    asyncio.run(run_demo(DemoOptions(
        duration_s=duration, beds=beds, speed=speed, seed=seed, port=port, data_dir=data_dir,
        incidents_per_bed_day=incidents_per_bed_day)))


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


keys_app = typer.Typer(
    name="keys", no_args_is_help=True,
    help="API keys of the alert API (roles: viewer reads; dispatcher also acknowledges, "
         "resolves and checks in/out; admin also manages keys). Keys are stored hashed in "
         "<data dir>/keys.sqlite3; changes apply to a running gateway at once.")
app.add_typer(keys_app)

_ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Gateway TOML settings file (for its data_dir).", exists=True,
    dir_okay=False)]
_DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", help="The gateway's data directory [default: data_dir of the settings, "
    "HOMECARE_DATA_DIR, else ./data].", file_okay=False)]


def _key_store(config: Path | None, data_dir: Path | None) -> KeyStore:
    from alerts.keys import KeyStore
    from gateway.config import ConfigError, load

    if data_dir is None:
        try:
            data_dir = Path(load(config).data_dir)
        except ConfigError as exc:
            typer.echo(f"homecare keys: {exc}", err=True)
            raise typer.Exit(2) from None
    return KeyStore(data_dir / "keys.sqlite3")


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli"


def _when(ms: int | None) -> str:
    import datetime as dt

    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Unique name; recorded as the actor of every "
                                           "write made with the key.")],
    role: Annotated[str, typer.Option(help="viewer, dispatcher or admin.")] = "viewer",
    config: _ConfigOption = None,
    data_dir: _DataDirOption = None,
) -> None:
    """Create a key and print its token once (only its hash is kept)."""
    from alerts.keys import KeyExists, KeyStoreError, Role

    try:
        parsed = Role(role)
    except ValueError:
        raise typer.BadParameter("expected viewer, dispatcher or admin",
                                 param_hint="--role") from None
    store = _key_store(config, data_dir)
    try:
        key, token = store.create(name, parsed, actor=_cli_actor())
    except KeyExists as exc:
        typer.echo(f"homecare keys: {exc}; revoke it first", err=True)
        raise typer.Exit(1) from None
    except KeyStoreError as exc:
        typer.echo(f"homecare keys: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(f"created {key.role.value} key {key.name!r}; the token is shown only now:",
               err=True)
    typer.echo(token)


@keys_app.command("list")
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    config: _ConfigOption = None,
    data_dir: _DataDirOption = None,
) -> None:
    """List keys (never their tokens)."""
    store = _key_store(config, data_dir)
    try:
        keys = store.list_keys(include_revoked=all_keys)
    finally:
        store.close()
    typer.echo(f"{'NAME':<24} {'ROLE':<10} {'CREATED':<20} {'BY':<16} REVOKED")
    for key in keys:
        revoked = f"{_when(key.revoked_at)} by {key.revoked_by}" if key.revoked_at else "-"
        typer.echo(f"{key.name:<24} {key.role.value:<10} {_when(key.created_at):<20} "
                   f"{key.created_by:<16} {revoked}")


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="Name of the key to revoke.")],
    config: _ConfigOption = None,
    data_dir: _DataDirOption = None,
) -> None:
    """Revoke a key; it stops working at once, also in a running gateway."""
    from alerts.keys import KeyNotFound

    store = _key_store(config, data_dir)
    try:
        store.revoke(name, actor=_cli_actor())
    except KeyNotFound as exc:
        typer.echo(f"homecare keys: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(f"revoked key {name!r}", err=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
