"""Alerts and what dispatchers work with: the domain below the HTTP API and the console.

The vocabulary (:mod:`~alerts.model`), the engine that folds findings into alerts with a
lifecycle (:class:`AlertEngine`) and its durable store (:class:`AlertStore`), the escalation
policy, the immediate rules that decide an emergency (:mod:`~alerts.rules`: emergency button,
fall), alert storms and devices outside the registry folded into one summary alert per
site and type (:class:`AlertStorms`), the live state of beds (:class:`LiveState`), the
tamper-evident caregiver service log (:class:`ServiceLog`) with each finished visit settled into
its service record (:class:`Settlement`), the supervision and settlement report
(:func:`supervision_report`), API keys (:class:`KeyStore`),
resident profiles kept only at the hub (:class:`Resident`, :class:`ResidentStore`, CSV import
with :func:`parse_csv`), the institutions' service plans and the catalogue of service items
(:class:`PlannedVisit`, :class:`Catalogue`, :class:`PlanStore`, CSV import with
:func:`parse_plans_csv`), what dispatchers do while handling an alert and the outcome codes to
resolve it with (:mod:`~alerts.handling`, :class:`ResponsePlan`), how alerts were answered
(:mod:`~alerts.reports`: the response report, its shifts, the response-time histograms),
who is on call (:class:`Roster`, :class:`RosterStore`), what each escalation step sends to whom
(:func:`plan_step`, escalation chains :class:`Chain`) and the one-time acknowledge links the
notifications carry (:class:`AckLinks`),
bounded bed history (:class:`BoundedHistory`) and the exceptions, storage faults classified
once (:mod:`~alerts.errors`). The HTTP API (:mod:`alerts.api`) and the console
(:mod:`alerts.console`) sit on top; nothing here imports the gateway.
"""

from alerts.acklinks import AckLinks, Claim, Use, call_started
from alerts.chainstatus import ChainStatus, chain_status
from alerts.engine import AlertEngine, IdFactory, random_ids, seeded_ids
from alerts.errors import (
    AlertError,
    AlertNotFound,
    HandlingRefused,
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
    NewerCall,
    PlanStoreUnavailable,
    ResidentStoreUnavailable,
    ServiceLogUnavailable,
    StorageError,
    StorageFault,
    StoreUnavailable,
    VisitRefused,
    storage_fault,
)
from alerts.escalation import CHANNELS, RECIPIENTS, Chain, EscalationPolicy, Schedule, Step
from alerts.handling import (
    DEFAULT_CHECKLISTS,
    DEFAULT_OUTCOMES,
    ITEM_PATTERN,
    OUTCOME_PATTERN,
    ResponsePlan,
)
from alerts.history import BoundedHistory, HistoryReader
from alerts.keys import KeyStore, Role, bootstrap_key_problem
from alerts.livestate import LiveState
from alerts.model import (
    GATEWAY_SITE,
    SITE_TYPES,
    Alert,
    AlertChange,
    AlertStatus,
    AlertType,
    ContactCall,
    EventRef,
    Finding,
    HandledEvent,
    Severity,
    VisitEvent,
)
from alerts.notify import (
    DEFAULT_PAGING_TOPIC,
    PROFILE_FIELDS,
    Envelope,
    NotifyChannels,
    Outgoing,
    StepPlan,
    envelope,
    plan_step,
)
from alerts.plans import (
    DEFAULT_CATALOGUE,
    PLAN_MATCH_MS,
    Catalogue,
    PlanImport,
    PlannedVisit,
    PlanRow,
    PlanZones,
    ServiceItem,
    make_plan,
    parse_plans_csv,
    plan_for_visit,
    registry_places,
    zone_named,
)
from alerts.planstore import PlanImportResult, PlanStore
from alerts.reports import DEFAULT_SHIFTS, ReportSettings, ResponseReport, Shift
from alerts.residents import Contact, CsvImport, Resident, RowProblem, parse_csv
from alerts.residentstore import ImportResult, ResidentStore, make_private
from alerts.responsemetrics import ResponseMetrics
from alerts.roster import OnDuty, Roster, RosterError, Staff
from alerts.rosterstore import RosterStore, coverage
from alerts.rules import ImmediateRules
from alerts.servicelog import (
    Audit,
    JudgedVisit,
    RowBudget,
    RowPlan,
    ServiceEntry,
    ServiceLog,
    ServiceLogRecorder,
    Verification,
    badge_origin,
    reused_visit_id,
)
from alerts.servicerecords import Settlement
from alerts.store import MAX_PAGE, AlertStore
from alerts.storms import AlertStorms
from alerts.supervision import SupervisionReport, institution_of, supervision_report
from alerts.supervisionpage import SUPERVISION_TABLES, supervision_csv, supervision_html

