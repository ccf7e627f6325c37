"""The settings reference, rendered from :class:`gateway.config.Settings`.

Descriptions, units and defaults live on the settings model only; this module lays them out as
the commented sample ``deploy/gateway.example.toml`` and as the table in ``README.md`` between
:data:`BEGIN` and :data:`END`. The rendering functions are pure (text in, text out); :func:`main`
reads and writes the files. ``tests/unit/test_settings_reference.py`` fails when the files
differ from what is rendered here; regenerate them with::

    python -m gateway.settings_reference --write

What the model cannot say, because it is a choice for one deployment rather than a property of
a setting, is here: the TOML tables settings are grouped in (:data:`SECTIONS`), and the sample's
values where they differ from the defaults (:data:`EXAMPLES`, :data:`COMMENTED_EXAMPLES`).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic.fields import FieldInfo

from gateway.config import ENV_PREFIX, Settings

__all__ = [
    "BEGIN",
    "COMMENTED_EXAMPLES",
    "END",
    "EXAMPLES",
    "EXAMPLE_PATH",
    "README_PATH",
    "REGENERATE",
    "SECTIONS",
    "Setting",
    "main",
    "readme_block",
    "render_example_toml",
    "render_readme_table",
    "replace_readme_block",
    "settings",
]

EXAMPLE_PATH: Final = Path("deploy/gateway.example.toml")
README_PATH: Final = Path("README.md")
BEGIN: Final = "<!-- settings:begin -->"
END: Final = "<!-- settings:end -->"
REGENERATE: Final = "python -m gateway.settings_reference --write"

_WIDTH: Final = 96

SECTIONS: Final[tuple[tuple[str, str | None], ...]] = (
    ("mqtt", "The broker the devices publish to. The gateway subscribes with QoS 1 on a "
     "persistent session and acknowledges a message only once it is on disk."),
    ("influx", 'The time-series database: InfluxDB 2.x (api = "v2": org, bucket, token) or 1.x / '
     'VictoriaMetrics (api = "v1": db, rp, username, password). Without url, points stay in the '
     "local spool until one is configured."),
    ("history", "Bed charts beyond the 24 h kept in memory, read from the database."),
    ("batch", None),
    ("spool", "The on-disk spool of points the database has not yet taken (database down or "
     "slow). A batch is in the spool before its messages are acknowledged to the broker."),
    ("clock", None),
    ("alert", "Escalation of unacknowledged alerts: steps in seconds after opening, then a repeat "
     "interval (0: no repeat); an empty list never escalates. Acknowledging stops escalation; "
     "timers survive restarts (overdue steps are taken at start). In the environment a list is "
     'comma-separated: HOMECARE_ALERT_ESCALATION_CRITICAL_S="60,180".'),
    ("upstream", "The city platform's endpoint: alert changes and service-log records are POSTed "
     "there, in order, at least once, from a durable outbox (data_dir/outbox.sqlite3), signed "
     "with the secret (HMAC-SHA256, header X-Homecare-Signature) and with an Idempotency-Key. "
     "Leave url out and nothing goes upstream."),
)
"""TOML tables, in the sample's order, with their introductions (if any): ``[mqtt] url`` is
``mqtt_url``. A setting whose name starts with none of these prefixes is written flat, at the
top of the file."""

EXAMPLES: Final[Mapping[str, object]] = {
    "data_dir": "/var/lib/homecare",
    "registry_file": "/etc/homecare/registry.toml",
    "timezone": "Asia/Shanghai",
    "log_format": "json",
    "mqtt_client_id": "homecare-gateway-site-01",
    "mqtt_username": "gateway",
    "mqtt_password_file": "/etc/homecare/secrets/mqtt_password",
    "mqtt_urgent_username": "gateway-urgent",
    "mqtt_urgent_password_file": "/etc/homecare/secrets/mqtt_urgent_password",
    "influx_url": "http://127.0.0.1:8086",
    "influx_token_file": "/etc/homecare/secrets/influx_token",
    "influx_gzip": True,
    "upstream_source": "hub-01",
}
"""The sample's choices for a production site: written as active settings. Every other setting
is shown commented out."""

COMMENTED_EXAMPLES: Final[Mapping[str, object]] = {
    "mqtt_tls_ca_file": "/etc/homecare/certs/ca.crt",
    "mqtt_tls_cert_file": "/etc/homecare/certs/gateway.crt",
    "mqtt_tls_key_file": "/etc/homecare/certs/gateway.key",
    "influx_rp": "autogen",
    "influx_username": "gateway",
    "influx_password_file": "/etc/homecare/secrets/influx_password",
    "api_key_file": "/etc/homecare/secrets/api_key",
    "upstream_url": "https://platform.example/homecare/ingest",
    "upstream_secret_file": "/etc/homecare/secrets/upstream_secret",
}
"""Values shown, commented out, for settings that are unset by default; a commented-out
setting not listed here shows its default."""

_HEADER: Final = f"""\
# Home-care gateway configuration: a commented sample (copy to /etc/homecare/gateway.toml).
#
# Generated from the reference, the settings model (class Settings in gateway/config.py):
# edit descriptions and defaults there, then run `{REGENERATE}`.
#
# Each setting has a flat name that is also its environment variable: `[mqtt] url` here is
# `mqtt_url`, and HOMECARE_MQTT_URL in the environment overrides it. The environment always
# wins over this file, which is how docker-compose and systemd pass secrets. Bad settings stop
# the gateway at start with a message naming the setting.
#
# Settings not commented out are this sample's choices for a production site; a commented-out
# setting shows its default, or an example value when it is unset by default.
#
# Secrets never belong in this file: give them as HOMECARE_INFLUX_TOKEN /
# HOMECARE_MQTT_PASSWORD, or as a file readable only by the service (`token_file`,
# `password_file` below; systemd's LoadCredential= or a Docker secret).
"""


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting as the reference shows it."""

    name: str
    """Flat name, as in ``Settings`` and at the top level of the TOML file."""
    env: str
    """Environment variable."""
    section: str | None
    """TOML table it is grouped in, ``None`` for the top level."""
    key: str
    """Name inside its TOML table."""
    default: object
    unit: str | None
    description: str
    """One paragraph, white space normalised."""
    secret: bool
    """A secret: it has a ``<name>_file`` twin and never gets a value in the sample."""


