"""The few steps of writing a file durably that the gateway's own files share, in one place.

:func:`append_whole` is how the spool (:mod:`gateway.storage.spool`) and the detector journal
(:mod:`gateway.detect.journal`) append a record: whole or not at all, even on a nearly full disk
whose ``write`` takes part of a buffer and returns the count without an error (a fresh tester's
full-disk run lost points in the spool that way: a short write was counted as a whole record,
and the records after it were read wrong). :func:`fsync_dir` makes a file created or renamed in
a directory survive a power loss (the file's own fsync does not cover its name).

The alert package's stores (:mod:`alerts.store`, :mod:`alerts.rosterstore`) keep their own
directory fsync: the alerts sit below the gateway and import nothing of it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path


def append_whole(fd: int, data: bytes, *, start: int,
                 sync: Callable[[int], object] | None = None,
                 if_not_cut: Callable[[], object] | None = None) -> None:
    """Append all of ``data`` to ``fd`` (opened ``O_APPEND``, ``start`` bytes long) and call
    ``sync`` on it (``os.fsync``, ``os.fdatasync``; None: no sync), or raise :class:`OSError`
    with the file cut back to ``start``, so that it never ends in half a record and the append
    can be retried. ``write`` is repeated for what it did not take; one that takes nothing
    raises ``ENOSPC``. Should the cut fail too, the file ends with part of ``data``: with
    ``if_not_cut``, that is called and the write's error raised (the caller then writes
    elsewhere); without it, the cut's error is raised."""
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.ENOSPC, "no space left on device (short write)")
            view = view[written:]
        if sync is not None:
            sync(fd)
    except OSError:
        if if_not_cut is None:
            os.ftruncate(fd, start)
        else:
            try:
                os.ftruncate(fd, start)
            except OSError:
                if_not_cut()
        raise


def fsync_dir(directory: Path) -> None:
    """fsync ``directory``, so that a file created, renamed or deleted in it stays so after a
    power loss. Raises :class:`OSError` as ``open`` and ``fsync`` do (POSIX: a directory opens
    read-only)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
