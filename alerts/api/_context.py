"""What the API routes work on: the gateway's stores and live state, passed in explicitly."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from alerts.acklinks import AckLinks
from alerts.engine import AlertEngine
from alerts.escalation import EscalationPolicy
from alerts.handling import ResponsePlan
from alerts.history import HistoryReader
from alerts.keys import KeyStore
from alerts.livestate import LiveState
from alerts.plans import DEFAULT_CATALOGUE, Catalogue
from alerts.planstore import PlanStore
from alerts.reports import ReportSettings
from alerts.residentstore import ResidentStore
from alerts.rosterstore import RosterStore
from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from alerts.storms import AlertStorms
from devices.registry import Registry


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(kw_only=True)
class ApiContext:
    """The API's view of one gateway. ``alert_store``/``engine`` may be absent (then the alert
    routes answer 503); ``history`` is absent without a time-series database."""

    keys: KeyStore
    registry: Registry
    live: LiveState
    service_log: ServiceLog
    alert_store: AlertStore | None = None
    engine: AlertEngine | None = None
    history: HistoryReader | None = None
    storms: AlertStorms | None = None
    """The alerting stage's summaries (alert storms, devices outside the registry): which beds
    each lists, for the bed pages; absent: a bed shows its own alerts and its dark site's
    ``site_offline`` only."""
    residents: ResidentStore | None = None
    """The resident profiles (dispatcher and admin keys only); absent: those routes answer
    503."""
    oncall: RosterStore | None = None
    """The on-call roster (staff contact details: dispatcher and admin keys); absent: those
    routes answer 503."""
    acklinks: AckLinks | None = None
    """The one-time acknowledge links of notifications (``/ack/<token>``); absent: 404."""
    escalation: EscalationPolicy | None = None
    """The escalation chains in force (shown with the roster)."""
    plans: PlanStore | None = None
    """The service plans; absent: the plan routes answer 503."""
    catalogue: Catalogue = field(default_factory=lambda: Catalogue.parse(DEFAULT_CATALOGUE))
    """The service items plans may list (the ``service_catalogue`` setting)."""
    institutions: dict[str, str] = field(default_factory=dict)
    """The care institution of each site in the supervision report (``service_institutions``;
    a site not listed is its own)."""
    response_plan: ResponsePlan = field(default_factory=ResponsePlan)
    """The response checklists per alert type and the outcome codes to resolve with."""
    reports: ReportSettings = field(default_factory=ReportSettings)
    """The shifts and the answer target of the response report."""
    timezone: str | None = None
    """The gateway's ``timezone`` setting (IANA); the registry's default zone comes first."""
    clock: Callable[[], int] = wall_clock_ms
    """Epoch ms for transitions, check-ins and device connectivity."""
    sse_heartbeat_s: float = 15.0
    """A comment line this often on an idle stream keeps proxies and clients from timing out."""
    sse_queue_size: int = 1000
    """Changes buffered per stream client; a client further behind is disconnected and resumes
    with ``Last-Event-ID``."""
    sse_retry_ms: int = 2000
    """Reconnection delay suggested to stream clients."""
    sse_streams_per_key: int = 16
    """Event streams one key may hold open at once; one more is refused (429)."""
    key_recheck_s: float = 2.0
    """How often an open event stream re-checks its key: a revoked key's stream ends within
    this time."""
    auth_failures_per_minute: int = 60
    """Failed authentications (unknown or revoked keys, acknowledge links that are not ours,
    expired or spent) one client address may have in any minute; then 429."""
    metrics: CollectorRegistry | None = None
    """Where the API's counters go (the gateway's registry); ``None``: a private one."""
    upstream: Callable[[], object] | None = None
    """The upstream outbox's state: each destination's queue and the entries set aside (an
    object with ``queues`` and ``set_aside``, read by attribute; it blocks on SQLite and is
    called from a worker thread); ``None``: nothing goes upstream."""
