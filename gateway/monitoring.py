"""Prometheus metrics of one gateway (own registry, so several gateways can live in one process).

Hot paths count per batch (``inc(n)``), never per message.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MAX_CLOCK_SERIES: Final = 100
"""Devices with a wrong clock get a labelled series each, up to this many (first by site, bed
and device): a fleet-wide firmware fault must not add thousands of series. The count of such
devices is always complete."""

WrongClocks = Callable[[], Sequence[tuple[str, str, str, int]]]
"""``(site, bed, device, device time minus receipt time in ms)`` of every device whose clock
is wrong now."""


class _ClockCollector(Collector):
    def __init__(self, source: WrongClocks) -> None:
        self.source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        wrong = sorted(self.source())
        yield GaugeMetricFamily(
            "homecare_devices_clock_wrong",
            "Devices whose latest message had a time outside the clock window (stored at "
            "receipt time)", value=len(wrong))
        offsets = GaugeMetricFamily(
            "homecare_device_clock_offset_seconds",
            f"Device time minus receipt time of devices with a wrong clock (the first "
            f"{MAX_CLOCK_SERIES})", labels=["site", "bed", "device"])
        for site, bed, device, offset_ms in wrong[:MAX_CLOCK_SERIES]:
            offsets.add_metric([site, bed, device], offset_ms / 1000)
        yield offsets


DB_STATES: Final = ("none", "unknown", "up", "down", "credentials_refused")
"""The states of ``homecare_db_state`` (see :attr:`Metrics.database_state`)."""


class _Flag:
    """A value the database writer sets, read at each scrape (None: never set)."""

    def __init__(self) -> None:
        self.value: float | None = None

    def set(self, value: float) -> None:
        self.value = value


class _DatabaseCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[GaugeMetricFamily]:
        for name in ("homecare_db_state", "homecare_db_up", "homecare_db_credentials_refused"):
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self.metrics
        current = m.database_state
        state = GaugeMetricFamily(
            "homecare_db_state", "The time-series database: 1 for the state it is in; none: no "
            "database configured (points stay in the spool), unknown: nothing written yet",
            labels=["state"])
        for name in DB_STATES:
            state.add_metric([name], 1 if name == current else 0)
        yield state
        if current != "none":
            yield GaugeMetricFamily("homecare_db_up", "1 if the last database write "
                                    "succeeded (only while a database is configured)",
                                    value=m.db_up.value or 0)
            yield GaugeMetricFamily(
                "homecare_db_credentials_refused", "1 while the database refuses the "
                "gateway's credentials (HTTP 401/403: a configuration error; points stay "
                "spooled)", value=m.db_credentials_refused.value or 0)


def process_age_s() -> float | None:
    """Seconds since this process was started (exec), from ``/proc`` (10 ms steps); None
    where there is no ``/proc``. Logged at start: a restart's time, imports included."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
        return round(max(0.0, up - start_ticks / os.sysconf("SC_CLK_TCK")), 2)
    except (OSError, ValueError, IndexError):
        return None


