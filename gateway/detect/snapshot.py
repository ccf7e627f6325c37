"""Detector state across restarts: one durable snapshot file of everything the detectors hold.

What the detectors learn (each person's sleep and wake times, sound by hour, usual stillness,
people count, night trips) and what they are in the middle of (out of bed since 02:10, an
open caregiver visit, a device already reported offline) lives in memory. Without a snapshot a
restart forgets it, and the first days after an upgrade behave like a new install: warm-up
defaults, episodes begun again. So the gateway writes a snapshot every
``detector_snapshot_interval_s`` and at a clean shutdown, and restores it at start.

The file (``data_dir/detectors.snapshot``) is msgpack: a version, the time it was taken, and
one blob per detector (:meth:`~gateway.detect.DetectorBase.state`, keyed by site, bed and
device ids, so it restores into a fleet that numbers them differently). It is written to a
temporary file, fsynced and renamed over the old one: a crash while writing leaves the
previous snapshot whole. The blobs are written as they are, between msgpack headers
(:func:`_snapshot_parts`), not copied into one body first: that copy (20 MB after the
100,000-id flood) was one call holding the interpreter 15-30 ms while emergency calls waited
for it.

Restoring never stops the gateway: a missing file is a first start; an unreadable file is
moved aside (``.unreadable``) and logged; a detector whose blob does not restore (another
version, a detector added or renamed) starts fresh and is logged, the others are restored.

What a snapshot cannot hold, the messages acknowledged after it, is in the detector journal
(:mod:`gateway.detect.journal`): each batch handed to the detectors is appended to it before
it is acknowledged, the snapshot records the journal position it holds, and at start the
records after that position are handed to the restored detectors again. So a crash
(``kill -9``) loses no detector input (until 2026-12-02 it lost up to one interval of it).
The position is exact: a snapshot is taken only while no batch is being handed over
(:meth:`~gateway.detect.journal.DetectorJournal.mark`; the gateway holds its intake, not its
emergency calls, for the moment it takes), and one that a batch overtook anyway (an emergency
call) is not written (:class:`SnapshotOvertaken`; tried again a second later). The journal's
records up to the position are deleted only after the snapshot is renamed into place and
its directory fsynced.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import msgspec

from gateway.detect.journal import Mark
from gateway.storage.durable import fsync_dir

log = logging.getLogger("homecare.detect")

SNAPSHOT_VERSION: Final = 1
SNAPSHOT_FILE: Final = "detectors.snapshot"


class SnapshotOvertaken(Exception):
    """A batch was handed to the detectors while they were being snapshotted: which of them
    hold it is unknown, so the snapshot is not written (the previous one stays)."""


class Journal(Protocol):
    """What a snapshot asks of the detector journal
    (:class:`~gateway.detect.journal.DetectorJournal`)."""

    def mark(self) -> Mark | None: ...

    def unchanged(self, mark: Mark) -> bool: ...

    def covered(self, position: int) -> None: ...


class Snapshottable(Protocol):
    name: str

    def state(self) -> bytes: ...

    def restore(self, blob: bytes) -> None: ...


class _Snapshot(msgspec.Struct, frozen=True):
    version: int
    taken_at_ms: int
    detectors: dict[str, bytes]
    journal_position: int | None = None
    """The detector journal's position the detectors' state holds (None: taken without a
    journal, or before there was one)."""


@dataclass(slots=True)
class Restored:
    """What :func:`restore_snapshot` did."""

    taken_at_ms: int | None = None
    """When the restored snapshot was taken (wall clock); None: nothing restored."""
    journal_position: int | None = None
    """The journal position the restored snapshot holds (None: none, or taken without)."""
    restored: list[str] = field(default_factory=list)
    fresh: dict[str, str] = field(default_factory=dict)
    """Detectors that start fresh, with the reason."""


def save_snapshot(path: Path, detectors: Sequence[Snapshottable], *,
                  taken_at_ms: int | None = None, journal: Journal | None = None) -> int:
    """Write every detector's state to ``path`` atomically (temporary file, fsync, rename,
    fsync of the directory); the number of bytes written. Call it where the detectors'
    ``evaluate`` runs (not concurrently with it).

    ``journal``: the snapshot records the journal position the state holds, and tells the
    journal once it is durable (:meth:`Journal.covered`). Raises :class:`SnapshotOvertaken`,
    writing nothing, when a batch was being handed to the detectors meanwhile."""
    taken = time.time_ns() // 1_000_000 if taken_at_ms is None else taken_at_ms
    mark = journal.mark() if journal is not None else None
    if journal is not None and mark is None:
        raise SnapshotOvertaken("a batch was being handed to the detectors")
    states = {detector.name: detector.state() for detector in detectors}
    if journal is not None and mark is not None and not journal.unchanged(mark):
        raise SnapshotOvertaken("a batch was handed to the detectors meanwhile")
    parts = _snapshot_parts(_Snapshot(
        version=SNAPSHOT_VERSION, taken_at_ms=taken, detectors=states,
        journal_position=mark.position if mark is not None else None))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb", buffering=0) as handle:
        for part in parts:
            handle.write(part)  # a large write releases the interpreter
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    if journal is not None and mark is not None:
        journal.covered(mark.position)
    return sum(map(len, parts))


def _snapshot_parts(snapshot: _Snapshot) -> list[bytes]:
    """``snapshot`` as msgpack, in parts whose concatenation is exactly
    ``msgspec.msgpack.encode(snapshot)`` (a map of its fields in order, the detectors' blobs as
    ``bin``), with every blob a part of its own, not copied."""
    encode = msgspec.msgpack.encode
    parts = [_map_header(4), encode("version"), encode(snapshot.version),
             encode("taken_at_ms"), encode(snapshot.taken_at_ms), encode("detectors"),
             _map_header(len(snapshot.detectors))]
    for name, blob in snapshot.detectors.items():
        parts += [encode(name), _bin_header(len(blob)), blob]
    parts += [encode("journal_position"), encode(snapshot.journal_position)]
    return parts


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    if n < 1 << 16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def _bin_header(n: int) -> bytes:
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def restore_snapshot(path: Path, detectors: Sequence[Snapshottable]) -> Restored:
    """Restore each detector from ``path`` if it holds its state; never raises for what the
    file holds (see the module docstring)."""
    result = Restored()
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        result.fresh = {d.name: "no snapshot" for d in detectors}
        return result
    try:
        snapshot = msgspec.msgpack.decode(body, type=_Snapshot)
        if snapshot.version != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {snapshot.version}, this gateway reads "
                             f"{SNAPSHOT_VERSION}")
    except (msgspec.DecodeError, ValueError) as exc:
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        log.error("detect.snapshot_unreadable path=%s moved_to=%s error=%s; every detector "
                  "starts fresh", path, aside.name, exc)
        result.fresh = {d.name: f"unreadable snapshot: {exc}" for d in detectors}
        return result
    result.taken_at_ms = snapshot.taken_at_ms
    result.journal_position = snapshot.journal_position
    for detector in detectors:
        blob = snapshot.detectors.get(detector.name)
        if blob is None:
            result.fresh[detector.name] = "not in the snapshot"
            continue
        try:
            detector.restore(blob)
        except Exception as exc:  # one detector's state must not keep the others from theirs
            result.fresh[detector.name] = f"{type(exc).__name__}: {exc}"
            log.error("detect.snapshot_restore_failed detector=%s error=%s: %s; it starts "
                      "fresh", detector.name, type(exc).__name__, exc)
        else:
            result.restored.append(detector.name)
    return result
