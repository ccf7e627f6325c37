"""The MQTT topic scheme of the device contract.

``homecare/v1/{site}/{bed}/{kind}/{device}/{channel}``: ``site``, ``bed`` and ``device`` match
``[A-Za-z0-9_-]{1,64}``, ``kind`` is one of :data:`KINDS` and ``channel`` one of
:data:`CHANNELS`. The ``v1`` segment is the contract version: a change to the contract gets a
new version, never a silent change.
"""

from __future__ import annotations

import re
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


class TopicCache:
    """A bounded memo of :func:`parse_topic`; topics repeat for every message of a device."""

    __slots__ = ("_entries", "_limit")

    def __init__(self, *, limit: int = 200_000) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self._limit = limit
        self._entries: dict[str, Address | TopicError] = {}

    def parse(self, topic: str) -> Address | TopicError:
        hit = self._entries.get(topic)
        if hit is not None:
            return hit
        result: Address | TopicError
        try:
            result = parse_topic(topic)
        except TopicError as exc:
            result = exc
        if len(self._entries) >= self._limit:
            # Evict the oldest entry (dicts keep insertion order): hostile traffic with endless
            # fresh topics cannot grow memory, and real devices re-enter on their next message.
            del self._entries[next(iter(self._entries))]
        self._entries[topic] = result
        return result


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
