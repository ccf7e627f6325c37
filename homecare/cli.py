"""The ``homecare`` command line: one sub-command per job (DESIGN.md, "Interfaces").

The module is over 400 lines because every sub-command's options and help text live here; the
work of each is in its own module, imported when the command runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from homecare.gateway_cli import gateway_command
from simulators.cli import simulate

if TYPE_CHECKING:
    from alerts.keys import KeyStore
    from devices.registry import Registry
    from gateway.upstream import Outbox

# Plain help (no rich markup): typer's markup took "[default: ...]" in help texts for tags and
# kept the line breaks of docstrings in the command list. Each command has a one-line summary.
_HELP: dict[str, Any] = {"rich_markup_mode": None, "no_args_is_help": True,
                         "context_settings": {"max_content_width": 100}}

app = typer.Typer(
    name="homecare",
    help="Home-care bed gateway: device ingest, time series, alerts, simulators.",
    add_completion=False,
    pretty_exceptions_enable=False,
    **_HELP,
)
app.command("simulate", short_help="Simulated beds: recorded traffic and labels, or live.")(
    simulate)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"homecare {version('homecare-gateway')}")
        except PackageNotFoundError:
            typer.echo("homecare (version unknown: the package is not installed)")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version (of the installed package) and exit.")] = False,
) -> None:
    """Home-care bed gateway: device ingest, time series, alerts, simulators."""


DEFAULT_CONFIG = Path("/etc/homecare/gateway.toml")
"""Where the Debian install puts the gateway's settings (deploy/systemd): the tools that work
on the gateway's data read it when no --config is given, so that they find the gateway's data
directory as the gateway does."""


def _settings_file(config: Path | None) -> Path | None:
    """``config``, else :data:`DEFAULT_CONFIG` when it exists."""
    if config is None and DEFAULT_CONFIG.is_file():
        return DEFAULT_CONFIG
    return config


DEMO_MODULES = frozenset({"amqtt"})
"""What only ``homecare demo`` imports, installed by the package's ``demo`` extra."""


@app.command("demo", short_help="Everything on embedded defaults (what `make run` starts).")
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
    try:
        from homecare.demo import DemoOptions, run_demo
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in DEMO_MODULES:
            raise
        typer.echo(f"homecare demo: needs the demo extra ({exc.name} is not installed): "
                   "pip install 'homecare-gateway[demo]' (in a checkout: make run); the "
                   "gateway itself does not need it", err=True)
        raise typer.Exit(1) from None

    if (duration is not None and duration <= 0) or speed <= 0 or beds < 1:
        raise typer.BadParameter("duration, speed and beds must be positive")
    if port is not None and not 1 <= port <= 65_535:
        raise typer.BadParameter("port must be between 1 and 65535")
    asyncio.run(run_demo(DemoOptions(
        duration_s=duration, beds=beds, speed=speed, seed=seed, port=port, data_dir=data_dir,
        incidents_per_bed_day=incidents_per_bed_day)))


app.command("gateway", short_help="The gateway service, until SIGTERM.")(gateway_command)


config_app = typer.Typer(
    name="config", short_help="Check the gateway's settings, variables and registry.",
    help="The gateway's configuration: the settings file, HOMECARE_* variables, the registry.",
    **_HELP)
app.add_typer(config_app)


@config_app.command("example", short_help="Print every setting as a commented sample "
                    "settings file.")
def config_example() -> None:
    """Print the settings reference as a commented TOML sample to copy and edit: every
    setting with its default, unit, description and HOMECARE_* variable (the same text as
    deploy/gateway.example.toml in the repository, which an installed package does not ship)."""
    from gateway import render_example_toml

    typer.echo(render_example_toml(), nl=False)


