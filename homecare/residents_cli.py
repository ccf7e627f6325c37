"""``homecare residents``: the resident profiles of a gateway's beds, imported from CSV.

The profiles (name, address, phone, emergency contacts in calling order, medical and access
notes) live in ``<data dir>/residents.sqlite3``, readable by the gateway's user only; dispatchers
see them on the alert page. ``homecare residents import FILE.csv`` upserts every row of a care
institution's spreadsheet in one transaction: any bad row and nothing is imported, each
problem named by row and column (never its value); the same file again changes nothing. The
import is recorded in the key store's audit log with the operator's name.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

_HELP: dict[str, Any] = {"rich_markup_mode": None, "no_args_is_help": True,
                         "context_settings": {"max_content_width": 100}}

residents_app = typer.Typer(
    name="residents", short_help="Resident profiles: import them from CSV.", **_HELP,
    help="Resident profiles (kept only at the hub, in <data dir>/residents.sqlite3, mode 0600; "
         "shown to dispatcher and admin keys on the alert page, never sent upstream).")

COLUMNS_HELP = (
    "CSV, UTF-8, with a header row naming the columns: site, bed, display_name (required); "
    "address, phone, medical_notes, access_notes; contact1_name, contact1_relation, "
    "contact1_phone ... contact5_*. A column left out keeps what is stored; the contact "
    "columns replace the contact list.")


@residents_app.command("import", short_help="Upsert profiles from a CSV file, all or nothing.")
def residents_import(
    file: Annotated[Path, typer.Argument(help=COLUMNS_HELP, exists=True, dir_okay=False)],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Check the file and say what would change; change nothing.")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="The gateway's TOML settings file (for its data_dir) [default: "
        "/etc/homecare/gateway.toml if it exists].", exists=True, dir_okay=False)] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="The gateway's data directory [default: as the gateway finds it: "
        "HOMECARE_DATA_DIR, else data_dir of the settings file, else ./data if it exists].",
        file_okay=False)] = None,
) -> None:
    """Upsert the resident profiles of FILE (one row per bed) in one transaction.

    Every problem is listed by row (as a spreadsheet counts them) and column, and then nothing
    is imported (exit status 1). Importing the same file again changes nothing. A running
    gateway serves the new profiles at once."""
    from alerts import KeyStore, ResidentStore, ResidentStoreUnavailable, parse_csv
    from homecare.cli import _cli_actor, _data_dir

    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        typer.echo(f"homecare residents: {file} is not UTF-8 text (save the spreadsheet as "
                   "CSV UTF-8)", err=True)
        raise typer.Exit(1) from None
    parsed = parse_csv(text)
    if parsed.problems:
        for problem in parsed.problems:
            typer.echo(f"{file}: {problem}", err=True)
        typer.echo(f"homecare residents: {len(parsed.problems)} problems in {file}; nothing "
                   "was imported", err=True)
        raise typer.Exit(1)
    directory, source = _data_dir("residents", config, data_dir)
    path = (directory / "residents.sqlite3").resolve()
    actor = _cli_actor()
    store = ResidentStore(path)
    try:
        result = store.import_rows(parsed.rows, actor=actor, now_ms=time.time_ns() // 1_000_000,
                                   dry_run=dry_run)
    except ResidentStoreUnavailable as exc:
        typer.echo(f"homecare residents: cannot use {path}: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    for row, site, bed, done in result.rows:
        typer.echo(f"row {row} {site}/{bed}: {done}")
    counts = (f"created {result.count('created')}, updated {result.count('updated')}, "
              f"unchanged {result.count('unchanged')}")
    if dry_run:
        typer.echo(f"dry run, nothing changed in {path} (data_dir from {source}): would be "
                   f"{counts}", err=True)
        return
    keys = KeyStore(directory / "keys.sqlite3")
    try:
        keys.audit(actor=actor, action="IMPORT", target=f"residents from {file.name}",
                   status=200, detail=counts)
    finally:
        keys.close()
    typer.echo(f"imported {file} into {path} (data_dir from {source}): {counts}", err=True)
