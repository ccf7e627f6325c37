"""The subset of the MQTT 3.1.1 / 5.0 wire format that devices and the gateway need. Pure, no I/O.

The one packet codec of the project: the gateway's subscriber and the simulated devices both
build and parse their packets here. Packets built: CONNECT (with a last will and credentials),
SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PUBACK, PINGREQ, DISCONNECT. Packets parsed: CONNACK, SUBACK,
UNSUBACK, PUBLISH, PINGRESP, PUBACK, DISCONNECT. :class:`PacketReader` splits a byte stream into
packets, many per ``feed`` call, without copying more than each payload.

>>> publish_packet("a/b", b"hi", qos=0, retain=False)
b'0\\x07\\x00\\x03a/bhi'
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from devices.errors import ProtocolError

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

V311: Final = 4
V5: Final = 5

PINGREQ_PACKET: Final = b"\xc0\x00"
DISCONNECT_PACKET: Final = b"\xe0\x00"

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


CONNACK_REFUSALS: Final = {1: "unacceptable protocol version", 2: "client id rejected",
                            3: "server unavailable", 4: "bad user name or password",
                            5: "not authorised"}
"""MQTT 3.1.1 CONNACK return codes other than 0 (accepted), in words."""


@dataclass(frozen=True, slots=True)
class Will:
    """A device's last will: published by the broker when the device vanishes."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def encode_varint(value: int) -> bytes:
    if not 0 <= value <= 268_435_455:
        raise ValueError("remaining length out of range")
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > 65535:
        raise ValueError("string too long for MQTT")
    return _U16.pack(len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


def connect_packet(*, client_id: str, version: int, keepalive: int, clean_start: bool,
                   username: str | None = None, password: str | None = None,
                   will: Will | None = None, session_expiry: int = 0,
                   receive_maximum: int = 65535) -> bytes:
    flags = 0x02 if clean_start else 0
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        if version == V5:
            payload += b"\x00"  # no will properties
        payload += _string(will.topic) + _string(will.payload)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = _string("MQTT") + bytes((version, flags)) + _U16.pack(keepalive)
    if version == V5:
        props = b"\x11" + _U32.pack(session_expiry) + b"\x21" + _U16.pack(receive_maximum)
        body += encode_varint(len(props)) + props
    if username is not None:
        payload += _string(username)
    if password is not None:
        payload += _string(password)
    return _packet(CONNECT << 4, body + payload)


RETAIN_ON_NEW_SUBSCRIPTION: Final = 0x10
"""MQTT 5 subscription option Retain Handling = 1: the broker sends retained messages only
when the subscription is new, not when a persistent session subscribes again."""


def subscribe_packet(packet_id: int, topic: str, qos: int, version: int) -> bytes:
    """SUBSCRIBE to one filter. On MQTT 5 with Retain Handling 1 (MQTT 3.1.1 has no such
    option: its broker sends the retained messages on every SUBSCRIBE, flagged retained)."""
    body = _U16.pack(packet_id)
    options = qos
    if version == V5:
        body += b"\x00"
        options |= RETAIN_ON_NEW_SUBSCRIPTION
    body += _string(topic) + bytes((options,))
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def unsubscribe_packet(packet_id: int, topics: list[str], version: int) -> bytes:
    """UNSUBSCRIBE from filters a persistent session holds (the broker keeps a session's
    subscriptions until they are unsubscribed or the session ends).

    >>> unsubscribe_packet(1, ["a/#"], V311)
    b'\\xa2\\x07\\x00\\x01\\x00\\x03a/#'
    """
    body = _U16.pack(packet_id) + (b"\x00" if version == V5 else b"")
    body += b"".join(_string(topic) for topic in topics)
    return _packet((UNSUBSCRIBE << 4) | 0x02, body)


def parse_unsuback(body: bytes, version: int) -> tuple[int, list[int]]:
    """Packet id and, on MQTT 5, a reason code per filter (0 unsubscribed, 0x11 there was no
    such subscription); MQTT 3.1.1 has no reason codes."""
    if len(body) < 2:
        raise ProtocolError("short UNSUBACK")
    packet_id = _U16.unpack_from(body, 0)[0]
    offset = 2
    if version == V5 and len(body) > 2:
        length, offset = _read_varint(body, offset)
        offset += length
    return packet_id, list(body[offset:])


def publish_packet(topic: str | bytes, payload: bytes, *, qos: int, retain: bool,
                   packet_id: int = 0, dup: bool = False) -> bytes:
    """PUBLISH (MQTT 3.1.1 layout, no properties); ``packet_id`` only with QoS 1 or 2."""
    header = (PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    variable = _string(topic) + (_U16.pack(packet_id) if qos else b"")
    return bytes((header,)) + encode_varint(len(variable) + len(payload)) + variable + payload


def puback_packets(mids: list[int]) -> bytes:
    """PUBACKs for many messages in one buffer (reason code omitted = success, valid in v5)."""
    return b"".join(b"\x40\x02" + _U16.pack(mid) for mid in mids)


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    code: int

    @property
    def ok(self) -> bool:
        return self.code == 0


def parse_connack(body: bytes) -> ConnAck:
    if len(body) < 2:
        raise ProtocolError("short CONNACK")
    return ConnAck(bool(body[0] & 1), body[1])


def parse_suback(body: bytes, version: int) -> tuple[int, list[int]]:
    if len(body) < 3:
        raise ProtocolError("short SUBACK")
    packet_id = _U16.unpack_from(body, 0)[0]
    offset = 2
    if version == V5:
        length, offset = _read_varint(body, offset)
        offset += length
    return packet_id, list(body[offset:])


def _read_varint(data: bytes | bytearray | memoryview, offset: int) -> tuple[int, int]:
    value = 0
    shift = 0
    for _ in range(4):
        if offset >= len(data):
            raise IndexError
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
    raise ProtocolError("malformed variable byte integer")


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str | bytes
    payload: bytes
    qos: int
    mid: int
    retain: bool
    dup: bool


class PacketReader:
    """Incremental packet splitter: ``feed`` bytes, get back every complete packet in them.

    PUBLISH packets come back parsed (:class:`Publish`); others as ``(type, flags, body)``.
    """

    __slots__ = ("_buffer", "version")

    def __init__(self, version: int) -> None:
        self.version = version
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Publish | tuple[int, int, bytes]]:
        buf = self._buffer
        buf += data
        packets: list[Publish | tuple[int, int, bytes]] = []
        offset = 0
        end = len(buf)
        v5 = self.version == V5
        with memoryview(buf) as view:
            while end - offset >= 2:
                try:
                    length, start = _read_varint(view, offset + 1)
                except IndexError:
                    break
                stop = start + length
                if stop > end:
                    break
                first = view[offset]
                kind = first >> 4
                if kind == PUBLISH:
                    packets.append(_publish(view, first & 0x0F, start, stop, v5))
                else:
                    packets.append((kind, first & 0x0F, bytes(view[start:stop])))
                offset = stop
        if offset:
            del buf[:offset]
        return packets


def _publish(view: memoryview, flags: int, offset: int, stop: int, v5: bool) -> Publish:
    qos = (flags >> 1) & 0x03
    topic_len = (view[offset] << 8) | view[offset + 1]
    offset += 2
    raw_topic = bytes(view[offset:offset + topic_len])
    offset += topic_len
    mid = 0
    if qos:
        mid = (view[offset] << 8) | view[offset + 1]
        offset += 2
    if v5:
        length, offset = _read_varint(view, offset)
        offset += length
    if offset > stop:
        raise ProtocolError("PUBLISH shorter than its headers")
    try:
        topic: str | bytes = raw_topic.decode()
    except UnicodeDecodeError:
        topic = raw_topic
    return Publish(topic, bytes(view[offset:stop]), qos, mid, bool(flags & 1), bool(flags & 8))
