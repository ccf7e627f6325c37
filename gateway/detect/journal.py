"""The detector journal: what the detectors took in since their last snapshot, on disk before
it is acknowledged, and given back to them at start (issue #14, D-B of a fresh tester).

(A module over 400 lines: its three sides, recording on the event loop, writing on the ingest
thread and replaying at start, share one record format and one account of positions, which
must stay one code.)

Why: the detectors live in memory and their snapshot (:mod:`gateway.detect.snapshot`) is
written every ``detector_snapshot_interval_s``; the messages acknowledged after it are stored
(spool, service log) but never delivered again, so a ``kill -9`` used to take every message
since the snapshot away from the detectors: after a 5 h backlog, three open caregiver visits
settled ``unverifiable``/``not_sensed``, one of them a visit nobody came to.

What is guaranteed: every batch the alerting stage hands the detectors (its rules see it too;
the journal does not care) is appended to the journal, in the order it was handed over,
before the batch is acknowledged to the broker (:meth:`JournaledStage.commit`, a step of the
checkpoint, on the ingest thread; not fsynced by the gateway: a process killed, ``kill -9``
included, leaves its writes in the page cache, and a power loss may lose the last seconds of
it, that detector input only, the data being in the fsynced spool). A snapshot
records the journal position it holds exactly (no batch handed over while it is taken:
:meth:`DetectorJournal.mark`, :meth:`DetectorJournal.unchanged`; otherwise it is not written
and tried again a second later, the gateway holding its intake meanwhile), and only once the
snapshot is renamed into place and its directory fsynced are the journal's segments it covers
deleted. At start the snapshot is restored and the records after its position are read back
(:meth:`DetectorJournal.read_back`: read and checksummed, milliseconds); intake then resumes at
once while the detectors' thread decodes them again with the device codec and hands them to
the detectors (:meth:`DetectorJournal.feed_back`) before their first evaluation, the batches
intake hands the detectors meanwhile held back and given after them, in order
(:meth:`~gateway.detect.alerting.AlertingStage.hold_detectors`): after a ``kill -9``, the
detectors have seen every message acknowledged before it, in the order it came.

Only the detectors are given the records back: the immediate rules (button, fall) and the
alert engine are not, so a replayed press opens, repeats and notifies nothing (its alert is in
the alert store already). The detectors' findings come from their evaluations after the start,
as after any restart: a condition they had reported since the snapshot is reported again and
folds into its alert while that is unresolved (an update, never a second alert).

Format: segment files ``data_dir/detectors.journal/<first position>.seg``, each a sequence of
records ``<length u32><crc32 u32><position u64><msgpack body>`` (little-endian), one per
batch: its receipt times, topics and payloads as received (the bytes the codec decoded, so
writing costs no encoding). A record cut short or failing its CRC at the end of the last
segment (a power loss in the middle of a write) is cut off at start and logged; in another
segment the rest of that segment is skipped and logged.

Bounds: once the journal grew by :data:`SNAPSHOT_AFTER_BYTES` (4 MiB, about 27,000 messages,
replayed in a fraction of a second) since the last snapshot, a snapshot is taken at once
(:attr:`DetectorJournal.wants_snapshot`), which empties it. It holds at most
``detector_journal_max_bytes``; should it reach that cap anyway (snapshots failing), further
batches are not journaled (counted, logged once, and once more when it records again): a crash
then loses the detectors' input from there to the next snapshot, as before the journal;
intake, storage and alerts are not affected.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec

from alerts.errors import StorageError
from devices.codec import Codec, Message
from gateway.storage.durable import append_whole, fsync_dir

log = logging.getLogger("homecare.detect")

JOURNAL_DIR: Final = "detectors.journal"
SEGMENT_SUFFIX: Final = ".seg"
_HEADER: Final = struct.Struct("<IIQ")
"""Body length, CRC-32 of the body, position."""
SNAPSHOT_AFTER_BYTES: Final = 4 * 1024**2
"""A snapshot is wanted once the journal grew by this much since the last one (or a quarter
of its cap, if smaller): about 27,000 messages of 155 bytes. It bounds what a start hands back
on the detectors' thread before their first evaluation (intake does not wait; measured on a
shared 2-core machine: 100,000 messages in 1.1 s at a load of 4; 500,000 in 2.4-2.7 s at a
load of 6.7, 9.6 s when it was contended; the device codec's decoding is most of it), while
each snapshot holds the intake for its own time (1,000 beds: 25-30 ms, 2,000: 50-170 ms, with
the fold of what came since the last evaluation)."""
SEGMENT_BYTES: Final = 1024**2
"""A segment is closed at this size (or a sixteenth of the cap, if smaller), so that a
snapshot frees the journal in pieces of that size."""
REPLAY_CHUNK: Final = 4_000
"""Messages handed to the detectors at a time in :meth:`DetectorJournal.replay`."""

_Body = tuple[list[int], list[Any], list[bytes]]
"""A record's body: receipt times, topics (str, or bytes as received), payloads."""


