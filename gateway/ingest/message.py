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
    """Which connection delivered it (unique in the process across both MQTT sessions);
    acknowledgements never cross connections."""
    retain: bool = False
    """Sent by the broker from its retained store (on a new subscription), not published now:
    stored state, never a new call (:class:`~gateway.ingest.pipeline.Pipeline`)."""
    urgent_session: bool = False
    """Delivered by the urgent session (:mod:`gateway.ingest.urgentsession`): a second copy of
    an emergency button or fall event the main session delivers too, taken only to reach the
    alert rules early; the main session's copy is the one stored."""
