"""The roster in force: the on-call file's, or the one an admin put through the API since.

The on-call file (``oncall_file``) is where a station writes its roster; an admin may replace it
through the API (``PUT /api/v1/oncall``) for today's changes. The replacement is kept in
``data_dir/oncall.json`` (mode 0600: it holds staff phone numbers and addresses; written
atomically: a temporary file, fsync, rename) together with a digest of the file's roster it
replaced. At start the kept roster is used as long as the file's roster is still the one it
replaced; once the file says something else (the station edited it), the file wins, and the
kept roster is moved aside to ``oncall.json.replaced`` (logged as ``oncall.file_changed``), so
an edit of the file is never silently overridden by an older one made through the API.

A roster may leave a site without a dispatcher for a while (a shift nobody was put on, a
site's entry naming only a nurse): calls there then reach the console only. Such coverage gaps
over the next :data:`~alerts.roster.COVERAGE_DAYS` days, per site (the registry's and those
the duty names, each in its zone; ``*`` when there is neither), are logged as ``oncall.gap
site=... from=... to=...`` at start and on every change (:func:`coverage`), returned by the API
as warnings, and counted now by a gauge. The roster is accepted all the same: an admin may be
halfway through an edit.

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
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from alerts.roster import ANY_SITE, Gap, Roster, RosterError

log = logging.getLogger("homecare.alerts.oncall")


MAX_GAP_LINES: Final = 50
"""Coverage gaps logged one a line, up to this many (then one line with the count)."""

SiteZone = Callable[[str], ZoneInfo | None]
"""A site's zone (None: the machine's)."""


def coverage(roster: Roster, sites: Iterable[str], zone: SiteZone, now_ms: int) -> list[Gap]:
    """The coverage gaps of ``roster`` from ``now_ms`` at ``sites`` and at every site its duty
    names (``*`` alone when there are none), each site in its zone."""
    names = {*sites, *(d.site for d in roster.duty if d.site != ANY_SITE)} or {ANY_SITE}
    return [gap for site in sorted(names) for gap in roster.gaps(site, zone(site), now_ms)]


def log_gaps(gaps: list[Gap]) -> None:
    """One warning line per gap (``oncall.gap``), the first :data:`MAX_GAP_LINES`."""
    for gap in gaps[:MAX_GAP_LINES]:
        log.warning("oncall.gap site=%s from=%s to=%s zone=%s; no dispatcher on duty: calls "
                    "there reach the console only", gap.site, gap.local(gap.start),
                    gap.local(gap.end), gap.zone or "local")
    if len(gaps) > MAX_GAP_LINES:
        log.warning("oncall.gaps count=%d; %d more not logged", len(gaps),
                    len(gaps) - MAX_GAP_LINES)


def _wall_clock() -> int:
    return int(time.time() * 1000)


def digest(roster: Roster) -> str:
    """What identifies a roster's content (not its formatting)."""
    text = json.dumps(roster.to_mapping(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class RosterStore:
    """The roster in force (see the module docstring); thread-safe."""

    def __init__(self, path: str | Path, *, seed: Roster, sites: Callable[[], Iterable[str]]
                 = tuple, zone: SiteZone = lambda site: None, check: bool = True,
                 clock: Callable[[], int] = _wall_clock) -> None:
        """``sites``: the registry's sites; ``zone``: a site's zone; ``check``: whether the
        seed's coverage gaps are worth a warning (False: no on-call file, nobody is meant to
        be on call; a roster put through the API is always checked)."""
        self.path = Path(path)
        self._sites = sites
        self._zone = zone
        self._check = check
        self._clock = clock
        self._lock = threading.Lock()
        self._seed_digest = digest(seed)
        self._roster = seed
        self.source = "file"
        """``file`` (the on-call file's roster) or ``api`` (put through the API since)."""
        self.updated_at: int | None = None
        self.updated_by: str | None = None
        self._load()
        log_gaps(self.gaps(clock()))

    def _load(self) -> None:
        """The kept roster, when it still replaces the seed."""
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

    def gaps(self, now_ms: int, *, sites: Iterable[str] | None = None,
             zone: SiteZone | None = None) -> list[Gap]:
        """The coverage gaps of the roster in force from ``now_ms`` at ``sites`` in their
        ``zone`` (default: the store's); none when nobody is meant to be on call."""
        if not (self._check or self.source == "api"):
            return []
        return coverage(self.roster, self._sites() if sites is None else sites,
                        zone or self._zone, now_ms)

    def sites_uncovered(self, now_ms: int | None = None) -> int:
        """How many sites have no dispatcher on duty now (for the gauge)."""
        if not (self._check or self.source == "api"):
            return 0
        roster, now = self.roster, self._clock() if now_ms is None else now_ms
        names = {*self._sites(), *(d.site for d in roster.duty if d.site != ANY_SITE)} \
            or {ANY_SITE}
        return sum(1 for site in names
                   if not roster.on_duty(site, now, self._zone(site)).dispatchers)

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
        log_gaps(self.gaps(now_ms))
