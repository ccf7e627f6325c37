"""Device time against receipt time: when a device's clock is trusted, and in what order a
device's messages count. Every part of the gateway that meets a device time uses these rules:
the line encoder (storage), the live state behind the bed page, and the detectors.

**Storage** (:class:`ClockWindow`). Every timestamp, a message's ``ts`` and each batch sample's
``t``, is checked against the receipt time. Within the window, ``behind_ms`` before receipt
(the ``clock_window_s`` setting: 7 days by default, as long as the broker keeps messages
queued for an absent gateway, so a backlog is stored at the time it was measured) to
:data:`AHEAD_MS` after (no message comes from the future; that covers drift of clocks without
time synchronisation), it is stored as sent. Outside it (a clock counting seconds or
microseconds, one reset to 2000-01-01, a firmware writing garbage), the message is stored at
the time it was received, its device time kept in a ``device_ts`` field, and its device is
flagged (:attr:`~alerts.livestate.DeviceState.clock_wrong`, the bed page, metrics). A batch
keeps its samples distinct and in their order: each sample is placed at the message's time
(its ``ts`` if trusted, else the receipt time) minus the sample's offset from ``ts`` when
every offset is sane (0 to :data:`MAX_BATCH_SPAN_MS`), else one millisecond apart in batch
order; and a device's retimed points always come after its previous retimed ones, so no two
samples of one series share a timestamp, whatever the clock says. Nothing is dropped: the
database is never handed a time it would discard (VictoriaMetrics ignores points outside its
retention, 1 month by default, and more than 2 days ahead, answering 204; InfluxDB refuses
times after 2262 and keeps seconds as 1970).

Retimed points are not idempotent: a message the broker redelivers after a gateway crash is
received again later, so it can be stored twice (with the same ``device_ts``). Points within
the window are stored once, as before.

**Order of a device's state** (:func:`sent_ms`, :func:`announced_offline`). A last will
(``state: offline``) carries the time its device connected, always older than what the device
said since, so it cannot be ordered by device time: it takes effect when it is received. Any
other message is a sign of life at the time it was sent, its device time when the clock agrees
with receipt time within :data:`CLOCK_TRUST_MS` (and never later than its receipt), else its
receipt time. The device announced itself offline while its latest offline status was received
after its latest sign of life; a message held up in the network and delivered after the will
does not cancel it. The two times are milliseconds, and a will can be received in the very
millisecond the device's last message was sent (it was sent on the connection the broker has
just found dead: the device is offline), as can a reconnected device's first status in the
millisecond its old connection's will is received (it is online): neither ``>`` nor ``>=``
decides that tie, the order of arrival does. So whoever keeps the two times keeps beside them
which of the two messages that set them arrived last (``offline_later``: set when an offline
status sets the offline time, cleared when a sign of life sets the time of life, a sign of life
sent in the millisecond of the latest one included), and the tie goes to what the gateway
received later. That order is the gateway's order of intake (a device's messages come on one
subscription, in the order the broker published them), which the detector journal keeps on
replay; a detector snapshot holds it beside the times. The bed page, the API and
``device_offline`` all decide this way.

>>> window = ClockWindow(behind_ms=60_000)
>>> window.trusts(1_000, received_ms=30_000), window.trusts(1_000, received_ms=90_000)
(True, False)
>>> sent_ms(1_000, 1_500), sent_ms(1_000_000_000, 1_500)
(1000, 1500)
>>> [announced_offline(1_500, 1_500, offline_later=later) for later in (True, False)]
[True, False]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from devices.schemas import Status, Telemetry

I64 = npt.NDArray[np.int64]

DEFAULT_WINDOW_S: Final = 7 * 86_400
"""Default of the ``clock_window_s`` setting (see the module docstring)."""
AHEAD_MS: Final = 15 * 60_000
"""How far ahead of receipt time a device time is still stored as sent."""
MAX_BATCH_SPAN_MS: Final = 3_600_000
"""Sample offsets from their message's ``ts`` up to this are sane (a batch spans minutes)."""
CLOCK_TRUST_MS: Final = 15 * 60_000
"""Device time orders a device's state (and places samples in detector windows) when within
this of the receipt time: network latency, reordering, a home network that held messages for
minutes."""


