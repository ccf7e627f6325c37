"""``homecare config check``: the settings file, the environment and the registry, checked the
way the gateway reads them, with every problem reported at once.

The gateway stops at start on bad configuration with one message; a technician fixing a
station wants the whole list before the first start. Each problem names where it is (the
settings file, the environment, the registry file, the data directory), the setting or key,
and what is wrong. Values are shown except for secrets.

What is checked: the file is TOML and every key in it is a setting (a misspelt one gets a
"did you mean"); every ``HOMECARE_*`` variable is a setting or one the project uses
elsewhere (:data:`gateway.config.OTHER_VARIABLES`); every setting's value, from the file or
the environment (the environment wins, as in the gateway), each on its own; the checks
across settings (a secret's file exists, ``upstream_url`` has a secret), each on its own; the
files settings point to; the registry (the first problem in it: the registry stops at its
first); a family webhook in the registry has a secret to sign with; the on-call file
(``oncall_file``), read by the gateway's own parser, every problem of its roster and chains
each on its own line naming the entry, and its coverage gaps of the next week (times when
no dispatcher is on duty at a site, in the site's zone) as notes; the data directory can be
written (as the user running the check). Then the settings are loaded exactly as the gateway
loads them, so a check that passes means the gateway reads them.

The module is over 400 lines: each check is short, and they are kept together so that what
`homecare config check` covers is read in one place.

>>> Problem("environment", "HOMECARE_MQTT_URLL", "unknown variable").line()
'environment: HOMECARE_MQTT_URLL: unknown variable'
"""

from __future__ import annotations

import difflib
import os
import re
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from alerts.escalation import Chain
from alerts.roster import Roster, RosterError
from alerts.rosterstore import coverage
from devices.errors import RegistryError
from devices.registry import Registry
from gateway.config import ENV_PREFIX, Settings, load, unknown_variables
from gateway.errors import ConfigError
from gateway.notify import read_oncall_file

__all__ = ["ENVIRONMENT", "CheckResult", "Problem", "check"]

ENVIRONMENT: Final = "environment"
_SECRET_WORDS: Final = ("token", "password", "secret", "api_key")
_FILE_SETTINGS: Final = tuple(name for name in Settings.model_fields
                              if name.endswith("_file") and name != "registry_file")
"""Settings naming a file that must exist (the registry is read and checked on its own)."""
_URL_PASSWORD: Final = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
MAX_GAP_NOTES: Final = 20
"""The on-call roster's coverage gaps noted one a line up to this many."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong: where (a file, the environment), what (a setting, a variable, a key)
    and why."""

    where: str
    name: str
    message: str

    def line(self) -> str:
        return f"{self.where}: {self.name}: {self.message}"


