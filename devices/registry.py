"""The bed and device registry: sites, beds, devices and per-bed settings, from TOML.

A registry file looks like this (every key but the ids is optional)::

    [defaults]
    heartbeat_s = 300            # a device promises a status at least this often
    offline_factor = 3.0         # silent for heartbeat_s x offline_factor -> offline

    [sites.site-01]
    timezone = "Asia/Shanghai"   # IANA name; day/night logic for every bed of the site

    [sites.site-01.beds.bed-0001]
    person = "p-3f9a1c"          # pseudonymous person id, never a name
    family_webhook = "https://family.example/hooks/p-3f9a1c"   # optional: this bed's alerts
                                 # and visit records also go there (gateway/upstream/)

    [sites.site-01.beds.bed-0001.settings]
    night_start = "22:00"
    heart_rate_max = 110

    [sites.site-01.beds.bed-0001.devices.btn-0001]
    kind = "button"
    heartbeat_s = 600

Devices and beds that publish without being listed are registered on first sight with default
settings and flagged ``auto_registered``, so a new sensor is never ignored. Such registrations
are a bounded memo, not the registry: at most ``first_sight_max`` devices (the
``first_sight_max_devices`` setting), the least recently seen forgotten first (a listed device
never), and a first-sight bed goes with its last device. They never enter :attr:`Registry.sites`
(the file's sites), so made-up ids cannot grow what is walked per site (roster gaps, the
uncovered-sites gauge). A forgotten device is registered again when it is seen again; it only
ever carried the defaults, which is what every reader falls back to for a device it does not
find, and its calls never depended on it:

>>> from devices.topics import parse_topic
>>> registry = Registry(first_sight_max=2)
>>> for n in range(3):
...     _ = registry.ensure(parse_topic(f"homecare/v1/made-up-{n}/b/button/btn-{n}/event"))
>>> sorted(registry.sites), registry.bed("made-up-0", "b"), registry.first_sight_evicted
([], None, 1)
>>> registry.ensure(parse_topic("homecare/v1/made-up-0/b/button/btn-0/event"))[1]
True

A listed device has one place: its site, bed and kind (:class:`Placement`; a badge travels with
its caregiver, so its place is its site and kind). Its id is its MQTT user name
(``homecare acl`` writes the broker's rules from here), so an id is listed once. A message
that puts a listed device anywhere else is :meth:`Registry.misplaced`, never registered there:

>>> registry = Registry.from_mapping({"sites": {"s1": {"beds": {"b7": {"devices": {
...     "btn-7": {"kind": "button"}}}}}}})
>>> from devices.topics import parse_topic
>>> place = registry.misplaced(parse_topic("homecare/v1/s1/b9/button/btn-7/event"))
>>> place, place.differs(parse_topic("homecare/v1/s1/b9/button/btn-7/event"))
(Placement(site='s1', bed='b7', kind=<Kind.BUTTON: 'button'>), 'bed')
>>> registry.misplaced(parse_topic("homecare/v1/s1/b7/button/btn-7/event")) is None
True

This module is over 400 lines: reading the file (checked key by key, with its messages) and
the registrations on first sight keep the same indexes (sites, listed places, bed keys), whose
invariants one class holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import tomllib
import zoneinfo
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from devices.bedkeys import BedKeys
from devices.errors import RegistryError
from devices.topics import Address, Kind, is_valid_id

FIRST_SIGHT_MAX: Final = 50_000
"""Default of :attr:`Registry.first_sight_max`: devices registered on first sight kept at most
(by tracemalloc about 1 KB each with 64-character site, bed and device ids, 0.45 KB with short
ones: 50 MB at most)."""


def _clock(value: str, key: str) -> dt.time:
    try:
        return dt.time.fromisoformat(value)
    except (TypeError, ValueError):
        raise RegistryError(f"{key}: expected HH:MM, got {value!r}") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class BedSettings:
    """Per-bed thresholds for the detector; defaults suit an adult sleeping at night."""

    night_start: dt.time = dt.time(22, 0)
    night_end: dt.time = dt.time(6, 0)
    bed_exit_return_min: float = 30.0
    inactivity_factor: float = 3.0
    inactivity_min_minutes: float = 120.0
    heart_rate_min: float = 40.0
    heart_rate_max: float = 130.0
    breathing_rate_min: float = 8.0
    breathing_rate_max: float = 30.0
    sound_db_above_baseline: float = 25.0
    low_battery_pct: float = 15.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise RegistryError(f"settings.{f.name}: must not be negative")
        if self.heart_rate_min >= self.heart_rate_max:
            raise RegistryError("settings.heart_rate_min must be below heart_rate_max")
        if self.breathing_rate_min >= self.breathing_rate_max:
            raise RegistryError("settings.breathing_rate_min must be below breathing_rate_max")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, base: BedSettings | None = None,
                     where: str = "settings") -> BedSettings:
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        problems: list[str] = []
        for key, value in raw.items():
            if key not in known:
                problems.append(f"{where}.{key}: unknown setting")
            elif key in ("night_start", "night_end"):
                with _collecting(problems):
                    values[key] = _clock(value, f"{where}.{key}")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{where}.{key}: expected a number, got {value!r}")
            else:
                values[key] = float(value)
        if problems:
            raise RegistryError(problems[0], problems)
        return dataclasses.replace(base or cls(), **values)


@dataclass(frozen=True, kw_only=True, slots=True)
class Device:
    id: str
    kind: Kind
    heartbeat_s: float
    auto_registered: bool = False


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a listed device belongs: its site, bed and kind. A badge's place is its site and
    kind: it travels with its caregiver between the site's beds."""

    site: str
    bed: str
    kind: Kind

    def differs(self, address: Address) -> str | None:
        """What of ``address`` is not this place: ``"site"``, ``"bed"`` or ``"kind"`` (the
        first that differs, in that order), or None when the device is at home there."""
        return self.differs_at(address.site, address.bed, address.kind)

    def differs_at(self, site: str, bed: str, kind: str) -> str | None:
        """:meth:`differs` on a topic's parts, not yet decoded into an :class:`Address`."""
        if site != self.site:
            return "site"
        if bed != self.bed and self.kind is not Kind.BADGE:
            return "bed"
        if kind != self.kind:
            return "kind"
        return None


