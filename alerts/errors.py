"""The few exceptions of the alert package, with their context on attributes.

* :class:`AlertNotFound` and :class:`InvalidTransition` are the caller's mistake (HTTP 404 and
  409 in the API); nothing was changed.
* :class:`StoreUnavailable` is the disk failing under the alert store. Changes that could not
  be written stay staged in the engine and go out with the next successful commit, in order.
* :class:`InvalidCursor` is a pagination cursor the store did not make (HTTP 400).
* :class:`KeyStoreError` and its kinds: an API key that exists, does not, or has a bad name.
* :class:`VisitRefused`: a check-in or check-out contradicting its visit (HTTP 409/422 in the
  API); :class:`ServiceLogUnavailable` is the disk failing under the service log.
* :class:`HandlingRefused`: a dispatcher's action that cannot apply to this alert (an item not
  on its checklist, a contact the profile lacks; HTTP 400); :class:`ResidentStoreUnavailable`
  is the disk failing under the resident profiles.
* :class:`HistoryError` and its kinds: bed history the database could not give (retryable:
  :class:`HistoryUnavailable`, :class:`HistoryBusy`, :class:`HistoryTimeout`; permanent:
  :class:`HistoryFailed`), each with the HTTP status the API answers.

Storage errors of every store on disk (the gateway's spool, dead letters, service log, outbox
and this package's alert store and keys) are classified here, once, by :func:`storage_fault`,
and raised as a :class:`StorageError` (an :class:`OSError`) with the store's name, a short
reason and whether it heals by itself. The gateway decides on that alone: hold the batch
unacknowledged and retry (every second when ``retryable``, slowly otherwise), say why on
``/readyz`` and once in the log. This module imports nothing of the gateway's, so the gateway
imports it, never the other way round.

>>> import sqlite3
>>> storage_fault(sqlite3.OperationalError("database or disk is full"))
StorageFault(reason='disk_full', retryable=True)
>>> storage_fault(sqlite3.DatabaseError("database disk image is malformed"))
StorageFault(reason='corrupt', retryable=False)
>>> storage_fault(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
True
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from alerts.model import RefusalReason, VisitEvent


@dataclass(frozen=True, slots=True)
class StorageFault:
    """What went wrong with a store, in the words an operator acts on."""

    reason: str
    """``disk_full``, ``io_error``, ``locked``, ``no_resources``, ``cannot_open`` (retryable);
    ``corrupt``, ``read_only``, ``permission``, ``missing`` (permanent)."""
    retryable: bool
    """True: heals by itself (space freed, lock released, I/O back): retry soon. False: an
    operator must act (repair or move the file, fix permissions, remount): retry slowly."""


_SQLITE_CODES: Final = {
    13: StorageFault("disk_full", True),       # SQLITE_FULL
    10: StorageFault("io_error", True),        # SQLITE_IOERR (extended codes share it)
    5: StorageFault("locked", True),           # SQLITE_BUSY
    6: StorageFault("locked", True),           # SQLITE_LOCKED
    15: StorageFault("locked", True),          # SQLITE_PROTOCOL (lock race on WAL)
    7: StorageFault("no_resources", True),     # SQLITE_NOMEM
    14: StorageFault("cannot_open", True),     # SQLITE_CANTOPEN (out of descriptors, ...)
    11: StorageFault("corrupt", False),        # SQLITE_CORRUPT
    26: StorageFault("corrupt", False),        # SQLITE_NOTADB
    8: StorageFault("read_only", False),       # SQLITE_READONLY
    3: StorageFault("permission", False),      # SQLITE_PERM
    23: StorageFault("permission", False),     # SQLITE_AUTH
}

_SQLITE_MESSAGES: Final = (
    # For errors that carry no code (raised by hand, older drivers): SQLite's own wording.
    ("database or disk is full", _SQLITE_CODES[13]),
    ("disk i/o error", _SQLITE_CODES[10]),
    ("is locked", _SQLITE_CODES[5]),
    ("out of memory", _SQLITE_CODES[7]),
    ("unable to open", _SQLITE_CODES[14]),
    ("malformed", _SQLITE_CODES[11]),
    ("not a database", _SQLITE_CODES[26]),
    ("readonly", _SQLITE_CODES[8]),
    ("read-only", _SQLITE_CODES[8]),
)

_ERRNOS: Final = {
    errno.ENOSPC: StorageFault("disk_full", True),
    errno.EDQUOT: StorageFault("disk_full", True),
    errno.EIO: StorageFault("io_error", True),
    errno.EAGAIN: StorageFault("locked", True),
    errno.EBUSY: StorageFault("locked", True),
    errno.EINTR: StorageFault("locked", True),
    errno.EMFILE: StorageFault("no_resources", True),
    errno.ENFILE: StorageFault("no_resources", True),
    errno.ENOMEM: StorageFault("no_resources", True),
    errno.EROFS: StorageFault("read_only", False),
    errno.EACCES: StorageFault("permission", False),
    errno.EPERM: StorageFault("permission", False),
    errno.ENOENT: StorageFault("missing", False),
}


_SQLITE_BUGS: Final = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError,
                       sqlite3.NotSupportedError, sqlite3.InternalError)


def storage_fault(exc: BaseException) -> StorageFault | None:
    """Classify an error raised by SQLite or the file system; ``None`` when it is not a
    storage fault at all (a bug: a constraint, a closed connection, misuse), which must not
    be retried as if the disk had failed."""
    if isinstance(exc, StorageError):
        return exc.fault
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, _SQLITE_BUGS):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_CODES:
            return _SQLITE_CODES[code & 0xFF]
        text = str(exc).lower()
        for needle, fault in _SQLITE_MESSAGES:
            if needle in text:
                return fault
        # Unknown operational trouble retries; any other database error is the file itself.
        return StorageFault("sqlite_error", isinstance(exc, sqlite3.OperationalError))
    if isinstance(exc, OSError):
        return _ERRNOS.get(exc.errno or 0, StorageFault("os_error", True))
    return None


class StorageError(OSError):
    """A store on disk could not write or read. An :class:`OSError`, so every "disk trouble:
    retry, acknowledge nothing" path handles it; :attr:`fault` says whether it heals by
    itself."""

    def __init__(self, message: str, *, store: str = "", fault: StorageFault | None = None
                 ) -> None:
        super().__init__(message)
        self.store = store
        self.fault = fault if fault is not None else StorageFault("os_error", True)

    @property
    def retryable(self) -> bool:
        return self.fault.retryable

    @classmethod
    def wrap(cls, store: str, action: str, exc: BaseException) -> StorageError:
        """``exc`` (a storage fault, see :func:`storage_fault`) as this class, for
        ``raise X.wrap("deadletters", "write", exc) from exc`` at a store's boundary."""
        fault = storage_fault(exc) or StorageFault("os_error", True)
        return cls(f"{store} {action} failed ({fault.reason}): {exc}", store=store, fault=fault)