class Source(Protocol):
    """A message as received (:class:`gateway.ingest.message.RawMessage`)."""

    @property
    def topic(self) -> str | bytes: ...

    @property
    def payload(self) -> bytes: ...


class Stage(Protocol):
    """The stage whose input is journaled (the alerting stage)."""

    name: str

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None: ...

    def commit(self) -> None: ...


class Fed(Protocol):
    """A detector, as :meth:`DetectorJournal.replay` feeds it."""

    def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> object: ...


@dataclass(frozen=True, slots=True)
class Mark:
    """The journal's position at a moment no batch was being handed over."""

    position: int
    begun: int


@dataclass(slots=True)
class Replayed:
    """What :meth:`DetectorJournal.replay` did."""

    records: int = 0
    """Records handed to the detectors (after the snapshot's position)."""
    messages: int = 0
    skipped: int = 0
    """Records at or before the snapshot's position (written before it, not yet deleted)."""
    rejected: int = 0
    """Messages the codec refuses now (a smaller ``max_payload_bytes`` since), left out."""
    gaps: int = 0
    """Runs of positions missing (batches not journaled at the cap, a corrupt segment)."""
    cut_bytes: int = 0
    """Bytes of a torn last record cut off."""
    corrupt_segments: int = 0
    failed_updates: int = 0
    """Chunks a detector raised on (logged once; the other detectors took them)."""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ReadBack:
    """The records :meth:`DetectorJournal.read_back` found to hand back, not decoded yet."""

    bodies: list[bytes]
    result: Replayed


