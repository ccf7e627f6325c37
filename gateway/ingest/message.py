"""A message as the broker delivered it, before anything else looks at it."""

from __future__ import annotations

import msgspec


class RawMessage(msgspec.Struct, frozen=True, gc=False):
    """A message as received, before decoding."""

    topic: str | bytes
    payload: bytes
    mid: int
    qos: int
    received_ms: int
    connection: int = 0
    """Which connection delivered it; acknowledgements never cross connections."""
    retain: bool = False
    """Sent by the broker from its retained store (on a new subscription), not published now:
    stored state, never a new call (:class:`~gateway.ingest.pipeline.Pipeline`)."""