__all__ = [
    "CHANNELS",
    "DEFAULT_CATALOGUE",
    "DEFAULT_CHECKLISTS",
    "DEFAULT_OUTCOMES",
    "DEFAULT_PAGING_TOPIC",
    "DEFAULT_SHIFTS",
    "GATEWAY_SITE",
    "ITEM_PATTERN",
    "MAX_PAGE",
    "OUTCOME_PATTERN",
    "PLAN_MATCH_MS",
    "PROFILE_FIELDS",
    "RECIPIENTS",
    "SITE_TYPES",
    "SUPERVISION_TABLES",
    "AckLinks",
    "Alert",
    "AlertChange",
    "AlertEngine",
    "AlertError",
    "AlertNotFound",
    "AlertStatus",
    "AlertStore",
    "AlertStorms",
    "AlertType",
    "Audit",
    "BoundedHistory",
    "Catalogue",
    "Chain",
    "ChainStatus",
    "Claim",
    "Contact",
    "ContactCall",
    "CsvImport",
    "Envelope",
    "EscalationPolicy",
    "EventRef",
    "Finding",
    "HandledEvent",
    "HandlingRefused",
    "HistoryBusy",
    "HistoryError",
    "HistoryFailed",
    "HistoryReader",
    "HistoryTimeout",
    "HistoryUnavailable",
    "IdFactory",
    "ImmediateRules",
    "ImportResult",
    "InvalidCursor",
    "InvalidKeyName",
    "InvalidTransition",
    "JudgedVisit",
    "KeyExists",
    "KeyNotFound",
    "KeyStore",
    "KeyStoreError",
    "LiveState",
    "NewerCall",
    "NotifyChannels",
    "OnDuty",
    "Outgoing",
    "PlanImport",
    "PlanImportResult",
    "PlanRow",
    "PlanStore",
    "PlanStoreUnavailable",
    "PlanZones",
    "PlannedVisit",
    "ReportSettings",
    "Resident",
    "ResidentStore",
    "ResidentStoreUnavailable",
    "ResponseMetrics",
    "ResponsePlan",
    "ResponseReport",
    "Role",
    "Roster",
    "RosterError",
    "RosterStore",
    "RowBudget",
    "RowPlan",
    "RowProblem",
    "Schedule",
    "ServiceEntry",
    "ServiceItem",
    "ServiceLog",
    "ServiceLogRecorder",
    "ServiceLogUnavailable",
    "Settlement",
    "Severity",
    "Shift",
    "Staff",
    "Step",
    "StepPlan",
    "StorageError",
    "StorageFault",
    "StoreUnavailable",
    "SupervisionReport",
    "Use",
    "Verification",
    "VisitEvent",
    "VisitRefused",
    "badge_origin",
    "bootstrap_key_problem",
    "call_started",
    "chain_status",
    "coverage",
    "envelope",
    "institution_of",
    "make_plan",
    "make_private",
    "parse_csv",
    "parse_plans_csv",
    "plan_for_visit",
    "plan_step",
    "random_ids",
    "registry_places",
    "reused_visit_id",
    "seeded_ids",
    "storage_fault",
    "supervision_csv",
    "supervision_html",
    "supervision_report",
    "zone_named",
]
