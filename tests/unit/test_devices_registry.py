"""The bed/device registry: TOML in, per-bed settings out, unknown devices never ignored."""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import devices.registry
from devices import Address, BedSettings, Channel, Kind, Registry, RegistryError

ROOT = Path(__file__).resolve().parents[2]


def docstring_example() -> str:
    """The example in devices/registry.py's docstring, as a file a user would copy."""
    doc = devices.registry.__doc__ or ""
    block = doc.split("::", 1)[1].split("Devices and beds", 1)[0]
    return textwrap.dedent(block)


def load(text: str) -> Registry:
    return Registry.from_mapping(tomllib.loads(text))


def test_docstring_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(docstring_example())
    registry = Registry.load(path)
    bed = registry.bed("site-01", "bed-0001")
    assert bed is not None
    assert bed.person == "p-3f9a1c"
    assert bed.family_webhook == "https://family.example/hooks/p-3f9a1c"
    assert bed.settings.night_start == dt.time(22, 0)
    assert bed.settings.heart_rate_max == 110
    assert bed.devices["btn-0001"].kind is Kind.BUTTON
    assert bed.devices["btn-0001"].heartbeat_s == 600
    assert not bed.auto_registered
    assert registry.timezone("site-01") == "Asia/Shanghai"
    assert registry.defaults.heartbeat_s == 300


def test_deploy_example_loads() -> None:
    registry = Registry.load(ROOT / "deploy" / "registry.example.toml")
    assert {bed.id for bed in registry.beds()} >= {"bed-0001", "bed-0002"}


def test_bed_settings_override_defaults_which_override_builtins() -> None:
    registry = load("""
        [defaults]
        heartbeat_s = 120
        [defaults.settings]
        heart_rate_max = 120
        night_start = "21:00"
        [sites.s.beds.custom.settings]
        heart_rate_max = 100
        [sites.s.beds.plain]
        [sites.s.beds.plain.devices.d]
        kind = "fall"
    """)
    custom, plain = registry.bed("s", "custom"), registry.bed("s", "plain")
    assert custom is not None
    assert plain is not None
    assert custom.settings.heart_rate_max == 100
    assert custom.settings.night_start == dt.time(21, 0)          # from defaults
    assert custom.settings.heart_rate_min == BedSettings().heart_rate_min  # built in
    assert plain.settings.heart_rate_max == 120
    assert plain.devices["d"].heartbeat_s == 120


def test_timezone_falls_back_site_then_defaults_then_caller() -> None:
    registry = load("""
        [defaults]
        timezone = "Europe/Berlin"
        [sites.a]
        timezone = "Asia/Shanghai"
        [sites.b]
    """)
    assert registry.timezone("a") == "Asia/Shanghai"
    assert registry.timezone("b") == "Europe/Berlin"
    assert Registry().timezone("x", fallback="UTC") == "UTC"


@pytest.mark.parametrize(("text", "key"), [
    ("colour = 1", "colour"),
    ("[defaults.settings]\nheart_rate_maxx = 1", "defaults.settings.heart_rate_maxx"),
    ("[sites.s.beds.b.settings]\nnight = \"22:00\"", "sites.s.beds.b.settings.night"),
    ("[defaults]\ntimezone = \"Mars/Olympus\"", "defaults.timezone"),
    ("[sites.s]\ntimezone = \"Asia/Shanghia\"", "sites.s.timezone"),
    ("[sites.s]\ntimezone = \"../../etc/passwd\"", "sites.s.timezone"),
    ("[sites.s.beds.b.settings]\nnight_start = \"25:00\"", "sites.s.beds.b.settings.night_start"),
    ("[sites.s.beds.b.settings]\nheart_rate_max = \"high\"",
     "sites.s.beds.b.settings.heart_rate_max"),
    ("[sites.s.beds.b.settings]\nheart_rate_max = true", "sites.s.beds.b.settings.heart_rate_max"),
    ("[sites.s.beds.b.devices.d]\nkind = \"camera\"", "sites.s.beds.b.devices.d.kind"),
    ("[sites.s.beds.b.devices.d]\nkind = \"button\"\nheartbeat_s = 0",
     "sites.s.beds.b.devices.d.heartbeat_s"),
    ("[defaults]\noffline_factor = -1", "defaults.offline_factor"),
    ("[sites.\"bad site\"]", "sites"),
    ("[sites.s.beds.\"b/1\"]", "sites.s.beds"),
    ("[defaults.settings]\nheart_rate_min = 150", "heart_rate_min"),
    ("[sites.s.beds.b]\nfamily_webhook = \"ftp://x/y\"", "sites.s.beds.b.family_webhook"),
    ("[sites.s.beds.b]\nfamily_webhook = 3", "sites.s.beds.b.family_webhook"),
])
def test_bad_registry_is_rejected_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(RegistryError, match=re.escape(key)):
        load(text)


