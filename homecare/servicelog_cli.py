"""``homecare verify-log``: the caregiver service log's hash chain checked, against the heads
the platform kept.

The log is ``<data dir>/servicelog.sqlite3`` (a running gateway may go on writing to it). Each
record goes upstream with the chain's head as of it (``seq`` and ``hash``); the platform keeps
them, and gives one back (``--head SEQ:HASH``) or all of them (``--heads FILE``): a chain edited
and re-hashed with its stored head passes its own links, but not the heads kept elsewhere. The
command recomputes every record (an audit: it finds an edit that kept the old hashes too), or
only those after the last record verified (``--incremental``, what the gateway's API does; it
says when the records before were last fully verified, and a bad record that pass found keeps
it not sound). A kept head the chain does not reach (or one beyond the log's end) says only
that some record up to it was changed, removed or re-hashed: the first bad record is named
when a head was kept for the record before it (``--heads FILE``), and no record is called
sound that no kept head vouches for. Whatever is known good, it says where the log ends and a
kept head beyond it (``log_last_seq``, ``kept_beyond_seq`` with ``--json``), as the API does.
Exit status 0: sound; 1: not; 2: the command was used wrongly.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from alerts import Audit

_HEAD = re.compile(r"^\s*(\d{1,18})\s*[:, ]\s*([0-9a-fA-F]{64})\s*$")

HEAD_HELP = ("A head kept elsewhere, SEQ:HASH (the seq and hash delivered upstream with a "
             "record); repeat for more.")


def parse_head(text: str) -> tuple[int, str] | None:
    """``SEQ:HASH`` (or ``SEQ HASH``, ``SEQ,HASH``) as ``(seq, hash)``; ``None`` if it is not.

    >>> parse_head("12:" + "ab" * 32)[0]
    12
    >>> parse_head("12:xyz") is None
    True
    """
    found = _HEAD.match(text)
    return (int(found[1]), found[2].lower()) if found else None


HEADS_HELP = ("A file of kept heads, one SEQ:HASH (or SEQ HASH) a line, as the platform kept "
              "them; blank lines and lines starting with # are skipped.")


def read_heads(head: list[str] | None, heads: Path | None) -> list[tuple[int, str]]:
    """The kept heads of ``--head`` and ``--heads FILE`` (a bad one: ``BadParameter``)."""
    kept: list[tuple[int, str]] = []
    for text in head or ():
        parsed = parse_head(text)
        if parsed is None:
            raise typer.BadParameter(f"{text!r}: expected SEQ:HASH (a 64-digit hex hash)",
                                     param_hint="--head")
        kept.append(parsed)
    if heads is not None:
        for number, line in enumerate(heads.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parsed = parse_head(line)
            if parsed is None:
                raise typer.BadParameter(f"{heads}, line {number}: expected SEQ:HASH",
                                         param_hint="--heads")
            kept.append(parsed)
    return kept


def verify_log(
    head: Annotated[list[str] | None, typer.Option("--head", help=HEAD_HELP,
                                                   metavar="SEQ:HASH")] = None,
    heads: Annotated[Path | None, typer.Option(
        "--heads", help=HEADS_HELP, exists=True, dir_okay=False)] = None,
    incremental: Annotated[bool, typer.Option(
        "--incremental", help="Recompute only the records after the last one verified (the "
        "checkpoint, itself checked); without it every record is recomputed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="The gateway's TOML settings file (for its data_dir) [default: "
        "/etc/homecare/gateway.toml if it exists].", exists=True, dir_okay=False)] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="The gateway's data directory [default: as the gateway finds it: "
        "HOMECARE_DATA_DIR, else data_dir of the settings file, else ./data if it exists].",
        file_okay=False)] = None,
) -> None:
    """Check the service log's hash chain, against the heads kept elsewhere; name the first
    record that was changed, removed, moved, or is not the one a kept head says."""
    from alerts import ServiceLog
    from homecare.cli import _data_dir

    kept = read_heads(head, heads)
    directory, source = _data_dir("verify-log", config, data_dir)
    path = (directory / "servicelog.sqlite3").resolve()
    if not path.exists():
        typer.echo(f"homecare verify-log: no service log at {path} (data_dir from {source})",
                   err=True)
        raise typer.Exit(1)
    log = ServiceLog(path)
    try:
        result = log.verify(heads=kept, full=not incremental)
    finally:
        log.close()
    audit = result.last_full
    if as_json:
        typer.echo(json.dumps({
            "ok": result.ok, "records": result.records, "head_seq": result.head_seq,
            "head_hash": result.head_hash, "checked": result.checked,
            "from_seq": result.from_seq, "kept_heads": len(kept),
            "first_bad_seq": result.first_bad_seq, "error": result.error,
            "suspect_from": result.suspect_from, "suspect_to": result.suspect_to,
            "log_last_seq": result.log_last_seq, "kept_beyond_seq": result.kept_beyond_seq,
            "last_full": None if audit is None else {
                "at": audit.at, "ok": audit.ok, "records": audit.records,
                "head_seq": audit.head_seq, "first_bad_seq": audit.first_bad_seq,
                "error": audit.error}}))
    elif result.ok:
        typer.echo(f"{path}: sound, {result.records} records, head {result.head_seq}:"
                   f"{result.head_hash} ({result.checked} recomputed from record "
                   f"{result.from_seq}; {len(kept)} kept heads matched)")
        if result.from_seq > 1:
            typer.echo(f"records before {result.from_seq} were not recomputed now: "
                       f"{full_check_line(audit)}")
    else:
        typer.echo(f"{path}: NOT SOUND: {result.error}")
        if result.first_bad_seq is not None:
            typer.echo(f"first bad record: {result.first_bad_seq}")
        else:
            typer.echo(f"first bad record: not known (one of records {result.suspect_from} to "
                       f"{result.suspect_to}; give more kept heads with --heads FILE)")
        typer.echo(f"{result.log_end()} ({result.checked} recomputed from record "
                   f"{result.from_seq})")
        if result.head_seq > 0:
            typer.echo(f"sound up to record {result.head_seq}"
                       + (f" ({result.head_hash})" if result.head_hash else ""))
        else:
            typer.echo("no record is known sound")
    if not result.ok:
        raise typer.Exit(1)


def full_check_line(audit: Audit | None) -> str:
    """When the whole chain was last recomputed, and what that found.

    >>> full_check_line(None)
    'never fully verified (run homecare verify-log without --incremental)'
    """
    if audit is None:
        return "never fully verified (run homecare verify-log without --incremental)"
    when = dt.datetime.fromtimestamp(audit.at / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if audit.ok:
        return f"last fully verified {when}, sound up to record {audit.head_seq}"
    return (f"last fully verified {when}: NOT SOUND, first bad record "
            f"{audit.first_bad_seq}: {audit.error}")