@dataclass(slots=True)
class CheckResult:
    """Every problem found, and what was checked."""

    problems: list[Problem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    """What was read, one short phrase each (for the report of a check that passes)."""
    notes: list[str] = field(default_factory=list)
    """Worth knowing, not wrong (no time zone given, no database)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> list[str]:
        """The problems, one a line; else what was checked and the notes."""
        if self.problems:
            count = len(self.problems)
            return [f"{count} problem{'s' if count != 1 else ''}:",
                    *(f"  {p.line()}" for p in self.problems)]
        return [f"OK: {', '.join(self.checked)}", *(f"note: {n}" for n in self.notes)]


def _unchanged(self: Settings) -> Settings:
    return self


def _only_given(cls: type[BaseSettings], /, settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                **other: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
    del cls, settings_cls, other
    return (init_settings,)


# The settings model with its checks across settings switched off and the environment read by
# the caller: every field's problem comes out of one validation, and each cross check is then
# run on its own (they stop at their first problem inside the model).
_CROSS_CHECKS: Final = tuple(Settings.__pydantic_decorators__.model_validators)
_FieldsOnly: type[Settings] = type("_FieldsOnly", (Settings,), {
    **{name: model_validator(mode="after")(_unchanged) for name in _CROSS_CHECKS},
    "settings_customise_sources": classmethod(_only_given),
    "__module__": __name__,
})


def check(config: Path | None, *, registry: Path | None = None) -> CheckResult:
    """Check ``config`` (TOML, optional), the ``HOMECARE_*`` environment variables and the
    registry (``registry``, else the settings' ``registry_file``)."""
    env = dict(os.environ)
    result = CheckResult()
    file_values, spelling = _read_file(config, result)
    env_values = _read_environment(env, result)
    values = {**file_values, **env_values}
    where = {name: (ENVIRONMENT, f"{ENV_PREFIX}{name.upper()}") for name in env_values}
    for name in file_values:
        where.setdefault(name, (str(config), spelling[name]))
    settings = _validate(values, where, result)
    if settings is not None:
        sites = _check_registry(settings, registry, result)
        _check_oncall(settings, sites, result)
        _check_data_dir(settings, where, result)
        for topic in settings.mqtt_topic:
            if topic.startswith("$share/"):
                source, spelt = where.get("mqtt_topic", ("default", "mqtt_topic"))
                result.problems.append(Problem(source, _named(spelt, "mqtt_topic"), (
                    f"{topic!r} is a shared subscription: the broker hands each message to one "
                    "gateway of the group on its own, so one bed's press and its cancel can "
                    "reach two gateways (README, 'More than one gateway': split by site instead)")))
        if settings.influx_url is None:
            result.notes.append("no influx_url: points stay in the local spool until a "
                                "database is configured")
        result.notes.extend(_shared_broker_users(settings))
    if not result.problems:
        try:
            settings = load(config)
            read_oncall_file(settings.oncall_file, settings)
        except ConfigError as exc:  # a rule this check does not know yet: still reported
            result.problems.append(Problem(str(config or "settings"), "settings", str(exc)))
    return result


def _shared_broker_users(settings: Settings) -> list[str]:
    """Sessions that would connect to the devices' broker as one user. A broker that makes the
    user name the client id (``use_username_as_clientid``, as ``deploy/mosquitto/mosquitto.conf``)
    keeps one session per user: two connections as one user take over each other, and a clean
    one (a page) discards the gateway's persistent session and what it held."""
    main = settings.mqtt_username or urlsplit(settings.mqtt_url).username
    if main is None:
        return []
    notes = []
    if settings.mqtt_urgent_session and (settings.mqtt_urgent_username or main) == main:
        notes.append(f"the urgent MQTT session connects as {main!r} like the main one: on a "
                     "broker with use_username_as_clientid (deploy/mosquitto) they take over "
                     "each other; set mqtt_urgent_username (homecare acl writes its user)")
    if settings.notify_mqtt_url is not None:
        pages = urlsplit(settings.notify_mqtt_url)
        same_broker = (pages.hostname, pages.port) == (urlsplit(settings.mqtt_url).hostname,
                                                       urlsplit(settings.mqtt_url).port)
        if same_broker and pages.username == main:
            notes.append(f"MQTT pages (notify_mqtt_url) connect to the devices' broker as "
                         f"{main!r} like the gateway: give them a user of their own (on a "
                         "broker with use_username_as_clientid each page would end the "
                         "gateway's session)")
    return notes


def _read_file(config: Path | None, result: CheckResult) -> tuple[dict[str, Any], dict[str, str]]:
    """The file's settings by flat name, and how each is spelt in the file."""
    if config is None:
        result.checked.append("no settings file")
        return {}, {}
    try:
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
    except OSError as exc:
        result.problems.append(Problem(str(config), "file", f"cannot read: {exc.strerror}"))
        return {}, {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        result.problems.append(Problem(str(config), "file", f"not valid TOML: {exc}"))
        return {}, {}
    result.checked.append(f"settings file {config}")
    values: dict[str, Any] = {}
    spelling: dict[str, str] = {}
    known = list(Settings.model_fields)
    twice: list[tuple[str, str]] = []
    flat = _flatten(raw, twice=twice)
    for first, second in twice:
        result.problems.append(Problem(str(config), second, f"the same setting as {first}, "
                                       "written twice: only one is used; keep one"))
    for name, (spelt, value) in flat.items():
        if name in Settings.model_fields:
            values[name] = value
            spelling[name] = spelt
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f" (did you mean {_spelt(close[0])}?)" if close else ""
        result.problems.append(Problem(str(config), spelt, f"unknown setting{hint}"))
    return values, spelling


def _flatten(raw: Mapping[str, Any], table: str = "",
             twice: list[tuple[str, str]] | None = None) -> dict[str, tuple[str, Any]]:
    """``{flat name: (spelling in the file, value)}``; ``[mqtt] url`` is ``mqtt_url``. A
    setting written twice (``mqtt_url`` and ``[mqtt] url``) goes to ``twice`` as both
    spellings (the later one wins, as when the gateway loads it)."""
    out: dict[str, tuple[str, Any]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            inner = _flatten(value, f"{table}.{key}" if table else key, twice)
            for name, entry in inner.items():
                if name in out and twice is not None:
                    twice.append((out[name][0], entry[0]))
                out[name] = entry
        else:
            name = f"{table.replace('.', '_')}_{key}" if table else key
            spelt = f"[{table}] {key}" if table else key
            if name in out and twice is not None:
                twice.append((out[name][0], spelt))
            out[name] = (spelt, value)
    return out


def _spelt(name: str) -> str:
    """How a setting may be written in the file: ``mqtt_url`` or ``[mqtt] url``."""
    section, _, rest = name.partition("_")
    return f"{name} or [{section}] {rest}" if rest else name


def _read_environment(env: Mapping[str, str], result: CheckResult) -> dict[str, str]:
    unknown = unknown_variables(env)
    for key, close in unknown:
        hint = f" (did you mean {close}?)" if close else ""
        result.problems.append(Problem(
            ENVIRONMENT, key, f"unknown variable{hint}; every {ENV_PREFIX}* variable must name "
            "a setting"))
    values: dict[str, str] = {}
    for key, value in env.items():
        name = key.upper().removeprefix(ENV_PREFIX).lower()
        if key.upper().startswith(ENV_PREFIX) and name in Settings.model_fields:
            values[name] = value
    given = sum(1 for key in env if key.upper().startswith(ENV_PREFIX))
    result.checked.append(f"{given} {ENV_PREFIX}* variable{'s' if given != 1 else ''}")
    return values


def _validate(values: dict[str, Any], where: Mapping[str, tuple[str, str]],
              result: CheckResult) -> Settings | None:
    """Every field's problem, then every cross check's; the settings with the bad fields at
    their defaults (for the checks that follow), None if even that fails."""
    given = dict(values)
    settings: Settings | None = None
    for _ in range(len(Settings.model_fields) + 1):
        try:
            settings = _FieldsOnly(**given)
            break
        except ValidationError as exc:
            dropped = False
            for err in exc.errors():
                name = str(err["loc"][0]) if err["loc"] else ""
                source, spelt = where.get(name, ("settings", name or "settings"))
                message = _URL_PASSWORD.sub(r"\1***@", err["msg"].removeprefix("Value error, "))
                if name and name in given and not _is_secret(name) \
                        and str(given[name]) not in message:
                    message += f" (got {_shown(given[name])})"
                result.problems.append(Problem(source, _named(spelt, name), message))
                if name in given:
                    del given[name]
                    dropped = True
            if not dropped:
                return None
    if settings is None:
        return None
    missing = _check_files(settings, where, result)
    for cross in _CROSS_CHECKS:
        try:
            getattr(Settings, cross)(settings)
        except ValueError as exc:
            message = str(exc)
            name, colon, rest = message.partition(": ")
            if not colon or name not in Settings.model_fields:
                name, rest = message.split(" ", 1)[0], message
            if name in missing:
                continue  # reported with every other missing file
            source, spelt = where.get(name, ("settings", name))
            result.problems.append(Problem(source, _named(spelt, name), rest))
    return settings


def _named(spelt: str, name: str) -> str:
    """The setting as the user wrote it, with its flat name when that differs."""
    return spelt if spelt in (name, f"{ENV_PREFIX}{name.upper()}") or not name \
        else f"{spelt} ({name})"


def _shown(value: object) -> str:
    """``value`` for a message, without the password of a URL in it."""
    return _URL_PASSWORD.sub(r"\1***@", repr(value))


def _is_secret(name: str) -> bool:
    return any(word in name for word in _SECRET_WORDS) and not name.endswith("_file")


def _check_files(settings: Settings, where: Mapping[str, tuple[str, str]],
                 result: CheckResult) -> set[str]:
    """Every setting naming a file that is not there; their names."""
    missing: set[str] = set()
    for name in _FILE_SETTINGS:
        path: Path | None = getattr(settings, name)
        if path is not None and not Path(path).is_file():
            missing.add(name)
            source, spelt = where.get(name, ("settings", name))
            result.problems.append(Problem(source, _named(spelt, name), f"no such file {path}"))
    return missing


def _check_registry(settings: Settings, registry: Path | None,
                    result: CheckResult) -> Registry:
    """The registry read (an empty one when there is none or it is wrong)."""
    path = registry or settings.registry_file
    if path is None:
        result.checked.append("no registry (devices are registered on first sight)")
        if settings.timezone is None:
            result.notes.append("no timezone and no registry: night and day rules use this "
                                "machine's zone")
        return Registry()
    try:
        loaded = Registry.load(path)
    except RegistryError as exc:
        result.problems.extend(Problem(f"registry {path}", _registry_key(problem),
                                       _registry_message(problem)) for problem in exc.problems)
        return Registry()
    beds = list(loaded.beds())
    result.checked.append(f"registry {path} ({len(loaded.sites)} sites, {len(beds)} beds)")
    webhooks = [bed for bed in beds if bed.family_webhook]
    if webhooks and not (settings.upstream_secret or settings.upstream_secret_file):
        first = webhooks[0]
        result.problems.append(Problem(
            f"registry {path}", f"sites.{first.site}.beds.{first.id}.family_webhook",
            f"{len(webhooks)} bed(s) with a family webhook, and no upstream_secret "
            f"({ENV_PREFIX}UPSTREAM_SECRET or _FILE) to sign what goes to them"))
    if settings.timezone is None and loaded.defaults.timezone is None:
        bare = sorted(site.id for site in loaded.sites.values() if not site.timezone)
        if bare:
            result.notes.append(
                f"sites without a time zone ({', '.join(bare[:5])}{'...' if len(bare) > 5 else ''}"
                ") and sites not in the registry use this machine's zone: set timezone, or "
                "defaults.timezone in the registry")
    return loaded


def _check_oncall(settings: Settings, registry: Registry, result: CheckResult) -> None:
    """The on-call file read by the gateway's own parser (:class:`Roster`, :class:`Chain`):
    every problem of the roster, and each chain's, as a problem of its own naming the entry;
    the roster's coverage gaps over the next week (no dispatcher on duty at a site of the
    registry or of the duty, in its zone) as notes."""
    path = settings.oncall_file
    if path is None or not Path(path).is_file():
        return  # unset, or reported with the other missing files
    source = f"oncall_file {path}"
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        result.problems.append(Problem(source, "file", f"cannot read: {exc.strerror}"))
        return
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        result.problems.append(Problem(source, "file", f"not valid TOML: {exc}"))
        return
    before = len(result.problems)
    try:
        roster = Roster.from_mapping(raw, default_shifts=settings.report_settings().shifts)
        _note_gaps(roster, registry, settings, source, result)
    except RosterError as exc:
        for problem in exc.problems:
            entry, sep, message = problem.partition(": ")
            if not sep or " " in entry:
                entry, message = "roster", problem
            result.problems.append(Problem(source, entry, message))
    chains = raw.get("chains", [])
    if not isinstance(chains, list):
        result.problems.append(Problem(source, "chains", "a list of tables ([[chains]])"))
        chains = []
    names: list[str] = []
    for i, item in enumerate(chains):
        try:
            if not isinstance(item, dict):
                raise ValueError("a table")
            names.append(Chain.from_mapping(item).name)
        except ValueError as exc:
            result.problems.append(Problem(source, f"chains[{i}]", str(exc)))
    if len(set(names)) != len(names):
        result.problems.append(Problem(source, "chains", "two chains have the same name"))
    if len(result.problems) == before:
        result.checked.append(f"oncall_file {path}")


def _note_gaps(roster: Roster, registry: Registry, settings: Settings, source: str,
               result: CheckResult) -> None:
    def zone(site: str) -> ZoneInfo | None:
        name = registry.timezone(site, settings.timezone)
        return ZoneInfo(name) if name else None

    gaps = coverage(roster, list(registry.sites), zone, int(time.time() * 1000))
    result.notes.extend(f"{source}: no dispatcher on duty at {gap.text()}: calls there reach "
                        "the console only" for gap in gaps[:MAX_GAP_NOTES])
    if len(gaps) > MAX_GAP_NOTES:
        result.notes.append(f"{source}: {len(gaps) - MAX_GAP_NOTES} more times without a "
                            "dispatcher on duty this week")


def _registry_key(message: str) -> str:
    key, sep, _ = message.partition(": ")
    return key if sep and " " not in key else "file"


def _registry_message(message: str) -> str:
    key, sep, rest = message.partition(": ")
    return rest if sep and " " not in key else message


def _check_data_dir(settings: Settings, where: Mapping[str, tuple[str, str]],
                    result: CheckResult) -> None:
    data_dir = Path(settings.data_dir)
    source, spelt = where.get("data_dir", ("default", "data_dir"))
    named = _named(spelt, "data_dir")
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        result.problems.append(Problem(source, named, f"{existing} is not a directory"))
    elif (why := _unwritable(existing)) is not None:
        what = "cannot be written" if existing == data_dir else \
            f"cannot be created: {existing} cannot be written"
        result.problems.append(Problem(source, named, f"{data_dir.resolve()} {what} ({why}; "
                                       "by this user, and the gateway's user may differ)"))
    else:
        result.checked.append(f"data_dir {data_dir.resolve()}")


def _unwritable(directory: Path) -> str | None:
    """Why nothing can be made in ``directory`` (tried: a directory made and removed at once;
    permission bits alone say yes to root on /proc or a read-only mount), or None."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory(dir=directory, prefix=".homecare-check-"):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__