def settings(model: type[Settings] = Settings) -> tuple[Setting, ...]:
    """Every setting of ``model``, in the model's order."""
    fields = model.model_fields
    return tuple(_setting(name, field, secret=f"{name}_file" in fields)
                 for name, field in fields.items())


def _setting(name: str, field: FieldInfo, *, secret: bool) -> Setting:
    section = next((s for s, _ in SECTIONS if name.startswith(f"{s}_")), None)
    extra = field.json_schema_extra
    unit = extra.get("unit") if isinstance(extra, dict) else None
    return Setting(
        name=name, env=f"{ENV_PREFIX}{name.upper()}", section=section,
        key=name.removeprefix(f"{section}_") if section else name, default=field.default,
        unit=unit if isinstance(unit, str) else None,
        description=" ".join((field.description or "").split()), secret=secret)


# --- values ----------------------------------------------------------------------------------

def _toml(value: object) -> str:
    """``value`` as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _plain(value: object) -> str:
    """``value`` as the README shows it: strings unquoted, the rest as in TOML."""
    if isinstance(value, str | Path):
        return str(value)
    return _toml(value)


def _in_words(value: object, unit: str | None) -> str:
    """A large number of seconds or bytes in words: `` (7 days)`` for 604800 s; else ``""``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return ""
    steps: tuple[tuple[int, str, str], ...] = ()
    if unit == "s":
        steps = ((86_400, "day", "days"), (3600, "hour", "hours"), (60, "min", "min"))
    elif unit == "bytes":
        steps = ((1024**3, "GiB", "GiB"), (1024**2, "MiB", "MiB"), (1024, "KiB", "KiB"))
    for size, one, many in steps:
        # Minutes only from 10 on: "300.0 s" reads as well as "5 min".
        if value >= max(size, 600) and value % size == 0:
            count = int(value // size)
            return f" ({count} {one if count == 1 else many})"
    return ""


# --- the TOML sample -------------------------------------------------------------------------

def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=_WIDTH, initial_indent="# ", subsequent_indent="# ",
                         break_long_words=False, break_on_hyphens=False)


