"""The gateway: builds every part from the settings, wires them, and runs their tasks.

(A module over 400 lines: the wiring and the lifecycle of the tasks, start and clean shutdown
in order, are the one place where every part meets; each part's logic lives in its room.)

Owns the MQTT source, the pipeline, the checkpoint, the spool, the database writer and the
alert engine.

Alerts: the alerting stage (:mod:`gateway.detect.alerting`) is the pipeline's first stage, so alert
changes are in ``data_dir/alerts.sqlite3`` before a batch is acknowledged to the broker; a batch
that stages a change to a critical alert is flushed at once, never held for batching. A task
ticks the engine every second (escalation, auto-resolution, detector windows) and commits what
that staged; the detectors' share of a tick runs in a worker thread. ``Gateway.alerts`` (the
engine) and ``Gateway.alert_store`` serve the alert API.

Detectors across a crash: the batches handed to the alerting stage are journaled on their way
(:mod:`gateway.detect.journal`, written in the batch commit before acknowledgement); the
detectors' snapshot is taken while the ingest task holds its next step, so that it holds an
exact journal position, and at start the journal's records after it are handed to the
restored detectors before any new message: a ``kill -9`` loses no detector input.

Two MQTT sessions (:mod:`gateway.ingest.urgentsession`): the main one takes everything, the
urgent one (``mqtt_urgent_session``) only button and fall events, which the broker then hands
over at once even while the main session works through a backlog. Both feed the urgent lane;
the first copy of a call reaches the alert rules, in the very read that brought it
(:meth:`Gateway._urgent_read`), the main session's copy is stored. The
urgent session's copies are acknowledged after the alert commit that follows their handling
(:meth:`Gateway._commit_alerts`), so a call is acknowledged there only once its alert is on
disk; the main session's after the batch commit, as ever. The dispatchers' stream shows a
call's critical change just before that commit, as unstored, and again once it is stored
(:meth:`~alerts.engine.AlertEngine.show_critical`): screens do not wait for the disk.

Threads: the emergency path (alert commits, :meth:`Gateway._commit_alerts`) and the ingest
path (the batch commit before acknowledgement) each have a dedicated thread of their own, and
the detectors another; none of them uses the default thread pool, which the API and other
neighbours share, so a slow database answering history queries (own bounded pool, time-out:
:mod:`alerts.history`, :mod:`gateway.tsdb.history`) never delays an emergency call.
Housekeeping (:mod:`gateway.storage.housekeeping`) has a thread of its own too, and deletes in
slices: an alert commit waits for one slice at most.

Storage trouble is never fatal (:mod:`gateway.storage.health`): a batch whose commit fails (disk
full, I/O error, a corrupt dead-letter file) is held unacknowledged and retried; ``/readyz``
and one log line say why. Meanwhile the inbox keeps the socket read for emergency calls,
leaving the rest unacknowledged
(:meth:`~gateway.ingest.connection.Inbox.shed_when_full`), so a press still
reaches the alert store and the stream while the bulk stores cannot write; once the held batch
is committed the gateway reconnects and the broker sends the rest again.

Shutdown (SIGTERM, Ctrl-C or :meth:`Gateway.stop`) stops intake, commits and acknowledges the
batch in hand, disconnects (the broker keeps the session and whatever was not acknowledged),
then gives the database writer a bounded time to drain the spool; whatever is left stays on
disk for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import importlib
import logging
import sys
import time
import zoneinfo
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import msgspec

from alerts import AckLinks, Catalogue, PlanStore, RosterStore, Settlement, institution_of
from alerts.engine import AlertEngine
from alerts.keys import KeyStore
from alerts.livestate import LiveState
from alerts.rules import ImmediateRules
from alerts.servicelog import ServiceLog, ServiceLogRecorder
from alerts.store import AlertStore
from devices.codec import Codec
from devices.devicetime import CLOCK_TRUST_MS, ClockWindow
from devices.registry import Registry
from gateway.config import Settings
from gateway.detect import (
    SNAPSHOT_FILE,
    Restored,
    ServiceAnomalyDetector,
    restore_snapshot,
    save_snapshot,
)
from gateway.detect.alerting import (
    AlertingStage,
    detector_limits,
    engine_from_settings,
    load_detectors,
    storms_from_settings,
)
from gateway.detect.gateway_health import GatewayHealthWatch
from gateway.detect.journal import JOURNAL_DIR, DetectorJournal, JournaledStage, ReadBack
from gateway.detect.service_anomaly import CATCH_UP_MS, LATE_MS, service_checks
from gateway.detect.service_anomaly import SETTLE_MS as JUDGED_AFTER_MS
from gateway.detect.snapshot import SnapshotOvertaken
from gateway.errors import ConfigError
from gateway.ingest.checkpoint import Checkpoint
from gateway.ingest.connection import MqttSource
from gateway.ingest.inbox import Inbox, UrgentFeed
from gateway.ingest.message import RawMessage
from gateway.ingest.pacing import STEP_SLICE, StepPacer
from gateway.ingest.pipeline import Pipeline, Stage, device_budget
from gateway.ingest.registrywatch import RegistryWatch
from gateway.ingest.urgentsession import is_shared, urgent_client_id, urgent_filters
from gateway.ingest.visitrecords import BudgetedServiceLog, badge_budget
from gateway.monitoring import Metrics, process_age_s
from gateway.notify import (
    LINKS_FILE,
    ROSTER_FILE,
    Notifier,
    link_secret,
    notifier_from_settings,
    read_oncall_file,
)
from gateway.storage.deadletters import DeadLetterStore
from gateway.storage.health import StorageHealth, is_storage_error
from gateway.storage.housekeeping import Housekeeper, HousekeepingMetrics, Policy
from gateway.storage.private import keep_private
from gateway.storage.spool import Spool
from gateway.tsdb.drainer import SinkWriter
from gateway.tsdb.writers import TimeSeriesWriter, writer_from_settings
from gateway.upstream import Outbox, Shares, Upstream

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("homecare.gateway")

T = TypeVar("T")

GC_THRESHOLDS = (20_000, 5, 10)
"""Collector thresholds while the gateway runs: a young-generation pass per 20,000 new objects
instead of 700 (each a few ms), so the full passes over all live state, which stall the loop
for tens of ms, come several times less often (measured in the latency benchmark). The middle
generation is collected every 5 young passes, so it holds at most ~100,000 objects: with
(50,000, 20) a flood of new devices (whose state survives) filled it to a million and its pass
held the loop 218 ms while presses waited (flood benchmark, 2026-12-01; ≤ 57 ms now)."""

SWITCH_INTERVAL_S = 0.001
"""How long a thread may hold the interpreter while another waits for it (Python's default:
5 ms). The detectors' rounds run in a worker thread; with the default, each time the event
loop gave the interpreter up (a socket read) it waited up to 5 ms to get it back, several times
per emergency call, while a flood of new devices kept that thread busy."""
FEED_BACK_AFTER_S = 1.0
"""The journal read back at start goes to the detectors once intake's first batch is
committed, or this long after the start when nothing comes."""

FLOOD_FREEZE_DEVICES = 100
"""Once this many devices were registered on first sight since the last freeze (a flood of new
devices: a real deployment adds a few a day), what exists is moved out of the collector's reach
(``gc.freeze``, as at start). Their state lives as long as their ids (and what the live state's
byte cap evicts is still freed, by reference counting); otherwise the collector's passes over
it, growing with each new id, held the loop tens of ms at a time while presses waited (flood
benchmark). Only garbage in reference cycles at that moment is kept for good, once per this
many new devices. Counted across steps, not per step: steps are sized by time
(:mod:`gateway.ingest.pacing`), and a first sight costs ~140 us, so a flood's steps register
~35 devices each and a per-step count never reached 100 (flood benchmark, 2026-12-02: one
middle-generation pass of 226 ms during the intake, presses waiting behind it)."""

URGENT_FIRST_MAX_S = 0.05
"""While an emergency call is being handled (rules, alert commit on its thread, the change
handed to the API's streams) the ingest task starts no new step, for at most this long. A
step holds the event loop and competes with the commit's thread for the interpreter, and the
loop ran one between each hop of the call's way (the commit's completion, the stream's write):
during the 100,000-id flood a press took p50 4-8 ms from receipt to the stream's hand-over
against 3-5 ms in the quiet phase of the same runs (flood benchmark, 2026-12-02). Bounded, so
that intake goes on when the alert store is slow (a commit that waits for a failing disk) or
calls come back to back."""

REGISTRY_CACHE = "registry.cache.json"
"""The registry file's parse, kept in the data directory (:meth:`Registry.load`)."""

UNLISTED_STEP_S = 0.001
"""Time given, per loop turn, to calls from devices the registry does not list there
(:attr:`Inbox.unlisted <gateway.ingest.inbox.Inbox.unlisted>`), taken :data:`UNLISTED_SLICE`
at a time: twenty thousand made-up buttons pressing at once all open their alerts, a few
seconds later, while a listed device's call, handled in the read that brings it, waits for at
most one such step."""
UNLISTED_SLICE = 16
FINDINGS_SLICE = 200
"""Detector findings applied and committed at a time (a few ms each): during an alert storm
(thousands of findings in one round) an emergency call commits after one slice, not after
the whole storm."""

STORE_BYTES_EVERY_S = 60.0
"""How often the stores' bytes on disk are measured between housekeeping runs."""

ALERT_TICK_S = 1.0
"""How often the alert engine is ticked (escalation timers, detector windows)."""

SNAPSHOT_RETRY_S = 5.0
"""A snapshot overtaken by an emergency call handed to the detectors while it was taken
(:class:`~gateway.detect.snapshot.SnapshotOvertaken`) is tried again this much later: each try
holds the intake for as long as it takes, so a burst of calls cannot hold it most of the
time."""


def judged_within_ms(settings: Settings) -> int:
    """How long after a visit's check-out is recorded the ``service_anomaly`` detector may
    still judge it, for settling to wait that long for the judgement at most
    (:class:`alerts.Settlement`, ``judged_within_ms``): it judges a visit a minute after its
    check-out (``SETTLE_MS``), one checked out late (a backlog) once its home's infrared
    caught up, at most ``CATCH_UP_MS`` (5 min) after its receipt, at an evaluation
    (``detector_evaluate_interval_s``; an app's check-out is read from the log at the one
    before), so at most the longer of the two plus two evaluation intervals: 7 min by default.
    A judgement that comes later still (a sensor far behind, a detector stalled) revises the
    record settled ``not_judged``."""
    every = round(settings.detector_evaluate_interval_s * 1000)
    return max(JUDGED_AFTER_MS, CATCH_UP_MS) + 2 * every


def awaited_within_ms(settings: Settings) -> int:
    """How long after a visit's check-out is recorded settling waits for its judgement while
    the ``service_anomaly`` detector says it still holds the visit
    (:meth:`~gateway.detect.service_anomaly.ServiceAnomalyDetector.awaiting_judgement`: its
    home's infrared runs behind): the detector waits at most ``LATE_MS`` (12 h) after the
    check-out's time, which may be ``CLOCK_TRUST_MS`` after its receipt, and judges at an
    evaluation, so that and :func:`judged_within_ms` (12 h 22 min by default). A stalled
    detector holds a visit no longer."""
    return LATE_MS + CLOCK_TRUST_MS + judged_within_ms(settings)


class Gateway:
    def __init__(self, settings: Settings, *, registry: Registry | None = None,
                 stages: Sequence[Stage] = (), writer: TimeSeriesWriter | None = None,
                 drain_timeout_s: float = 10.0, serve_http: bool = True) -> None:
        """Opens every store; a store that cannot be opened (say, the disk full at start)
        raises, after the ones already opened are closed again (the runner retries)."""
        try:
            self._build(settings, registry=registry, stages=stages, writer=writer,
                        drain_timeout_s=drain_timeout_s, serve_http=serve_http)
        except BaseException:
            self._close_stores()
            raise

    def _close_stores(self) -> None:
        for name in ("spool", "deadletters", "service_log", "keys", "alert_store", "residents",
                     "plans", "acklinks", "journal"):
            store = getattr(self, name, None)
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()
        for sender in (getattr(self, "upstream", None), getattr(self, "notifier", None)):
            if sender is not None:
                with contextlib.suppress(Exception):
                    sender.outbox.close()

    def _site_zone(self, site: str) -> zoneinfo.ZoneInfo | None:
        """A site's zone: the registry's, else the station's ``timezone``; None: the
        machine's."""
        name = self.registry.timezone(site, self.settings.timezone)
        return zoneinfo.ZoneInfo(name) if name else None

    def _build(self, settings: Settings, *, registry: Registry | None,
               stages: Sequence[Stage], writer: TimeSeriesWriter | None,
               drain_timeout_s: float, serve_http: bool) -> None:
        self.settings = settings
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        if registry is None:
            registry = (Registry.load(settings.registry_file,
                                      cache=data_dir / REGISTRY_CACHE)
                        if settings.registry_file else Registry())
            registry.first_sight_max = settings.first_sight_max_devices
        self.registry = registry
        self.timezone = zoneinfo.ZoneInfo(settings.timezone) if settings.timezone else None
        self.metrics = Metrics()
        self.spool = Spool(data_dir / "spool", max_bytes=settings.spool_max_bytes,
                           segment_bytes=settings.spool_segment_bytes,
                           overflow=settings.spool_overflow, fsync=settings.spool_fsync)
        self.deadletters = DeadLetterStore(
            keep_private(data_dir / "deadletters.sqlite3"),
            max_bytes=settings.dead_letter_max_bytes,
            head_bytes=settings.dead_letter_head_bytes,
            source_bytes_per_s=settings.dead_letter_source_bytes_per_second,
            source_burst_bytes=settings.dead_letter_source_burst_bytes, metrics=self.metrics)
        # For the alert API: live bed/device state, the caregiver service log, API keys.
        clock_window = ClockWindow(behind_ms=settings.clock_window_s * 1000)
        self.live = LiveState(clock_window=clock_window, max_bytes=settings.live_state_max_bytes,
                              registered=lambda site, bed: (b := registry.bed(site, bed))
                              is not None and not b.auto_registered)
        self.metrics.watch_clocks(self.live.wrong_clocks)
        self.service_log = ServiceLog(keep_private(data_dir / "servicelog.sqlite3"))
        try:
            self.keys = KeyStore(keep_private(data_dir / "keys.sqlite3"),
                                 bootstrap_token=settings.secret("api_key"))
        except ValueError as exc:
            raise ConfigError(f"api_key (HOMECARE_API_KEY/_FILE): {exc}") from None
        self.alert_store = AlertStore(keep_private(data_dir / "alerts.sqlite3"))
        from alerts.residentstore import ResidentStore  # for the API only; never fails a start

        self.residents = ResidentStore(data_dir / "residents.sqlite3")
        # Never fails a start either.
        self.plans = PlanStore(keep_private(data_dir / "plans.sqlite3"))
        # Each finished visit settled into its service record once the detectors judged it.
        self.settlement = Settlement(
            self.service_log, alerts=self.alert_store, plans=self.plans,
            catalogue=Catalogue.parse(settings.service_catalogue),
            settle_ms=round(settings.service_record_settle_s * 1000),
            started_ms=int(time.time() * 1000), judged_within_ms=judged_within_ms(settings),
            awaited_within_ms=awaited_within_ms(settings))
        self.upstream: Upstream | None = None
        families = {(bed.site, bed.id): bed.family_webhook for bed in registry.beds()
                    if bed.family_webhook}
        if settings.upstream_url or settings.upstream_institution_url or families:
            secret = settings.secret("upstream_secret") or ""
            if not secret:
                raise ConfigError("upstream_secret (HOMECARE_UPSTREAM_SECRET/_FILE): needed to "
                                  "sign what goes to the registry's family webhooks")
            self.upstream = Upstream(
                Outbox(keep_private(data_dir / "outbox.sqlite3")), url=settings.upstream_url,
                secret=secret.encode(), source=settings.upstream_source,
                alert_store=self.alert_store, service_log=self.service_log,
                families=families, institution_url=settings.upstream_institution_url,
                shares=Shares.from_settings(settings), timeout_s=settings.upstream_timeout_s,
                park_after_s=settings.upstream_park_after_s, metrics=self.metrics.registry)
        self.alerts: AlertEngine = engine_from_settings(settings, self.alert_store)
        # On-call notification (gateway/notify): the on-call file's roster and chains (the
        # chains set the engine's escalation timelines), the acknowledge links, and the
        # notifier, woken by every alert commit; nothing of it without an on-call file or a
        # channel.
        roster, chains = read_oncall_file(settings.oncall_file, settings)
        if chains:
            self.alerts.policy = dataclasses.replace(self.alerts.policy, chains=chains)
        self.roster = RosterStore(
            data_dir / ROSTER_FILE, seed=roster, sites=lambda: list(registry.sites),
            zone=self._site_zone, check=settings.oncall_file is not None)
        self.metrics.oncall_sites_uncovered.set_function(self.roster.sites_uncovered)
        self.acklinks = AckLinks(keep_private(data_dir / LINKS_FILE),
                                 secret=link_secret(settings, data_dir),
                                 ttl_ms=round(settings.notify_link_ttl_s * 1000))
        self.notifier: Notifier | None = None
        if settings.oncall_file or settings.notify_webhook_url or settings.notify_smtp_host \
                or settings.notify_mqtt_url:
            self.notifier = notifier_from_settings(
                settings, data_dir=data_dir, engine=self.alerts, store=self.alert_store,
                roster=self.roster, residents=self.residents, registry=registry,
                links=self.acklinks, metrics=self.metrics.registry)
            self.alerts.add_listener(self.notifier.wake)
        self.alerting = AlertingStage(
            self.alerts,
            rules=ImmediateRules(no_motion_ms=round(settings.alert_fall_no_motion_s * 1000)),
            detectors=load_detectors(registry, timezone=settings.timezone,
                                     clock_window=clock_window,
                                     **detector_limits(settings)),
            metrics=self.metrics.registry, storms=storms_from_settings(settings, registry))
        # The gateway's own health as alerts (broker, database, stores), and the detectors told
        # that nothing is heard until the broker connects.
        self.health = GatewayHealthWatch(
            after_ms=round(settings.gateway_health_alert_after_s * 1000))
        self.health.resume(self.alerts.open_alerts())
        self.alerting.intake_changed(up=False, now_ms=int(time.time() * 1000))
        # Visits checked against the plans and the sensors, badges and the app alike.
        for detector in self.alerting.detectors:
            if isinstance(detector, ServiceAnomalyDetector):
                detector.configure(checks=service_checks(settings), plans=self.plans,
                                   visit_log=self.service_log)
                # Settling waits on for a visit the detector still holds (a lagging sensor).
                self.settlement.awaiting = detector.awaiting_judgement
        self.snapshot_path = data_dir / SNAPSHOT_FILE
        self.journal: DetectorJournal | None = None
        """What the detectors took in since their snapshot (:mod:`gateway.detect.journal`),
        given back to them at start."""
        self._journal_read: ReadBack | None = None
        self._journal_after: int | None = None
        self._journal_fed = False
        """The journal read back at start is handed to the detectors: a snapshot the journal's
        size asks for waits for it (queued behind it, it would hold intake all that while)."""
        self._feed_back_queued = False
        self._resumed = asyncio.Event()
        """The first batch after the start is committed."""
        snapshot_ms: int | None = None
        if settings.detector_snapshot_interval_s > 0:
            restored = restore_snapshot(self.snapshot_path, self.alerting.detectors)
            snapshot_ms = restored.taken_at_ms
            if restored.taken_at_ms is not None:
                log.info("detect.snapshot_restored age_s=%.0f restored=%d fresh=%s",
                         time.time() - restored.taken_at_ms / 1000, len(restored.restored),
                         ",".join(sorted(restored.fresh)) or "-")
            if settings.detector_journal_max_bytes > 0:
                self.journal = self._replay_journal(data_dir / JOURNAL_DIR, restored)
        # The conditions raised since the snapshot (or without one): a detector must know them
        # to clear them (a kill -9, and the device came back meanwhile).
        self.alerting.resume_detectors(snapshot_ms)
        self.inbox = Inbox(settings.inbox_max_messages, max_bytes=settings.inbox_max_bytes)
        self.inbox.listed = registry.lists_topic
        self.source = MqttSource(settings, self.inbox,
                                 on_connection_change=self._on_connection_change)
        self.urgent_source: MqttSource | None = None
        """The urgent session (button and fall events only), unless switched off or not
        usable with ``mqtt_topic``."""
        self._urgent_unacked: list[RawMessage] = []
        """Copies of the urgent session handled, acknowledged after the next alert commit."""
        if settings.mqtt_urgent_session:
            filters = list(dict.fromkeys(
                f for topic in settings.mqtt_topic for f in urgent_filters(topic)))
            if filters:
                self.urgent_source = MqttSource(
                    settings, UrgentFeed(self.inbox),
                    client_id=urgent_client_id(settings.mqtt_client_id), topics=filters,
                    urgent=True, on_connection_change=self._on_urgent_connection_change)
                self.urgent_source.on_shared = self._store_urgent_copies
                main_user = self.source.credentials()[0]
                if main_user is not None and self.urgent_source.credentials()[0] == main_user:
                    log.warning("mqtt.urgent_session_shares_user user=%s; a broker that makes "
                                "the user name the client id (use_username_as_clientid, as "
                                "deploy/mosquitto/mosquitto.conf) has the two sessions take "
                                "over each other: set mqtt_urgent_username", main_user)
            else:
                log.warning("mqtt.urgent_session_unused topic=%s reason=%s; emergency calls "
                            "come through the main session only, behind any backlog",
                            ",".join(settings.mqtt_topic),
                            "shared_subscription"
                            if any(is_shared(topic) for topic in settings.mqtt_topic)
                            else "no_button_or_fall_events_in_topic")
        # The detectors' input is journaled on its way to them (gateway.detect.journal).
        feed = (JournaledStage(self.alerting, self.journal) if self.journal is not None
                else self.alerting)
        # Badge check-ins/outs into the service log, each badge within its budget of rows.
        budget = badge_budget(settings, registry)
        budget.resume(self.alerts.open_alerts())
        visit_records = BudgetedServiceLog(
            ServiceLogRecorder(self.service_log, metrics=self.metrics.registry), budget,
            deadletters=self.deadletters, metrics=self.metrics, on_findings=self.alerting.apply)
        self.pipeline = Pipeline(metrics=self.metrics, registry=registry,
                                 codec=Codec(max_payload_bytes=settings.max_payload_bytes),
                                 stages=(feed, *stages, self.live, visit_records),
                                 urgent_stages=(feed,),
                                 dedup_window=settings.dedup_window,
                                 clock_window=clock_window,
                                 device_budget=device_budget(settings),
                                 registry_watch=RegistryWatch(settings.registry_file,
                                                              cache=data_dir / REGISTRY_CACHE)
                                 if settings.registry_file else None)
        self.writer = writer if writer is not None else writer_from_settings(settings)
        self.storage = StorageHealth(self.metrics.registry)
        self.sink = (SinkWriter(self.spool, self.writer, deadletters=self.deadletters,
                                metrics=self.metrics, max_bytes=settings.write_max_bytes,
                                auth_retry_s=settings.influx_auth_retry_s,
                                storage=self.storage)
                     if self.writer is not None else None)
        self.drain_timeout_s = drain_timeout_s
        self.serve_http = serve_http
        self.http_started = asyncio.Event()
        self.http_address: str | None = None
        """Where the API listens (``host:port``), once it does: ``api_addr``, with the port
        the system chose when that says 0."""
        self.started = asyncio.Event()
        if self.deadletters.open_error is not None:
            self.storage.failed("deadletters", self.deadletters.open_error)
        # Dedicated threads: the emergency path and the ingest commit never wait for a thread
        # of the default pool, which the API, history queries and other neighbours share.
        self._stopping = asyncio.Event()
        self._feed_open = asyncio.Event()
        """Cleared while the detectors are snapshotted: the ingest task hands them nothing
        meanwhile, so the snapshot holds an exact journal position (the urgent lane goes on)."""
        self._feed_open.set()
        self._urgent_busy = 0
        """Emergency calls being handled (:meth:`_handle_urgent`) now."""
        self._urgent_idle = asyncio.Event()
        """Set while none is: the ingest task waits for it before a step
        (:data:`URGENT_FIRST_MAX_S`)."""
        self._urgent_idle.set()
        self._urgent_to_finish = 0
        """Calls handled (:meth:`_show_urgent`) whose commit is still to come."""
        self._urgent_staged = False
        self._urgent_shown = False
        """Whether those staged alert changes, and showed some on the streams."""
        self._emergency_thread = ThreadPoolExecutor(1, thread_name_prefix="emergency")
        self._ingest_thread = ThreadPoolExecutor(1, thread_name_prefix="ingest")
        self._detect_thread = ThreadPoolExecutor(1, thread_name_prefix="detect")
        # Housekeeping (its own thread; SQLite work in small slices): archive, age, checkpoint.
        readers = {"servicelog.sqlite3": True, "outbox.sqlite3": self.upstream is not None,
                   "notify.sqlite3": self.notifier is not None}
        self.housekeeper = Housekeeper(data_dir, Policy.from_settings(settings),
                                       metrics=HousekeepingMetrics(self.metrics.registry),
                                       deadletters=self.deadletters,
                                       alert_readers=[f for f, used in readers.items() if used],
                                       audits=[("servicelog-audit", self.service_log.audit)])
        self._housekeeping_thread = ThreadPoolExecutor(1, thread_name_prefix="housekeeping")
        self.checkpoint = Checkpoint(
            self.pipeline, spool=self.spool, deadletters=self.deadletters, source=self.source,
            inbox=self.inbox, storage=self.storage, metrics=self.metrics,
            thread=self._ingest_thread, stopping=self._stopping,
            on_spooled=self.sink.notify if self.sink is not None else None)
        self._ingest_done = asyncio.Event()

    def _replay_journal(self, directory: Path, restored: Restored) -> DetectorJournal:
        """Open the detector journal and read back what it holds after the restored snapshot
        (every record when there is none); the detectors are handed it on their own thread as
        the first thing :meth:`run` does (:meth:`_feed_back_journal`), holding the batches
        intake hands them meanwhile, so that a large journal does not delay intake's resuming
        (decoding 27,000 messages, the 4 MiB that ask for a snapshot, takes 0.15-0.3 s). A
        snapshot taken without a journal (it was switched off) makes what the journal holds
        stale: dropped, not replayed."""
        settings = self.settings
        # Not fsynced: a process killed leaves its writes in the page cache, and an fdatasync
        # a batch beside the spool's stalled emergency calls on the same disk (flood bench,
        # quiet presses: p99 53 ms, max 123 ms, against 5.8/7.2 without the journal). A power
        # loss may lose the journal's last seconds: that detector input, never data or alerts.
        journal = DetectorJournal(directory, max_bytes=settings.detector_journal_max_bytes,
                                  fsync=False)
        if restored.taken_at_ms is not None and restored.journal_position is None:
            journal.discard()
        self._journal_after = restored.journal_position
        self._journal_read = journal.read_back(after=restored.journal_position)
        if self._journal_read.bodies:
            self.alerting.hold_detectors()
        return journal

    def _queue_feed_back(self) -> None:
        """Queue :meth:`_feed_back_journal` on the detectors' thread, once."""
        if not self._feed_back_queued:
            self._feed_back_queued = True
            self._detect_thread.submit(self._feed_back_journal)

    async def _feed_back_once_resumed(self) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in (self._resumed, self._stopping)]
        try:
            await asyncio.wait(waits, timeout=FEED_BACK_AFTER_S,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        self._queue_feed_back()

    def _feed_back_journal(self) -> None:
        """On the detectors' thread, before their first evaluation or snapshot: hand them the
        journal's records read back at start, then the batches intake handed over since
        (:meth:`~gateway.detect.alerting.AlertingStage.release_detectors`)."""
        read, self._journal_read = self._journal_read, None
        if read is None or self.journal is None:
            self._journal_fed = True
            return
        try:
            replayed = self.journal.feed_back(read, self.alerting.detectors, codec=Codec(
                max_payload_bytes=self.settings.max_payload_bytes))
        finally:
            held = self.alerting.release_detectors()
            self._journal_fed = True
        if replayed.records or replayed.skipped or replayed.cut_bytes or \
                replayed.corrupt_segments:
            log.info("detect.journal_replayed records=%d messages=%d seconds=%.2f after=%s "
                     "skipped=%d rejected=%d gaps=%d cut_bytes=%d corrupt_segments=%d "
                     "failed_updates=%d held=%d", replayed.records, replayed.messages,
                     replayed.seconds, self._journal_after, replayed.skipped,
                     replayed.rejected, replayed.gaps, replayed.cut_bytes,
                     replayed.corrupt_segments, replayed.failed_updates, held)

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`; returns after a clean shutdown."""
        if self.spool.pending_points:
            log.info("spool.backlog points=%d records=%d; replaying to the database",
                     self.spool.pending_points, self.spool.pending_records)
        gc_timer = self.metrics.gc_callback()
        # The journal's records go to the detectors first on their thread (before any
        # evaluation or snapshot queued there), once intake has resumed (decoding them beside
        # it would slow its start: both want the interpreter).
        if self._journal_read is None or not self._journal_read.bodies:
            self._queue_feed_back()
        # The interpreter's settings are the process's: put back on the way out (a gateway run
        # inside another program, such as a test process, leaves it as it was).
        switch_interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
        try:
            async with asyncio.TaskGroup() as tasks:
                mqtt = tasks.create_task(self.source.run(), name="mqtt")
                # A main session that never subscribed from this data directory (a first
                # start) subscribes before the urgent one connects: under one client id
                # (use_username_as_clientid, no mqtt_urgent_username) the urgent session then
                # resumes the main subscription and stops at its first message that is not a
                # call (or at its second takeover).
                first_start = not self.source.filters.held()
                urgent_mqtt = (tasks.create_task(self.urgent_source.run(
                    after=self.source.connected if first_start else None), name="mqtt-urgent")
                               if self.urgent_source is not None else None)
                ingest = tasks.create_task(self._ingest(), name="ingest")
                if not self._feed_back_queued:
                    tasks.create_task(self._feed_back_once_resumed(), name="journal-feed-back")
                urgent = tasks.create_task(self._urgent_lane(), name="urgent")
                self.inbox.on_urgent = self._urgent_read
                sink = tasks.create_task(self.sink.run(), name="sink") if self.sink else None
                gauges = tasks.create_task(self._gauges(), name="gauges")
                alert_ticks = tasks.create_task(self._alert_ticks(), name="alert-ticks")
                housekeeping = tasks.create_task(self._housekeeping(), name="housekeeping")
                upstream_stop = asyncio.Event()
                upstream = (tasks.create_task(self.upstream.run(upstream_stop), name="upstream")
                            if self.upstream is not None else None)
                tasks.create_task(self.settlement.run(
                    self._stopping, on_settled=self.upstream.wake if self.upstream is not None
                    else lambda: None), name="service-records")
                notify_stop = asyncio.Event()
                notify = (tasks.create_task(self.notifier.run(notify_stop), name="notify")
                          if self.notifier is not None else None)
                http = (tasks.create_task(self._serve_http(), name="http")
                        if self.serve_http else None)
                # Everything made so far (modules, classes, registry, app) lives as long as
                # the process: keep it out of the collector's full passes, which otherwise
                # stall the loop for 100+ ms under load (measured in the latency benchmark).
                gc.freeze()
                gc.set_threshold(*GC_THRESHOLDS)
                gc.enable()  # off while a plain start imported and built it (homecare.service)
                sys.setswitchinterval(SWITCH_INTERVAL_S)
                gc.callbacks.append(gc_timer)
                self.started.set()
                await self._stopping.wait()
                self.inbox.interrupt()
                await ingest
                self.inbox.on_urgent = None  # nothing more is shown that would not be committed
                urgent.cancel()
                await alert_ticks
                await self._commit_alerts()
                self._queue_feed_back()  # stopped before intake resumed: the journal first
                if self.settings.detector_snapshot_interval_s > 0:
                    await self._snapshot_detectors()
                if upstream is not None:
                    upstream_stop.set()  # what is not delivered goes after the restart
                if notify is not None:
                    notify_stop.set()  # likewise
                    await notify
                if upstream is not None:
                    await upstream
                if self.urgent_source is not None and urgent_mqtt is not None:
                    await self.urgent_source.stop()
                    await urgent_mqtt
                await self.source.stop()
                await mqtt
                if self.sink is not None and sink is not None:
                    drained = await self.sink.drain(self.drain_timeout_s)
                    if not drained:
                        log.warning("shutdown.spool_left points=%d; written on next start",
                                    self.spool.pending_points)
                    sink.cancel()
                gauges.cancel()
                self.housekeeper.stopping.set()  # a run in hand ends after its slice
                housekeeping.cancel()
                if http is not None:
                    http.cancel()
        except BaseExceptionGroup as group:
            # A part that cannot start for a setting (the API's address taken) is said as
            # such: the one ConfigError, not a group of one, reaches the runner.
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], ConfigError):
                raise group.exceptions[0] from None
            raise
        finally:
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(gc_timer)
            sys.setswitchinterval(switch_interval)
            gc.set_threshold(*thresholds)
            self.housekeeper.stopping.set()
            for thread in (self._emergency_thread, self._ingest_thread, self._detect_thread,
                           self._housekeeping_thread):
                thread.shutdown(wait=True, cancel_futures=True)
            if self.writer is not None:
                await self.writer.close()
            self._close_stores()
            log.info("gateway.stopped")

    def stop(self) -> None:
        self._stopping.set()

    async def _serve_http(self) -> None:
        """The API and console, started beside the intake rather than before it.

        Importing the web stack and building the app take about half a second, which the
        intake must not wait for after a restart (chaos: ingest resumed < 2 s after a kill):
        they run in a thread while the MQTT sessions connect and the backlog is read.
        """
        app = await asyncio.to_thread(self._http_app)
        from gateway.http import HttpLimits, serve  # imported by now, in the thread

        gc.freeze()  # the app lives as long as the process, like what was frozen at start
        host, port = self.settings.api_host_port
        await serve(app, host, port, self.http_started,
                    limits=HttpLimits.from_settings(self.settings), metrics=self.metrics,
                    listening=self._listening)

    def _listening(self, address: str) -> None:
        self.http_address = address

    @staticmethod
    def warm_up() -> None:
        """Import what a start loads only later (the web stack, in :meth:`_serve_http`'s
        thread): a standby (:func:`gateway.runner.wait_for_data_dir`) does it while it waits,
        so its API answers sooner after it takes over."""
        for name in ("alerts.api", "alerts.console", "gateway.http", "gateway.tsdb.history"):
            importlib.import_module(name)

    def _http_app(self) -> FastAPI:
        """The HTTP app from explicit parts: health, metrics, and what the alert API reads."""
        # Imported here: a gateway without HTTP (replay, benchmarks) never loads the web stack.
        from alerts.api import ApiContext
        from gateway.http import Health, create_app
        from gateway.tsdb.history import reader_from_settings

        history = reader_from_settings(self.settings, metrics=self.metrics.registry)
        return create_app(
            health=Health(self.readiness, self.readiness_reasons), metrics=self.metrics,
            api=ApiContext(keys=self.keys, registry=self.registry, live=self.live,
                           service_log=self.service_log, alert_store=self.alert_store,
                           engine=self.alerts, storms=self.alerting.storms,
                           history=history, metrics=self.metrics.registry,
                           auth_failures_per_minute=self.settings.api_auth_failures_per_minute,
                           upstream=self.upstream.report if self.upstream is not None else None,
                           sse_streams_per_key=self.settings.api_streams_per_key,
                           timezone=self.settings.timezone,
                           key_recheck_s=self.settings.api_key_recheck_s,
                           residents=self.residents,
                           oncall=self.roster, acklinks=self.acklinks,
                           escalation=self.alerts.policy,
                           plans=self.plans,
                           catalogue=Catalogue.parse(self.settings.service_catalogue),
                           institutions=institution_of(self.settings.service_institutions),
                           response_plan=self.settings.response_plan(),
                           reports=self.settings.report_settings()))

    # --- ingest -------------------------------------------------------------------------------

    async def _ingest(self) -> None:
        pipeline = self.pipeline
        max_points = self.settings.batch_max_points
        max_age = self.settings.batch_max_age_ms / 1000
        # Steps sized by time, not count (gateway.ingest.pacing): between two steps the loop
        # reads the sockets, the urgent lane and the API run.
        pacer = StepPacer()
        frozen_at = pipeline.registered_total
        """Devices registered on first sight when the collector last froze what exists."""
        first_commit = True
        """The first step after a start is committed at once (not batched up to its age or
        size limit): what a restart leaves queued at the broker starts moving sooner."""
        while not self._stopping.is_set():
            raws = await self.inbox.get(pacer.size)
            if self.inbox.urgent:
                # Emergency calls and falls among them (or received while this task waited)
                # go first, before the telemetry ahead of them.
                await self._handle_urgent()
            # Calls of unlisted devices still waiting in their lane are this step's now: its
            # processing takes them to the rules (Pipeline.process_urgent never sees a call
            # after process has).
            self.inbox.claim(raws)
            if not self._feed_open.is_set():
                await self._feed_open.wait()  # the detectors are being snapshotted
            if not self._urgent_idle.is_set():
                # An emergency call is on its way to the stream: no step before it is there.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(URGENT_FIRST_MAX_S):
                        await self._urgent_idle.wait()
            started = time.perf_counter()
            done = self._process_within(raws, started + pacer.budget_s)
            pacer.took(done, time.perf_counter() - started)
            if pipeline.registered_total - frozen_at >= FLOOD_FREEZE_DEVICES:
                gc.freeze()  # a flood of new devices: keep their state out of the passes
                frozen_at = pipeline.registered_total
            if pipeline.pending_messages and (
                    first_commit or not len(self.inbox) or self.alerts.urgent_pending
                    or pipeline.pending_points >= max_points
                    or pipeline.pending_age_s >= max_age or self._stopping.is_set()):
                await self.checkpoint.flush()
                if first_commit:
                    first_commit = False
                    self._resumed.set()
                    log.info("ingest.resumed process_age_s=%s messages=%d; the first batch "
                             "is committed", process_age_s(), len(raws))
            else:
                await asyncio.sleep(0)  # let the socket, the urgent lane and the API run
            if (self.checkpoint.recall_pending and not len(self.inbox)
                    and not pipeline.pending_messages):
                # Storage is back and everything held is committed and acknowledged: have the
                # broker send again what the inbox shed meanwhile.
                self.checkpoint.recall_pending = False
                self.source.recall()
        if pipeline.pending_messages:
            await self.checkpoint.flush()

    def _process_within(self, raws: list[RawMessage], deadline: float) -> int:
        """Hand ``raws`` to the pipeline :data:`~gateway.ingest.pacing.STEP_SLICE` at a time
        until ``deadline`` (``time.perf_counter``) has passed; what is left goes back to the
        inbox's front, next in line. Returns how many were processed (at least one slice)."""
        done = 0
        while done < len(raws):
            self.pipeline.process(raws[done:done + STEP_SLICE])
            done = min(done + STEP_SLICE, len(raws))
            if time.perf_counter() >= deadline:
                break
        if done < len(raws):
            self.inbox.unget(raws[done:])
        return done

    async def _urgent_lane(self) -> None:
        """Emergency button and fall events as soon as they are read from either socket, even
        while the ingest task is busy committing: rules, alert engine, alert store (durable),
        then the API stream. The main session's copies are stored and acknowledged in their
        turn; the urgent session's are acknowledged after the alert commit."""
        while True:
            await self.inbox.urgent_ready.wait()
            await self._handle_urgent()
            if self.inbox.unlisted:
                await asyncio.sleep(0)  # the reads (and listed devices' calls) between slices

    def _urgent_read(self) -> None:
        """:attr:`Inbox.on_urgent <gateway.ingest.inbox.Inbox.on_urgent>`: an emergency call
        just read from either socket goes to the rules and, staged, to the dispatchers'
        streams in this very read, not when the urgent lane's task is woken a loop turn later
        (behind whatever else that turn runs: during a flood, an ingest step and a read of the
        main session). The lane's task, woken as before, does the rest: the commit and the
        acknowledgements. Should the rules fail here, the calls go back to the lane, whose
        task handles them (and fails) as it always did."""
        raws = self.inbox.take_urgent()
        if not raws:
            return
        try:
            self._show_urgent(raws)
        except Exception:
            log.exception("urgent.read_handling_failed calls=%d; left to the urgent lane",
                          len(raws))
            self.inbox.urgent.extendleft(reversed(raws))
        self.inbox.urgent_ready.set()  # the lane's task commits what was staged

    def _show_urgent(self, raws: list[RawMessage]) -> None:
        """The synchronous half of handling emergency calls: the rules, then the critical
        changes shown on the streams (:meth:`AlertEngine.show_critical`); the commit is
        :meth:`_handle_urgent`'s, which ends the busy state begun here."""
        self._urgent_busy += 1
        self._urgent_idle.clear()
        self._urgent_to_finish += 1
        try:
            handed = self.pipeline.process_urgent(raws)
        except BaseException:
            self._urgent_to_finish -= 1
            self._urgent_done()
            raise
        if self.urgent_source is not None:
            self._urgent_unacked.extend(raw for raw in raws if raw.urgent_session)
        if handed and self.alerts.staged:
            self._urgent_staged = True
            if self.alerts.show_critical():
                self._urgent_shown = True

    def _urgent_done(self) -> None:
        self._urgent_busy -= 1
        if not self._urgent_busy:
            self._urgent_idle.set()

    async def _handle_urgent(self) -> None:
        """Handle what waits in the urgent lane (:meth:`_show_urgent`) and finish what was
        handled in a read (:meth:`_urgent_read`): the commit, then the acknowledgements."""
        raws = self.inbox.take_urgent()
        if raws:
            self._show_urgent(raws)
        if self.inbox.unlisted:
            deadline = time.perf_counter() + UNLISTED_STEP_S
            while self.inbox.unlisted and time.perf_counter() < deadline:
                if taken := self.inbox.take_unlisted(UNLISTED_SLICE):  # [] once all claimed
                    self._show_urgent(taken)
        passed = self.inbox.take_passed()
        if passed and self.urgent_source is not None:
            # Copies not held (a flood of unlisted devices' calls): their main session's
            # copies are the calls; acknowledged now, out of their receipt order (a broker
            # matches a PUBACK by its packet id).
            self.urgent_source.ack(passed)
        finishing, self._urgent_to_finish = self._urgent_to_finish, 0
        if not finishing:
            return
        shown, self._urgent_shown = self._urgent_shown, False
        staged, self._urgent_staged = self._urgent_staged, False
        try:
            if shown:
                # On the dispatchers' screens now, stored by the commit that follows: the
                # alert store's fsync is the slowest and least predictable hop of a call. The
                # streams write it in the next loop turn, which does not also parse a read of
                # the main session (a flood's 16 KiB: ~130 messages).
                with self.source.reading_held():
                    await asyncio.sleep(0)
            if (staged and self.alerts.staged) or self._urgent_unacked:
                await self._commit_alerts()
                # The commit's thread handed the change to the API's streams (a callback
                # queued on the loop before this task resumed): let their writes go first.
                await asyncio.sleep(0)
        finally:
            for _ in range(finishing):
                self._urgent_done()

    async def _in_thread(self, thread: ThreadPoolExecutor, fn: Callable[..., T], *args: object
                         ) -> T:
        return await asyncio.get_running_loop().run_in_executor(thread, fn, *args)

    # --- alerts -------------------------------------------------------------------------------

    async def _alert_ticks(self) -> None:
        """Tick the alert engine every second (at once at start: overdue escalations after a
        restart are taken immediately) and commit what the tick staged."""
        next_tick = time.monotonic()
        interval = self.settings.detector_snapshot_interval_s
        next_snapshot = next_tick + interval
        by_size_after = next_tick
        """A full journal asks for a snapshot at once, unless the last one failed (then at
        the next interval)."""
        while not self._stopping.is_set():
            now_ms = int(time.time() * 1000)
            if interval > 0 and (time.monotonic() >= next_snapshot or (
                    self.journal is not None and self.journal.wants_snapshot
                    and self._journal_fed and time.monotonic() >= by_size_after)):
                next_snapshot = time.monotonic() + interval
                outcome = await self._snapshot_detectors()
                if outcome == "overtaken":
                    next_snapshot = time.monotonic() + SNAPSHOT_RETRY_S
                by_size_after = next_snapshot if outcome != "written" else time.monotonic()
            # The detectors' work (a round of buffered messages into numpy columns, every
            # bed evaluated) runs in a worker thread: it never stalls intake or the emergency
            # path. Rules, engine and escalation stay on the loop.
            # Not before the journal is queued to them (their first round after it).
            detected = (await self._in_thread(self._detect_thread, self.alerting.detect, now_ms)
                        if self._feed_back_queued else [])
            for first in range(0, len(detected), FINDINGS_SLICE):
                self.alerting.apply(detected[first:first + FINDINGS_SLICE], now_ms)
                if len(detected) > FINDINGS_SLICE:
                    await self._commit_alerts()
                    await asyncio.sleep(0)
            checks = self.readiness()
            self.alerting.apply_tick(self.health.observe(
                checks, self.readiness_reasons() if not all(checks.values()) else {}, now_ms),
                now_ms)
            if self.alerts.staged:
                await self._commit_alerts()
            next_tick += ALERT_TICK_S
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_tick - time.monotonic())):
                    await self._stopping.wait()

    async def _snapshot_detectors(self) -> str:
        """Snapshot the detectors' state (:mod:`gateway.detect.snapshot`) on the detectors'
        thread, between two of their evaluations, with the ingest task holding its next step
        meanwhile (the journal position it holds is then exact); a failure is logged, never
        fatal. ``written``, ``overtaken`` (an emergency call reached the detectors meanwhile:
        try again soon) or ``failed``."""
        started = time.perf_counter()
        self._feed_open.clear()
        try:
            size = await self._in_thread(self._detect_thread, functools.partial(
                save_snapshot, self.snapshot_path, self.alerting.detectors,
                journal=self.journal))
        except SnapshotOvertaken as exc:
            log.debug("detect.snapshot_overtaken reason=%s; tried again in %.0f s", exc,
                      SNAPSHOT_RETRY_S)
            return "overtaken"
        except Exception as exc:
            self.metrics.snapshot_failures.inc()
            log.error("detect.snapshot_failed path=%s error=%s: %s; the previous snapshot is "
                      "kept", self.snapshot_path, type(exc).__name__, exc)
            return "failed"
        finally:
            self._feed_open.set()
        self.metrics.snapshot_seconds.observe(time.perf_counter() - started)
        self.metrics.snapshot_bytes.set(size)
        return "written"

    async def _commit_alerts(self) -> None:
        """The emergency path's commit, on its own thread; then the acknowledgement of the
        urgent session's copies handled before it began. Commits run one at a time (one
        thread, and the engine's lock), and each writes every change staged when it runs, so
        once this one succeeds whatever those copies caused is on disk, whichever commit
        wrote it; a copy that duplicated one handled earlier waits the same way."""
        held, self._urgent_unacked = self._urgent_unacked, []
        try:
            await self._in_thread(self._emergency_thread, self.alerting.commit)
        except BaseException as exc:
            self._urgent_unacked[:0] = held  # acknowledged after a later commit, in order
            if not isinstance(exc, Exception) or not is_storage_error(exc):
                raise
            # The changes stay staged and go out with the next commit (the tick retries every
            # second), in order.
            self.storage.failed("alerts", exc, holding=f"{self.alerts.staged} alert "
                                "changes staged in memory")
            return
        if held and self.urgent_source is not None:
            self.urgent_source.ack(held)
        if self.storage.failing("alerts"):
            self.storage.recovered("alerts", what=f"last_seq={self.alerts.last_seq}")
        if self.upstream is not None:
            self.upstream.wake()

    async def _housekeeping(self) -> None:
        """Tidy the data directory (:mod:`gateway.storage.housekeeping`) every
        ``housekeeping_interval_s``, first at most a minute after start, and measure the
        stores' bytes on disk (``homecare_store_bytes``) at start and every minute between
        runs; a failure is logged, never fatal."""
        interval = self.settings.housekeeping_interval_s
        next_run = time.monotonic() + min(interval, 60.0) if interval > 0 else None
        while not self._stopping.is_set():
            due = next_run is not None and time.monotonic() >= next_run
            if due:
                next_run = time.monotonic() + interval
            try:
                await self._in_thread(self._housekeeping_thread, self.housekeeper.run
                                      if due else self.housekeeper.measure)
            except Exception as exc:  # a bug: logged, tried again next time
                log.exception("housekeeping.failed error=%s", type(exc).__name__)
            wait = STORE_BYTES_EVERY_S if next_run is None else max(
                0.0, min(STORE_BYTES_EVERY_S, next_run - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._stopping.wait()

    # --- observability ------------------------------------------------------------------------

    def _on_connection_change(self, connected: bool) -> None:
        self.metrics.mqtt_connected.set(1 if connected else 0)
        self.alerting.intake_changed(up=connected, now_ms=int(time.time() * 1000))

    def _store_urgent_copies(self, raws: list[RawMessage]) -> None:
        """The urgent session held the main session (one client id): its copies were the only
        ones, so they join the main session's, to be stored (never acknowledged: the broker
        sends again what was not, and that copy is dropped as a duplicate)."""
        log.warning("mqtt.urgent_copies_stored messages=%d; taken by the urgent session while "
                    "it held the main session", len(raws))
        self.inbox.put_many([msgspec.structs.replace(raw, urgent_session=False, connection=0)
                             for raw in raws])

    def _on_urgent_connection_change(self, connected: bool) -> None:
        self.metrics.mqtt_urgent_connected.set(1 if connected else 0)

    async def _gauges(self) -> None:
        stats = self.pipeline.dedup.stats
        seen = (0, 0, 0)
        spool_stats = self.spool.stats
        dropped_seen = 0
        shed_seen = 0
        passed_seen = 0
        while not self._stopping.is_set():
            m = self.metrics
            m.inbox_depth.set(len(self.inbox))
            m.unlisted_calls_waiting.set(len(self.inbox.unlisted))
            m.unlisted_copies_passed.inc(self.inbox.copies_passed - passed_seen)
            passed_seen = self.inbox.copies_passed
            m.messages_shed.inc(self.inbox.shed - shed_seen)
            shed_seen = self.inbox.shed
            m.spool_pending_points.set(self.spool.pending_points)
            m.spool_pending_bytes.set(self.spool.pending_bytes)
            m.late.inc(stats.late - seen[0])
            m.seq_resets.inc(stats.resets - seen[2])
            gaps = max(stats.gaps, seen[1])
            m.seq_gaps.inc(gaps - seen[1])
            seen = (stats.late, gaps, stats.resets)
            if spool_stats.dropped_points > dropped_seen:
                log.warning("spool.overflow dropped_points=%d policy=drop_oldest",
                            spool_stats.dropped_points - dropped_seen)
                m.points_dropped.inc(spool_stats.dropped_points - dropped_seen)
                dropped_seen = spool_stats.dropped_points
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._stopping.wait()

    def readiness(self) -> dict[str, bool]:
        """The checks behind ``/readyz``: broker connected, every store and the database
        writable."""
        failing = self.storage.reasons()
        checks = {"mqtt_connected": self.source.connected.is_set(),
                  "spool_writable": "spool" not in failing,
                  "alerts_writable": "alerts" not in failing,
                  "deadletters_writable": "deadletters" not in failing,
                  "servicelog_writable": "servicelog" not in failing}
        checks.update({f"{store}_writable": False for store in failing})
        if self.sink is not None:
            checks["tsdb_writable"] = self.sink.healthy
        return checks

    def readiness_reasons(self) -> dict[str, str]:
        """Why each failing check of :meth:`readiness` fails, in words an operator acts on."""
        reasons = {f"{store}_writable": why for store, why in self.storage.reasons().items()}
        if not self.source.connected.is_set():
            reasons["mqtt_connected"] = "not connected to the broker (reconnecting)"
        if self.sink is not None and not self.sink.healthy:
            reasons["tsdb_writable"] = self.sink.problem or "database writes failing"
        return reasons