@config_app.command("check", short_help="List every problem of the configuration at once.")
def config_check(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="TOML settings file, as given to `homecare gateway --config` "
        "[default: /etc/homecare/gateway.toml if it exists].", dir_okay=False)] = None,
    registry: Annotated[Path | None, typer.Option(
        help="Registry TOML [default: registry_file of the settings].", dir_okay=False)] = None,
) -> None:
    """Check the settings file, the environment and the registry as the gateway reads them,
    and list every problem at once.

    Each problem names where it is (the file, the environment, the registry), the setting or
    key, and what is wrong; unknown settings and HOMECARE_* variables are problems, with the
    closest known name. Exit status 1 on any problem, 0 when the gateway would take the
    configuration."""
    from homecare.configcheck import check

    result = check(_settings_file(config), registry=registry)
    first, *rest = result.report()
    typer.echo(f"homecare config check: {first}")
    for line in rest:
        typer.echo(line)
    if not result.ok:
        raise typer.Exit(1)


keys_app = typer.Typer(
    name="keys", short_help="API keys of the alert API: create, list, revoke.", **_HELP,
    help="API keys of the alert API (roles: viewer reads; dispatcher also acknowledges, "
         "resolves and checks in/out; admin also manages keys). Keys are stored hashed in "
         "<data dir>/keys.sqlite3; changes apply to a running gateway at once.")
app.add_typer(keys_app)
app.add_typer(__import__("homecare.residents_cli").residents_cli.residents_app)
app.add_typer(__import__("homecare.plans_cli").plans_cli.plans_app)
app.command("verify-log", short_help="Check the service log's hash chain against kept heads.")(
    __import__("homecare.servicelog_cli").servicelog_cli.verify_log)
app.add_typer(__import__("homecare.report_cli").report_cli.report_app)

_ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="The gateway's TOML settings file (for its data_dir) [default: "
    f"{DEFAULT_CONFIG} if it exists].", exists=True, dir_okay=False)]
_DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", help="The gateway's data directory [default: as the gateway finds it: "
    "HOMECARE_DATA_DIR, else data_dir of the settings file, else ./data if it exists].",
    file_okay=False)]


def _data_dir(command: str, config: Path | None, data_dir: Path | None) -> tuple[Path, str]:
    """The gateway's data directory as the gateway finds it (the environment, then the settings
    file, then the default), and where it came from; unknown ``HOMECARE_*`` variables stop the
    command (exit 2), as they stop the gateway. The bare default (``./data``) is taken
    only when it exists: a key written to a new directory there would be refused by a gateway
    that keeps its data elsewhere."""
    import os

    from gateway.config import ENV_PREFIX, load
    from gateway.errors import ConfigError

    if data_dir is not None:
        return data_dir, "--data-dir"
    from homecare.service import refuse_unknown_variables

    # The environment says where the data is, as for the gateway: a misspelt variable
    # (a missing underscore) would send this command to another directory than the gateway's.
    if refuse_unknown_variables(command, "nothing done"):
        raise typer.Exit(2)
    config = _settings_file(config)
    try:
        settings = load(config)
    except ConfigError as exc:
        typer.echo(f"homecare {command}: {exc}", err=True)
        raise typer.Exit(2) from None
    found = Path(settings.data_dir)
    variable = f"{ENV_PREFIX}DATA_DIR"
    if any(key.upper() == variable for key in os.environ):
        return found, variable
    if config is not None and "data_dir" in settings.model_fields_set:
        return found, f"data_dir of {config}"
    if not found.is_dir():
        typer.echo(
            f"homecare {command}: no gateway data directory here: {found.resolve()} does not "
            f"exist (the default data_dir, relative to the current directory"
            f"{f', and {config} does not set one' if config else ''}). Say where the gateway "
            f"keeps its data, as the gateway is told: --config <its settings file> "
            f"(default {DEFAULT_CONFIG}), {variable}, or --data-dir.", err=True)
        raise typer.Exit(1)
    return found, f"the default data_dir in {Path.cwd()}"


@app.command("verify-archive", short_help="Check the housekeeping archive of alert changes "
             "and key audit.")
