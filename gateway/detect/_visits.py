"""What the ``service_anomaly`` detector keeps of each caregiver visit and each recording.

A :class:`Visit` is keyed by site, bed, caregiver and visit id (:func:`visit_key`): two
caregivers whose apps both number their visits ``v-1`` are two visits, and a check-out closes
only the visit its own badge or app checked in at the same bed. It counts the infrared samples
taken while it lasts and those with the caregiver (more people than the household's usual
count; in a home seen empty before the check-in, anyone until the household is back), so that
the share of the visit the caregiver was sensed does not depend on the sensor's rate.

A :class:`Clip` is one recording of the home's infrared or audio recorder, from its
``recording_started`` to its ``recording_stopped`` (with the duration and hash the recorder
reports); :class:`ClipShelf` keeps each bed's recent clips, a bounded number per bed, and
links those that overlap a visit (:func:`coverage`: the share of a span they cover
together).

>>> clips = [Clip(clip="a", device="au-1", started=0, stopped=600_000, duration_s=600.0),
...          Clip(clip="b", device="ir-1", started=300_000, stopped=900_000, duration_s=600.0)]
>>> coverage(clips, 0, 1_800_000)
0.5
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec
import numpy as np

RECENT_SAMPLES: Final = 1 << 20
"""Infrared samples with a people count remembered (the latest, of every bed), for a visit
whose check-in is delivered after its home's samples: about 14 MB when full, one day of 700
beds reporting every minute, or two hours of 8,700."""
REPLAY_LOOKBACK_MS: Final = 60 * 60_000
"""Of the recent samples of a bed with a visit waiting for them (checked in after them), the
snapshot keeps those from this long before the check-in on (:func:`replay_state`): the home
seen empty before it is decided from a run of 15 minutes with gaps of 5 at most, ended up to
15 minutes before the check-in, which an hour holds whole."""
REPLAY_KEPT_PER_BED: Final = 8192
"""The most samples the snapshot keeps per such bed (the latest): 13 hours of a sensor
reporting every 6 s, about 80 KB."""
CLIPS_PER_BED: Final = 32
"""Recent clips kept per bed (a visit has a few: one per recorder, restarted now and then)."""


def visit_key(site: str, bed: str, caregiver: str, visit: str) -> str:
    """One visit's key (ids hold no ``/``)."""
    return f"{site}/{bed}/{caregiver}/{visit}"


class Visit(msgspec.Struct, kw_only=True):
    """One caregiver visit, from its check-in until it is judged (and a day after, so a
    redelivered check-in does not open it again)."""

    site: str
    bed_id: str
    bed: int
    """The fleet's bed number; -1 while the fleet has not numbered the bed (an app visit at a
    bed never heard)."""
    caregiver: str
    visit: str
    source: str
    """``badge`` or ``api`` (the caregiver app, through the service log)."""
    method: str | None
    check_in: int
    check_out: int | None = None
    out_received: int | None = None
    """When the check-out was received (a late one waits for the home's infrared)."""
    services: list[str] = msgspec.field(default_factory=list)
    plan: str | None = None
    """The plan id it was matched to (same site)."""
    samples: int = 0
    """Infrared samples with a people count taken between check-in and check-out."""
    extra: int = 0
    """Of those, samples with more people than the household's usual count."""
    extra_last: int | None = None
    """Time of the latest such sample (the caregiver last sensed)."""
    empty_before: bool | None = None
    """The home was seen empty right up to the check-in (the resident out): a person sensed
    then is the caregiver until the household is seen back (``back_at``). None: not decided
    yet (it is, at the first sample of the visit)."""
    household: int | None = None
    """The household's usual count the visit's samples are counted against: the bed's at the
    visit's first sample, kept for the whole visit and reported with its judgement (a new
    bed's count read anew at the judgement said two beside every sample counted as the
    caregiver against one). None: no sample yet."""
    back_at: int | None = None
    """In a home empty before the visit: the time of the earliest sample with more people
    than the household's usual count (the household back with the caregiver); samples after
    it with the usual count or fewer are the household's."""
    no_checkout: bool = False
    """A missing check-out was raised (active until the late check-out)."""
    sensed_until: int | None = None
    """Samples are counted until then once the caregiver is judged gone without checking
    out, or seen gone by infrared that came behind the check-out (later company is not
    theirs); None: until the check-out."""
    decided_at: int | None = None
    instance: int | None = None
    """For a visit checked in under the key of one before it (``visit_id_reused``): its
    check-in time, which keys it apart (``#`` and the time after the key and episode)."""

    @property
    def key(self) -> str:
        key = visit_key(self.site, self.bed_id, self.caregiver, self.visit)
        return key if self.instance is None else f"{key}#{self.instance}"

    @property
    def episode(self) -> str:
        """The alert episode of this visit (site and bed are the alert's own)."""
        episode = f"{self.caregiver}/{self.visit}"
        return episode if self.instance is None else f"{episode}#{self.instance}"


