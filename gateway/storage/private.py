"""The gateway's data files kept from other local users: mode 0600, as the resident profiles.

Every SQLite file of the gateway holds secrets (API key hashes, the acknowledge links that
answer an alert) or residents' personal and health data (alerts and their comments, service
records, care plans, the messages queued upstream and to the people on call, which may carry
the resident profile). :func:`keep_private` gives each, before its store opens it, the resident
store's treatment (:func:`alerts.make_private`): created 0600, tightened to 0600 at every start
together with SQLite's ``-wal``, ``-shm`` and ``-journal`` beside it (SQLite creates those with
the database file's mode, whatever the umask).
"""

from __future__ import annotations

import logging
from pathlib import Path

from alerts import make_private

log = logging.getLogger("homecare.storage")


def keep_private(path: Path) -> Path:
    """``path`` and SQLite's files beside it mode 0600 (``path`` created so when missing);
    returns ``path``. Logs the files it had to tighten (name and old mode), and an error when
    it cannot: the gateway runs on, alarms first."""
    try:
        for name, mode in make_private(path):
            log.warning("storage.tightened file=%s old_mode=%o new_mode=600", name, mode)
    except OSError as exc:
        log.error("storage.not_private file=%s error=%s: %s", path.name, type(exc).__name__,
                  exc)
    return path