def verify_archive(config: _ConfigOption = None, data_dir: _DataDirOption = None) -> None:
    """Check <data dir>/archive/ (months of alert changes and key audit housekeeping moved
    there): every file's SHA-256, rows and numbers against manifest.jsonl, the manifest's hash
    chain, and that the alert changes run on without a gap through the archives into the
    live store. Exit status 1 on any problem, each named."""
    from gateway.storage import verify_archive as check

    directory, source = _data_dir("verify-archive", config, data_dir)
    result = check(directory)
    rows = ", ".join(f"{kind} {n} (up to {result.heads[kind]})"
                     for kind, n in sorted(result.rows.items())) or "nothing archived"
    typer.echo(f"homecare verify-archive: {directory} (data_dir from {source}): "
               f"{result.files} files, {rows}: {'ok' if result.ok else 'PROBLEMS'}")
    for problem in result.problems:
        typer.echo(f"  {problem}")
    if not result.ok:
        raise typer.Exit(1)


def _key_store(config: Path | None, data_dir: Path | None) -> tuple[KeyStore, str]:
    """The gateway's key store, and a phrase saying which file it is and why."""
    from alerts.keys import KeyStore

    directory, source = _data_dir("keys", config, data_dir)
    path = (directory / "keys.sqlite3").resolve()
    return KeyStore(path), f"{path} (data_dir from {source})"


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


upstream_app = typer.Typer(
    name="upstream", short_help="The upstream outbox: status, requeue, family secrets.",
    **_HELP,
    help="The upstream outbox (<data dir>/outbox.sqlite3): alert changes and service-log "
         "records on their way to the city platform (HOMECARE_UPSTREAM_URL).")
app.add_typer(upstream_app)


def _outbox(config: Path | None, data_dir: Path | None) -> Outbox:
    from gateway.upstream import Outbox

    directory, source = _data_dir("upstream", config, data_dir)
    path = (directory / "outbox.sqlite3").resolve()
    if not path.exists():
        typer.echo(f"homecare upstream: no outbox at {path} (data_dir from {source}; is "
                   "HOMECARE_UPSTREAM_URL set on the gateway?)", err=True)
        raise typer.Exit(1)
    return Outbox(path)


@upstream_app.command("status", short_help="Entries pending, delivered, rejected and parked.")
def upstream_status(config: _ConfigOption = None, data_dir: _DataDirOption = None) -> None:
    """Entries pending, delivered, rejected and parked; the ones set aside (rejected by their
    destination, or parked after failing past the retry horizon) with the last answer."""
    outbox = _outbox(config, data_dir)
    try:
        counts = outbox.counts()
        set_aside = outbox.set_aside()
        head = outbox.head()
    finally:
        outbox.close()
    typer.echo("  ".join(f"{state} {n}" for state, n in counts.items()))
    if head is not None:
        typer.echo(f"next: {head.key} (attempts {head.attempts}, due {_when(head.next_at)})")
    for entry in set_aside:
        typer.echo(f"{entry.state} {entry.key} to {entry.destination} status {entry.status} "
                   f"at {_when(entry.at)} after {entry.attempts} attempts: {entry.error}")


@upstream_app.command("requeue", short_help="Put the parked and rejected entries back.")
def upstream_requeue(
    config: _ConfigOption = None, data_dir: _DataDirOption = None,
    destination: Annotated[str | None, typer.Option(
        help="Only this destination's: platform, institution or family:SITE/BED.")] = None,
) -> None:
    """Put the entries set aside (parked after failing past the retry horizon, or rejected by
    their destination) back in their queues, in their original places, and make everything
    pending due now; a running gateway sends them within a second. They arrive after the
    entries that went past them."""
    outbox = _outbox(config, data_dir)
    try:
        requeued = outbox.requeue(destination=destination)
        outbox.retry_now()
    finally:
        outbox.close()
    typer.echo(f"requeued {sum(requeued.values())} ({requeued['parked']} parked, "
               f"{requeued['rejected']} rejected)", err=True)


@upstream_app.command("retry", short_help="The same as requeue (its older name).")
def upstream_retry(config: _ConfigOption = None, data_dir: _DataDirOption = None) -> None:
    """The same as ``homecare upstream requeue``: put the parked and rejected entries back."""
    upstream_requeue(config=config, data_dir=data_dir, destination=None)


@upstream_app.command("family-secret",
                      short_help="The secret a bed's family webhook checks signatures with.")
