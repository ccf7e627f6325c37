"""The on-disk spool: an append-only log of line-protocol batches not yet in the database.

Every accepted batch is appended here (and fsynced, unless ``fsync=False``) *before* its
messages are acknowledged to the broker, so a crash at any point loses nothing: what was
acknowledged is on disk, what was not is redelivered by the broker. The database writer drains
the spool in order and moves a persisted cursor; a crash between a database write and the
cursor update replays a batch, which is harmless because writes are idempotent per series and
timestamp.

Layout: ``<dir>/<12-digit id>.seg`` segment files of records
``[u32 length][u32 crc32][u32 points][body]`` and a ``cursor`` file naming the first record not
yet written. A torn record at the end of the last segment (power loss mid-write) is cut off at
start-up; a corrupt record anywhere else ends its segment (counted as ``corrupt_records``). A
record a failing disk took in part and would not let be cut off again ends its segment too:
the next append starts a new one.

Bounded: when appending would exceed ``max_bytes``, the ``drop_oldest`` policy drops the oldest
pending records (counted in ``dropped_points``) and ``block`` refuses the append with
:class:`SpoolFull` so that intake pushes back.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alerts.errors import StorageError
from gateway.errors import SpoolFull
from gateway.storage.durable import append_whole, fsync_dir

_HEADER = struct.Struct("<III")
_SUFFIX = ".seg"


@dataclass(frozen=True, slots=True)
class _Record:
    segment: int
    offset: int
    length: int  # body length
    points: int

    @property
    def end(self) -> int:
        return self.offset + _HEADER.size + self.length


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    """Consecutive pending records, read for one database write."""

    body: bytes
    points: int
    records: int
    first: _Record
    last: _Record


@dataclass(slots=True)
class SpoolStats:
    appended_points: int = 0
    committed_points: int = 0
    dropped_points: int = 0
    dropped_records: int = 0
    corrupt_records: int = 0
    truncated_bytes: int = 0


class Spool:
    """Thread-safe: the pipeline appends from one thread while the writer reads from another."""

    def __init__(self, directory: str | Path, *, max_bytes: int = 2 * 1024**3,
                 segment_bytes: int = 16 * 1024 * 1024,
                 overflow: Literal["drop_oldest", "block"] = "drop_oldest",
                 fsync: bool = True) -> None:
        if segment_bytes < 64 or max_bytes < 64:
            raise ValueError("segment_bytes and max_bytes must be at least 64")
        segment_bytes = min(segment_bytes, max_bytes)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.overflow = overflow
        self.fsync = fsync
        self.stats = SpoolStats()
        self._lock = threading.Lock()
        self._pending: deque[_Record] = deque()
        self._pending_bytes = 0
        self._pending_points = 0
        self._active_id = 0
        self._active: int | None = None  # fd of the active segment
        self._active_size = 0
        self._torn = False
        """The active segment ends in part of a record that could not be cut off: the next
        append starts a new segment."""
        self._read_fds: dict[int, int] = {}
        self._recover()

    # --- start-up -----------------------------------------------------------------------------

    def _segment_path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}{_SUFFIX}"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())

    def _read_cursor(self) -> tuple[int, int]:
        try:
            seg, off = (self.directory / "cursor").read_text().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            return 0, 0

    def _write_cursor(self, segment: int, offset: int) -> None:
        tmp = self.directory / "cursor.tmp"
        tmp.write_text(f"{segment} {offset}\n")
        os.replace(tmp, self.directory / "cursor")

    def _recover(self) -> None:
        cursor_seg, cursor_off = self._read_cursor()
        segments = self._segments()
        for segment in segments:
            if segment < cursor_seg:
                self._segment_path(segment).unlink(missing_ok=True)
        segments = [s for s in segments if s >= cursor_seg]
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            start = cursor_off if segment == cursor_seg else 0
            self._scan(segment, start, truncate=last)
        self._active_id = (segments[-1] if segments else max(cursor_seg, 0)) or 1
        self._open_active()

    def _scan(self, segment: int, start: int, *, truncate: bool) -> None:
        path = self._segment_path(segment)
        data = path.read_bytes()
        offset = start
        while offset + _HEADER.size <= len(data):
            length, crc, points = _HEADER.unpack_from(data, offset)
            body_start = offset + _HEADER.size
            body = data[body_start:body_start + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break
            record = _Record(segment, offset, length, points)
            self._pending.append(record)
            self._pending_bytes += _HEADER.size + length
            self._pending_points += points
            offset = record.end
        if offset < len(data):
            if truncate:
                self.stats.truncated_bytes += len(data) - offset
                with path.open("r+b") as f:
                    f.truncate(offset)
            else:
                self.stats.corrupt_records += 1

    def _open_active(self) -> None:
        path = self._segment_path(self._active_id)
        self._active = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._active_size = os.fstat(self._active).st_size

    # --- writing ------------------------------------------------------------------------------

    def append(self, body: bytes, points: int) -> None:
        """Append one batch durably. Raises :class:`SpoolFull` under the ``block`` policy and
        :class:`~alerts.errors.StorageError` (store ``spool``) when the disk fails."""
        try:
            self._append(body, points)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError.wrap("spool", "append", exc) from exc

    def _append(self, body: bytes, points: int) -> None:
        size = _HEADER.size + len(body)
        with self._lock:
            if self._pending_bytes + size > self.max_bytes:
                if self.overflow == "block":
                    raise SpoolFull(self._pending_bytes, self.max_bytes)
                self._drop_oldest(self._pending_bytes + size - self.max_bytes)
            if self._torn or (self._active_size + size > self.segment_bytes
                              and self._active_size > 0):
                self._rotate()
                self._torn = False
            assert self._active is not None
            record = _Record(self._active_id, self._active_size, len(body), points)
            # Disk full or failing: a partial record is cut off again so the segment stays
            # readable past this point when the append is retried; should the cut fail too,
            # the segment ends there and the next append starts a new one (a record after the
            # torn one would sit where the spool does not think it is, and be lost at a
            # restart, whose scan stops at the torn record).
            append_whole(self._active, _HEADER.pack(len(body), zlib.crc32(body), points) + body,
                         start=self._active_size, sync=os.fsync if self.fsync else None,
                         if_not_cut=self._tear)
            self._active_size += size
            self._pending.append(record)
            self._pending_bytes += size
            self._pending_points += points
            self.stats.appended_points += points

    def _tear(self) -> None:
        self._torn = True

    def _rotate(self) -> None:
        assert self._active is not None
        if self.fsync:
            os.fsync(self._active)
        old = self._active
        self._active_id += 1
        try:
            self._open_active()  # first: a new segment that cannot be made leaves the old one
        except OSError:
            self._active_id -= 1
            self._active = old
            raise
        os.close(old)
        if self.fsync:
            fsync_dir(self.directory)

    def _drop_oldest(self, need: int) -> None:
        freed = 0
        while self._pending and freed < need:
            record = self._pending.popleft()
            freed += _HEADER.size + record.length
            self._pending_bytes -= _HEADER.size + record.length
            self._pending_points -= record.points
            self.stats.dropped_points += record.points
            self.stats.dropped_records += 1
        self._advance_cursor()

    # --- reading (the database writer) --------------------------------------------------------

    def read(self, max_bytes: int) -> SpoolBatch | None:
        """The oldest pending records, up to ``max_bytes`` of body (at least one record)."""
        with self._lock:
            if not self._pending:
                return None
            chosen: list[_Record] = []
            total = 0
            for record in self._pending:
                if chosen and total + record.length + 1 > max_bytes:
                    break
                chosen.append(record)
                total += record.length + 1
        parts = [self._read_body(r) for r in chosen]
        return SpoolBatch(b"\n".join(parts), sum(r.points for r in chosen), len(chosen),
                          chosen[0], chosen[-1])

    def _read_body(self, record: _Record) -> bytes:
        fd = self._read_fds.get(record.segment)
        if fd is None:
            fd = os.open(self._segment_path(record.segment), os.O_RDONLY)
            self._read_fds[record.segment] = fd
        return os.pread(fd, record.length, record.offset + _HEADER.size)

    def commit(self, batch: SpoolBatch) -> None:
        """Mark a batch as written to the database (it may have been dropped meanwhile)."""
        with self._lock:
            while self._pending and self._key(self._pending[0]) <= self._key(batch.last):
                record = self._pending.popleft()
                self._pending_bytes -= _HEADER.size + record.length
                self._pending_points -= record.points
                self.stats.committed_points += record.points
            self._advance_cursor()

    @staticmethod
    def _key(record: _Record) -> tuple[int, int]:
        return record.segment, record.offset

    def _advance_cursor(self) -> None:
        if self._pending:
            segment, offset = self._pending[0].segment, self._pending[0].offset
        else:
            segment, offset = self._active_id, self._active_size
        self._write_cursor(segment, offset)
        for old in [s for s in self._read_fds if s < segment]:
            os.close(self._read_fds.pop(old))
        for old in self._segments():
            if old < segment:
                self._segment_path(old).unlink(missing_ok=True)

    # --- state --------------------------------------------------------------------------------

    @property
    def pending_points(self) -> int:
        return self._pending_points

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def pending_records(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        with self._lock:
            if self._active is not None:
                if self.fsync:
                    os.fsync(self._active)
                os.close(self._active)
                self._active = None
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()

