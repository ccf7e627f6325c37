"""The spool: durable, ordered, bounded, and it recovers from torn writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import SpoolFull
from gateway.ingest.checkpoint import commit
from gateway.ingest.pipeline import Batch
from gateway.storage.spool import Spool


def _drain(spool: Spool, max_bytes: int = 1 << 20) -> list[bytes]:
    bodies = []
    while (batch := spool.read(max_bytes)) is not None:
        bodies.extend(batch.body.split(b"\n"))
        spool.commit(batch)
    return bodies


def test_batches_come_back_in_order_and_leave_after_commit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=256, max_bytes=1 << 20, fsync=False)
    for i in range(50):
        spool.append(f"m v={i}i {i}".encode(), 1)
    assert spool.pending_points == 50
    assert _drain(spool, max_bytes=100) == [f"m v={i}i {i}".encode() for i in range(50)]
    assert spool.pending_points == 0
    assert spool.stats.committed_points == 50
    spool.close()
    assert len(list(tmp_path.glob("*.seg"))) <= 1, "consumed segments are deleted"


def test_pending_batches_survive_a_restart_and_committed_ones_do_not_return(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200, max_bytes=1 << 20)
    for i in range(20):
        spool.append(f"m v={i}i {i}".encode(), 1)
    batch = spool.read(60)
    assert batch is not None
    spool.commit(batch)
    written = batch.records
    spool.close()
    reopened = Spool(tmp_path, segment_bytes=200, max_bytes=1 << 20)
    assert reopened.pending_records == 20 - written
    assert _drain(reopened) == [f"m v={i}i {i}".encode() for i in range(written, 20)]


def test_a_torn_last_record_is_cut_off_at_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(b"m v=1i 1", 1)
    spool.append(b"m v=2i 2", 1)
    spool.close()
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    data = segment.read_bytes()
    segment.write_bytes(data[:-3])  # power loss in the middle of the second record
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert reopened.stats.truncated_bytes > 0
    assert _drain(reopened) == [b"m v=1i 1"]
    reopened.append(b"m v=3i 3", 1)
    assert _drain(reopened) == [b"m v=3i 3"]


def test_a_corrupt_record_is_not_written_to_the_database(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(b"m v=1i 1", 1)
    spool.close()
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert _drain(Spool(tmp_path, max_bytes=1 << 20)) == []


def test_drop_oldest_policy_keeps_the_newest_and_counts_what_it_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096, max_bytes=4096, overflow="drop_oldest",
                  fsync=False)
    body = b"x" * 1000
    for _ in range(10):
        spool.append(body, 5)
    assert spool.pending_bytes <= 4096
    assert spool.stats.dropped_points == 5 * (10 - spool.pending_records)
    assert spool.stats.dropped_points > 0
    assert len(_drain(spool)) == spool.stats.committed_points // 5


def test_block_policy_refuses_appends_until_the_database_catches_up(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096, max_bytes=4096, overflow="block", fsync=False)
    spool.append(b"x" * 3000, 1)
    with pytest.raises(SpoolFull):
        spool.append(b"y" * 3000, 1)
    _drain(spool)
    spool.append(b"y" * 3000, 1)
    assert spool.stats.dropped_points == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300).filter(lambda b: b"\n" not in b),
                min_size=1, max_size=40),
       st.integers(min_value=64, max_value=2000), st.integers(min_value=1, max_value=5))
def test_whatever_is_appended_is_read_back_once_across_restarts(
        tmp_path_factory: pytest.TempPathFactory, bodies: list[bytes], segment_bytes: int,
        restarts: int) -> None:
    directory = tmp_path_factory.mktemp("spool")
    out: list[bytes] = []
    chunks = [bodies[i::restarts] for i in range(restarts)]
    for chunk in chunks:
        spool = Spool(directory, segment_bytes=segment_bytes, max_bytes=1 << 24, fsync=False)
        for body in chunk:
            spool.append(body, 1)
        batch = spool.read(500)
        if batch is not None:
            out.extend(batch.body.split(b"\n"))
            spool.commit(batch)
        spool.close()
    out.extend(_drain(Spool(directory, segment_bytes=segment_bytes, max_bytes=1 << 24)))
    assert out == [b for chunk in chunks for b in chunk]


def test_a_retried_commit_after_a_later_failure_stores_nothing_twice(tmp_path: Path) -> None:
    from gateway.storage.deadletters import DeadLetter, DeadLetterStore

    class FailingOnce:
        name = "failing"
        calls = 0

        def accept(self, messages: object, received_ms: object) -> None: ...

        def commit(self) -> None:
            self.calls += 1
            if self.calls == 1:
                raise OSError("alert store unavailable")

    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, fsync=False)
    letters = DeadLetterStore(tmp_path / "dl.sqlite3")
    stages = [FailingOnce()]
    batch = Batch(["m v=1i 1"], 1, [DeadLetter(1, "t", b"x", "malformed_json", "bad")], [])
    with pytest.raises(OSError):
        commit(batch, spool=spool, deadletters=letters, stages=stages)
    commit(batch, spool=spool, deadletters=letters, stages=stages)
    assert spool.pending_points == 1
    assert letters.count() == 1


def test_a_record_the_disk_tore_and_would_not_cut_back_ends_its_segment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing disk took part of a record and then refused to cut it off: the spool went on
    appending behind the torn part at offsets it did not have, and a restart's scan stopped at
    the torn record, losing every record after it. Now the next append starts a new segment."""
    import errno
    import os

    from gateway.storage import durable

    spool = Spool(tmp_path, max_bytes=1 << 20, fsync=False)
    spool.append(b"m v=1i 1", 1)
    real_write, real_truncate = os.write, os.ftruncate
    broken = [True]

    def write(fd: int, data: memoryview) -> int:
        if broken:
            broken.clear()
            real_write(fd, data[:5])
            raise OSError(errno.EIO, "I/O error")
        return real_write(fd, data)

    def truncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(durable.os, "write", write)
    monkeypatch.setattr(durable.os, "ftruncate", truncate)
    with pytest.raises(OSError):
        spool.append(b"m v=2i 2", 1)
    monkeypatch.setattr(durable.os, "ftruncate", real_truncate)
    for i in (3, 4):
        spool.append(f"m v={i}i {i}".encode(), 1)
    expected = [b"m v=1i 1", b"m v=3i 3", b"m v=4i 4"]
    batch = spool.read(1 << 20)
    assert batch is not None
    assert batch.body.split(b"\n") == expected
    assert len(list(tmp_path.glob("*.seg"))) == 2, "the torn segment ends at the torn record"
    spool.close()
    reopened = Spool(tmp_path, max_bytes=1 << 20, fsync=False)
    assert _drain(reopened) == expected
    assert reopened.stats.corrupt_records == 1  # the torn record, counted