def upstream_family_secret(
    site: Annotated[str, typer.Argument(help="Site id of the bed.")],
    bed: Annotated[str, typer.Argument(help="Bed id.")],
    config: _ConfigOption = None,
) -> None:
    """Print the secret that signs what goes to this bed's family webhook (derived from
    HOMECARE_UPSTREAM_SECRET; give it to the family's service, which checks
    X-Homecare-Signature with it). It signs nothing for the platform or for another bed."""
    from gateway.config import load
    from gateway.errors import ConfigError
    from gateway.upstream import family_secret

    try:
        secret = load(_settings_file(config)).secret("upstream_secret")
    except ConfigError as exc:
        typer.echo(f"homecare upstream: {exc}", err=True)
        raise typer.Exit(2) from None
    if not secret:
        typer.echo("homecare upstream: no upstream secret (HOMECARE_UPSTREAM_SECRET/_FILE)",
                   err=True)
        raise typer.Exit(2)
    typer.echo(family_secret(secret.encode(), site, bed).decode())


@upstream_app.command("institution-secret",
                      short_help="The secret the institution checks signatures with.")
def upstream_institution_secret(config: _ConfigOption = None) -> None:
    """Print the secret that signs what goes to the care institution's endpoint
    (HOMECARE_UPSTREAM_INSTITUTION_URL; derived from HOMECARE_UPSTREAM_SECRET; give it to the
    institution, which checks X-Homecare-Signature with it). It signs nothing for the platform
    or a family."""
    from gateway.config import load
    from gateway.errors import ConfigError
    from gateway.upstream import institution_secret

    try:
        secret = load(_settings_file(config)).secret("upstream_secret")
    except ConfigError as exc:
        typer.echo(f"homecare upstream: {exc}", err=True)
        raise typer.Exit(2) from None
    if not secret:
        typer.echo("homecare upstream: no upstream secret (HOMECARE_UPSTREAM_SECRET/_FILE)",
                   err=True)
        raise typer.Exit(2)
    typer.echo(institution_secret(secret.encode()).decode())


@keys_app.command("create", short_help="Create a key and print its token once.")
def keys_create(
    name: Annotated[str, typer.Option(help="Unique name; recorded as the actor of every "
                                           "write made with the key.")],
    role: Annotated[str, typer.Option(help="viewer, dispatcher or admin.")] = "viewer",
    config: _ConfigOption = None,
    data_dir: _DataDirOption = None,
) -> None:
    """Create a key and print its token once (only its hash is kept)."""
    from alerts.errors import KeyExists, KeyStoreError
    from alerts.keys import Role

    try:
        parsed = Role(role)
    except ValueError:
        raise typer.BadParameter("expected viewer, dispatcher or admin",
                                 param_hint="--role") from None
    store, where = _key_store(config, data_dir)
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
    typer.echo(f"created {key.role.value} key {key.name!r} in {where}; the token is shown only "
               "now:", err=True)
    typer.echo(token)


@keys_app.command("list", short_help="List keys (never their tokens).")
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    config: _ConfigOption = None,
    data_dir: _DataDirOption = None,
) -> None:
    """List keys (never their tokens)."""
    store, where = _key_store(config, data_dir)
    typer.echo(f"keys in {where}", err=True)
    try:
        keys = store.list_keys(include_revoked=all_keys)
    finally:
        store.close()
    typer.echo(f"{'NAME':<24} {'ROLE':<10} {'CREATED':<20} {'BY':<16} REVOKED")
    for key in keys:
        revoked = f"{_when(key.revoked_at)} by {key.revoked_by}" if key.revoked_at else "-"
        typer.echo(f"{key.name:<24} {key.role.value:<10} {_when(key.created_at):<20} "
                   f"{key.created_by:<16} {revoked}")


