"""Turn ``(topic, bytes)`` into a typed :class:`Message`, or a :class:`Rejected` with a reason.

Bad input is a value, not an exception: nothing a device (or an attacker) can publish makes
:meth:`Codec.decode` raise. Rejections carry a short ``reason`` code, stable enough to label a
metric, and a human-readable ``detail``.

>>> codec = Codec()
>>> m = codec.decode("homecare/v1/site-01/bed-0007/button/btn-0007/event",
...                  b'{"ts":1763884800000,"seq":41,"event":"press"}')
>>> m.address.bed, m.payload.event
('bed-0007', 'press')
>>> codec.decode("homecare/v1/site-01/bed-0007/button/btn-0007/event", b'{"ts":1}').reason
'invalid_payload'
>>> codec.decode("homecare/v1/site-01/bed-0007/fall/fs-0007/status",
...              b'{"ts":1,"seq":1,"state":"online","fw":"2.1\\xff"}').reason
'invalid_utf8'
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Final

import msgspec
from msgspec import Struct

from devices.errors import TopicError
from devices.schemas import (
    SAMPLE_FIELDS,
    AudioSample,
    AudioWire,
    BadgeEvent,
    ButtonEvent,
    FallEvent,
    InfraredSample,
    InfraredWire,
    Payload,
    RecordingEvent,
    Sample,
    Status,
    Telemetry,
    VitalsSample,
    VitalsWire,
    person_id,
    person_id_problem,
)
from devices.topics import Address, Channel, Kind, TopicCache

MAX_PAYLOAD_BYTES: Final = 64 * 1024
"""Payloads larger than this are rejected (``oversize``) without being parsed."""


class Message(Struct, frozen=True, gc=False):
    """A decoded device message: where it came from and what it says."""

    address: Address
    payload: Payload

    @property
    def ts(self) -> int:
        return self.payload.ts

    @property
    def seq(self) -> int:
        return self.payload.seq


class Rejected(Struct, frozen=True, gc=False):
    """Why a message is not part of the contract. ``reason`` is one of :data:`REASONS`."""

    reason: str
    detail: str


REASONS: Final = (
    "oversize",
    "bad_topic",
    "unknown_version",
    "unknown_kind",
    "unknown_channel",
    "malformed_json",
    "invalid_payload",
    "empty_sample",
    "invalid_utf8",
    "bom",
    "undecodable",
)

_BOM: Final = b"\xef\xbb\xbf"

_WIRE_BY_SAMPLE: Final[dict[type[Struct], type[Struct]]] = {
    InfraredSample: InfraredWire,
    AudioSample: AudioWire,
    VitalsSample: VitalsWire,
}

_Normaliser = Callable[[Any], Payload | Rejected]


def _telemetry(sample_type: type[Sample]) -> _Normaliser:
    fields = SAMPLE_FIELDS[sample_type]
    measured = operator.attrgetter(*fields)
    empty = (None,) * len(fields)

    def normalise(wire: Any) -> Payload | Rejected:
        if wire.samples is not None:
            for sample in wire.samples:
                if measured(sample) == empty:
                    return Rejected("empty_sample", f"sample at t={sample.t} has no fields")
            return Telemetry(wire.ts, wire.seq, tuple(wire.samples))
        values = measured(wire)
        if values == empty:
            return Rejected("empty_sample", "telemetry has neither samples nor fields")
        return Telemetry(wire.ts, wire.seq, (sample_type(wire.ts, *values),))

    return normalise


def _identity(payload: Any) -> Payload | Rejected:
    return payload  # type: ignore[no-any-return]


def _badge(payload: BadgeEvent) -> Payload | Rejected:
    """The caregiver and visit ids in their one form (:func:`devices.schemas.person_id`: width,
    NFC) and checked against the one rule of every place that takes them
    (:func:`devices.schemas.person_id_problem`): an event the plans, the API and the app
    could not name is dead-lettered with its reason rather than recorded."""
    caregiver, visit = person_id(payload.caregiver), person_id(payload.visit)
    for name, value in (("caregiver", caregiver), ("visit", visit)):
        if (problem := person_id_problem(value)) is not None:
            return Rejected("invalid_payload", f"{name}: {problem}")
    if caregiver != payload.caregiver or visit != payload.visit:
        return msgspec.structs.replace(payload, caregiver=caregiver, visit=visit)
    return payload


_TYPES: Final[dict[tuple[Kind, Channel], tuple[type[Struct], _Normaliser]]] = {
    (Kind.BUTTON, Channel.EVENT): (ButtonEvent, _identity),
    (Kind.INFRARED, Channel.TELEMETRY): (InfraredWire, _telemetry(InfraredSample)),
    (Kind.INFRARED, Channel.EVENT): (RecordingEvent, _identity),
    (Kind.AUDIO, Channel.TELEMETRY): (AudioWire, _telemetry(AudioSample)),
    (Kind.AUDIO, Channel.EVENT): (RecordingEvent, _identity),
    (Kind.FALL, Channel.TELEMETRY): (VitalsWire, _telemetry(VitalsSample)),
    (Kind.FALL, Channel.EVENT): (FallEvent, _identity),
    (Kind.BADGE, Channel.EVENT): (BadgeEvent, _badge),
    **{(kind, Channel.STATUS): (Status, _identity) for kind in Kind},
}

PAYLOAD_TYPES: Final[dict[tuple[Kind, Channel], type[Struct]]] = {
    key: Telemetry if wire in _WIRE_BY_SAMPLE.values() else wire
    for key, (wire, _) in _TYPES.items()
}
"""The payload type each kind/channel pair decodes to."""


class Codec:
    """Decoder and encoder for the device contract. Reusable and cheap per message."""

    __slots__ = ("_decoders", "_encoder", "_max_payload_bytes", "_topics")

    def __init__(
        self, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES, topic_cache_size: int = 200_000
    ) -> None:
        if max_payload_bytes < 1:
            raise ValueError("max_payload_bytes must be positive")
        self._max_payload_bytes = max_payload_bytes
        self._topics = TopicCache(limit=topic_cache_size)
        self._decoders = {
            key: (msgspec.json.Decoder(wire), normalise)
            for key, (wire, normalise) in _TYPES.items()
        }
        self._encoder = msgspec.json.Encoder()

    def parse_topic(self, topic: str | bytes) -> Address | Rejected:
        if isinstance(topic, bytes):
            try:
                topic = topic.decode()
            except UnicodeDecodeError:
                return Rejected("bad_topic", "topic is not UTF-8")
        address = self._topics.parse(topic)
        if isinstance(address, TopicError):
            return Rejected(address.reason, address.detail)
        return address

    def decode(
        self, topic: str | bytes, payload: bytes | bytearray | memoryview
    ) -> Message | Rejected:
        """Decode one message. Never raises for any input.

        Payloads must be UTF-8 throughout (RFC 8259), also in values and keys the decoder
        would skip: invalid UTF-8 is ``invalid_utf8``, a leading byte-order mark ``bom``. An
        exception from anywhere inside is a bug, and still a value: ``undecodable``.
        """
        try:
            return self._decode(topic, payload)
        except Exception as exc:  # the last resort of "never raises"
            return Rejected("undecodable", f"{type(exc).__name__}: {exc}"[:500])

    def _decode(
        self, topic: str | bytes, payload: bytes | bytearray | memoryview
    ) -> Message | Rejected:
        size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        if size > self._max_payload_bytes:
            return Rejected(
                "oversize", f"payload of {size} bytes exceeds {self._max_payload_bytes}"
            )
        address = self.parse_topic(topic)
        if isinstance(address, Rejected):
            return address
        if isinstance(payload, memoryview):
            payload = payload.tobytes()
        if not payload.isascii():  # the common case costs one scan in C, no copy
            text = _utf8_problem(payload)
            if text is not None:
                return text
        decoder, normalise = self._decoders[(address.kind, address.channel)]
        try:
            wire = decoder.decode(payload)
        except msgspec.ValidationError as exc:
            return Rejected("invalid_payload", str(exc)[:500])
        except msgspec.DecodeError as exc:
            return Rejected("malformed_json", str(exc)[:500])
        body = normalise(wire)
        if isinstance(body, Rejected):
            return body
        return Message(address, body)

    def encode_payload(self, payload: Payload) -> bytes:
        """The JSON a device would publish for ``payload``.

        Telemetry with one sample taken at ``ts`` uses the single-sample form; anything else
        uses the batch form. Absent optional fields are omitted.
        """
        if isinstance(payload, Telemetry):
            if not payload.samples:
                raise ValueError("telemetry needs at least one sample")
            first = payload.samples[0]
            wire_type = _WIRE_BY_SAMPLE[type(first)]
            if len(payload.samples) == 1 and first.t == payload.ts:
                fields = {name: getattr(first, name) for name in SAMPLE_FIELDS[type(first)]}
                return self._encoder.encode(wire_type(ts=payload.ts, seq=payload.seq, **fields))
            return self._encoder.encode(
                wire_type(ts=payload.ts, seq=payload.seq, samples=list(payload.samples))
            )
        return self._encoder.encode(payload)

    def encode(self, message: Message) -> tuple[str, bytes]:
        """The ``(topic, payload)`` a device would publish for ``message``."""
        return message.address.topic, self.encode_payload(message.payload)


def _utf8_problem(payload: bytes | bytearray) -> Rejected | None:
    """Why ``payload`` is not UTF-8 JSON text, or None. The JSON decoder alone would let
    invalid bytes through in skipped values and turn them into exceptions in known ones."""
    if payload.startswith(_BOM):
        return Rejected("bom", "payload starts with a UTF-8 byte-order mark")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected("invalid_utf8", f"invalid UTF-8 at byte {exc.start}: {exc.reason}")
    return None


_default = Codec()


def decode(topic: str | bytes, payload: bytes | bytearray | memoryview) -> Message | Rejected:
    """Decode with a shared default :class:`Codec`."""
    return _default.decode(topic, payload)


def encode(message: Message) -> tuple[str, bytes]:
    """Encode with a shared default :class:`Codec`."""
    return _default.encode(message)
