"""Storage errors are classified once (``alerts.errors.storage_fault``) for every store:
retryable (heals by itself) or permanent (an operator must act); bugs are not storage faults.

The errors are SQLite's own: a locked database, a corrupt file, a read-only connection (a
really full file system is in ``tests/faults/test_storage_faults.py``).
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from pathlib import Path

import pytest

from alerts.errors import (
    ServiceLogUnavailable,
    StorageError,
    StorageFault,
    StoreUnavailable,
    storage_fault,
)


def _error(run: object) -> BaseException:
    try:
        run()  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("no error raised")


def test_a_locked_database_is_retryable(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    exc = _error(lambda: other.execute("INSERT INTO t VALUES (1)"))
    assert storage_fault(exc) == StorageFault("locked", True)
    holder.close()
    other.close()


def test_a_corrupt_file_is_permanent(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"not a database, " * 512)
    exc = _error(lambda: sqlite3.connect(path).execute("SELECT * FROM sqlite_master"))
    assert storage_fault(exc) == StorageFault("corrupt", False)


def test_a_read_only_database_is_permanent(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE t (x)")
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    exc = _error(lambda: ro.execute("INSERT INTO t VALUES (1)"))
    assert storage_fault(exc) == StorageFault("read_only", False)


@pytest.mark.parametrize(("code", "fault"), [
    (errno.ENOSPC, StorageFault("disk_full", True)),
    (errno.EIO, StorageFault("io_error", True)),
    (errno.EMFILE, StorageFault("no_resources", True)),
    (errno.EROFS, StorageFault("read_only", False)),
    (errno.EACCES, StorageFault("permission", False)),
])
def test_file_system_errors_by_errno(code: int, fault: StorageFault) -> None:
    assert storage_fault(OSError(code, "boom")) == fault


def test_bugs_are_not_storage_faults(tmp_path: Path) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x UNIQUE)")
    db.execute("INSERT INTO t VALUES (1)")
    assert storage_fault(_error(lambda: db.execute("INSERT INTO t VALUES (1)"))) is None
    db.close()
    assert storage_fault(_error(lambda: db.execute("SELECT 1"))) is None
    assert storage_fault(ValueError("x")) is None


def test_every_store_raises_a_classified_storage_error() -> None:
    assert issubclass(StoreUnavailable, StorageError)
    assert issubclass(ServiceLogUnavailable, StorageError)
    wrapped = StorageError.wrap("deadletters", "write",
                                sqlite3.OperationalError("database or disk is full"))
    assert isinstance(wrapped, OSError)
    assert (wrapped.store, wrapped.fault, wrapped.retryable) == (
        "deadletters", StorageFault("disk_full", True), True)
