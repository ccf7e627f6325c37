"""The detectors' quarantine of devices outside the registry (gateway.detect._quarantine):
a flood of made-up ids fills the shared caps, and a real new device on a listed bed is still
watched afterwards (issue #17: the caps are never freed, so they must not be the only way in).
"""

from __future__ import annotations

from devices import Codec, Message, Registry
from gateway.detect._numbering import Numbering
from gateway.detect._quarantine import MAX_UNLISTED_DEVICES_PER_LISTED_BED, Quarantine

_codec = Codec()


def _status(site: str, bed: str, device: str) -> Message:
    message = _codec.decode(f"homecare/v1/{site}/{bed}/infrared/{device}/status",
                            b'{"ts":1,"seq":1,"state":"online"}')
    assert isinstance(message, Message)
    return message


def _setup(beds: int = 3) -> tuple[Registry, Quarantine, Numbering]:
    registry = Registry.from_mapping({"sites": {"s1": {"beds": {
        f"b{n}": {"devices": {f"ir{n}": {"kind": "infrared"}}} for n in range(beds)}}}})
    quarantine = Quarantine(registry, max_beds=4, max_devices=10)

    def new_bed(_: int, site: str, bed: str) -> None:
        quarantine.note_bed(site, bed)

    def new_device(_: int, site: str, bed: str, device: str) -> None:
        quarantine.note_device(site, bed, device)

    numbering = Numbering(on_new_bed=new_bed, on_new_device=new_device)
    return registry, quarantine, numbering


def _watched(registry: Registry, quarantine: Quarantine, numbering: Numbering,
             messages: list[Message]) -> list[str]:
    for m in messages:
        registry.ensure(m.address)  # the pipeline registers a new device first
    [(kept, _)] = quarantine.admit(numbering, [(messages, [1] * len(messages))])
    return [f"{m.address.bed}/{m.address.device}" for m in kept]


def test_a_new_device_on_a_listed_bed_is_watched_after_a_flood_filled_the_caps() -> None:
    registry, quarantine, numbering = _setup()
    flood = [_status(f"x{n % 4}", "bed", f"d{n}") for n in range(50)]
    assert len(_watched(registry, quarantine, numbering, flood)) == 10  # the device cap
    flood = [_status("s1", f"made-up-{n}", f"d{n}") for n in range(50)]
    assert _watched(registry, quarantine, numbering, flood) == []
    assert quarantine.unwatched_messages == 90
    # The caps are full and never freed; the replacement sensor of listed bed b1 is watched.
    assert _watched(registry, quarantine, numbering, [_status("s1", "b1", "ir1-new")]) == [
        "b1/ir1-new"]


def test_one_listed_bed_spraying_ids_uses_its_own_allowance_only() -> None:
    registry, quarantine, numbering = _setup()
    spray = [_status("s1", "b0", f"fake-{n}") for n in range(40)]
    assert len(_watched(registry, quarantine, numbering, spray)) == (
        MAX_UNLISTED_DEVICES_PER_LISTED_BED)
    assert _watched(registry, quarantine, numbering, [_status("s1", "b2", "ir2-new")]) == [
        "b2/ir2-new"]
    # ... and not the shared cap of beds outside the registry either.
    assert _watched(registry, quarantine, numbering, [_status("x", "y", "z")]) == ["y/z"]
