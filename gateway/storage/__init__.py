"""What the gateway keeps on its own disk before anything is acknowledged.

:mod:`~gateway.storage.spool` (points not yet in the database, append-only, fsynced),
:mod:`~gateway.storage.deadletters` (every message it could not use, with the reason), and
:mod:`~gateway.storage.health` (one account of every store's trouble, for the log, ``/readyz``
and metrics), and :mod:`~gateway.storage.housekeeping` (what keeps the data directory bounded:
archives, ages, checkpoints); :mod:`~gateway.storage.private` keeps the data files 0600;
:mod:`~gateway.storage.durable` appends a record whole or not at all and fsyncs a directory
(the spool's, the archive's and the detectors' files).
The alert store, keys and the service log live with the alerts
(:mod:`alerts`); their disk errors are classified the same way, in :mod:`alerts.errors`.
"""

from gateway.storage.deadletters import DeadLetter, DeadLetterStore, StoredDeadLetter
from gateway.storage.health import StorageHealth, is_storage_error
from gateway.storage.housekeeping import (
    Housekeeper,
    HousekeepingMetrics,
    Policy,
    store_bytes,
    verify_archive,
)
from gateway.storage.private import keep_private
from gateway.storage.spool import Spool, SpoolBatch, SpoolStats

__all__ = [
    "DeadLetter",
    "DeadLetterStore",
    "Housekeeper",
    "HousekeepingMetrics",
    "Policy",
    "Spool",
    "SpoolBatch",
    "SpoolStats",
    "StorageHealth",
    "StoredDeadLetter",
    "is_storage_error",
    "keep_private",
    "store_bytes",
    "verify_archive",
]