def _build_info() -> dict[str, str]:
    try:
        package = version("homecare-gateway")
    except PackageNotFoundError:
        package = "unknown"
    return {"version": package, "python": platform.python_version()}


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # The process (process_*: memory, CPU, open files, start time) and the build.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("homecare_build", "The gateway's version and Python", registry=r).info(
            _build_info())
        self.received = Counter("homecare_messages_received", "MQTT messages received", registry=r)
        self.accepted = Counter("homecare_messages_accepted",
                                "Messages decoded and handed on", registry=r)
        self.rejected = Counter("homecare_messages_rejected",
                                "Messages sent to the dead-letter store", ["reason"], registry=r)
        self.dead_letters_shed = Counter(
            "homecare_dead_letters_shed", "Dead letters counted but not stored: their source "
            "(site/bed/device) was over dead_letter_source_bytes_per_second", ["reason"],
            registry=r)
        self.dead_letters_evicted = Counter(
            "homecare_dead_letters_evicted", "Oldest dead letters deleted to keep the store "
            "within dead_letter_max_bytes", registry=r)
        self.internal_errors = Counter(
            "homecare_pipeline_internal_errors",
            "Messages whose handling raised (a bug met by this input), dead-lettered as "
            "internal_error; step: admit (decode, dedup), format, stage:<name>", ["step"],
            registry=r)
        self.retained_events = Counter(
            "homecare_retained_events",
            "Retained event messages from the broker: stored as state, never a new call",
            registry=r)
        self.duplicates = Counter("homecare_messages_duplicate",
                                  "Duplicate messages dropped (same device, seq, content)",
                                  registry=r)
        self.late = Counter("homecare_messages_late", "Messages that arrived out of order",
                            registry=r)
        self.seq_gaps = Counter("homecare_seq_gaps", "Sequence numbers skipped by devices",
                                registry=r)
        self.seq_resets = Counter("homecare_seq_resets", "Device counters that restarted",
                                  registry=r)
        self.auto_registered = Counter("homecare_devices_auto_registered",
                                       "Devices registered on first sight", registry=r)
        self.first_sight_evicted = Counter(
            "homecare_devices_first_sight_evicted",
            "Devices registered on first sight forgotten, the least recently seen first, to "
            "keep first_sight_max_devices (registered again when seen again)", registry=r)
        self.misplaced = Counter(
            "homecare_messages_misplaced",
            "Messages of a device the registry lists, seen on another site, bed or kind "
            "(dead-lettered as device_misplaced); differs: site, bed or kind", ["differs"],
            registry=r)
        self.points_spooled = Counter("homecare_points_spooled",
                                      "Points appended to the on-disk spool", registry=r)
        self.points_written = Counter("homecare_points_written",
                                      "Points written to the time-series database", registry=r)
        self.points_replayed = Counter(
            "homecare_points_replayed",
            "Points written after having waited in the spool through a database outage",
            registry=r)
        self.points_dropped = Counter("homecare_points_dropped",
                                      "Points dropped by the spool overflow policy", registry=r)
        self.points_retimed = Counter(
            "homecare_points_retimed", "Points stored at receipt time because their device "
            "time was outside the clock window (device time kept in device_ts)", registry=r)
        self.points_rejected_by_db = Counter(
            "homecare_points_rejected_by_db", "Points the database refused (dead-lettered)",
            registry=r)
        self.write_errors = Counter("homecare_write_errors", "Failed database writes", ["kind"],
                                    registry=r)
        self.write_seconds = Histogram(
            "homecare_write_seconds", "Database write latency", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.commit_seconds = Histogram(
            "homecare_commit_seconds", "Spool append + fsync latency before acknowledging",
            registry=r, buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
        self.inbox_depth = Gauge("homecare_inbox_depth", "Messages received, not yet processed",
                                 registry=r)
        self.spool_pending_points = Gauge("homecare_spool_pending_points",
                                          "Points in the spool not yet written", registry=r)
        self.spool_pending_bytes = Gauge("homecare_spool_pending_bytes",
                                         "Bytes in the spool not yet written", registry=r)
        self.db_up = _Flag()
        """1 once a database write passed, 0 after one failed (``homecare_db_up``, shown only
        while a database is configured: :meth:`database_configured`)."""
        self.db_credentials_refused = _Flag()
        self._database = False
        r.register(_DatabaseCollector(self))
        self.messages_shed = Counter(
            "homecare_messages_shed", "Messages left unacknowledged while a store failed and "
            "the inbox was full (only emergency calls taken meanwhile; the broker sends the "
            "rest again)", registry=r)
        self.mqtt_connected = Gauge("homecare_mqtt_connected", "1 while connected to the broker",
                                    registry=r)
        self.mqtt_urgent_connected = Gauge(
            "homecare_mqtt_urgent_connected", "1 while the urgent session (button and fall "
            "events only, client id <mqtt_client_id>-urgent) is connected; 0 when it is down or "
            "switched off (mqtt_urgent_session)", registry=r)
        self.calls_first = Counter(
            "homecare_urgent_calls_first", "Emergency button and fall events handed to the "
            "alert rules, by the MQTT session whose copy came first: urgent (the session of "
            "their own) or main (the one behind any backlog)", ["session"], registry=r)
        for session in ("main", "urgent"):
            self.calls_first.labels(session)
        self.unlisted_calls_waiting = Gauge(
            "homecare_unlisted_calls_waiting", "Emergency calls from devices the registry does "
            "not list there, waiting behind every listed device's call (taken a slice at a "
            "time, each still opening its alert)", registry=r)
        self.unlisted_copies_passed = Counter(
            "homecare_unlisted_copies_passed", "Urgent-session copies of such calls not held "
            "(beyond 10,000 waiting): acknowledged unhandled, the main session's copy of each "
            "is the call and is handled", registry=r)
        self.snapshot_seconds = Histogram(
            "homecare_detector_snapshot_seconds", "Time to write the detectors' snapshot "
            "(on the detectors' thread)", registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.snapshot_bytes = Gauge("homecare_detector_snapshot_bytes",
                                    "Size of the latest detectors' snapshot", registry=r)
        self.snapshot_failures = Counter(
            "homecare_detector_snapshot_failures", "Detector snapshots that could not be "
            "written (the previous one is kept)", registry=r)
        self.http_connections_open = Gauge(
            "homecare_http_connections_open", "Open HTTP connections (API, console, health)",
            registry=r)
        self.oncall_sites_uncovered = Gauge(
            "homecare_oncall_sites_uncovered", "Sites with no dispatcher on duty now in the "
            "on-call roster (calls there reach the console only); 0 without an on-call file",
            registry=r)
        self.http_connections_closed = Counter(
            "homecare_http_connections_closed",
            "HTTP connections the gateway closed itself, by reason: header_timeout (no complete "
            "request head in http_header_timeout_s), body_timeout, write_timeout, evicted (one "
            "waiting for a request head, to make room under http_max_connections or the "
            "per-client cap), evicted_stalled (one whose client has not read its answer or "
            "sent its body for http_evict_stalled_after_s, to make room), refused (a cap "
            "reached and no connection waiting or stalled), malformed_request (a request that "
            "cannot be parsed or is framed both by Transfer-Encoding and Content-Length: "
            "answered 400 unless its answer had begun)", ["reason"],
            registry=r)
        self.http_log_lines_suppressed = Counter(
            "homecare_http_log_lines_suppressed",
            "Log lines of the HTTP server (uvicorn) and the API left out, by logger: those "
            "past the limit a minute of one kind (a malformed request, an exception in a "
            "handler, ...); each kind's count is logged as http.log_suppressed once its "
            "minute is over",
            ["source"], registry=r)
        self.gc_pause = Histogram(
            "homecare_gc_pause_seconds", "Garbage-collector passes (they stop the event loop), "
            "by generation", ["generation"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5))

    def database_configured(self) -> None:
        """A database is written to: ``homecare_db_up`` is reported (0 until a write passes)
        and ``homecare_db_state`` leaves ``none``."""
        self._database = True

    @property
    def database_state(self) -> str:
        """One of :data:`DB_STATES`: ``none`` (no database configured), ``unknown`` (nothing
        written yet), ``up``, ``down``, ``credentials_refused``."""
        if not self._database:
            return "none"
        if self.db_credentials_refused.value:
            return "credentials_refused"
        if self.db_up.value is None:
            return "unknown"
        return "up" if self.db_up.value else "down"

    def watch_clocks(self, source: WrongClocks) -> None:
        """Report the devices with a wrong clock (read from ``source`` at each scrape)."""
        self.registry.register(_ClockCollector(source))

    def gc_callback(self) -> Callable[[str, dict[str, Any]], None]:
        """A :data:`gc.callbacks` entry timing every collector pass into :attr:`gc_pause`."""
        started = [0.0]
        pause = self.gc_pause

        def callback(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pause.labels(str(info["generation"])).observe(time.perf_counter() - started[0])

        return callback

    def render(self) -> bytes:
        return generate_latest(self.registry)
