"""The MQTT wire subset: packets split correctly however the stream is chunked."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import mqttwire as wire


def _publish(topic: str, payload: bytes, qos: int, mid: int, version: int,
             props: bytes = b"") -> bytes:
    body = struct.pack("!H", len(topic.encode())) + topic.encode()
    if qos:
        body += struct.pack("!H", mid)
    if version == wire.V5:
        body += wire.encode_varint(len(props)) + props
    body += payload
    return bytes(((wire.PUBLISH << 4) | (qos << 1),)) + wire.encode_varint(len(body)) + body


@pytest.mark.parametrize("value", [0, 127, 128, 16_383, 16_384, 2_097_151, 268_435_455])
def test_varint_round_trip(value: int) -> None:
    encoded = wire.encode_varint(value)
    assert wire._read_varint(encoded, 0) == (value, len(encoded))


@settings(max_examples=100, deadline=None)
@given(
    version=st.sampled_from([wire.V311, wire.V5]),
    messages=st.lists(st.tuples(st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
                                st.binary(max_size=3000), st.sampled_from([0, 1]),
                                st.integers(min_value=1, max_value=65535)),
                      min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=1, max_value=5000), max_size=20),
)
def test_publishes_survive_any_chunking(version: int, messages: list[tuple[str, bytes, int, int]],
                                        cuts: list[int]) -> None:
    stream = b"".join(_publish(t, p, q, m, version, b"\x01\x01" if version == wire.V5 else b"")
                      for t, p, q, m in messages) + wire.PINGREQ_PACKET.replace(b"\xc0", b"\xd0")
    reader = wire.PacketReader(version)
    got: list[object] = []
    position = 0
    for cut in sorted(set(cuts)):
        if cut >= len(stream):
            break
        got.extend(reader.feed(stream[position:cut]))
        position = cut
    got.extend(reader.feed(stream[position:]))
    publishes = [p for p in got if isinstance(p, wire.Publish)]
    assert [(p.topic, p.payload, p.qos, p.mid if p.qos else 0) for p in publishes] == [
        (t, pl, q, m if q else 0) for t, pl, q, m in messages]
    assert got[-1] == (wire.PINGRESP, 0, b"")


def test_connect_packet_asks_for_a_persistent_session_with_expiry() -> None:
    packet = wire.connect_packet(client_id="gw", version=wire.V5, keepalive=30,
                                 clean_start=False, username="u", password="p",
                                 session_expiry=3600)
    assert packet[0] == 0x10
    flags = packet[2 + 2 + 4 + 1]
    assert flags & 0x02 == 0, "clean start off"
    assert flags & 0xC0 == 0xC0, "username and password present"
    assert b"\x11" + struct.pack("!I", 3600) in packet
    assert b"\x21" + struct.pack("!H", 65535) in packet


@pytest.mark.parametrize(("version", "options"), [(wire.V5, 0x11), (wire.V311, 0x01)])
def test_subscribe_asks_for_retained_messages_only_on_a_new_subscription(
        version: int, options: int) -> None:
    """A restarted gateway's persistent session must not get retained events again (F2)."""
    packet = wire.subscribe_packet(1, "homecare/v1/#", 1, version)
    topic = b"\x00\x0dhomecare/v1/#"
    assert packet.endswith(topic + bytes((options,)))
    assert packet[0] == 0x82
    assert packet[1] == len(packet) - 2


def test_retain_flag_of_a_publish_is_read() -> None:
    packet = bytearray(_publish("homecare/v1/s/b/button/d/event", b"{}", 1, 7, wire.V5))
    packet[0] |= 0x01
    (retained,) = wire.PacketReader(wire.V5).feed(bytes(packet))
    assert isinstance(retained, wire.Publish)
    assert retained.retain
    (live,) = wire.PacketReader(wire.V5).feed(_publish("t", b"{}", 1, 7, wire.V5))
    assert isinstance(live, wire.Publish)
    assert not live.retain


def test_pubacks_are_batched_in_order() -> None:
    assert wire.puback_packets([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


def test_non_utf8_topic_is_passed_on_as_bytes_for_the_codec_to_reject() -> None:
    body = b"\x00\x02\xff\xfe" + b"\x00\x01" + b"x"
    packet = bytes((0x32,)) + wire.encode_varint(len(body)) + body
    (publish,) = wire.PacketReader(wire.V311).feed(packet)
    assert isinstance(publish, wire.Publish)
    assert publish.topic == b"\xff\xfe"
