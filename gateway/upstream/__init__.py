"""Upstream: alert changes and service records to the city platform, the care institution and
families.

:mod:`~gateway.upstream.pump` queues what the durable logs hold into the
:mod:`~gateway.upstream.outbox`, each destination its share (:mod:`~gateway.upstream.shares`);
:mod:`~gateway.upstream.delivery` sends it, each destination in order by a task of its own,
signed (:mod:`~gateway.upstream.signing`), at least once.
"""

from gateway.upstream.delivery import Upstream
from gateway.upstream.outbox import Entry, Outbox, Report, SetAside
from gateway.upstream.pump import pump
from gateway.upstream.shares import FAMILY_ACTIONS, Share, Shares
from gateway.upstream.signing import (
    INSTITUTION,
    PLATFORM,
    family_destination,
    family_secret,
    institution_secret,
    signature,
    verify,
)

__all__ = [
    "FAMILY_ACTIONS",
    "INSTITUTION",
    "PLATFORM",
    "Entry",
    "Outbox",
    "Report",
    "SetAside",
    "Share",
    "Shares",
    "Upstream",
    "family_destination",
    "family_secret",
    "institution_secret",
    "pump",
    "signature",
    "verify",
]
