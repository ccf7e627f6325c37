"""UNSUBSCRIBE and UNSUBACK in the packet codec, both protocol versions."""

from __future__ import annotations

import pytest

from devices import mqttwire as wire
from devices.errors import ProtocolError


def test_unsubscribe_lists_every_filter_after_the_packet_id() -> None:
    packet = wire.unsubscribe_packet(7, ["homecare/v1/site-03/#", "a/+"], wire.V311)
    assert packet[0] == 0xA2, "UNSUBSCRIBE with its reserved flags 0010"
    body = packet[2:]
    assert body == b"\x00\x07\x00\x15homecare/v1/site-03/#\x00\x03a/+"
    v5 = wire.unsubscribe_packet(7, ["a/+"], wire.V5)
    assert v5[2:] == b"\x00\x07\x00\x00\x03a/+", "MQTT 5: an empty property list"


def test_unsuback_gives_the_packet_id_and_the_reason_codes() -> None:
    assert wire.parse_unsuback(b"\x00\x07", wire.V311) == (7, [])
    assert wire.parse_unsuback(b"\x00\x07\x00\x00\x11", wire.V5) == (7, [0, 0x11])
    assert wire.parse_unsuback(b"\x00\x07\x02\x1f\x00\x00", wire.V5) == (7, [0])
    with pytest.raises(ProtocolError):
        wire.parse_unsuback(b"\x00", wire.V5)


def test_the_reader_hands_an_unsuback_over_as_a_packet() -> None:
    reader = wire.PacketReader(wire.V5)
    assert reader.feed(b"\xb0\x04\x00\x07\x00\x00") == [(wire.UNSUBACK, 0, b"\x00\x07\x00\x00")]