class RecentSamples:
    """The latest :data:`RECENT_SAMPLES` infrared samples with a people count, of every bed,
    as placed (a ring): bed, time, people counted, and the count for the home's emptiness
    (``seen``).

    ``preallocate``: the whole ring is allocated and written at once (the detector's, 14.7 MB),
    so the gateway's memory does not creep up by this much over the hours or days a small
    station takes to fill it (a soak at 50 beds: RSS +10.8 % from minute 5 to 30, most of it
    this ring filling, read as a leak); else it grows by doubling up to its size."""

    def __init__(self, capacity: int = RECENT_SAMPLES, *, preallocate: bool = False) -> None:
        self.capacity = capacity
        size = capacity if preallocate else 0
        # np.full writes every page now (np.zeros would leave them to be touched as it fills).
        self.bed = np.full(size, 0, np.int32)
        self.t = np.full(size, 0, np.int64)
        self.people = np.full(size, 0, np.int8)
        self.seen = np.full(size, 0, np.int8)
        self.n = 0
        """Samples ever added (the ring's next slot is ``n % len``)."""

    def add(self, bed: np.ndarray, t: np.ndarray, people: np.ndarray,
            seen: np.ndarray) -> None:
        k = len(bed)
        if not k:
            return
        if k >= self.capacity:
            bed, t, people, seen = bed[-self.capacity:], t[-self.capacity:], \
                people[-self.capacity:], seen[-self.capacity:]
            k = self.capacity
        size = len(self.t)
        if self.n + k > size and size < self.capacity:  # grow (only while not wrapped yet)
            new = min(self.capacity, max(4096, 2 * size, self.n + k))
            for name in ("bed", "t", "people", "seen"):
                old = getattr(self, name)
                grown = np.zeros(new, old.dtype)
                grown[:size] = old
                setattr(self, name, grown)
            size = new
        at = (self.n + np.arange(k)) % size
        self.bed[at], self.t[at] = bed, t
        self.people[at] = np.clip(people, 0, 127)
        self.seen[at] = np.clip(seen, 0, 127)
        self.n += k

    def dump(self, since: dict[int, int]) -> list[tuple[int, bytes, bytes, bytes]]:
        """The remembered samples of the beds in ``since``, each from its time on (the latest
        :data:`REPLAY_KEPT_PER_BED`), for the snapshot: bed, then time, people and seen as
        bytes (10 bytes a sample)."""
        size = len(self.t)
        used = min(self.n, size)
        if not since or not used:
            return []
        order = (np.arange(used) + (self.n if self.n > size else 0)) % size  # oldest first
        beds = np.fromiter(since, np.int64, len(since))
        starts = np.fromiter(since.values(), np.int64, len(since))
        ring_beds = self.bed[order].astype(np.int64)
        which = np.searchsorted(np.sort(beds), ring_beds).clip(0, len(beds) - 1)
        by_bed = np.argsort(beds)
        hit = (beds[by_bed][which] == ring_beds) & (self.t[order] >= starts[by_bed][which])
        picked = order[hit]
        grouped = picked[np.argsort(self.bed[picked], kind="stable")]  # by bed, oldest first
        bounds = np.flatnonzero(np.diff(self.bed[grouped])) + 1
        out = []
        for part in np.split(grouped, bounds) if len(grouped) else []:
            kept = part[-REPLAY_KEPT_PER_BED:]
            out.append((int(self.bed[kept[0]]), self.t[kept].tobytes(),
                        self.people[kept].tobytes(), self.seen[kept].tobytes()))
        return out

    def load(self, saved: Sequence[Sequence[Any]], bed_map: Sequence[int]) -> None:
        """Add what :meth:`dump` kept (``bed_map[i]``: the number of saved bed ``i`` now)."""
        for bed, t, people, seen in saved:
            times = np.frombuffer(t, np.int64)
            self.add(np.full(len(times), bed_map[bed], np.int32), times,
                     np.frombuffer(people, np.int8), np.frombuffer(seen, np.int8))

    def of(self, beds: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The remembered samples of ``beds``: bed, time, people, seen."""
        used = min(self.n, len(self.t))
        keep = np.flatnonzero(np.isin(self.bed[:used], np.asarray(beds, np.int32)))
        return (self.bed[keep].astype(np.int64), self.t[keep],
                self.people[keep].astype(np.float32), self.seen[keep].astype(np.float32))


def replay_state(replay: dict[str, tuple[Visit, int]],
                 recent: RecentSamples) -> dict[str, Any]:
    """For the snapshot, the visits waiting for their samples from ``recent`` (checked in after
    their home's samples: by key, with when the check-in came) and those samples, from
    :data:`REPLAY_LOOKBACK_MS` before the earliest such check-in of each bed. Without them a
    restart while such a visit was open lost what its home had sensed before the restart
    (issue #14). Bounded: those samples are the ring's, at most :data:`REPLAY_KEPT_PER_BED`
    per bed, 10 bytes each; such a visit waits minutes (until its check-out is known, or
    ``CATCH_UP_MS`` after its check-in came), so few are ever waiting."""
    since: dict[int, int] = {}
    for visit, _ in replay.values():
        if visit.bed >= 0:
            start = visit.check_in - REPLAY_LOOKBACK_MS
            since[visit.bed] = min(since.get(visit.bed, start), start)
    return {"visits": [[key, got] for key, (_, got) in replay.items()],
            "samples": recent.dump(since)}


def restore_replay(saved: Any, visits: dict[str, Visit], recent: RecentSamples,
                   bed_map: Sequence[int]) -> dict[str, tuple[Visit, int]]:
    """The visits waiting for their samples, restored from :func:`replay_state` among the open
    ``visits``, their samples put back into ``recent``."""
    if not isinstance(saved, dict):
        return {}
    recent.load(saved.get("samples", []), bed_map)
    return {str(key): (visits[key], int(got)) for key, got in saved.get("visits", [])
            if key in visits}


class Clip(msgspec.Struct, kw_only=True):
    """One recording; ``started`` is known from the start event or, without it, from the stop
    event's duration."""

    clip: str
    device: str
    started: int | None = None
    stopped: int | None = None
    duration_s: float | None = None
    sha256: str | None = None

    def span(self) -> tuple[int, int] | None:
        """``(start, stop)`` of a finished recording; None while it runs."""
        if self.stopped is None:
            return None
        start = self.started
        if start is None:
            start = self.stopped - round((self.duration_s or 0.0) * 1000)
        return start, max(start, self.stopped)

    def evidence(self) -> dict[str, Any]:
        span = self.span()
        return {"clip": self.clip, "device": self.device,
                "started_ms": span[0] if span else self.started,
                "stopped_ms": self.stopped, "duration_s": self.duration_s,
                "sha256": self.sha256}


def coverage(clips: Iterable[Clip], start: int, end: int) -> float:
    """The share of ``[start, end)`` covered by the finished clips together."""
    if end <= start:
        return 1.0
    spans = sorted(s for c in clips if (s := c.span()) is not None)
    covered, reach = 0, start
    for a, b in spans:
        a, b = max(a, reach), min(b, end)
        if b > a:
            covered += b - a
            reach = b
    return covered / (end - start)


class ClipShelf:
    """Recent clips per bed, at most :data:`CLIPS_PER_BED` each, oldest dropped first."""

    def __init__(self) -> None:
        self.by_bed: dict[int, list[Clip]] = {}

    def started(self, bed: int, device: str, clip: str, t: int) -> None:
        found = self._find(bed, device, clip)
        if found is None:
            self._add(bed, Clip(clip=clip, device=device, started=t))
        elif found.started is None:
            found.started = t

    def stopped(self, bed: int, device: str, clip: str, t: int, duration_s: float | None,
                sha256: str | None) -> None:
        found = self._find(bed, device, clip)
        if found is None:
            found = self._add(bed, Clip(clip=clip, device=device))
        if found.stopped is None:
            found.stopped, found.duration_s, found.sha256 = t, duration_s, sha256

    def linked(self, bed: int, start: int, end: int) -> list[Clip]:
        """Clips of ``bed`` overlapping ``[start, end]`` (finished or running), by start."""
        found = []
        for clip in self.by_bed.get(bed, ()):
            span = clip.span()
            a, b = span if span is not None else (clip.started or 0, end)
            if a <= end and b >= start:
                found.append(clip)
        return sorted(found, key=lambda c: (c.span() or (c.started or 0, 0))[0])

    def forget_before(self, t: int) -> None:
        """Drop finished clips that stopped before ``t`` and running ones started before."""
        for bed in list(self.by_bed):
            kept = [c for c in self.by_bed[bed]
                    if (c.stopped if c.stopped is not None else (c.started or 0)) >= t]
            if kept:
                self.by_bed[bed] = kept
            else:
                del self.by_bed[bed]

    def dump(self) -> list[tuple[int, list[Clip]]]:
        return list(self.by_bed.items())

    def load(self, saved: Sequence[tuple[int, list[Clip]]], bed_map: Sequence[int]) -> None:
        for bed, clips in saved:
            self.by_bed[bed_map[bed]] = list(clips)

    def _find(self, bed: int, device: str, clip: str) -> Clip | None:
        for found in self.by_bed.get(bed, ()):
            if found.clip == clip and found.device == device:
                return found
        return None

    def _add(self, bed: int, clip: Clip) -> Clip:
        shelf = self.by_bed.setdefault(bed, [])
        shelf.append(clip)
        if len(shelf) > CLIPS_PER_BED:
            del shelf[: len(shelf) - CLIPS_PER_BED]
        return clip