@keys_app.command("revoke", short_help="Revoke a key, at once.")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="Name of the key to revoke.")],
    config: _ConfigOption = None,
    data_dir: _DataDirOption = None,
) -> None:
    """Revoke a key; it stops working at once, also in a running gateway."""
    from alerts.errors import KeyNotFound

    store, where = _key_store(config, data_dir)
    try:
        store.revoke(name, actor=_cli_actor())
    except KeyNotFound as exc:
        typer.echo(f"homecare keys: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(f"revoked key {name!r} in {where}", err=True)


@app.command("replay", short_help="Recorded traffic through the whole pipeline, offline.")
def replay_command(
    traffic: Annotated[Path, typer.Argument(
        help="Recorded traffic (JSONL: t, topic, payload or payload_b64), e.g. from "
             "`homecare simulate --out`.", exists=True, dir_okay=False)],
    alerts: Annotated[Path, typer.Option(
        help="Write every alert in its final state here, one JSON object per line.")],
    registry: Annotated[Path | None, typer.Option(
        help="Registry TOML (sites' time zones, beds' thresholds, devices' heartbeats) "
             "(default: registry_file of the settings).", exists=True, dir_okay=False)] = None,
    timezone: Annotated[str | None, typer.Option(
        metavar="ZONE", help="IANA zone for sites without their own (default: the settings' "
        "timezone, else the machine's).")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Gateway TOML settings (alert escalation, cancel window, "
        "clear grace...); HOMECARE_* variables apply as for the gateway.", exists=True,
        dir_okay=False)] = None,
    tick_s: Annotated[float, typer.Option(
        help="Simulated seconds between ticks of the alerting stage.")] = 10.0,
    dispatcher_after_min: Annotated[float, typer.Option(
        help="A simulated dispatcher resolves every alert this many simulated minutes after "
             "it opened, so that a later incident of the same kind opens a new alert; 0: "
             "nobody resolves anything.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Seed of the alert ids.")] = 0,
    restart_after_h: Annotated[list[float] | None, typer.Option(
        metavar="HOURS", help="Restart this many simulated hours after the first message, as "
        "a gateway restarts: commit, snapshot the detectors to a file, drop every in-memory "
        "part, restore from the file, go on (repeatable). The alerts must equal those of a "
        "replay without restarts.")] = None,
    plans: Annotated[Path | None, typer.Option(
        metavar="CSV", help="Service plans (the CSV `homecare plans import` takes) that the "
        "service checks take visits against, as the gateway does with its plan store; "
        "without it no visit is judged unplanned or outside its window and no plan missed.",
        exists=True, dir_okay=False)] = None,
    quiet: Annotated[bool, typer.Option(help="No progress and no summary (unreadable lines "
                                               "and a missing time zone are still "
                                               "reported).")] = False,
    skip_unreadable: Annotated[bool, typer.Option(
        "--skip-unreadable", help="Exit 0 even when some lines could not be read (not JSON, a "
        "field missing, t not an integer epoch ms...); they are still counted and reported. "
        "Without it such lines make the command exit 1, after writing the alerts of the "
        "lines it could read.")] = False,
) -> None:
    """Run recorded traffic through the whole pipeline offline (decode, dedup, dead letters,
    immediate rules, detectors, alert engine) on a clock taken from each line's receipt time;
    the same input gives the same alerts. Lines that cannot be read are skipped and reported
    on stderr per reason with their first line numbers; the command then exits 1 unless
    --skip-unreadable is given. The service checks judge the badges' visits (against --plans
    if given); visits checked in through the caregiver app are not in recorded traffic."""
    from rich.console import Console

    from devices.errors import RegistryError
    from devices.registry import Registry
    from gateway.config import load
    from gateway.errors import ConfigError
    from homecare.progress import CountingReader, Progress
    from homecare.replay import plans_from_csv, replay_file

    if tick_s <= 0 or dispatcher_after_min < 0:
        raise typer.BadParameter("tick-s must be positive and dispatcher-after-min not negative")
    restarts = restart_after_h or []
    if any(not 0 <= hours < 1e6 for hours in restarts):
        raise typer.BadParameter("restart-after-h must be hours from 0 up",
                                 param_hint="--restart-after-h")
    from homecare.service import refuse_unknown_variables

    if refuse_unknown_variables("replay", "nothing replayed"):
        raise typer.Exit(2)
    try:
        settings = load(config)
        if timezone is not None:
            settings = load(config, timezone=timezone)
        chosen = registry or settings.registry_file
        loaded = Registry.load(chosen) if chosen else None
    except (ConfigError, RegistryError) as exc:
        typer.echo(f"homecare replay: {exc}", err=True)
        raise typer.Exit(2) from None
    plan_store = None
    if plans is not None:
        try:
            plan_store, problems = plans_from_csv(
                plans.read_text(encoding="utf-8"), settings=settings,
                registry=loaded if loaded is not None else Registry())
        except (UnicodeDecodeError, ValueError) as exc:
            problems = [f"not read: {exc}"]
        if plan_store is None:
            for problem in problems:
                typer.echo(f"{plans}: {problem}", err=True)
            typer.echo(f"homecare replay: {len(problems)} problem"
                       f"{'' if len(problems) == 1 else 's'} in {plans}; nothing replayed",
                       err=True)
            raise typer.Exit(2)
    err = Console(stderr=True)
    warning = _zone_warning(settings.timezone, loaded)
    if warning:
        err.print(f"homecare replay: WARNING: {warning}", style="bold red", markup=False,
                  highlight=False, soft_wrap=True)
    warned = frozenset(loaded.sites) if loaded is not None else frozenset()
    with Progress("replay", traffic.stat().st_size, console=err, enabled=not quiet) as shown, \
            CountingReader(traffic, shown.update) as lines, alerts.open("wb") as out:
        try:
            _, summary = replay_file(lines, out, registry=loaded, settings=settings,
                                     tick_ms=round(tick_s * 1000),
                                     dispatcher_after_ms=round(dispatcher_after_min * 60_000),
                                     seed=seed,
                                     restart_after_ms=[round(h * 3_600_000) for h in restarts],
                                     plans=plan_store)
        finally:
            if plan_store is not None:
                plan_store.close()
    for line in summary.report() if not quiet else summary.unreadable_report():
        typer.echo(line, err=True)
    # Sites the traffic brought that the registry does not list (registered on first sight).
    warning = _zone_warning(settings.timezone, loaded, warned) if loaded is not None else None
    if warning:
        err.print(f"homecare replay: WARNING: {warning}", style="bold red", markup=False,
                  highlight=False, soft_wrap=True)
    if summary.unreadable_lines and not skip_unreadable:
        typer.echo(f"homecare replay: {summary.unreadable_lines:,} of {summary.lines:,} lines "
                   "could not be read (see above); fix them, or pass --skip-unreadable to "
                   "accept replaying without them", err=True)
        raise typer.Exit(1)


def _zone_warning(timezone: str | None, registry: Registry | None,
                  known: frozenset[str] = frozenset()) -> str | None:
    """Why day and night are judged in this machine's zone at some sites, if they are:
    ``timezone`` is the replay's fallback zone; sites in ``known`` were warned about."""
    import datetime as dt

    if timezone is not None or (registry is not None and registry.defaults.timezone):
        return None
    here = dt.datetime.now().astimezone()
    machine = f"this machine's zone, {here:%Z} (UTC{here:%z})"
    fix = ("Give --timezone ZONE (the sites' IANA zone, e.g. Asia/Shanghai), the timezone "
           "setting, or a registry with the sites' zones (--registry)")
    if registry is None:
        return (f"no time zone given: recorded traffic does not carry the sites' zones, so "
                f"day and night are judged in {machine}, at every site. Night rules in the "
                f"wrong zone raise false night bed-exit and inactivity alerts. {fix}.")
    bare = sorted({*(site.id for site in registry.sites.values() if not site.timezone),
                   *registry.first_sight_sites()} - known)
    if not bare:
        return None
    named = f"{', '.join(bare[:5])}{'...' if len(bare) > 5 else ''}"
    return (f"no time zone for {len(bare)} site{'s' if len(bare) != 1 else ''} ({named}; "
            f"no --timezone, no timezone setting, no defaults.timezone in the registry, and "
            f"none of their own): day and night are judged there in {machine}. Night rules "
            f"in the wrong zone raise false night bed-exit and inactivity alerts. {fix}.")


@app.command("acl", short_help="The broker's ACL and password file from the registry.")
def acl_command(
    registry: Annotated[Path | None, typer.Option(
        help="Registry TOML (default: registry_file of the settings, "
             "HOMECARE_REGISTRY_FILE).", exists=True, dir_okay=False)] = None,
    out_dir: Annotated[Path, typer.Option(
        help="Where acl, passwd and credentials/ go.", file_okay=False)] = Path("var/mosquitto"),
    gateway_user: Annotated[list[str] | None, typer.Option(
        metavar="<user>", help="MQTT user of the gateway (its urgent session's is "
        "<user>-urgent); once per gateway on this broker [default: gateway].")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Gateway TOML settings file (for its registry_file) [default: "
        "/etc/homecare/gateway.toml if it exists].", exists=True, dir_okay=False)] = None,
) -> None:
    """Write the broker's ACL and password file from the registry: each device may publish
    only on its own site, bed and kind; the gateway reads (its urgent session, as its own
    user <user>-urgent, button and fall events only). New users get a random password in
    credentials/<user>.json (mode 0600, printed nowhere); running again keeps every password
    (deploy/mosquitto/README.md)."""
    from devices.errors import ConfigError, RegistryError
    from devices.registry import Registry
    from homecare.acl import write_broker_files

    try:
        path = registry or _settings_registry(config)
        done = write_broker_files(Registry.load(path), out_dir,
                                  gateway_user=gateway_user or "gateway")
    except (ConfigError, RegistryError, OSError) as exc:
        typer.echo(f"homecare acl: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in done.report():
        typer.echo(line, err=True)


def _settings_registry(config: Path | None) -> Path:
    from devices.errors import ConfigError
    from gateway.config import load

    path = load(_settings_file(config)).registry_file
    if path is None:
        raise ConfigError("no registry: give --registry, or registry_file in the settings "
                          "(HOMECARE_REGISTRY_FILE)")
    return path


@app.command("evaluate", short_help="Score alerts against ground-truth labels.")
def evaluate_command(
    labels: Annotated[Path, typer.Option(
        help="Ground-truth labels (JSONL), e.g. from `homecare simulate --labels`.",
        exists=True, dir_okay=False)],
    alerts: Annotated[Path, typer.Option(
        help="Alerts (JSONL), e.g. from `homecare replay --alerts`.", exists=True,
        dir_okay=False)],
    tolerance_s: Annotated[float, typer.Option(
        help="An alert opened up to this long after a label's end still detects it.")] = 600.0,
    bed_days: Annotated[float | None, typer.Option(
        help="Beds x days observed, for false alerts per bed-day (default: from the beds "
             "and time span in the labels and alerts).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Machine-readable output (with the missed labels and false "
                       "alerts).")] = False,
    bed_profiles: Annotated[Path | None, typer.Option(
        help="Each bed's profile (JSONL: site, bed, profile), e.g. from `homecare simulate "
             "--bed-profiles`: also count labels, recall and false alerts per bed-day per "
             "profile and alert type.", exists=True, dir_okay=False)] = None,
) -> None:
    """Score alerts against ground-truth labels per alert type: recall, precision, detection
    delay (median, p95), false alerts per bed-day; with --bed-profiles also per profile. An
    alert detects a label of the same bed and type when it opened between the label's start
    and its end plus the tolerance."""
    import json

    import msgspec

    from devices.labels import read_bed_profiles, read_labels
    from homecare.evaluate import evaluate, read_alerts
    from homecare.progress import Progress, read_bytes

    if tolerance_s < 0 or (bed_days is not None and bed_days <= 0):
        raise typer.BadParameter("tolerance-s must not be negative, bed-days must be positive")
    inputs = [labels, alerts, *([bed_profiles] if bed_profiles is not None else [])]
    try:
        with Progress("evaluate", sum(path.stat().st_size for path in inputs)) as shown:
            label_bytes = read_bytes(labels, shown.update)
            alert_bytes = read_bytes(alerts, shown.update, already=shown.done)
            profiles = (read_bed_profiles(read_bytes(bed_profiles, shown.update,
                                                     already=shown.done))
                        if bed_profiles is not None else None)
            scored = evaluate(read_labels(label_bytes), read_alerts(alert_bytes),
                              tolerance_s=tolerance_s, bed_days=bed_days, profiles=profiles)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        typer.echo(f"homecare evaluate: unreadable input: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(scored.to_json(), indent=2))
    else:
        typer.echo(scored.table())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
