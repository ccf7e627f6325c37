"""Site, bed and device ids as dense numbers: the rows of every detector's arrays.

A bed or device is numbered on first sight, in order of arrival, and its number is never
reused, so it names the same row of every per-bed or per-device array for the life of the
fleet (a saved state is keyed by ids and mapped to the numbers of the fleet it is restored
into). The owner is told of each new bed and device (``on_new_bed``, ``on_new_device``), once,
right after it is numbered, to fill in what it keeps per bed or device.

A message's device is found by the identity of its :class:`~devices.topics.Address`
(:attr:`Numbering.address_cache`), so that columns are extracted from a batch without a Python
loop per message (:func:`~gateway.detect._batch.extract`).

>>> numbering = Numbering(on_new_bed=lambda *bed: print("new bed", bed),
...                       on_new_device=lambda *device: None)
>>> [numbering.bed_index(site, bed) for site, bed in [("s1", "b1"), ("s2", "b1"), ("s1", "b1")]]
new bed (0, 's1', 'b1')
new bed (1, 's2', 'b1')
[0, 1, 0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from devices.codec import Message
from devices.topics import Address, Channel, Kind
from gateway.detect._table import grow

KIND_CODES: Final[dict[Kind, int]] = {k: i for i, k in enumerate(Kind)}
KINDS_BY_CODE: Final[tuple[Kind, ...]] = tuple(Kind)
_TELEMETRY_CODES: Final[dict[Kind, int]] = {Kind.INFRARED: 0, Kind.AUDIO: 1, Kind.FALL: 2}


class Numbering:
    """Bed, device and site numbers, with each device's bed and kind as arrays."""

    def __init__(self, *, on_new_bed: Callable[[int, str, str], None],
                 on_new_device: Callable[[int, str, str, str], None]) -> None:
        self._on_new_bed = on_new_bed
        """Called with ``(number, site, bed)`` for each new bed."""
        self._on_new_device = on_new_device
        """Called with ``(number, site, bed, device)`` for each new device (after its bed)."""
        self._beds: dict[tuple[str, str], int] = {}
        self.bed_keys: list[tuple[str, str]] = []
        """``(site, bed)`` by bed number."""
        self._devices: dict[tuple[str, str, str], int] = {}
        self.device_keys: list[tuple[str, str, str]] = []
        """``(site, bed, device)`` by device number."""
        self.device_bed_list: list[int] = []
        self.device_kind_list: list[int] = []
        self.device_bed: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        """Bed number of each device (room for more rows than there are devices)."""
        self.device_kind: npt.NDArray[np.int8] = np.zeros(0, np.int8)
        """:data:`KIND_CODES` of each device."""
        self._site_ids: dict[str, int] = {}
        self.bed_site: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        """Site number of each bed."""
        self.address_cache: dict[int, int] = {}
        """``id(address) -> device * 4 + kind code`` (0 infrared, 1 audio, 2 fall telemetry,
        3 anything else): the codec's topic cache hands out the same Address object for
        every message of a topic, so a message's device is found by identity, in C."""
        self._cached_addresses: list[Address] = []
        """Keeps every cached Address alive, so that its id cannot be reused meanwhile."""

    @property
    def n_beds(self) -> int:
        return len(self.bed_keys)

    @property
    def n_devices(self) -> int:
        return len(self.device_keys)

    @property
    def n_sites(self) -> int:
        return len(self._site_ids)

    @property
    def site_ids(self) -> dict[str, int]:
        """Site name to site number (``bed_site``)."""
        return self._site_ids

    def has_bed(self, site: str, bed: str) -> bool:
        """Whether bed ``bed`` of ``site`` is numbered."""
        return (site, bed) in self._beds

    def has_device(self, site: str, bed: str, device: str) -> bool:
        """Whether ``device`` (on ``bed`` of ``site``) is numbered."""
        return (site, bed, device) in self._devices

    def numbered_device(self, site: str, bed: str, device: str) -> int | None:
        """The number of ``device`` (on ``bed`` of ``site``) if it is numbered; None if not
        (numbering it takes its kind: :meth:`device_index`)."""
        return self._devices.get((site, bed, device))

    def bed_index(self, site: str, bed: str) -> int:
        """The number of bed ``bed`` of ``site``, numbering it if it is new."""
        key = (site, bed)
        index = self._beds.get(key)
        if index is not None:
            return index
        index = self._beds[key] = len(self.bed_keys)
        self.bed_keys.append(key)
        self._on_new_bed(index, site, bed)
        self.bed_site = grow(self.bed_site, index + 1, 0)
        self.bed_site[index] = self._site_ids.setdefault(site, len(self._site_ids))
        return index

    def device_index(self, site: str, bed: str, device: str, kind: Kind) -> int:
        """The number of ``device`` (of ``kind``, on ``bed``), numbering it and its bed if new."""
        key = (site, bed, device)
        index = self._devices.get(key)
        if index is not None:
            return index
        bed_index = self.bed_index(site, bed)
        index = self._devices[key] = len(self.device_keys)
        self.device_keys.append(key)
        self.device_bed_list.append(bed_index)
        self.device_kind_list.append(KIND_CODES[kind])
        size = index + 1
        self.device_bed = grow(self.device_bed, size, 0)
        self.device_kind = grow(self.device_kind, size, 0)
        self.device_bed[index] = bed_index
        self.device_kind[index] = KIND_CODES[kind]
        self._on_new_device(index, site, bed, device)
        return index

    def message_device(self, message: Message) -> int:
        return self.address_code(message.address) >> 2

    def address_code(self, a: Address) -> int:
        """``device * 4 + kind code`` of the messages from ``a`` (see :attr:`address_cache`)."""
        index = self._devices.get((a.site, a.bed, a.device))
        if index is None:
            index = self.device_index(a.site, a.bed, a.device, a.kind)
        code = _TELEMETRY_CODES.get(a.kind, 3) if a.channel is Channel.TELEMETRY else 3
        if len(self.address_cache) >= 4 * len(self._devices) + 1024:
            # Bounded: a few topics per device, unless addresses are not reused (then the
            # cache only costs a lookup).
            self.address_cache.clear()
            self._cached_addresses.clear()
        self.address_cache[id(a)] = index * 4 + code
        self._cached_addresses.append(a)
        return index * 4 + code
