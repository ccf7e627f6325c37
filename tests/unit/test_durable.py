"""The durable-write steps the spool and the detector journal share: a record is appended whole
or not at all, even when ``write`` takes only part of it (a nearly full disk)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.storage import durable
from gateway.storage.durable import append_whole, fsync_dir

_real_write = os.write


@pytest.fixture
def segment(tmp_path: Path) -> Iterator[int]:
    """A segment holding one record, opened for appending, as the spool and journal do."""
    path = tmp_path / "000000000001.seg"
    path.write_bytes(b"first record")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        yield fd
    finally:
        os.close(fd)


def _writes(monkeypatch: pytest.MonkeyPatch, *takes: int | OSError) -> list[int]:
    """``os.write`` takes at most each of ``takes`` bytes in turn (or raises it), then all."""
    asked: list[int] = []
    left = list(takes)

    def write(fd: int, data: memoryview) -> int:
        asked.append(len(data))
        take = left.pop(0) if left else len(data)
        if isinstance(take, OSError):
            raise take
        return _real_write(fd, data[:take]) if take else 0

    monkeypatch.setattr(durable.os, "write", write)
    return asked


def _size(fd: int) -> int:
    return os.fstat(fd).st_size


def test_a_write_that_takes_only_part_and_then_nothing_is_cut_off_and_raises_enospc(
        segment: int, monkeypatch: pytest.MonkeyPatch) -> None:
    start = _size(segment)
    asked = _writes(monkeypatch, 5, 0)
    with pytest.raises(OSError) as raised:
        append_whole(segment, b"second record", start=start)
    assert raised.value.errno == errno.ENOSPC
    assert asked == [13, 8], "the rest asked for again after the short write"
    assert _size(segment) == start, "the 5 bytes written are cut off"


def test_a_short_write_then_the_disks_own_enospc_is_cut_off_and_raised(
        segment: int, monkeypatch: pytest.MonkeyPatch) -> None:
    start = _size(segment)
    _writes(monkeypatch, 7, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError) as raised:
        append_whole(segment, b"second record", start=start)
    assert raised.value.errno == errno.ENOSPC
    assert _size(segment) == start


def test_short_writes_that_go_on_append_the_whole_record_then_sync_once(
        segment: int, monkeypatch: pytest.MonkeyPatch) -> None:
    start = _size(segment)
    asked = _writes(monkeypatch, 3, 4, 1)
    synced: list[int] = []
    append_whole(segment, b"second record", start=start, sync=synced.append)
    assert asked == [13, 10, 6, 5]
    assert synced == [segment]
    assert _size(segment) == start + 13


def _failing(error: int) -> Callable[[int], None]:
    def fail(fd: int) -> None:
        raise OSError(error, os.strerror(error))
    return fail


def test_a_failing_sync_cuts_the_record_off_and_raises_its_error(segment: int) -> None:
    start = _size(segment)
    with pytest.raises(OSError) as raised:
        append_whole(segment, b"second record", start=start, sync=_failing(errno.EIO))
    assert raised.value.errno == errno.EIO
    assert _size(segment) == start


def test_when_the_cut_fails_too_the_caller_chooses_which_error_it_sees(
        segment: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spool raises the cut's error; the journal closes its segment (``if_not_cut``) and
    raises the write's."""
    start = _size(segment)
    _writes(monkeypatch, 5, 0)
    monkeypatch.setattr(durable.os, "ftruncate", lambda fd, size: _failing(errno.EIO)(fd))
    with pytest.raises(OSError) as raised:
        append_whole(segment, b"second record", start=start)
    assert raised.value.errno == errno.EIO
    assert isinstance(raised.value.__context__, OSError)
    assert raised.value.__context__.errno == errno.ENOSPC

    _writes(monkeypatch, 5, 0)
    not_cut: list[bool] = []
    with pytest.raises(OSError) as raised:
        append_whole(segment, b"second record", start=start,
                     if_not_cut=lambda: not_cut.append(True))
    assert raised.value.errno == errno.ENOSPC
    assert not_cut == [True]


def test_fsync_dir_syncs_a_directory_and_raises_for_a_missing_one(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")
