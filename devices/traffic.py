"""Recorded traffic: one received message per JSONL line (DESIGN.md, "Recorded traffic").

``{"t": <receipt time, epoch ms>, "topic": "...", "payload": "<raw payload text>"}``, with
``"payload_b64"`` instead of ``"payload"`` for bytes that are not UTF-8, and ``"retain": true``
for a message the broker delivered from its retained store. Simulators write it
(:func:`encode_line`); ``homecare replay`` reads it (:func:`decode_line`), and so does any
capture made by a tool nobody on the team wrote. Lines are in receipt order.

>>> line = encode_line(1000, "homecare/v1/s/b/button/btn-1/event", b"\\xff")
>>> line
b'{"t":1000,"topic":"homecare/v1/s/b/button/btn-1/event","payload_b64":"/w=="}\\n'
>>> decode_line(line)
Received(t=1000, topic='homecare/v1/s/b/button/btn-1/event', payload=b'\\xff', retain=False)
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

import msgspec

_encoder = msgspec.json.Encoder()


class TrafficLine(msgspec.Struct, frozen=True):
    """One line as written; exactly one of ``payload`` and ``payload_b64`` is set."""

    t: int
    topic: str
    payload: str | None = None
    payload_b64: str | None = None
    retain: bool = False
    """Delivered by the broker from its retained store: an event so marked is stored state,
    never a new call (as in the gateway)."""


class Received(NamedTuple):
    """A line read back: the message as the gateway received it."""

    t: int
    topic: str
    payload: bytes
    retain: bool


_decode = msgspec.json.Decoder(TrafficLine).decode


def encode_line(t: int, topic: str, payload: bytes, *, retain: bool = False) -> bytes:
    """The JSONL line (with its newline) for one received message."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        body = b'"payload_b64":' + _encoder.encode(base64.b64encode(payload).decode("ascii"))
    else:
        body = b'"payload":' + _encoder.encode(text)
    if retain:
        body += b',"retain":true'
    return b'{"t":%d,"topic":%s,%s}\n' % (t, _encoder.encode(topic), body)


def decode_line(line: bytes) -> Received:
    """The message on one line. Raises :class:`ValueError` (a ``msgspec`` or ``binascii``
    error among them) for a line that is not a traffic record; :func:`unreadable_reason` says
    why in words."""
    record = _decode(line)
    if record.payload is not None:
        payload = record.payload.encode("utf-8")
    elif record.payload_b64 is not None:
        payload = base64.b64decode(record.payload_b64, validate=True)
    else:
        raise ValueError("no payload or payload_b64")
    return Received(record.t, record.topic, payload, record.retain)


def unreadable_reason(exc: Exception) -> str:
    """Why a traffic line could not be read, in words that are the same for every such line
    (so lines can be counted per reason)."""
    if isinstance(exc, msgspec.ValidationError):
        message = str(exc)
        if message.endswith("at `$.t`"):
            return "t is not an integer epoch ms"
        return f"not a traffic record ({message})"
    if isinstance(exc, msgspec.DecodeError):
        return "not JSON"
    if isinstance(exc, binascii.Error):
        return "payload_b64 is not base64"
    if isinstance(exc, UnicodeError):
        return "payload is not text"
    return str(exc)