class AlertError(Exception):
    """Base class of the alert package's own errors."""


class AlertNotFound(AlertError, LookupError):
    """No alert has this id."""

    def __init__(self, alert_id: str) -> None:
        super().__init__(f"no alert with id {alert_id!r}")
        self.alert_id = alert_id


class InvalidTransition(AlertError):
    """The lifecycle does not allow this action from the alert's current status."""

    def __init__(self, alert_id: str, status: str, action: str) -> None:
        super().__init__(f"alert {alert_id} is {status}: cannot {action} it")
        self.alert_id = alert_id
        self.status = status
        self.action = action


class NewerCall(AlertError):
    """An acknowledgement sent for an earlier call of the alert (an acknowledge link of the
    first press, used after a second press reopened it): it does not answer this call."""

    def __init__(self, alert_id: str, call_seq: int) -> None:
        super().__init__(f"alert {alert_id}: a newer call (change {call_seq}) came after this")
        self.alert_id = alert_id
        self.call_seq = call_seq


class StoreUnavailable(AlertError, StorageError):
    """The alert store could not write or read (disk full, I/O error, locked, corrupt):
    :attr:`~StorageError.fault` says whether it heals by itself."""


class InvalidCursor(AlertError, ValueError):
    """A pagination cursor that this store did not produce."""


class KeyStoreError(Exception):
    """Base of the key store's errors."""


class KeyExists(KeyStoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"an active key named {name!r} exists")
        self.name = name


class KeyNotFound(KeyStoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no active key named {name!r}")
        self.name = name


class InvalidKeyName(KeyStoreError, ValueError):
    def __init__(self, name: str, reserved: Iterable[str] = ()) -> None:
        super().__init__(f"invalid key name {name[:80]!r} (allowed: [A-Za-z0-9_.@-]{{1,64}}, "
                         f"not one of {', '.join(sorted(reserved))})")
        self.name = name


class ServiceLogUnavailable(StorageError):
    """The service log could not be written or read (disk full, I/O error, locked, corrupt).

    A :class:`~alerts.errors.StorageError` (classified once in :mod:`alerts.errors`), so the
    ingest pipeline treats it like a failing spool: it retries and acknowledges nothing
    meanwhile."""


class ResidentStoreUnavailable(StorageError):
    """The resident profiles could not be read or written (disk trouble, or a file the
    gateway's user cannot keep private): :attr:`~StorageError.fault` says which."""


class PlanStoreUnavailable(StorageError):
    """The service plans could not be read or written (disk trouble):
    :attr:`~StorageError.fault` says which."""


class HandlingRefused(AlertError, ValueError):
    """A dispatcher's action that cannot apply to this alert; nothing was recorded.
    ``reason``: ``not_on_checklist``, ``no_such_contact``, ``no_profile``, ``not_a_dispatcher``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class VisitRefused(ValueError):
    """A check-in or check-out that contradicts its visit's records; nothing was recorded."""

    def __init__(self, event: VisitEvent, reason: RefusalReason, detail: str) -> None:
        super().__init__(detail)
        self.event = event
        self.reason: RefusalReason = reason
        self.detail = detail


class HistoryError(Exception):
    status = 502
    code = "bad_gateway"
    retry_after_s: int | None = None


class HistoryUnavailable(HistoryError):
    """The database could not be reached."""

    status = 503
    code = "unavailable"


class HistoryBusy(HistoryError):
    """Too many history queries in flight already: refused at once, retry shortly."""

    status = 503
    code = "history_busy"
    retry_after_s = 5


class HistoryTimeout(HistoryError):
    """The database did not answer in time: the query was abandoned."""

    status = 504
    code = "history_timeout"


class HistoryFailed(HistoryError):
    """The database answered with an error."""

    status = 502
