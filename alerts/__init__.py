"""Alerts: model, lifecycle, rules, persistence, HTTP API and console.

The public surface: the vocabulary (:mod:`alerts.model`), the engine that folds findings into
alerts with a lifecycle (:class:`AlertEngine`), its durable store (:class:`AlertStore`), the
escalation policy and the immediate rules (emergency button, fall).
"""

from alerts.engine import AlertEngine, random_ids, seeded_ids
from alerts.errors import (
    AlertError,
    AlertNotFound,
    InvalidCursor,
    InvalidTransition,
    StoreUnavailable,
)
from alerts.escalation import EscalationPolicy, Schedule
from alerts.model import (
    Alert,
    AlertChange,
    AlertStatus,
    AlertType,
    EventRef,
    Finding,
    HandledEvent,
    Severity,
)
from alerts.rules import ImmediateRules
from alerts.store import AlertStore

__all__ = [
    "Alert",
    "AlertChange",
    "AlertEngine",
    "AlertError",
    "AlertNotFound",
    "AlertStatus",
    "AlertStore",
    "AlertType",
    "EscalationPolicy",
    "EventRef",
    "Finding",
    "HandledEvent",
    "ImmediateRules",
    "InvalidCursor",
    "InvalidTransition",
    "Schedule",
    "Severity",
    "StoreUnavailable",
    "random_ids",
    "seeded_ids",
]
