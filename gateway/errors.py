"""The gateway's few domain exceptions: retryable vs permanent, with context on attributes.

* Permanent, an operator must act: :class:`ConfigError` (settings that cannot work; defined
  once for every tool in :mod:`devices.errors`), :class:`CredentialsRefused` (the database
  refuses the gateway's credentials; retried slowly), :class:`RejectedWriteError` (the
  database refuses these points: they go to the dead letters), :class:`ConnectRefused` (the
  broker refuses the connection: bad credentials or not authorised).
* Retryable, heals by itself: :class:`RetryableWriteError` (the database is down or slow),
  :class:`SpoolFull` (with the ``block`` overflow policy, until the database drains it).

Storage errors (every store on disk, the alert store included) are classified in one place
shared with the alert package, :mod:`alerts.errors` (:class:`StorageError`,
:func:`storage_fault`), and re-exported here.
"""

from __future__ import annotations

from alerts.errors import StorageError, StorageFault, storage_fault
from devices.errors import ConfigError

__all__ = ["ConfigError", "ConnectRefused", "CredentialsRefused", "GatewayError",
           "RejectedWriteError", "RetryableWriteError", "SpoolFull", "StorageError",
           "StorageFault", "WriteError", "storage_fault"]


class GatewayError(Exception):
    """Base class of the gateway's own errors."""


class SpoolFull(GatewayError):
    """The spool is at its bound and the overflow policy is ``block``."""

    def __init__(self, pending_bytes: int, max_bytes: int) -> None:
        super().__init__(f"spool full: {pending_bytes} of {max_bytes} bytes pending")
        self.pending_bytes = pending_bytes
        self.max_bytes = max_bytes


class WriteError(GatewayError):
    """A time-series write failed."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryableWriteError(WriteError):
    """The database is unreachable, overloaded or misconfigured: keep the data and retry."""


class RejectedWriteError(WriteError):
    """The database refused the points themselves (HTTP 400): retrying the same body fails."""


class CredentialsRefused(WriteError):
    """The database refused the gateway's credentials (HTTP 401/403): a configuration error
    (token, user, password, org or bucket rights), not an outage. The points stay spooled;
    retrying soon would not help, so it is retried slowly until someone fixes it."""


class ConnectRefused(GatewayError):
    """The broker refused the connection (CONNACK code): bad credentials, not authorised."""

    def __init__(self, code: int) -> None:
        super().__init__(f"broker refused the connection (code {code:#x})")
        self.code = code
