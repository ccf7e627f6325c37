"""From the socket to a committed, acknowledged batch.

One message's way: :mod:`~gateway.ingest.connection` reads it off the MQTT socket as a
:class:`~gateway.ingest.message.RawMessage` into the :mod:`~gateway.ingest.inbox` (an
emergency call also into the urgent lane); the :mod:`~gateway.ingest.pipeline` decodes it
(:mod:`devices.codec`), drops duplicates (:mod:`~gateway.ingest.dedup`), formats its points and
hands it to the stages; the :mod:`~gateway.ingest.checkpoint` makes the batch durable and only
then acknowledges it.
"""

from gateway.ingest.checkpoint import Checkpoint, commit
from gateway.ingest.connection import MqttSource
from gateway.ingest.dedup import Deduplicator, Verdict
from gateway.ingest.inbox import Inbox
from gateway.ingest.message import RawMessage
from gateway.ingest.pipeline import Batch, Pipeline, Stage, device_budget

__all__ = [
    "Batch",
    "Checkpoint",
    "Deduplicator",
    "Inbox",
    "MqttSource",
    "Pipeline",
    "RawMessage",
    "Stage",
    "Verdict",
    "commit",
    "device_budget",
]
