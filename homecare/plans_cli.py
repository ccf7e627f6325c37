"""``homecare plans``: the care institution's planned visits, imported from CSV.

The plans live in ``<data dir>/plans.sqlite3``; the gateway checks every visit against them
(``service_anomaly``: outside its window, without a plan, a planned visit that never
happened) and notices an import at its next evaluation. ``homecare plans import FILE.csv``
upserts every row in one transaction: any bad row and nothing is imported, each problem named
by row and column; the same file again changes nothing. Times are local to each site's zone
(the registry's, else the ``timezone`` setting; for a site with neither, ``--timezone``: the
zone the file's times are in, else the import is refused rather than read in the machine's
zone, often UTC on a server), and the zone used for each site is printed; service codes are
those of the ``service_catalogue`` setting. The import is recorded in the key store's audit log with
the operator's name.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

_HELP: dict[str, Any] = {"rich_markup_mode": None, "no_args_is_help": True,
                         "context_settings": {"max_content_width": 100}}

plans_app = typer.Typer(
    name="plans", short_help="Service plans: import planned visits from CSV.", **_HELP,
    help="Service plans: the visits a care institution plans for each bed (caregiver, time "
         "window, service items), kept in <data dir>/plans.sqlite3; the gateway checks every "
         "visit against them.")

COLUMNS_HELP = (
    "CSV, UTF-8, with a header row naming the columns: site, bed, plan (the institution's id "
    "of the planned visit), caregiver, date (YYYY-MM-DD), start, end (HH:MM, local to the "
    "site; an end before the start is the next day), services (codes of the service_catalogue "
    "setting, separated by ; or spaces), and optionally cancelled (yes/no). A plan is keyed by "
    "site and plan id: a row again replaces it. With a registry, its sites and beds only.")


@plans_app.command("import", short_help="Upsert planned visits from a CSV file, all or nothing.")
def plans_import(
    file: Annotated[Path, typer.Argument(help=COLUMNS_HELP, exists=True, dir_okay=False)],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Check the file and say what would change; change nothing.")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="The gateway's TOML settings file (for data_dir, the registry's "
        "site time zones, timezone and service_catalogue) [default: /etc/homecare/gateway.toml "
        "if it exists].", exists=True, dir_okay=False)] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="The gateway's data directory [default: as the gateway finds it: "
        "HOMECARE_DATA_DIR, else data_dir of the settings file, else ./data if it exists].",
        file_okay=False)] = None,
    timezone: Annotated[str | None, typer.Option(
        "--timezone", help="The IANA zone the file's times are in (such as Asia/Shanghai), for "
        "sites with no zone configured (the registry's timezone, or the timezone setting); "
        "without it such a site is refused. A zone that contradicts a site's configured one "
        "is refused.")] = None,
) -> None:
    """Upsert the planned visits of FILE (one row per visit) in one transaction.

    Every problem is listed by row (as a spreadsheet counts them) and column, and then nothing
    is imported (exit status 1). Importing the same file again changes nothing. A running
    gateway checks visits against the new plans at its next evaluation."""
    from alerts import (
        Catalogue,
        KeyStore,
        PlanStore,
        PlanStoreUnavailable,
        PlanZones,
        parse_plans_csv,
    )
    from alerts.plans import registry_places
    from devices import Registry
    from gateway.config import load
    from gateway.errors import ConfigError
    from homecare.cli import _cli_actor, _data_dir, _settings_file

    try:
        settings = load(_settings_file(config))
        registry = (Registry.load(settings.registry_file) if settings.registry_file
                    else Registry())
        zones = PlanZones(lambda site: registry.timezone(site, settings.timezone),
                          given=timezone)
    except (ConfigError, OSError, ValueError) as exc:
        typer.echo(f"homecare plans: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        typer.echo(f"homecare plans: {file} is not UTF-8 text (save the spreadsheet as CSV "
                   "UTF-8)", err=True)
        raise typer.Exit(1) from None
    parsed = parse_plans_csv(
        text, catalogue=Catalogue.parse(settings.service_catalogue),
        zone_of=zones, places=registry_places(registry))
    if parsed.problems or zones.problems():
        for problem in [*zones.problems(), *map(str, parsed.problems)]:
            typer.echo(f"{file}: {problem}", err=True)
        count = len(parsed.problems) + len(zones.problems())
        typer.echo(f"homecare plans: {count} problem{'' if count == 1 else 's'} in {file}; "
                   "nothing was imported", err=True)
        raise typer.Exit(1)
    if zones.used:
        typer.echo(f"homecare plans: the times of {file} are read in: {zones.summary()}",
                   err=True)
    directory, source = _data_dir("plans", config, data_dir)
    path = (directory / "plans.sqlite3").resolve()
    actor = _cli_actor()
    store = PlanStore(path)
    try:
        result = store.import_rows(parsed.rows, actor=actor, now_ms=time.time_ns() // 1_000_000,
                                   dry_run=dry_run)
    except PlanStoreUnavailable as exc:
        typer.echo(f"homecare plans: cannot use {path}: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    for row, site, plan, done in result.rows:
        typer.echo(f"row {row} {site}/{plan}: {done}")
    counts = (f"created {result.count('created')}, updated {result.count('updated')}, "
              f"unchanged {result.count('unchanged')}")
    if dry_run:
        typer.echo(f"dry run, nothing changed in {path} (data_dir from {source}): would be "
                   f"{counts}", err=True)
        return
    keys = KeyStore(directory / "keys.sqlite3")
    try:
        keys.audit(actor=actor, action="IMPORT", target=f"plans from {file.name}", status=200,
                   detail=counts)
    finally:
        keys.close()
    typer.echo(f"imported {file} into {path} (data_dir from {source}): {counts}", err=True)
