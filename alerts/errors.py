"""The few exceptions of the alert package, with their context on attributes.

* :class:`AlertNotFound` and :class:`InvalidTransition` are the caller's mistake (HTTP 404 and
  409 in the API); nothing was changed.
* :class:`StoreUnavailable` is the disk failing under the alert store: retryable. It is an
  :class:`OSError` so that the ingest pipeline's "disk trouble: retry, acknowledge nothing"
  path handles it like a failing spool. Changes that could not be written stay staged in the
  engine and go out with the next successful commit, in order.
* :class:`InvalidCursor` is a pagination cursor the store did not make (HTTP 400).
"""

from __future__ import annotations


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


class StoreUnavailable(AlertError, OSError):
    """The alert store could not write or read (disk full, I/O error, locked): retry later."""


class InvalidCursor(AlertError, ValueError):
    """A pagination cursor that this store did not produce."""