def _toml_entry(setting: Setting) -> list[str]:
    default = "unset"
    if setting.default is not None:
        unit = f" {setting.unit}" if setting.unit and setting.default != () else ""
        default = f"{_toml(setting.default)}{unit}{_in_words(setting.default, setting.unit)}"
    lines = _comment(setting.description)
    # "Environment: NAME." stays on one line (searched for; a NUL wraps as part of a word).
    lines += [line.replace("\0", " ") for line in
              _comment(f"Default: {default}. Environment:\0{setting.env}.")]
    if setting.secret:
        return lines  # no value, not even commented out; its description says where it comes from
    if setting.name in EXAMPLES:
        lines.append(f"{setting.key} = {_toml(EXAMPLES[setting.name])}")
    elif setting.name in COMMENTED_EXAMPLES:
        lines.append(f"# {setting.key} = {_toml(COMMENTED_EXAMPLES[setting.name])}")
    elif setting.default is not None:
        lines.append(f"# {setting.key} = {_toml(setting.default)}")
    return lines


def render_example_toml(model: type[Settings] = Settings) -> str:
    """The text of ``deploy/gateway.example.toml``."""
    unknown = (set(EXAMPLES) | set(COMMENTED_EXAMPLES)) - set(model.model_fields)
    if unknown:
        raise ValueError(f"examples for unknown settings: {sorted(unknown)}")
    every = settings(model)
    blocks: list[list[str]] = [_HEADER.rstrip("\n").split("\n")]
    blocks += [_toml_entry(s) for s in every if s.section is None]
    for section, intro in SECTIONS:
        members = [s for s in every if s.section == section]
        if members:
            blocks.append([f"[{section}]", *_comment(intro or "")])
            blocks += [_toml_entry(s) for s in members]
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"


# --- the README table ------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`"


def render_readme_table(model: type[Settings] = Settings) -> str:
    """The README's settings table, in the model's order (what goes between the markers)."""
    rows = [
        f"<!-- Generated from gateway/config.py by `{REGENERATE}`; edit the settings model, "
        "not this table. -->",
        "",
        "| setting | environment | default | unit | description |",
        "|---|---|---|---|---|",
    ]
    for s in settings(model):
        default = ("unset" if s.default is None
                   else _code(_plain(s.default)) + _in_words(s.default, s.unit))
        rows.append(f"| {_code(s.name)} | {_code(s.env)} | {_cell(default)} | "
                    f"{_cell(s.unit or '')} | {_cell(s.description)} |")
    return "\n".join(rows) + "\n\n"  # a blank line ends the table before the end marker


def readme_block(readme: str) -> str:
    """What ``readme`` holds between the markers (without them)."""
    start, end = _block_span(readme)
    return readme[start:end]


def replace_readme_block(readme: str, block: str) -> str:
    """``readme`` with ``block`` between the markers; nothing else changes."""
    start, end = _block_span(readme)
    return readme[:start] + block + readme[end:]


def _block_span(readme: str) -> tuple[int, int]:
    """Where the text between the marker lines starts and ends."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise ValueError(f"README needs exactly one {BEGIN} and one {END} line")
    begin, end = readme.index(BEGIN), readme.index(END)
    start = readme.find("\n", begin) + 1
    if not begin < start <= end or not readme[:end].endswith("\n"):
        raise ValueError(f"README needs {BEGIN} and, on a later line of its own, {END}")
    return start, end


# --- command line ----------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Check (default) or rewrite the sample and the README table; 1 when a check fails."""
    parser = argparse.ArgumentParser(prog="python -m gateway.settings_reference",
                                     description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true",
                        help="rewrite the files instead of checking them")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="repository root (default: the one holding this module)")
    args = parser.parse_args(argv)
    example_path = args.root / EXAMPLE_PATH
    readme_path = args.root / README_PATH
    readme = readme_path.read_text(encoding="utf-8")
    wanted = {
        example_path: render_example_toml(),
        readme_path: replace_readme_block(readme, render_readme_table()),
    }
    drifted = [path for path, text in wanted.items()
               if not path.is_file() or path.read_text(encoding="utf-8") != text]
    if args.write:
        for path in drifted:
            path.write_text(wanted[path], encoding="utf-8")
            print(f"wrote {path}")
        return 0
    for path in drifted:
        print(f"{path} differs from the settings model; run `{REGENERATE}`", file=sys.stderr)
    return 1 if drifted else 0


if __name__ == "__main__":
    raise SystemExit(main())
