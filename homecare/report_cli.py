"""``homecare report supervision``: the supervision and settlement report of a month, from the
gateway's service log and plans (:mod:`alerts.supervision`), as CSV, JSON or the printable
page with its charts; to standard output or a file.

It reads ``<data dir>/servicelog.sqlite3`` and ``plans.sqlite3`` (a running gateway may go on
writing to them), the ``service_catalogue``, ``service_institutions`` and ``timezone``
settings and the registry's site zones, as the gateway's ``GET /api/v1/reports/supervision``
does. It recomputes the service log's whole hash chain first, against the heads kept elsewhere
given (``--head``, ``--heads FILE``: only they find a chain re-hashed after an edit), and the
report states the result (:mod:`alerts.chainstatus`). A chain that is not sound: the report is
still written (marked so), the same line goes to standard error and the exit status is 3.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from homecare.servicelog_cli import HEAD_HELP, HEADS_HELP, read_heads

CHAIN_NOT_SOUND = 3
"""Exit status of a report written from a service log whose chain is not sound."""

_HELP: dict[str, Any] = {"rich_markup_mode": None, "no_args_is_help": True,
                         "context_settings": {"max_content_width": 100}}

report_app = typer.Typer(
    name="report", short_help="Reports: the supervision and settlement report of a month.",
    **_HELP, help="Reports from the gateway's data directory.")


@report_app.command("supervision",
                    short_help="Planned, performed, verified and flagged visits of a month.")
def supervision(
    month: Annotated[str, typer.Option(help="The month, YYYY-MM (each site's own zone).")],
    output_format: Annotated[str, typer.Option(
        "--format", help="csv (one table), json, or html (the printable page with "
        "charts).")] = "csv",
    table: Annotated[str, typer.Option(
        help="The CSV table: caregivers (per institution and caregiver, then the totals), "
        "visits (each visit with its service record), missed (plans no visit took).")
    ] = "caregivers",
    institution: Annotated[str | None, typer.Option(
        help="Only this institution's sites [default: every institution].")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write it to this file [default: standard output].", dir_okay=False)] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="The gateway's TOML settings file (data_dir, registry_file, "
        "timezone, service_catalogue, service_institutions) [default: "
        "/etc/homecare/gateway.toml if it exists].", exists=True, dir_okay=False)] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="The gateway's data directory [default: as the gateway finds it: "
        "HOMECARE_DATA_DIR, else data_dir of the settings file, else ./data if it exists].",
        file_okay=False)] = None,
    head: Annotated[list[str] | None, typer.Option("--head", help=HEAD_HELP,
                                                   metavar="SEQ:HASH")] = None,
    heads: Annotated[Path | None, typer.Option(
        "--heads", help=HEADS_HELP, exists=True, dir_okay=False)] = None,
) -> None:
    """Per care institution, caregiver and month: planned, performed, verified, unverifiable
    and flagged visits with the reasons, service items and minutes, what is billable (verified
    and unverifiable visits, the unverifiable minutes also apart) and held (flagged ones), the
    plans missed."""
    import json

    from alerts import (
        SUPERVISION_TABLES,
        Catalogue,
        PlanStore,
        ServiceLog,
        chain_status,
        institution_of,
        supervision_csv,
        supervision_html,
        supervision_report,
        zone_named,
    )
    from devices import Registry
    from gateway.config import load
    from gateway.errors import ConfigError
    from homecare.cli import _data_dir, _settings_file

    if output_format not in ("csv", "json", "html"):
        raise typer.BadParameter("expected csv, json or html", param_hint="--format")
    if table not in SUPERVISION_TABLES:
        raise typer.BadParameter(f"expected {', '.join(SUPERVISION_TABLES)}",
                                 param_hint="--table")
    kept = read_heads(head, heads)
    try:
        settings = load(_settings_file(config))
        registry = (Registry.load(settings.registry_file) if settings.registry_file
                    else Registry())
    except (ConfigError, OSError, ValueError) as exc:
        typer.echo(f"homecare report: {exc}", err=True)
        raise typer.Exit(2) from None
    directory, source = _data_dir("report", config, data_dir)
    path = (directory / "servicelog.sqlite3").resolve()
    if not path.exists():
        typer.echo(f"homecare report: no service log at {path} (data_dir from {source})",
                   err=True)
        raise typer.Exit(1)
    log = ServiceLog(path)
    plans = PlanStore(directory / "plans.sqlite3")
    try:
        now_ms = time.time_ns() // 1_000_000
        chain = chain_status(log.verify(heads=kept, full=True), kept_heads=len(kept),
                             at_ms=now_ms)
        report = supervision_report(
            log=log, plans=plans, catalogue=Catalogue.parse(settings.service_catalogue),
            month=month,
            zone_of=lambda site: zone_named(registry.timezone(site, settings.timezone)),
            institutions=institution_of(settings.service_institutions),
            now_ms=now_ms, institution=institution, chain=chain)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--month") from None
    finally:
        log.close()
        plans.close()
    if output_format == "html":
        text = supervision_html(report)
    elif output_format == "json":
        text = json.dumps(report.to_json(), ensure_ascii=False, indent=1) + "\n"
    else:
        text = supervision_csv(report, table)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        total = report.total
        typer.echo(f"wrote {out}: {month}, {total.performed} visits performed ({total.verified} "
                   f"verified, {total.unverifiable} unverifiable, {total.flagged} flagged, "
                   f"{total.pending} pending), {total.billable_minutes:.0f} billable minutes "
                   f"({total.unverifiable_minutes:.0f} unverifiable)", err=True)
    typer.echo(chain.headline(), err=True)
    if not chain.sound:
        raise typer.Exit(CHAIN_NOT_SOUND)
