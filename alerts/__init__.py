"""Alerts and what dispatchers work with: the domain below the HTTP API and the console.

The vocabulary (:mod:`~alerts.model`), the engine that folds findings into alerts with a
lifecycle (:class:`AlertEngine`) and its durable store (:class:`AlertStore`), the escalation
policy, the immediate rules that decide an emergency (:mod:`~alerts.rules`: emergency button,
fall), alert storms and devices outside the registry folded into one summary alert per
site and type (:class:`AlertStorms`), the live state of beds (:class:`LiveState`), the
tamper-evident caregiver service log (:class:`ServiceLog`), API keys (:class:`KeyStore`),
bounded bed history (:class:`BoundedHistory`) and the exceptions, storage faults classified
once (:mod:`~alerts.errors`). The HTTP API (:mod:`alerts.api`) and the console
(:mod:`alerts.console`) sit on top; nothing here imports the gateway.
"""

from alerts.engine import AlertEngine, IdFactory, random_ids, seeded_ids
from alerts.errors import (
    AlertError,
    AlertNotFound,
    HistoryBusy,
    HistoryError,
    HistoryFailed,
    HistoryTimeout,
    HistoryUnavailable,
    InvalidCursor,
    InvalidKeyName,
    InvalidTransition,
    KeyExists,
    KeyNotFound,
    KeyStoreError,
    ServiceLogUnavailable,
    StorageError,
    StorageFault,
    StoreUnavailable,
    VisitRefused,
    storage_fault,
)
from alerts.escalation import EscalationPolicy, Schedule
from alerts.history import BoundedHistory, HistoryReader
from alerts.keys import KeyStore, Role, bootstrap_key_problem
from alerts.livestate import LiveState
from alerts.model import (
    Alert,
    AlertChange,
    AlertStatus,
    AlertType,
    EventRef,
    Finding,
    HandledEvent,
    Severity,
    VisitEvent,
)
from alerts.rules import ImmediateRules
from alerts.servicelog import ServiceLog, ServiceLogRecorder
from alerts.store import MAX_PAGE, AlertStore
from alerts.storms import AlertStorms

__all__ = [
    "MAX_PAGE",
    "Alert",
    "AlertChange",
    "AlertEngine",
    "AlertError",
    "AlertNotFound",
    "AlertStatus",
    "AlertStore",
    "AlertStorms",
    "AlertType",
    "BoundedHistory",
    "EscalationPolicy",
    "EventRef",
    "Finding",
    "HandledEvent",
    "HistoryBusy",
    "HistoryError",
    "HistoryFailed",
    "HistoryReader",
    "HistoryTimeout",
    "HistoryUnavailable",
    "IdFactory",
    "ImmediateRules",
    "InvalidCursor",
    "InvalidKeyName",
    "InvalidTransition",
    "KeyExists",
    "KeyNotFound",
    "KeyStore",
    "KeyStoreError",
    "LiveState",
    "Role",
    "Schedule",
    "ServiceLog",
    "ServiceLogRecorder",
    "ServiceLogUnavailable",
    "Severity",
    "StorageError",
    "StorageFault",
    "StoreUnavailable",
    "VisitEvent",
    "VisitRefused",
    "bootstrap_key_problem",
    "random_ids",
    "seeded_ids",
    "storage_fault",
]
