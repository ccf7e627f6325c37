"""Upstream: alert changes and service records to the city platform and to families.

:mod:`~gateway.upstream.pump` queues what the durable logs hold into the
:mod:`~gateway.upstream.outbox`; :mod:`~gateway.upstream.delivery` sends it, each destination
in order, signed (:mod:`~gateway.upstream.signing`), at least once.
"""

from gateway.upstream.delivery import Upstream
from gateway.upstream.outbox import Entry, Outbox
from gateway.upstream.pump import pump
from gateway.upstream.signing import (
    PLATFORM,
    family_destination,
    family_secret,
    signature,
    verify,
)

__all__ = [
    "PLATFORM",
    "Entry",
    "Outbox",
    "Upstream",
    "family_destination",
    "family_secret",
    "pump",
    "signature",
    "verify",
]
