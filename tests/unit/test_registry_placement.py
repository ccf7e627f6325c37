"""Each device listed in the registry has one place (site, bed, kind); the registry says when a
message puts it somewhere else, and never registers it there."""

from __future__ import annotations

import tomllib

import pytest

from devices import Address, Channel, Kind, Registry, RegistryError
from devices.registry import Placement

REGISTRY = """
[sites.site-01.beds.bed-0007.devices.btn-0007]
kind = "button"
[sites.site-01.beds.bed-0007.devices.badge-c01]
kind = "badge"
[sites.site-01.beds.bed-0099.devices.btn-0099]
kind = "button"
[sites.site-02.beds.bed-0001.devices.fs-1001]
kind = "fall"
"""


def load(text: str = REGISTRY) -> Registry:
    return Registry.from_mapping(tomllib.loads(text))


def at(site: str, bed: str, kind: Kind, device: str,
       channel: Channel = Channel.EVENT) -> Address:
    return Address(site, bed, kind, device, channel)


def test_a_listed_device_has_one_place_and_an_unlisted_one_none() -> None:
    registry = load()
    assert registry.place("btn-0007") == Placement("site-01", "bed-0007", Kind.BUTTON)
    assert registry.place("fs-1001") == Placement("site-02", "bed-0001", Kind.FALL)
    assert registry.place("btn-unknown") is None
    assert [device for device, _ in registry.placements()] == [
        "btn-0007", "badge-c01", "btn-0099", "fs-1001"]


@pytest.mark.parametrize(("address", "differs"), [
    (at("site-01", "bed-0099", Kind.BUTTON, "btn-0007"), "bed"),
    (at("site-01", "bed-0007", Kind.FALL, "btn-0007"), "kind"),
    (at("site-01", "bed-0099", Kind.FALL, "btn-0007"), "bed"),
    (at("site-02", "bed-0007", Kind.BUTTON, "btn-0007"), "site"),
    (at("site-02", "bed-0001", Kind.BUTTON, "btn-0007", Channel.STATUS), "site"),
    (at("site-02", "bed-0001", Kind.BADGE, "badge-c01"), "site"),
    (at("site-01", "bed-0007", Kind.BUTTON, "badge-c01"), "kind"),
])
def test_a_listed_device_seen_elsewhere_is_misplaced(address: Address, differs: str) -> None:
    registry = load()
    place = registry.misplaced(address)
    assert place is not None
    assert place == registry.place(address.device)
    assert place.differs(address) == differs


@pytest.mark.parametrize("address", [
    at("site-01", "bed-0007", Kind.BUTTON, "btn-0007"),
    at("site-01", "bed-0007", Kind.BUTTON, "btn-0007", Channel.STATUS),
    # A badge travels with its caregiver between the beds of its site.
    at("site-01", "bed-0099", Kind.BADGE, "badge-c01"),
    at("site-01", "bed-4242", Kind.BADGE, "badge-c01"),
    # Devices the registry does not list are not bound to any place.
    at("site-01", "bed-0099", Kind.BUTTON, "btn-new"),
    at("site-09", "bed-0001", Kind.FALL, "fs-new"),
])
def test_a_device_in_its_place_or_an_unlisted_one_is_not_misplaced(address: Address) -> None:
    assert load().misplaced(address) is None


def test_ensure_never_registers_a_listed_device_in_another_place() -> None:
    registry = load()
    away = at("site-01", "bed-0099", Kind.BUTTON, "btn-0007")
    with pytest.raises(RegistryError, match="btn-0007"):
        registry.ensure(away)
    bed = registry.bed("site-01", "bed-0099")
    assert bed is not None
    assert set(bed.devices) == {"btn-0099"}
    assert registry.bed("site-02", "bed-0007") is None


def test_auto_registered_devices_get_no_place() -> None:
    registry = load()
    new = at("site-01", "bed-0099", Kind.BUTTON, "btn-new")
    _, registered = registry.ensure(new)
    assert registered
    assert registry.place("btn-new") is None
    # Seen on another bed later: still not bound (today's rule for unknown devices).
    assert registry.misplaced(at("site-01", "bed-0100", Kind.BUTTON, "btn-new")) is None


def test_a_device_id_listed_twice_is_rejected_naming_both_places() -> None:
    with pytest.raises(RegistryError, match=r"sites\.b\.beds\.y\.devices\.d-1.*sites\.a\.beds\.x"):
        load("""
            [sites.a.beds.x.devices.d-1]
            kind = "button"
            [sites.b.beds.y.devices.d-1]
            kind = "button"
        """)
