"""Per-device duplicate, gap and late-arrival accounting over a bounded window of ``seq``.

A duplicate is the same device sending the same ``seq`` with byte-identical payload again
(QoS 1 redelivery, a device retransmitting). Comparing content as well as ``seq`` keeps two
things that are *not* duplicates: a last-will status whose ``seq`` was fixed at connect time,
and a device that restarted its counter. A ``seq`` far below the highest seen while the
device's clock moved on counts as a counter reset, not as lateness.

:class:`FirstCopies` is the other memory of this kind: which emergency calls the urgent stages
already took, from whichever MQTT session delivered them first (the main session and the
urgent session both deliver every button and fall event). It is separate from the
:class:`Deduplicator`, which sees the main session's copies only: what is stored, and so
stored once, is decided by the main session alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

CallKey = tuple[str, str, str, int, int]
"""``(site, bed, device, seq, payload fingerprint)``: one message, whichever session brought
it."""

FIRST_COPIES_MAX: Final = 20_000
"""Calls remembered by :class:`FirstCopies`: the second copy of a call comes within a backlog's
reading time (calls are a few a minute per site), so this covers hours of calls."""


class Verdict(Enum):
    NEW = "new"
    LATE = "late"  # below the highest seq seen, not seen before: accepted
    DUPLICATE = "duplicate"  # dropped


@dataclass(slots=True)
class _DeviceWindow:
    top_seq: int
    top_ts: int
    seen: dict[int, int]  # seq -> payload fingerprint, insertion ordered, bounded
    gaps: int = 0
    late: int = 0
    duplicates: int = 0
    resets: int = 0


@dataclass(slots=True)
class DedupStats:
    duplicates: int = 0
    late: int = 0
    gaps: int = 0  # seq numbers skipped (may still arrive late)
    resets: int = 0


MAX_DEVICES: Final = 100_000
"""Devices whose window :class:`Deduplicator` keeps (the oldest forgotten first)."""
MAX_FINGERPRINTS: Final = 1_000_000
"""Fingerprints kept over all devices (about 70 bytes each): a flood of made-up devices
sending many ``seq`` each cannot hold ``window`` of them per device (issue 17)."""


class Deduplicator:
    """Bounded memory: ``window`` fingerprints per device, ``max_devices`` devices and
    ``max_fingerprints`` fingerprints in all; past either bound the devices seen first are
    forgotten first (a forgotten device's next message is new: a redelivery of an older one
    is then taken again, which every stage takes without effect)."""

    __slots__ = ("_devices", "_fingerprints", "_max_devices", "_max_fingerprints", "_window",
                 "stats")

    def __init__(self, *, window: int = 64, max_devices: int = MAX_DEVICES,
                 max_fingerprints: int = MAX_FINGERPRINTS) -> None:
        if window < 1 or max_devices < 1 or max_fingerprints < 1:
            raise ValueError("window, max_devices and max_fingerprints must be positive")
        self._window = window
        self._max_devices = max_devices
        self._max_fingerprints = max_fingerprints
        self._fingerprints = 0
        self._devices: dict[tuple[str, str, str], _DeviceWindow] = {}
        self.stats = DedupStats()

    def __len__(self) -> int:
        """Devices whose window is kept."""
        return len(self._devices)

    @property
    def fingerprints(self) -> int:
        """Fingerprints kept over all devices."""
        return self._fingerprints

    def _make_room(self, devices_at_most: int, fingerprints_at_most: int,
                   keep: tuple[str, str, str] | None = None) -> None:
        """Forget the devices seen first until both counts are within these (never ``keep``,
        the device being checked)."""
        devices = self._devices
        while devices and (len(devices) > devices_at_most
                           or self._fingerprints > fingerprints_at_most):
            oldest = next(iter(devices))
            if oldest == keep:
                if len(devices) == 1:
                    return
                devices[oldest] = devices.pop(oldest)  # the device being checked stays
                continue
            self._fingerprints -= len(devices.pop(oldest).seen)

    def check(self, device: tuple[str, str, str], seq: int, ts: int, fingerprint: int) -> Verdict:
        state = self._devices.get(device)
        if state is None:
            self._make_room(self._max_devices - 1, self._max_fingerprints - 1)
            self._devices[device] = _DeviceWindow(seq, ts, {seq: fingerprint})
            self._fingerprints += 1
            return Verdict.NEW
        seen = state.seen
        if seq > state.top_seq:
            if seq > state.top_seq + 1:
                self.stats.gaps += seq - state.top_seq - 1
                state.gaps += seq - state.top_seq - 1
            state.top_seq = seq
            state.top_ts = max(state.top_ts, ts)
            self._remember(device, seen, seq, fingerprint)
            return Verdict.NEW
        previous = seen.get(seq)
        if previous == fingerprint:
            self.stats.duplicates += 1
            state.duplicates += 1
            return Verdict.DUPLICATE
        if previous is None and seq > state.top_seq - self._window:
            # A gap filled late (reordering); it was counted as a gap, now it is late instead.
            self.stats.late += 1
            self.stats.gaps = max(0, self.stats.gaps - 1)
            state.late += 1
            state.gaps = max(0, state.gaps - 1)
            self._remember(device, seen, seq, fingerprint)
            return Verdict.LATE
        if ts > state.top_ts:
            # seq went back while device time went forward: the device restarted its counter.
            self.stats.resets += 1
            state.resets += 1
            state.top_seq, state.top_ts = seq, ts
            self._fingerprints -= len(seen) - 1
            seen.clear()
            seen[seq] = fingerprint
            return Verdict.NEW
        self.stats.late += 1
        state.late += 1
        self._remember(device, seen, seq, fingerprint)
        return Verdict.LATE

    def device_stats(self, device: tuple[str, str, str]) -> DedupStats | None:
        """Counters of one ``(site, bed, device)``: messages missing (gaps not filled), late,
        duplicate, counter resets; ``None`` for a device not seen (or evicted)."""
        state = self._devices.get(device)
        if state is None:
            return None
        return DedupStats(duplicates=state.duplicates, late=state.late, gaps=state.gaps,
                          resets=state.resets)

    def _remember(self, device: tuple[str, str, str], seen: dict[int, int], seq: int,
                  fingerprint: int) -> None:
        if seq not in seen:
            self._fingerprints += 1
        seen[seq] = fingerprint
        if len(seen) > self._window:
            del seen[next(iter(seen))]
            self._fingerprints -= 1
        elif self._fingerprints > self._max_fingerprints:
            self._make_room(self._max_devices, self._max_fingerprints, keep=device)


class FirstCopies:
    """The emergency calls (button and fall events) the urgent stages have taken, so that the
    second copy of one (from the other MQTT session) is not handed to them again.

    A call is one message: ``(site, bed, device, seq, fingerprint of the payload)``
    (:data:`CallKey`). Bounded: at most ``max_calls``, the oldest forgotten first. A call
    forgotten before its second copy comes is handed to the urgent stages twice, which take a
    message again without effect (the alert engine remembers every call it handled, across
    restarts): the bound costs a repeated look-up, never a second alert or a lost one.

    >>> copies = FirstCopies(max_calls=2)
    >>> call = ("site-01", "bed-0001", "btn-1", 41, 123)
    >>> copies.first(call), copies.first(call)
    (True, False)
    >>> copies.forget(call); copies.first(call)
    True
    """

    __slots__ = ("_calls", "_max")

    def __init__(self, *, max_calls: int = FIRST_COPIES_MAX) -> None:
        if max_calls < 1:
            raise ValueError("max_calls must be positive")
        self._max = max_calls
        self._calls: dict[CallKey, None] = {}

    def first(self, call: CallKey) -> bool:
        """True (and remembered) when no copy of ``call`` was taken before."""
        calls = self._calls
        if call in calls:
            return False
        if len(calls) >= self._max:
            del calls[next(iter(calls))]
        calls[call] = None
        return True

    def forget(self, call: CallKey) -> None:
        """Forget ``call`` (its copy could not be handed on: the next copy should be)."""
        self._calls.pop(call, None)

    def __len__(self) -> int:
        return len(self._calls)