@pytest.mark.parametrize(("text", "key"), [
    ("[defaults]\nheartbeat = 60", "defaults.heartbeat"),
    ("[sites.s]\ntimezon = \"Asia/Shanghai\"", "sites.s.timezon"),
    ("[sites.s.beds.b]\npersn = \"p-1\"", "sites.s.beds.b.persn"),
    ("[sites.s.beds.b.devices.d]\nkind = \"button\"\nheartbeat = 60",
     "sites.s.beds.b.devices.d.heartbeat"),
])
def test_unknown_keys_at_every_level_are_rejected(text: str, key: str) -> None:
    with pytest.raises(RegistryError, match=re.escape(key)):
        load(text)


@pytest.mark.parametrize("text", [
    "sites = []",
    "[sites]\ns = 5",
    "[sites.s]\nbeds = 5",
    "[defaults]\nsettings = 5",
])
def test_wrongly_shaped_tables_are_a_registry_error(text: str) -> None:
    with pytest.raises(RegistryError):
        load(text)


def test_unreadable_or_invalid_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        Registry.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sites\n")
    with pytest.raises(RegistryError, match="not valid TOML"):
        Registry.load(bad)


def test_ensure_registers_unknown_devices_flagged_and_only_once() -> None:
    registry = load("""
        [defaults]
        heartbeat_s = 90
        [sites.s.beds.known.devices.btn-1]
        kind = "button"
    """)
    known = Address("s", "known", Kind.BUTTON, "btn-1", Channel.EVENT)
    device, new = registry.ensure(known)
    assert (new, device.auto_registered) == (False, False)

    extra = Address("s", "known", Kind.FALL, "fs-9", Channel.TELEMETRY)
    device, new = registry.ensure(extra)
    assert (new, device.auto_registered, device.kind, device.heartbeat_s) == (
        True, True, Kind.FALL, 90)
    bed = registry.bed("s", "known")
    assert bed is not None
    assert not bed.auto_registered

    stranger = Address("new-site", "new-bed", Kind.INFRARED, "ir-1", Channel.STATUS)
    device, new = registry.ensure(stranger)
    assert new
    assert device.auto_registered
    bed = registry.bed("new-site", "new-bed")
    assert bed is not None
    assert bed.auto_registered
    assert bed.settings == registry.defaults.settings
    assert registry.ensure(stranger) == (device, False)


@settings(deadline=None, max_examples=50)
@given(addresses=st.lists(st.tuples(
    st.sampled_from(["s1", "s2"]), st.sampled_from(["b1", "b2", "b3"]),
    st.sampled_from(list(Kind)), st.sampled_from(["d1", "d2"])), max_size=30))
def test_ensure_registers_each_device_exactly_once(
        addresses: list[tuple[str, str, Kind, str]]) -> None:
    registry = Registry()
    seen: set[tuple[str, str, str]] = set()
    for site, bed, kind, device in addresses:
        _, new = registry.ensure(Address(site, bed, kind, device, Channel.STATUS))
        assert new == ((site, bed, device) not in seen)
        seen.add((site, bed, device))
    assert sum(len(b.devices) for b in registry.beds()) == len(seen)


def test_bed_settings_validate_at_once() -> None:
    with pytest.raises(RegistryError, match="breathing_rate_min"):
        BedSettings(breathing_rate_min=40, breathing_rate_max=30)
    with pytest.raises(RegistryError, match="low_battery_pct"):
        BedSettings(low_battery_pct=-1.0)


def test_bed_settings_reject_negative_ints() -> None:
    with pytest.raises(RegistryError, match="low_battery_pct"):
        BedSettings(low_battery_pct=-1)  # type: ignore[arg-type]


def test_a_cached_parse_is_used_only_for_the_very_same_file(tmp_path: Path) -> None:
    # A restart parsed the whole TOML again (a good part of a second for thousands of beds);
    # the cache must never serve a registry the file no longer says.
    path, cache = tmp_path / "registry.toml", tmp_path / "registry.cache.json"
    path.write_text('[sites.s1.beds.b1.devices.btn-1]\nkind = "button"\n')
    first = Registry.load(path, cache=cache)
    assert cache.exists()
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    kept = json.loads(cache.read_text())
    kept["registry"]["sites"]["s1"]["beds"]["b9"] = {}  # what the cache says is what is used
    cache.write_text(json.dumps(kept))
    assert sorted(Registry.load(path, cache=cache).sites["s1"].beds) == ["b1", "b9"]
    path.write_text('[sites.s2.beds.b2.devices.btn-2]\nkind = "button"\n')  # file changed
    assert sorted(Registry.load(path, cache=cache).sites) == ["s2"]
    cache.write_text("{not json")  # corrupt: parsed again, rewritten
    assert sorted(Registry.load(path, cache=cache).sites) == ["s2"]
    assert json.loads(cache.read_text())["registry"]["sites"].keys() == {"s2"}
    assert sorted(first.sites) == ["s1"]


def test_a_registry_with_toml_dates_is_parsed_not_cached(tmp_path: Path) -> None:
    path, cache = tmp_path / "registry.toml", tmp_path / "registry.cache.json"
    path.write_text('[sites.s1.beds.b1]\n[sites.s1.beds.b1.devices.btn-1]\nkind = "button"\n'
                    'installed = 2026-01-05\n')
    with pytest.raises(RegistryError):  # not a key the registry knows, cached or not
        Registry.load(path, cache=cache)
    assert not cache.exists()