@dataclass(kw_only=True, slots=True)
class Bed:
    site: str
    id: str
    person: str | None = None
    family_webhook: str | None = None
    """Where this bed's alert changes and visit records are also delivered (the family's
    service), signed with a secret of the bed's own (see gateway/upstream/signing.py)."""
    settings: BedSettings = field(default_factory=BedSettings)
    devices: dict[str, Device] = field(default_factory=dict)
    auto_registered: bool = False


@dataclass(kw_only=True, slots=True)
class Site:
    id: str
    timezone: str | None = None
    beds: dict[str, Bed] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Defaults:
    heartbeat_s: float = 300.0
    offline_factor: float = 3.0
    timezone: str | None = None
    settings: BedSettings = field(default_factory=BedSettings)


@contextlib.contextmanager
def _collecting(problems: list[str]) -> Iterator[None]:
    """Add the :class:`RegistryError` raised inside to ``problems`` and go on."""
    try:
        yield
    except RegistryError as exc:
        problems.extend(exc.problems)


def _check_timezone(name: str, key: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise RegistryError(f"{key}: unknown IANA time zone {name!r}") from None
    return name


def _check_url(value: object, key: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise RegistryError(f"{key}: expected an http:// or https:// URL")
    return str(value)


def _check_id(value: str, key: str) -> str:
    if not isinstance(value, str) or not is_valid_id(value):
        raise RegistryError(f"{key}: invalid id {value!r} (allowed: [A-Za-z0-9_-]{{1,64}})")
    return value


def _as_table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RegistryError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _table(raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    return _as_table(raw.get(key, {}), f"{where}.{key}")


def _only(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        names = ", ".join(f"{where}.{key}" for key in unknown)
        raise RegistryError(f"{names}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _positive(raw: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise RegistryError(f"{where}.{key}: expected a positive number, got {value!r}")
    return float(value)


class Registry:
    """Sites, beds and devices; mutable only by auto-registration of unknown devices, a
    bounded memo beside the file's (see the module docstring)."""

    def __init__(self, *, defaults: Defaults | None = None,
                 first_sight_max: int = FIRST_SIGHT_MAX) -> None:
        if first_sight_max < 1:
            raise ValueError("first_sight_max must be positive")
        self.defaults = defaults or Defaults()
        self.sites: dict[str, Site] = {}
        """The sites of the registry file (never one registered on first sight)."""
        self._places: dict[str, Placement] = {}
        """Listed devices (never auto-registered ones) by id: one dict look-up per check."""
        self.bed_keys = BedKeys()
        """Every bed's ``(site, bed)``, sorted (read only; :meth:`ensure` keeps it)."""
        self.first_sight_max = first_sight_max
        """Devices registered on first sight kept at most (the ``first_sight_max_devices``
        setting)."""
        self._first_beds: dict[tuple[str, str], Bed] = {}
        """Beds registered on first sight (not in :attr:`sites`)."""
        self._first_seen: OrderedDict[tuple[str, str, str], Bed] = OrderedDict()
        """Devices registered on first sight, least recently seen first, with their bed."""
        self.first_sight_evicted = 0
        """Devices registered on first sight since forgotten (:attr:`first_sight_max`)."""
        self.last_evicted = ""
        """The latest one forgotten, ``site/bed/device``."""

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, cache: str | Path | None = None) -> Registry:
        """The registry in the TOML file ``path``. With ``cache``, a file where the parsed
        file is kept as JSON beside the SHA-256 of its bytes: a registry of thousands of beds
        takes TOML's pure-Python parser a good part of a second, which a gateway's restart
        should not pay while the file has not changed (:func:`_parse_cached`)."""
        try:
            data = Path(path).read_bytes()
            raw = _parse_cached(data, Path(cache)) if cache is not None else tomllib.loads(
                data.decode("utf-8"))
        except OSError as exc:
            raise RegistryError(f"cannot read registry {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise RegistryError(f"registry {path} is not UTF-8: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(f"registry {path} is not valid TOML: {exc}") from exc
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Registry:
        problems: list[str] = []
        unknown = sorted(set(raw) - {"defaults", "sites"})
        if unknown:
            problems.append(f"unknown top-level key(s): {', '.join(unknown)}")
        d = _table(raw, "defaults", "registry")
        with _collecting(problems):
            _only(d, {"heartbeat_s", "offline_factor", "timezone", "settings"}, "defaults")
        fields: dict[str, Any] = {}  # each the file's, or the built-in one while it is wrong
        with _collecting(problems):
            fields["heartbeat_s"] = _positive(d, "heartbeat_s", 300.0, "defaults")
        with _collecting(problems):
            fields["offline_factor"] = _positive(d, "offline_factor", 3.0, "defaults")
        with _collecting(problems):
            tz = d.get("timezone")
            fields["timezone"] = (_check_timezone(tz, "defaults.timezone") if tz is not None
                                  else None)
        with _collecting(problems):
            fields["settings"] = BedSettings.from_mapping(_table(d, "settings", "defaults"),
                                                          where="defaults.settings")
        defaults = Defaults(**fields)
        registry = cls(defaults=defaults)
        for site_id, site_raw in _table(raw, "sites", "registry").items():
            with _collecting(problems):
                registry._add_site(site_id, site_raw, defaults, problems)
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise RegistryError(problems[0] + more, problems)
        registry.bed_keys = BedKeys.of((s.id, b) for s in registry.sites.values() for b in s.beds)
        return registry

    def _add_site(self, site_id: str, site_raw: Any, defaults: Defaults,
                  problems: list[str]) -> None:
        """One site of the file; each bed's and device's problem is added to ``problems`` and
        the rest read on (the site's own problems raise)."""
        where = f"sites.{_check_id(site_id, 'sites')}"
        site_raw = _as_table(site_raw, where)  # not a table: nothing more to read in it
        with _collecting(problems):
            _only(site_raw, {"timezone", "beds"}, where)
        tz = site_raw.get("timezone")
        site = Site(id=site_id, timezone=None)
        with _collecting(problems):
            site = Site(id=site_id,
                        timezone=_check_timezone(tz, f"{where}.timezone") if tz else None)
        for bed_id, bed_raw in _table(site_raw, "beds", where).items():
            with _collecting(problems):
                bwhere = f"{where}.beds.{_check_id(bed_id, where + '.beds')}"
                bed_raw = _as_table(bed_raw, bwhere)
                with _collecting(problems):
                    _only(bed_raw, {"person", "family_webhook", "settings", "devices"}, bwhere)
                person = bed_raw.get("person")
                if person is not None and not isinstance(person, str):
                    raise RegistryError(f"{bwhere}.person: expected a string")
                webhook = bed_raw.get("family_webhook")
                if webhook is not None:
                    _check_url(webhook, f"{bwhere}.family_webhook")
                settings = defaults.settings  # while the bed's own are wrong: devices checked
                with _collecting(problems):
                    settings = BedSettings.from_mapping(
                        _table(bed_raw, "settings", bwhere), base=defaults.settings,
                        where=f"{bwhere}.settings")
                bed = Bed(site=site_id, id=bed_id, person=person, family_webhook=webhook,
                          settings=settings)
                for dev_id, dev_raw in _table(bed_raw, "devices", bwhere).items():
                    with _collecting(problems):
                        self._add_device(bed, dev_id, dev_raw, defaults, bwhere)
                site.beds[bed_id] = bed
        self.sites[site_id] = site

    def _add_device(self, bed: Bed, dev_id: str, dev_raw: Any, defaults: Defaults,
                    bwhere: str) -> None:
        dwhere = f"{bwhere}.devices.{_check_id(dev_id, bwhere + '.devices')}"
        other = self._places.get(dev_id)
        if other is not None:
            raise RegistryError(
                f"{dwhere}: device id already listed at sites.{other.site}.beds.{other.bed} "
                "(the id is the device's MQTT user name: one place per device)")
        problems: list[str] = []
        dev_raw = _as_table(dev_raw, dwhere)
        with _collecting(problems):
            _only(dev_raw, {"kind", "heartbeat_s"}, dwhere)
        try:
            kind = Kind(dev_raw.get("kind"))
        except ValueError:
            # Listed all the same (a wrong kind), so that the id listed again is named too.
            self._places[dev_id] = Placement(bed.site, bed.id, Kind.BUTTON)
            problems.append(f"{dwhere}.kind: expected one of {', '.join(Kind)}")
            raise RegistryError(problems[0], problems) from None
        if problems:
            raise RegistryError(problems[0], problems)
        heartbeat_s = _positive(dev_raw, "heartbeat_s", defaults.heartbeat_s, dwhere)
        self._places[dev_id] = Placement(bed.site, bed.id, kind)
        bed.devices[dev_id] = Device(id=dev_id, kind=kind, heartbeat_s=heartbeat_s)


    # --- queries ----------------------------------------------------------------------------

    def bed(self, site: str, bed: str) -> Bed | None:
        s = self.sites.get(site)
        found = s.beds.get(bed) if s else None
        return found if found is not None else self._first_beds.get((site, bed))

    def beds(self) -> Iterator[Bed]:
        """The registry file's beds, then those registered on first sight (at most
        :attr:`first_sight_max`)."""
        for site in self.sites.values():
            yield from site.beds.values()
        yield from list(self._first_beds.values())

    def first_sight_sites(self) -> set[str]:
        """The sites the registry file does not list of the beds registered on first sight it
        holds (a walk of them all: for a report at the end, say, never per message)."""
        return {site for site, _ in self._first_beds if site not in self.sites}

    @property
    def first_sight_devices(self) -> int:
        """Devices registered on first sight held now."""
        return len(self._first_seen)

    def timezone(self, site: str, fallback: str | None = None) -> str | None:
        """The IANA zone of a site: its own, else the registry default, else ``fallback``."""
        s = self.sites.get(site)
        return (s.timezone if s else None) or self.defaults.timezone or fallback

    def place(self, device: str) -> Placement | None:
        """Where the registry lists ``device``; None for a device it does not list (also one
        registered on first sight)."""
        return self._places.get(device)

    def placements(self) -> Iterator[tuple[str, Placement]]:
        """Every listed device with its place, in the order of the registry file."""
        yield from self._places.items()

    def lists_topic(self, topic: str) -> bool:
        """Whether the device a topic names is listed, at home there (its site, bed and kind);
        True for any topic when the registry lists no device at all (nothing is then outside
        it). One split and one dict look-up: the gateway asks it of every emergency call, so
        that listed devices' calls go ahead of a flood from devices nobody registered.

        >>> registry = Registry.from_mapping({"sites": {"s1": {"beds": {"b1": {"devices": {
        ...     "btn-1": {"kind": "button"}}}}}}})
        >>> [registry.lists_topic(f"homecare/v1/{place}/event") for place in (
        ...     "s1/b1/button/btn-1", "s1/b2/button/btn-1", "s1/b1/button/btn-2")]
        [True, False, False]
        """
        if not self._places:
            return True
        parts = topic.split("/")
        if len(parts) != 7:
            return False
        place = self._places.get(parts[5])
        return place is not None and place.differs_at(parts[2], parts[3], parts[4]) is None

    def update_places(self, fresh: Registry) -> list[str]:
        """Take the places of the devices ``fresh`` lists (the registry file read again):
        devices moved or newly listed are judged by their new place from now on
        (:meth:`misplaced`, :meth:`lists_topic`); a device moved is registered at its new bed
        on first sight, flagged as not listed there, until a restart reads the whole file.
        Devices ``fresh`` no longer lists keep their old place. Returns the devices whose
        place changed or is new, in the file's order."""
        changed = [device for device, place in fresh._places.items()
                   if self._places.get(device) != place]
        for device in changed:
            self._places[device] = fresh._places[device]
        return changed

    def misplaced(self, address: Address) -> Placement | None:
        """The place of a listed device that ``address`` puts somewhere else (another site,
        bed or kind); None when it is at home there or not listed at all. One dict look-up."""
        place = self._places.get(address.device)
        return place if place is not None and place.differs(address) is not None else None

    def ensure(self, address: Address) -> tuple[Device, bool]:
        """The device behind ``address``, registering it (flagged) on first sight.

        Returns the device and whether it was just registered. A listed device is never
        registered in another place: for an address :meth:`misplaced` names, this raises
        :class:`~devices.errors.RegistryError`.
        """
        place = self.misplaced(address)
        if place is not None:
            raise RegistryError(
                f"device {address.device} is listed at {place.site}/{place.bed} as "
                f"{place.kind}, not at {address.site}/{address.bed} as {address.kind}")
        bed = self.bed(address.site, address.bed)
        if bed is None:
            key = (address.site, address.bed)
            bed = self._first_beds[key] = Bed(
                site=address.site, id=address.bed, settings=self.defaults.settings,
                auto_registered=True)
            self.bed_keys.add(key)
        device = bed.devices.get(address.device)
        if device is not None:
            if device.auto_registered:
                self.seen(address)
            return device, False
        device = bed.devices[address.device] = Device(
            id=address.device, kind=address.kind, heartbeat_s=self.defaults.heartbeat_s,
            auto_registered=True)
        seen = self._first_seen
        seen[(address.site, address.bed, address.device)] = bed
        while len(seen) > self.first_sight_max:
            self._forget(*seen.popitem(last=False))
        return device, True

    def seen(self, address: Address) -> bool:
        """Note that a device registered on first sight was seen (it goes last in the order
        of forgetting); False when it is not held (listed, or forgotten: :meth:`ensure`
        registers it again)."""
        key = (address.site, address.bed, address.device)
        try:
            self._first_seen.move_to_end(key)
        except KeyError:
            return False
        return True

    def _forget(self, key: tuple[str, str, str], bed: Bed) -> None:
        """Forget a device registered on first sight, and its bed with its last device when
        the bed was registered on first sight too."""
        site, bed_id, device = key
        del bed.devices[device]
        if bed.auto_registered and not bed.devices:
            del self._first_beds[(site, bed_id)]
            self.bed_keys.discard((site, bed_id))
        self.first_sight_evicted += 1
        self.last_evicted = "/".join(key)


def _parse_cached(data: bytes, cache: Path) -> dict[str, Any]:
    """``data`` (TOML) parsed, from ``cache`` when it holds the parse of these very bytes.

    The cache is a hint, never trusted beyond its digest: unreadable, corrupt or of other
    bytes, it is parsed again and rewritten (best effort: a read-only data directory only
    costs the parse). A file whose parse JSON cannot carry exactly (TOML dates and times) is
    not cached.
    """
    digest = hashlib.sha256(data).hexdigest()
    try:
        kept = json.loads(cache.read_bytes())
        parsed = kept.get("registry") if isinstance(kept, dict) else None
        if isinstance(parsed, dict) and kept.get("sha256") == digest:
            return parsed
    except (OSError, ValueError):
        pass
    raw = tomllib.loads(data.decode("utf-8"))
    try:
        text = json.dumps({"sha256": digest, "registry": raw}, separators=(",", ":"))
    except TypeError:
        return raw  # dates or times in the file: not JSON
    if json.loads(text)["registry"] != raw:
        return raw
    tmp = cache.with_name(cache.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, cache)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return raw
