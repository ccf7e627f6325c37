"""The registry file as it is now, for the one judgement that must not wait for a restart.

The gateway reads the registry at start. Moving a device to another bed is done by editing the
file, regenerating the broker's ACL (``homecare acl``) and reloading the broker: from then on
the broker lets the device publish at its new bed only, while a gateway still holding the old
registry took each of its messages there for a listed device out of its place
(``device_misplaced``), its emergency calls included, dead-lettered and acknowledged: a call
lost until the gateway restarted (a fresh tester, 2026-12-03).

So when a listed device is seen out of its place, the pipeline asks :meth:`RegistryWatch.changed`
whether the file changed since it was last read (a ``stat``, at most once per
:data:`CHECK_EVERY_S`; the file parsed again only when its size, time or inode moved): if it
did, the new file's places of the listed devices replace the old ones
(:meth:`devices.registry.Registry.update_places`) and the message is judged again. The rest of
the file (new beds, settings, time zones, family webhooks) still takes a restart; the log line
says so. A device seen out of its place while the file has not changed costs one clock read.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Final

from devices.errors import RegistryError
from devices.registry import Registry

log = logging.getLogger(__name__)

CHECK_EVERY_S: Final = 1.0
"""The file is looked at no more often than this (a device flooding misplaced messages costs a
clock read each, not a ``stat``)."""


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class RegistryWatch:
    """Whether the registry file changed since the gateway read it, and its new content."""

    def __init__(self, path: Path, *, cache: Path | None = None) -> None:
        self.path = Path(path)
        self.cache = cache
        self._signature = _signature(self.path)
        self._next_check = 0.0

    def changed(self) -> Registry | None:
        """The registry the file holds now when it changed since the last look (None when it
        did not, when it was looked at less than :data:`CHECK_EVERY_S` ago, or when it cannot
        be read or parsed: the gateway keeps what it has, and says why once per change)."""
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + CHECK_EVERY_S
        signature = _signature(self.path)
        if signature is None or signature == self._signature:
            return None
        self._signature = signature
        try:
            return Registry.load(self.path, cache=self.cache)
        except (RegistryError, OSError) as exc:
            log.warning("registry.changed_unreadable path=%s error=%s; the places read at start "
                        "stay", os.fspath(self.path), exc)
            return None
