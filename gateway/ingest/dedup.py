"""Per-device duplicate, gap and late-arrival accounting over a bounded window of ``seq``.

A duplicate is the same device sending the same ``seq`` with byte-identical payload again
(QoS 1 redelivery, a device retransmitting). Comparing content as well as ``seq`` keeps two
things that are *not* duplicates: a last-will status whose ``seq`` was fixed at connect time,
and a device that restarted its counter. A ``seq`` far below the highest seen while the
device's clock moved on counts as a counter reset, not as lateness.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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


class Deduplicator:
    """Bounded memory: ``window`` fingerprints per device, ``max_devices`` devices."""

    __slots__ = ("_devices", "_max_devices", "_window", "stats")

    def __init__(self, *, window: int = 64, max_devices: int = 1_000_000) -> None:
        if window < 1 or max_devices < 1:
            raise ValueError("window and max_devices must be positive")
        self._window = window
        self._max_devices = max_devices
        self._devices: dict[tuple[str, str, str], _DeviceWindow] = {}
        self.stats = DedupStats()

    def check(self, device: tuple[str, str, str], seq: int, ts: int, fingerprint: int) -> Verdict:
        state = self._devices.get(device)
        if state is None:
            if len(self._devices) >= self._max_devices:
                del self._devices[next(iter(self._devices))]
            self._devices[device] = _DeviceWindow(seq, ts, {seq: fingerprint})
            return Verdict.NEW
        seen = state.seen
        if seq > state.top_seq:
            if seq > state.top_seq + 1:
                self.stats.gaps += seq - state.top_seq - 1
                state.gaps += seq - state.top_seq - 1
            state.top_seq = seq
            state.top_ts = max(state.top_ts, ts)
            self._remember(seen, seq, fingerprint)
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
            self._remember(seen, seq, fingerprint)
            return Verdict.LATE
        if ts > state.top_ts:
            # seq went back while device time went forward: the device restarted its counter.
            self.stats.resets += 1
            state.resets += 1
            state.top_seq, state.top_ts = seq, ts
            seen.clear()
            seen[seq] = fingerprint
            return Verdict.NEW
        self.stats.late += 1
        state.late += 1
        self._remember(seen, seq, fingerprint)
        return Verdict.LATE

    def device_stats(self, device: tuple[str, str, str]) -> DedupStats | None:
        """Counters of one ``(site, bed, device)``: messages missing (gaps not filled), late,
        duplicate, counter resets; ``None`` for a device not seen (or evicted)."""
        state = self._devices.get(device)
        if state is None:
            return None
        return DedupStats(duplicates=state.duplicates, late=state.late, gaps=state.gaps,
                          resets=state.resets)

    def _remember(self, seen: dict[int, int], seq: int, fingerprint: int) -> None:
        seen[seq] = fingerprint
        if len(seen) > self._window:
            del seen[next(iter(seen))]
