"""The roster in force: the on-call file's, or the one an admin put through the API since.

The on-call file (``oncall_file``) is where a station writes its roster; an admin may replace it
through the API (``PUT /api/v1/oncall``) for today's changes. The replacement is kept in
``data_dir/oncall.json`` (mode 0600: it holds staff phone numbers and addresses; written
atomically: a temporary file, fsync, rename) together with a digest of the file's roster it
replaced. At start the kept roster is used as long as the file's roster is still the one it
replaced; once the file says something else (the station edited it), the file wins, and the
kept roster is moved aside to ``oncall.json.replaced`` (logged as ``oncall.file_changed``), so
an edit of the file is never silently overridden by an older one made through the API.

>>> import tempfile, pathlib
>>> from alerts.roster import Roster
>>> path = pathlib.Path(tempfile.mkdtemp()) / "oncall.json"
>>> store = RosterStore(path, seed=Roster())
>>> store.source, store.roster.staff
('file', ())
>>> store.replace(Roster.from_mapping({"staff": [{"id": "anna", "name": "Anna",
...     "role": "dispatcher"}]}), actor="admin-a", now_ms=1)
>>> RosterStore(path, seed=Roster()).source
'api'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from alerts.roster import Roster, RosterError

log = logging.getLogger("homecare.alerts.oncall")


def digest(roster: Roster) -> str:
    """What identifies a roster's content (not its formatting)."""
    text = json.dumps(roster.to_mapping(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class RosterStore:
    """The roster in force (see the module docstring); thread-safe."""

    def __init__(self, path: str | Path, *, seed: Roster) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seed_digest = digest(seed)
        self._roster = seed
        self.source = "file"
        """``file`` (the on-call file's roster) or ``api`` (put through the API since)."""
        self.updated_at: int | None = None
        self.updated_by: str | None = None
        kept = self._read()
        if kept is None:
            return
        if kept.get("seed") != self._seed_digest:
            os.replace(self.path, self.path.with_name(self.path.name + ".replaced"))
            log.warning("oncall.file_changed path=%s; the on-call file's roster differs from "
                        "the one replaced through the API: the file's is in force, the API's "
                        "moved aside to %s.replaced", self.path, self.path.name)
            return
        try:
            self._roster = Roster.from_mapping(kept["roster"])
        except (RosterError, KeyError, TypeError) as exc:
            log.error("oncall.unreadable path=%s error=%s; the on-call file's roster is in "
                      "force", self.path, exc)
            return
        self.source = "api"
        self.updated_at = kept.get("updated_at")
        self.updated_by = kept.get("updated_by")

    def _read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            kept = json.loads(text)
        except ValueError as exc:
            log.error("oncall.unreadable path=%s error=%s; the on-call file's roster is in "
                      "force", self.path, exc)
            return None
        return kept if isinstance(kept, dict) else None

    @property
    def roster(self) -> Roster:
        with self._lock:
            return self._roster

    def replace(self, roster: Roster, *, actor: str, now_ms: int) -> None:
        """Put ``roster`` in force and keep it (durable on return)."""
        body = json.dumps({"seed": self._seed_digest, "roster": roster.to_mapping(),
                           "updated_at": now_ms, "updated_by": actor},
                          ensure_ascii=False, indent=1).encode()
        with self._lock:
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(body)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
            with contextlib.suppress(OSError):
                directory = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
            self._roster = roster
            self.source = "api"
            self.updated_at = now_ms
            self.updated_by = actor