class DetectorJournal:
    """The journal (see the module docstring). :meth:`record` runs on the event loop,
    :meth:`write` on the ingest thread, :meth:`mark`/:meth:`unchanged`/:meth:`covered` on the
    detectors' thread; :meth:`replay` before any of them, :meth:`close` after."""

    def __init__(self, directory: Path, *, max_bytes: int, fsync: bool = True) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = max(4096, min(SEGMENT_BYTES, max_bytes // 16))
        self.snapshot_after_bytes = max(1, min(SNAPSHOT_AFTER_BYTES, max_bytes // 4))
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # residents' readings
        self._segments: list[tuple[int, Path]] = sorted(
            (int(p.stem), p) for p in directory.glob(f"*{SEGMENT_SUFFIX}") if p.stem.isdigit())
        self._sizes: dict[Path, int] = {p: p.stat().st_size for _, p in self._segments}
        self.position = 0
        """Position of the last batch recorded (0: none yet); every batch takes the next."""
        self._begun = 0
        self._done = 0
        self._lock = threading.Lock()
        """Guards what the event loop and the ingest thread share: the batches recorded and
        not written, and the byte counts."""
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._written = 0
        """Position of the last record written."""
        self._covered = 0
        """Position the latest snapshot holds: records up to it are not needed any more."""
        self._fd: int | None = None
        self._fd_path: Path | None = None
        self._rotated_for = 0
        self._since_covered = 0
        """Bytes recorded since the latest snapshot."""
        self.not_journaled = 0
        """Batches not journaled because the journal was at its cap (since start)."""
        self._capped_since = 0
        self._encoder = msgspec.msgpack.Encoder()
        self._codec = Codec()

    # --- event loop ---------------------------------------------------------------------------

    def record(self, received_ms: Sequence[int], sources: Sequence[Source]) -> None:
        """Take a batch the detectors were just handed (its messages as received)."""
        self.position += 1
        body = self._encoder.encode((received_ms, [s.topic for s in sources],
                                     [s.payload for s in sources]))
        self._add(body)

    def record_messages(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        """:meth:`record` for decoded messages only (encoded again by the codec: slower)."""
        self.position += 1
        encode = self._codec.encode
        pairs = [encode(m) for m in messages]
        self._add(self._encoder.encode((received_ms, [t for t, _ in pairs],
                                        [p for _, p in pairs])))

    def _add(self, body: bytes) -> None:
        size = _HEADER.size + len(body)
        with self._lock:
            # Once a snapshot covers it, the next write frees the journal (before writing).
            if (self.disk_bytes + self._pending_bytes + size > self.max_bytes
                    and self._covered <= self._rotated_for):
                if not self._capped_since:
                    log.error("detect.journal_full max_bytes=%d; batches are not journaled "
                              "until the next snapshot: a crash meanwhile loses that detector "
                              "input", self.max_bytes)
                self._capped_since += 1
                self.not_journaled += 1
                return
            if self._capped_since:
                log.warning("detect.journal_resumed not_journaled=%d", self._capped_since)
                self._capped_since = 0
            self._pending.append(_HEADER.pack(len(body), zlib.crc32(body), self.position)
                                 + body)
            self._pending_bytes += size
            self._since_covered += size

    @property
    def disk_bytes(self) -> int:
        """Bytes of the journal on disk."""
        return sum(list(self._sizes.values()))  # a copy made under the GIL: any thread

    @property
    def wants_snapshot(self) -> bool:
        """The journal grew by :data:`SNAPSHOT_AFTER_BYTES` since the latest snapshot: take one
        now."""
        return self._since_covered >= self.snapshot_after_bytes

    def begin(self) -> None:
        """A batch is being handed to the detectors (:class:`JournaledStage`)."""
        self._begun += 1

    def end(self) -> None:
        """... and has been: the journal's position is up to date again."""
        self._done = self._begun

    # --- the detectors' thread (snapshots) ----------------------------------------------------

    def mark(self) -> Mark | None:
        """The position, when no batch is being handed over (else None)."""
        done = self._done
        position = self.position
        begun = self._begun
        return Mark(position, begun) if done == begun else None

    def unchanged(self, mark: Mark) -> bool:
        """No batch was handed over since ``mark`` (none began, none is under way)."""
        begun = self._begun
        return begun == mark.begun and self._done == begun

    def covered(self, position: int) -> None:
        """A snapshot holding everything up to ``position`` is durable: the records up to it
        are deleted at the next :meth:`write` (or :meth:`close`)."""
        with self._lock:
            if position > self._covered:
                self._covered = position
                self._since_covered = 0

    # --- the ingest thread --------------------------------------------------------------------

    def write(self) -> None:
        """Append the batches recorded so far (one write, fsync when configured); delete the
        segments a snapshot covers. Raises :class:`~alerts.errors.StorageError` (store
        ``detector_journal``) when the disk fails; what was not written stays for the next
        call, and a part written is cut off first."""
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            data = b"".join(pending)
            first = int.from_bytes(pending[0][8:16], "little")
            last = int.from_bytes(pending[-1][8:16], "little")
            try:
                self._append(data, first)
            except OSError as exc:
                with self._lock:
                    self._pending[:0] = pending
                raise StorageError.wrap("detector_journal", "write", exc) from exc
            with self._lock:
                self._pending_bytes -= len(data)
            self._written = last
        self._prune()

    def _append(self, data: bytes, first: int) -> None:
        if self._fd is None or self._covered > self._rotated_for or (
                self._fd_path is not None and self._sizes[self._fd_path] >= self.segment_bytes):
            self._rotated_for = self._covered
            self._rotate(first)
        assert self._fd is not None
        assert self._fd_path is not None
        start = self._sizes[self._fd_path]
        # A part written is cut off; if that fails, the next write starts a new segment.
        append_whole(self._fd, data, start=start, sync=os.fdatasync if self.fsync else None,
                     if_not_cut=self._close_fd)
        self._sizes[self._fd_path] = start + len(data)

    def _rotate(self, first: int) -> None:
        self._close_fd()
        path = self.directory / f"{first:020d}{SEGMENT_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fd_path = path
        self._sizes[path] = os.fstat(self._fd).st_size
        if not self._segments or self._segments[-1][1] != path:
            self._segments.append((first, path))
        if self.fsync:
            fsync_dir(self.directory)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._fd_path = None

    def _prune(self) -> None:
        """Delete the segments whose every record a snapshot covers: each one before the
        segment being written whose successor starts at most one past the covered position,
        and, when nothing is pending, the one being written if it ends there."""
        covered = self._covered
        keep: list[tuple[int, Path]] = []
        segments = self._segments
        for i, (first, path) in enumerate(segments):
            last = segments[i + 1][0] - 1 if i + 1 < len(segments) else self._written
            if last <= covered and (path != self._fd_path or not self._pending):
                if path == self._fd_path:
                    self._close_fd()
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("detect.journal_prune_failed path=%s error=%s", path.name, exc)
                    keep.append((first, path))
                    continue
                self._sizes.pop(path, None)
            else:
                keep.append((first, path))
        self._segments = keep

    def close(self) -> None:
        """Delete what the latest snapshot covers and close the segment (the gateway's stores
        are closed; no thread writes any more)."""
        try:
            self._prune()
        finally:
            self._close_fd()

    def discard(self) -> None:
        """Delete every segment (before :meth:`replay`: what they hold is stale)."""
        for _, path in self._segments:
            path.unlink(missing_ok=True)
        self._segments, self._sizes = [], {}

    # --- at start -----------------------------------------------------------------------------

    def replay(self, detectors: Sequence[Fed], *, after: int | None,
               codec: Codec | None = None) -> Replayed:
        """Hand the detectors every record after position ``after`` (the restored snapshot's;
        None: every record, there is no snapshot to start from), decoded again with
        ``codec``, in order; cut off a torn last record. Call it once, before anything is
        recorded; the journal's positions continue after the highest seen.
        :meth:`read_back` then :meth:`feed_back`, in one call."""
        return self.feed_back(self.read_back(after=after), detectors, codec=codec)

    def read_back(self, *, after: int | None) -> ReadBack:
        """The records after position ``after``, read and checked (CRC, order) but not decoded;
        a torn last record is cut off. Call it once, before anything is recorded: the journal's
        positions continue after the highest seen. Fast (reading and checksumming the
        journal's few MiB): the gateway calls it at start, then hands the records over on the
        detectors' thread (:meth:`feed_back`) while intake resumes."""
        started = time.perf_counter()
        result = Replayed()
        bodies: list[bytes] = []
        start = after or 0
        self._covered = self._rotated_for = start
        previous: int | None = start if after is not None else None
        highest = start
        for index, (_, path) in enumerate(self._segments):
            try:
                data = path.read_bytes()
            except OSError as exc:  # never a failed start: that input is lost, as before
                result.corrupt_segments += 1
                log.error("detect.journal_segment_unreadable path=%s error=%s", path.name, exc)
                continue
            offset = 0
            while offset < len(data):
                header_end = offset + _HEADER.size
                if header_end <= len(data):
                    length, crc, position = _HEADER.unpack_from(data, offset)
                    body = data[header_end:header_end + length]
                    whole = len(body) == length and zlib.crc32(body) == crc
                else:
                    whole = False
                if not whole:
                    rest = len(data) - offset
                    if index == len(self._segments) - 1:
                        try:
                            with open(path, "r+b") as handle:
                                handle.truncate(offset)
                                os.fsync(handle.fileno())
                        except OSError as exc:
                            log.error("detect.journal_cut_failed path=%s error=%s", path.name,
                                      exc)
                        result.cut_bytes = rest
                        log.warning("detect.journal_torn_record_cut path=%s offset=%d bytes=%d",
                                    path.name, offset, rest)
                    else:
                        result.corrupt_segments += 1
                        log.error("detect.journal_segment_corrupt path=%s offset=%d "
                                  "skipped_bytes=%d", path.name, offset, rest)
                    self._sizes[path] = offset
                    break
                offset = header_end + length
                highest = max(highest, position)
                if (position <= start and after is not None) or (
                        previous is not None and position <= previous):
                    result.skipped += 1
                    continue
                if previous is not None and position != previous + 1:
                    result.gaps += 1
                previous = position
                bodies.append(body)
                # Not covered by a snapshot, whichever process wrote it: counts towards the
                # next (killed before asking, each process would hand the next ever more).
                self._since_covered += _HEADER.size + length
        self.position = self._written = highest
        result.seconds = time.perf_counter() - started
        return ReadBack(bodies, result)

    def feed_back(self, read: ReadBack, detectors: Sequence[Fed], *,
                  codec: Codec | None = None) -> Replayed:
        """Decode the records :meth:`read_back` returned (``codec``: the gateway's, with its
        payload limit) and hand them to the detectors in order, :data:`REPLAY_CHUNK` messages
        at a time. Thread-safe against recording (it touches no state of the journal's)."""
        started = time.perf_counter()
        codec = codec or self._codec
        result = read.result
        decoder = msgspec.msgpack.Decoder(_Body)
        messages: list[Message] = []
        received: list[int] = []

        def feed() -> None:
            nonlocal messages, received
            if messages:
                for detector in detectors:
                    try:
                        detector.update(messages, received)
                    except Exception:  # as in the alerting stage: the others go on
                        result.failed_updates += 1
                        if result.failed_updates == 1:
                            log.exception("detect.journal_replay_update_failed detector=%s",
                                          getattr(detector, "name", type(detector).__name__))
                messages, received = [], []

        for body in read.bodies:
            try:
                times, topics, payloads = decoder.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                result.gaps += 1
                continue
            if not len(times) == len(topics) == len(payloads):
                result.gaps += 1
                continue
            for t, topic, payload in zip(times, topics, payloads, strict=True):
                decoded = codec.decode(topic, payload)
                if isinstance(decoded, Message):
                    messages.append(decoded)
                    received.append(t)
                else:
                    result.rejected += 1
            result.records += 1
            result.messages += len(times)
            if len(messages) >= REPLAY_CHUNK:
                feed()
        feed()
        result.seconds += time.perf_counter() - started
        return result


class JournaledStage:
    """The alerting stage as the pipeline sees it: every batch handed to it (and so to its
    detectors) is recorded in the journal, which is written before the batch is
    acknowledged (:meth:`commit`, after the stage's own commit)."""

    def __init__(self, inner: Stage, journal: DetectorJournal) -> None:
        self.inner = inner
        self.journal = journal
        self.name = inner.name

    def accept_sources(self, messages: Sequence[Message], received_ms: Sequence[int],
                       sources: Sequence[Source]) -> None:
        """Hand the batch over and record it (:class:`~gateway.ingest.pipeline.Pipeline`
        calls this, with the messages as received, rather than :meth:`accept`)."""
        journal = self.journal
        journal.begin()
        try:
            self.inner.accept(messages, received_ms)
            journal.record(received_ms, sources)
        finally:
            journal.end()

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        journal = self.journal
        journal.begin()
        try:
            self.inner.accept(messages, received_ms)
            journal.record_messages(messages, received_ms)
        finally:
            journal.end()

    def commit(self) -> None:
        self.inner.commit()
        self.journal.write()

