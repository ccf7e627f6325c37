"""The MQTT topic scheme of the device contract.

``homecare/v1/{site}/{bed}/{kind}/{device}/{channel}``: ``site``, ``bed`` and ``device`` match
``[A-Za-z0-9_-]{1,64}``, ``kind`` is one of :data:`KINDS` and ``channel`` one of
:data:`CHANNELS`. The ``v1`` segment is the contract version: a change to the contract gets a
new version, never a silent change.
"""

from __future__ import annotations

import re
import sys
from enum import StrEnum
from typing import Final

import msgspec

from devices.errors import TopicError

PREFIX: Final = "homecare"
VERSION: Final = "v1"
SUBSCRIPTION: Final = f"{PREFIX}/{VERSION}/#"
"""The wildcard a gateway subscribes to for every device of this contract version."""

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Kind(StrEnum):
    BUTTON = "button"
    INFRARED = "infrared"
    AUDIO = "audio"
    FALL = "fall"
    BADGE = "badge"


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATUS = "status"


KINDS: Final = frozenset(k.value for k in Kind)
CHANNELS: Final = frozenset(c.value for c in Channel)

CHANNELS_BY_KIND: Final[dict[Kind, frozenset[Channel]]] = {
    Kind.BUTTON: frozenset({Channel.EVENT, Channel.STATUS}),
    Kind.INFRARED: frozenset({Channel.TELEMETRY, Channel.EVENT, Channel.STATUS}),
    Kind.AUDIO: frozenset({Channel.TELEMETRY, Channel.EVENT, Channel.STATUS}),
    Kind.FALL: frozenset({Channel.TELEMETRY, Channel.EVENT, Channel.STATUS}),
    Kind.BADGE: frozenset({Channel.EVENT, Channel.STATUS}),
}
"""Which channels each device kind publishes on; any other pair is not part of the contract."""


def is_valid_id(value: str) -> bool:
    """True if ``value`` is a valid site, bed or device identifier."""
    return _ID.fullmatch(value) is not None


class Address(msgspec.Struct, frozen=True, gc=False):
    """Where a message comes from: the parsed topic."""

    site: str
    bed: str
    kind: Kind
    device: str
    channel: Channel

    @property
    def topic(self) -> str:
        return format_topic(self.site, self.bed, self.kind, self.device, self.channel)


def format_topic(site: str, bed: str, kind: str, device: str, channel: str) -> str:
    """Build a topic, validating every part."""
    for name, value in (("site", site), ("bed", bed), ("device", device)):
        if not is_valid_id(value):
            raise TopicError("bad_topic", f"invalid {name} id {value!r}")
    address = Address(site, bed, _kind(kind), device, _channel(kind, channel))
    return "/".join((PREFIX, VERSION, site, bed, address.kind, device, address.channel))


def _kind(kind: str) -> Kind:
    try:
        return Kind(kind)
    except ValueError:
        raise TopicError("unknown_kind", f"unknown device kind {kind[:64]!r}") from None


def _channel(kind: str, channel: str) -> Channel:
    try:
        parsed = Channel(channel)
    except ValueError:
        raise TopicError("unknown_channel", f"unknown channel {channel[:64]!r}") from None
    if parsed not in CHANNELS_BY_KIND[Kind(kind)]:
        raise TopicError("unknown_channel", f"{kind} devices have no {channel} channel")
    return parsed


def parse_topic(topic: str) -> Address:
    """Parse a topic of the contract into an :class:`Address` or raise :class:`TopicError`."""
    parts = topic.split("/")
    if len(parts) != 7 or parts[0] != PREFIX:
        raise TopicError("bad_topic", f"not a {PREFIX}/{VERSION} device topic: {topic[:200]!r}")
    _, version, site, bed, kind, device, channel = parts
    if version != VERSION:
        raise TopicError("unknown_version", f"unsupported contract version {version[:16]!r}")
    for name, value in (("site", site), ("bed", bed), ("device", device)):
        if not is_valid_id(value):
            raise TopicError("bad_topic", f"invalid {name} id {value[:80]!r}")
    parsed_kind = _kind(kind)
    return Address(site, bed, parsed_kind, device, _channel(kind, channel))


