"""The simulator's MQTT 3.1.1 packets and broker URLs (no network)."""

from __future__ import annotations

import struct

import pytest

from devices.broker import BrokerUrl
from devices.mqttwire import V311, Will, connect_packet, publish_packet


def _remaining_length(packet: bytes) -> tuple[int, int]:
    value, shift, i = 0, 0, 1
    while True:
        byte = packet[i]
        value |= (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            return value, i


def test_connect_packet_carries_client_id_will_and_credentials() -> None:
    packet = connect_packet(client_id="sim-site-01-ir-0007", version=V311, keepalive=60,
                            clean_start=True,
                            will=Will("homecare/v1/s/b/infrared/ir-0007/status", b'{"x":1}'),
                            username="dev", password="s3cret")
    assert packet[0] == 0x10
    length, start = _remaining_length(packet)
    assert len(packet) == start + length
    body = packet[start:]
    assert body[:7] == b"\x00\x04MQTT\x04"
    flags = body[7]
    assert flags & 0x80
    assert flags & 0x40
    assert flags & 0x20  # will retained
    assert (flags >> 3) & 0x03 == 1  # will QoS 1
    assert flags & 0x04
    assert flags & 0x02
    assert struct.unpack("!H", body[8:10]) == (60,)
    assert b"sim-site-01-ir-0007" in body
    assert body.endswith(b"\x00\x03dev\x00\x06s3cret")


def test_publish_packet_encodes_long_payloads_and_packet_ids() -> None:
    payload = b"x" * 70_000  # remaining length needs three bytes
    packet = publish_packet(b"a/b", payload, qos=1, retain=True, packet_id=513)
    assert packet[0] == 0x30 | 0x02 | 0x01
    length, start = _remaining_length(packet)
    assert start == 4
    assert length == 2 + 3 + 2 + len(payload)
    assert packet[start:start + 5] == b"\x00\x03a/b"
    assert struct.unpack("!H", packet[start + 5:start + 7]) == (513,)
    assert packet.endswith(payload)


def test_qos0_publish_has_no_packet_id() -> None:
    packet = publish_packet(b"t", b"p", qos=0, retain=False)
    assert packet == b"\x30\x04\x00\x01tp"


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://127.0.0.1", BrokerUrl("127.0.0.1", 1883)),
    ("mqtt://broker:1884", BrokerUrl("broker", 1884)),
    ("mqtts://broker", BrokerUrl("broker", 8883, tls=True)),
    ("mqtt://us%40er:p%3Ass@h:1", BrokerUrl("h", 1, username="us@er", password="p:ss")),
])
def test_broker_url_parsing(url: str, expected: BrokerUrl) -> None:
    assert BrokerUrl.parse(url) == expected


@pytest.mark.parametrize("url", ["http://h", "mqtt://", "mqtt://h:notaport", "h:1883"])
def test_bad_broker_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError, match=r"scheme|host|port"):
        BrokerUrl.parse(url)


def test_tls_url_gives_a_verifying_context() -> None:
    context = BrokerUrl.parse("mqtts://h").ssl_context()
    assert context is not None
    assert context.check_hostname
    assert BrokerUrl.parse("mqtt://h").ssl_context() is None
