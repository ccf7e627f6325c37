"""Progress of the long offline jobs (``homecare replay``, ``homecare evaluate``) on stderr.

On a terminal: a progress bar with the share done, the elapsed time and the time left (rich).
Otherwise (a CI log, cron, a pipe): a plain line every :data:`LINE_INTERVAL_S` seconds once a
job has run that long, and a last one when it ends, so a job of minutes says how far it is and
a job of seconds prints nothing more than before. What is counted is bytes of input read.

>>> human_bytes(1_536_000)
'1.5 MB'
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

__all__ = ["LINES_PER_UPDATE", "LINE_INTERVAL_S", "CountingReader", "Progress", "human_bytes",
           "read_bytes"]

LINE_INTERVAL_S: Final = 10.0
"""Seconds between two plain progress lines (not on a terminal)."""
LINES_PER_UPDATE: Final = 4096
"""Lines read between two looks at the position of a :class:`CountingReader`."""
_REFRESH_S: Final = 0.1
_CHUNK_BYTES: Final = 4 * 1024 * 1024


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


class Progress:
    """How far a job is through ``total`` bytes: :meth:`update` with the bytes done so far."""

    def __init__(self, what: str, total: int, *, console: Console | None = None,
                 enabled: bool = True) -> None:
        self.what = what
        self.total = max(total, 1)
        self.console = console if console is not None else Console(stderr=True)
        self.enabled = enabled
        self.done = 0
        self._started = time.monotonic()
        self._last_line = self._started
        self._lines = 0
        self._last_refresh = 0.0
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        self._started = self._last_line = time.monotonic()
        if self.enabled and self.console.is_terminal:
            self._bar = RichProgress(
                TextColumn(self.what), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                DownloadColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=True, auto_refresh=False)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total)
        return self

    def update(self, done: int) -> None:
        self.done = min(done, self.total)
        if not self.enabled:
            return
        now = time.monotonic()
        if self._bar is not None and self._task is not None:
            refresh = now - self._last_refresh >= _REFRESH_S
            if refresh:
                self._last_refresh = now
            self._bar.update(self._task, completed=self.done, refresh=refresh)
        elif now - self._last_line >= LINE_INTERVAL_S:
            self._last_line = now
            self._line(now)

    def _line(self, now: float, *, last: bool = False) -> None:
        elapsed = now - self._started
        share = self.done / self.total
        left = (f", about {elapsed * (1 - share) / share:,.0f} s left"
                if 0 < share < 1 else "")
        self._lines += 1
        self.console.print(
            f"{self.what}: {'done' if last else 'at'} {share:.0%} ({human_bytes(self.done)} of "
            f"{human_bytes(self.total)}) after {elapsed:,.0f} s{left}", highlight=False,
            markup=False, soft_wrap=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.enabled and self._lines and exc is None:
            self.done = self.total
            self._line(time.monotonic(), last=True)


class CountingReader(io.BufferedReader):
    """A file read line by line (``for line in reader``) that tells ``progress`` how many
    bytes it is through, every :data:`LINES_PER_UPDATE` lines."""

    def __init__(self, path: Path, progress: Callable[[int], None]) -> None:
        super().__init__(io.FileIO(path, "rb"), buffer_size=1 << 20)
        self._progress = progress
        self._lines = 0

    def __next__(self) -> bytes:
        line = super().__next__()
        self._lines += 1
        if self._lines % LINES_PER_UPDATE == 0:
            self._progress(self.tell())
        return line


def read_bytes(path: Path, progress: Callable[[int], None], *, already: int = 0) -> bytes:
    """The whole file, telling ``progress`` the bytes read (plus ``already``) as it goes."""
    chunks: list[bytes] = []
    read = already
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            chunks.append(chunk)
            read += len(chunk)
            progress(read)
    return b"".join(chunks)