MAX_TOPIC_CHARS: Final = (len(f"{PREFIX}/{VERSION}/") + 3 * 64 + max(map(len, KINDS))
                          + max(map(len, CHANNELS)) + 4)
"""The longest topic the contract allows (64-character ids, the longest kind and channel)."""

_SLOT_BYTES: Final = 180
"""What one entry costs beyond its strings (measured with tracemalloc): the dict's slot
(amortised over the table's growth), the entry tuple and the Address or rejection."""


class TopicCache:
    """A bounded memo of :func:`parse_topic`; topics repeat for every message of a device.

    Bounded by entries (``limit``) and by bytes (``max_bytes``, the topics and what they parse
    to, as :func:`sys.getsizeof` counts them): made-up topics cannot grow it past either, and
    the oldest entries go first (a real device's topic re-enters on its next message).
    A rejection is kept as its two short strings (reason, detail), never the exception with
    its traceback (which held about 2.9 KB per topic); a topic longer than any the contract
    allows (:data:`MAX_TOPIC_CHARS`) is rejected without being kept.
    """

    __slots__ = ("_bytes", "_entries", "_limit", "_max_bytes")

    def __init__(self, *, limit: int = 200_000, max_bytes: int = 32 * 1024 * 1024) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self._limit = limit
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: dict[str, tuple[Address | tuple[str, str], int]] = {}
        """topic -> (its Address or rejection (reason, detail), the bytes it is counted as)"""

    @property
    def bytes(self) -> int:
        """The bytes the entries are counted as (topics, addresses, rejections)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def parse(self, topic: str) -> Address | TopicError:
        """:func:`parse_topic`'s answer; a rejection is returned as a :class:`TopicError`
        (fresh, never raised: it carries no traceback)."""
        hit = self._entries.get(topic)
        if hit is not None:
            found = hit[0]
            return found if isinstance(found, Address) else TopicError(*found)
        result: Address | tuple[str, str]
        size = _SLOT_BYTES + sys.getsizeof(topic)
        try:
            result = parse_topic(topic)
            size += (sys.getsizeof(result.site) + sys.getsizeof(result.bed)
                     + sys.getsizeof(result.device))
        except TopicError as exc:
            result = (exc.reason, exc.detail)
            size += sys.getsizeof(exc.detail)
        if len(topic) <= MAX_TOPIC_CHARS:
            self._keep(topic, result, size)
        return result if isinstance(result, Address) else TopicError(*result)

    def _keep(self, topic: str, result: Address | tuple[str, str], size: int) -> None:
        entries = self._entries
        while entries and (len(entries) >= self._limit
                           or self._bytes + size > self._max_bytes):
            # Evict the oldest entry (dicts keep insertion order): hostile traffic with endless
            # fresh topics cannot grow memory, and real devices re-enter on their next message.
            self._bytes -= entries.pop(next(iter(entries)))[1]
        if size <= self._max_bytes:
            entries[topic] = (result, size)
            self._bytes += size


URGENT_KINDS: Final = frozenset({Kind.BUTTON, Kind.FALL})
"""The kinds whose events may open a critical alert at once: the emergency button and the fall
sensor. The one urgency rule of the project: the gateway's inbox puts their events in the
urgent lane, replay ends a batch at them, and the immediate rules (:mod:`alerts.rules`) are
what they reach first."""


def is_urgent(topic: str | bytes) -> bool:
    """Whether a message on ``topic`` may open a critical alert at once (an emergency button
    or fall sensor event), so it is looked at ahead of the telemetry queued before it.

    >>> is_urgent("homecare/v1/site-01/bed-0001/button/btn-1/event")
    True
    >>> is_urgent("homecare/v1/site-01/bed-0001/button/btn-1/status")
    False
    """
    if isinstance(topic, bytes):
        return False  # not UTF-8: not a device topic, the codec rejects it
    if not topic.endswith("/event"):
        return False  # the cheap test first: nearly all traffic is telemetry and status
    parts = topic.split("/")  # homecare/v1/{site}/{bed}/{kind}/{device}/{channel}
    return len(parts) == 7 and parts[4] in URGENT_KINDS