@dataclass(frozen=True, slots=True)
class ClockWindow:
    """Which device times are stored as sent (see the module docstring)."""

    behind_ms: int = DEFAULT_WINDOW_S * 1000
    ahead_ms: int = AHEAD_MS

    def __post_init__(self) -> None:
        if self.behind_ms < 0 or self.ahead_ms < 0:
            raise ValueError("the clock window must not be negative")

    def trusts(self, device_ms: int, received_ms: int) -> bool:
        return received_ms - self.behind_ms <= device_ms <= received_ms + self.ahead_ms

    def trusts_message(self, payload: object, received_ms: int) -> bool:
        """Whether every timestamp of the message (``ts``, each sample's ``t``) is trusted."""
        low, high = received_ms - self.behind_ms, received_ms + self.ahead_ms
        if not low <= payload.ts <= high:  # type: ignore[attr-defined]
            return False
        if type(payload) is Telemetry:
            for sample in payload.samples:
                if not low <= sample.t <= high:
                    return False
        return True

    def times(self, ts: int, sample_ts: Sequence[int], received_ms: int) -> list[int]:
        """Where the samples of a message with an untrusted timestamp are stored (before the
        per-series ordering the encoder adds)."""
        base = ts if self.trusts(ts, received_ms) else received_ms
        offsets = [ts - t for t in sample_ts]
        if all(0 <= o <= MAX_BATCH_SPAN_MS for o in offsets) and all(
                a > b for a, b in itertools.pairwise(offsets)):
            return [base - o for o in offsets]
        n = len(sample_ts)
        return [base - (n - 1 - i) for i in range(n)]


UNIT_TOLERANCE_MS: Final = 86_400_000
"""A device time that reads as receipt time within this once scaled by 1000 is a clock in the
wrong unit (:func:`wrong_unit`): nothing else lands there by chance."""


def wrong_unit(device_ms: int, received_ms: int) -> str | None:
    """``"s"`` for a time in seconds, ``"us"`` for one in microseconds, else None.

    >>> wrong_unit(1_796_000_000, 1_796_000_000_500), wrong_unit(1_796_000_000_000_000,
    ...                                                         1_796_000_000_500)
    ('s', 'us')
    """
    if abs(device_ms * 1000 - received_ms) <= UNIT_TOLERANCE_MS:
        return "s"
    if abs(device_ms // 1000 - received_ms) <= UNIT_TOLERANCE_MS:
        return "us"
    return None


def is_offline(payload: object) -> bool:
    """An offline status: a last will or a device's goodbye, effective at receipt."""
    return type(payload) is Status and payload.state == "offline"


def sent_ms(ts: int, received_ms: int) -> int:
    """When a message counts as said, for the order of its device's state."""
    if abs(ts - received_ms) <= CLOCK_TRUST_MS:
        return min(ts, received_ms)
    return received_ms


def sent_ms_array(ts: I64, received_ms: I64) -> I64:
    """:func:`sent_ms` of whole columns."""
    sent: I64 = np.where(np.abs(ts - received_ms) <= CLOCK_TRUST_MS,
                         np.minimum(ts, received_ms), received_ms)
    return sent


def announced_offline(offline_at: int | None, heard_at: int | None, *,
                      offline_later: bool) -> bool:
    """Whether the latest offline status (received at ``offline_at``) is newer than the
    device's latest sign of life (said at ``heard_at``, see :func:`sent_ms`); in the same
    millisecond, whether it arrived later (``offline_later``, see the module docstring)."""
    if offline_at is None:
        return False
    return heard_at is None or offline_at > heard_at or (
        offline_at == heard_at and offline_later)


def announced_offline_array(offline_at: I64, heard_at: I64,
                            offline_later: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """:func:`announced_offline` of whole columns ("none yet" is a very small number, and
    ``offline_later`` is never set without an offline time)."""
    announced: npt.NDArray[np.bool_] = (offline_at > heard_at) | (
        (offline_at == heard_at) & offline_later)
    return announced


__all__ = [
    "AHEAD_MS",
    "CLOCK_TRUST_MS",
    "DEFAULT_WINDOW_S",
    "MAX_BATCH_SPAN_MS",
    "UNIT_TOLERANCE_MS",
    "ClockWindow",
    "announced_offline",
    "announced_offline_array",
    "is_offline",
    "sent_ms",
    "sent_ms_array",
    "wrong_unit",
]
