"""Devices outside the registry: a bounded number watched by the detectors, the rest left out.

The gateway registers a device or bed the registry does not list on first sight (flagged
``auto_registered``), so that its data is stored and its calls alerted. The detectors, though,
keep a row of arrays for every bed they ever numbered (sample rings and day baselines: about
5 KB per bed, and numbers are never reused), so made-up ids would grow them without end. The
fleet therefore numbers at most ``max_beds`` beds and ``max_devices`` devices outside the
registry, first come first watched, and leaves the messages of any further one out of the
detectors: counted in :attr:`Quarantine.unwatched_messages` and logged at most once a minute
(``detect.unwatched``). Their data is still stored, their button presses and falls still
alert (the immediate rules do not use the detectors), but nobody watches them for silence,
inactivity or vital signs until the registry lists them (read at start).

Beds and devices the registry lists are numbered when the fleet is built and always watched.
A device outside the registry on a bed the registry lists (a replacement device not yet entered,
a second sensor a technician added) has its own allowance: up to
:data:`MAX_UNLISTED_DEVICES_PER_LISTED_BED` per listed bed, not taken from ``max_devices``, so a
flood of made-up ids, which fills the shared caps first come first served and keeps them (the
detectors never reuse a number), cannot leave a real new device in a real home unwatched until
the next restart. One listed bed's allowance is its own: a device spraying ids on one bed
cannot use another's. A registry that lists no bed at all (a demo, a replay without
``--registry``) quarantines nothing: every device is watched, as if listed.

>>> from devices import Codec, Registry
>>> from gateway.detect._numbering import Numbering
>>> registry = Registry.from_mapping({"sites": {"s1": {"beds": {"b1": {}}}}})
>>> quarantine = Quarantine(registry, max_beds=2, max_devices=8)
>>> numbering = Numbering(on_new_bed=lambda i, site, bed: quarantine.note_bed(site, bed),
...                       on_new_device=lambda i, s, b, d: quarantine.note_device(s, b, d))
>>> codec = Codec()
>>> flood = [codec.decode(f"homecare/v1/x/b{n}/button/d{n}/status", b'{"ts":1,"seq":1,'
...                       b'"state":"online"}') for n in range(5)]
>>> [(kept, _)] = quarantine.admit(numbering, [(flood, [1] * 5)])
>>> [m.address.bed for m in kept], quarantine.unwatched_messages
(['b0', 'b1'], 3)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from operator import attrgetter
from typing import Final, Protocol

from devices.registry import Registry
from devices.topics import Address, Kind
from gateway.detect._batch import Chunk

log = logging.getLogger("homecare.detect")

MAX_UNREGISTERED_BEDS: Final = 1_000
"""Beds outside the registry the detectors watch at most (about 10 KB each, capacity included:
at most ~10 MB)."""
MAX_UNREGISTERED_DEVICES: Final = 4_000
"""Devices outside the registry the detectors watch at most (under 1 KB each)."""
MAX_UNLISTED_DEVICES_PER_LISTED_BED: Final = 8
"""Devices outside the registry watched on each bed the registry lists, beside the shared cap."""
LOG_INTERVAL_S: Final = 60.0

_ADDRESS = attrgetter("address")


class _Numbers(Protocol):
    @property
    def address_cache(self) -> dict[int, int]: ...

    def has_bed(self, site: str, bed: str) -> bool: ...

    def has_device(self, site: str, bed: str, device: str) -> bool: ...

    def device_index(self, site: str, bed: str, device: str, kind: Kind) -> int: ...


class Quarantine:
    """Counts the beds and devices outside the registry that are numbered, and keeps the
    messages of new ones out once the caps are reached."""

    def __init__(self, registry: Registry, *, max_beds: int = MAX_UNREGISTERED_BEDS,
                 max_devices: int = MAX_UNREGISTERED_DEVICES) -> None:
        if max_beds < 0 or max_devices < 0:
            raise ValueError("max_beds and max_devices must not be negative")
        self.registry = registry
        self.enabled = any(not bed.auto_registered for bed in registry.beds())
        """False for a registry that lists no bed: nothing is quarantined."""
        self.max_beds = max_beds
        self.max_devices = max_devices
        self.unregistered_beds = 0
        """Beds outside the registry that are numbered (watched)."""
        self.unregistered_devices = 0
        """Devices outside the registry on beds outside it that are numbered (watched)."""
        self.unlisted_on_listed: dict[tuple[str, str], int] = {}
        """(site, bed) of a listed bed -> devices outside the registry watched there."""
        self.unwatched_messages = 0
        """Messages left out of the detectors since start."""
        self._unlogged = 0
        self._logged_at = -LOG_INTERVAL_S

    def bed_registered(self, site: str, bed: str) -> bool:
        found = self.registry.bed(site, bed)
        return found is not None and not found.auto_registered

    def device_registered(self, site: str, bed: str, device: str) -> bool:
        found = self.registry.bed(site, bed)
        listed = found.devices.get(device) if found is not None else None
        return listed is not None and not listed.auto_registered

    def note_bed(self, site: str, bed: str) -> bool:
        """A bed was numbered; whether the registry lists it."""
        registered = self.bed_registered(site, bed)
        if not registered:
            self.unregistered_beds += 1
        return registered

    def note_device(self, site: str, bed: str, device: str) -> bool:
        """A device was numbered; whether the registry lists it."""
        registered = self.device_registered(site, bed, device)
        if not registered:
            if self.bed_registered(site, bed):
                key = (site, bed)
                self.unlisted_on_listed[key] = self.unlisted_on_listed.get(key, 0) + 1
            else:
                self.unregistered_devices += 1
        return registered

    def admit(self, numbering: _Numbers, chunks: Sequence[Chunk]) -> list[Chunk]:
        """``chunks`` without the messages of devices beyond the caps. Devices admitted are
        numbered at once (so that the caps hold within a chunk). Costs one C-level pass per
        chunk when every address is known already, as nearly always."""
        if not self.enabled:
            return list(chunks)
        cache = numbering.address_cache
        out: list[Chunk] = []
        left_out = 0
        for messages, received in chunks:
            if all(map(cache.__contains__, map(id, map(_ADDRESS, messages)))):
                out.append((messages, received))
                continue
            keep = [i for i, m in enumerate(messages)
                    if id(m.address) in cache or self._watch(numbering, m.address)]
            if len(keep) == len(messages):
                out.append((messages, received))
                continue
            left_out += len(messages) - len(keep)
            out.append(([messages[i] for i in keep], [received[i] for i in keep]))
        if left_out:
            self._left_out(left_out)
        return out

    def _watch(self, numbering: _Numbers, a: Address) -> bool:
        if numbering.has_device(a.site, a.bed, a.device):
            return True
        if not self.device_registered(a.site, a.bed, a.device):
            if self.bed_registered(a.site, a.bed):
                if (self.unlisted_on_listed.get((a.site, a.bed), 0)
                        >= MAX_UNLISTED_DEVICES_PER_LISTED_BED):
                    return False
            elif self.unregistered_devices >= self.max_devices or (
                    not numbering.has_bed(a.site, a.bed)
                    and self.unregistered_beds >= self.max_beds):
                return False
        numbering.device_index(a.site, a.bed, a.device, a.kind)
        return True

    def _left_out(self, count: int) -> None:
        self.unwatched_messages += count
        self._unlogged += count
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL_S:
            self._logged_at = now
            log.warning("detect.unwatched messages=%d beds=%d/%d devices=%d/%d; devices outside "
                        "the registry beyond the detectors' cap are stored and their calls "
                        "alerted, but not watched (list them in the registry)", self._unlogged,
                        self.unregistered_beds, self.max_beds, self.unregistered_devices,
                        self.max_devices)
            self._unlogged = 0
