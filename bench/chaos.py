"""``make chaos``: the reliability guarantees proven together, at volume, in one run.

(A module over 400 lines: the run is one sequence, servers up, traffic and faults, settling,
the ledger, the verdict, and it reads best in one place; the traffic, the ledger, the soak
and the plot are modules of their own.)

Set-up, every part a real process on this machine, all on loopback: mosquitto (persistence
on), VictoriaMetrics (``-dedup.minScrapeInterval=1ms``, as the README says a deployment must
run it), ``homecare gateway`` writing to it through the InfluxDB v2 API with the simulated
sites' registry, and the reference upstream receiver (``tests/upstream_receiver.py``, the
city platform: signatures checked, keys deduplicated). A publisher process
(:mod:`bench.chaos_traffic`) sends ``messages`` simulated messages at ``rate`` a second: beds
with incidents (labelled), caregiver visits and faults (bad payloads, stray topics,
duplicates, reordering, clock skew, bursts). A dispatcher acknowledges and resolves alerts
through the API as a station's would.

Meanwhile a fault schedule (:func:`fault_schedule`, spread over the publishing time) kills the
gateway with SIGKILL ``kills`` times (its standby, ``homecare gateway --standby`` as the systemd
install runs it, takes over and a new standby is started at once; ``--no-standby``: a plain
start after each kill), restarts the broker,
stops the database for ``db_outage_s`` and takes the platform down (connection refused),
then has it answer 503. After the last message: everything is given time to settle (the
spool written, the outbox delivered), the gateway is stopped cleanly, and the ledger
(:mod:`bench.chaos_ledger`) compares what was sent with what arrived:

* points: stored, lost, duplicated, unexpected, retimed (device clock outside the window);
* dead letters by reason: sent, stored, missing, stored more than once;
* emergency calls and falls: each call's change in the alert store, each labelled critical
  incident detected, missed or late (publish -> alert change);
* upstream: every alert change and service record at the receiver, missing, duplicated, out
  of order, unsigned;
* recovery after each kill: SIGKILL -> the next process's first batch committed to its spool
  (the broker's backlog being taken in again), and -> its API answering;
* the other alert types against their labels, for information (the traffic runs many times
  faster than life, so time-based detectors are not judged here; replay measures them).

The verdict (:func:`verdict`): 0 lost and 0 duplicated points, 0 missed and 0 late critical
calls and incidents, every upstream record delivered (none duplicated, none out of order,
all signed), ingest resumed within ``recovery_limit_s`` after each kill. ``python -m
bench.chaos`` exits 1 when any of them is broken, 2 when the run itself failed. Results:
``bench/results/chaos.json`` and ``chaos.md`` (``--no-write``: printed only); ``--quick``:
20,000 messages, 2 kills, short outages, about a minute, results not written.

``python -m bench.chaos soak`` runs the soak instead (:mod:`bench.chaos_soak`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np

from bench import report
from bench.chaos_ledger import (
    CRITICAL,
    Accepted,
    PointLedger,
    call_ledger,
    dead_letter_ledger,
    measurement_of,
    read_calls,
    recovery_summary,
    upstream_ledger,
)
from bench.chaos_traffic import TrafficPlan, publisher_main, sim_start
from devices import Label, Registry, decode_line, read_labels
from gateway.upstream import PLATFORM
from homecare.evaluate import AlertRecord, evaluate
from simulators import registry_toml
from tests.ingest import store_env
from tests.servers import GatewayProcess, Mosquitto, VictoriaMetrics, sqlite_rows
from tests.upstream_receiver import Receiver

RESULTS = report.RESULTS
SECRET = "chaos-run-upstream-secret"
SOURCE = "chaos"


@dataclass(frozen=True, kw_only=True)
class ChaosOptions:
    messages: int = 1_000_000
    rate: float = 1_100.0
    """Messages per second: 1M in about 15 minutes."""
    beds: int = 500
    sites: int = 5
    seed: int = 16
    incidents_per_bed_day: float = 4.0
    fault_rate: float = 0.002
    kills: int = 12
    broker_restarts: int = 2
    db_outage_s: float = 180.0
    upstream_down_s: float = 120.0
    """The platform refuses connections this long."""
    upstream_503_s: float = 60.0
    """Then, later, answers 503 this long."""
    recovery_limit_s: float = 2.0
    late_limit_s: float = 60.0
    """A call taking effect later than this after it was published is late (telecare practice:
    97.5 % of calls answered within 60 s)."""
    settle_timeout_s: float = 600.0
    dispatcher_every_s: float = 10.0
    vm_dedup: bool = True
    standby: bool = True
    """Run a standby gateway beside the serving one (``homecare gateway --standby``, as the
    systemd install does): a kill is taken over by a process already started, and a new standby
    is started at once. Off (``--no-standby``): each kill is followed by a plain start."""
    keep: bool = False

    @classmethod
    def quick(cls) -> ChaosOptions:
        return cls(messages=20_000, rate=500.0, beds=100, sites=2, kills=2,
                   broker_restarts=1, db_outage_s=8.0, upstream_down_s=6.0,
                   upstream_503_s=5.0, settle_timeout_s=240.0, dispatcher_every_s=5.0)


# --- the fault schedule -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float
    action: str
    """``kill``, ``broker_restart``, ``db_stop``/``db_start``, ``upstream_down``/
    ``upstream_up``, ``upstream_503``/``upstream_ok``."""


RESTORES = ("db_start", "upstream_up", "upstream_ok")
OUTAGES = {"db_stop": "db_start", "upstream_down": "upstream_up", "upstream_503": "upstream_ok"}
"""Each outage and the fault that ends it."""


def applied(schedule: list[Fault], fault: Fault, at_s: float) -> list[Fault]:
    """The rest of ``schedule`` once ``fault`` was applied at ``at_s``: the end of an outage
    that began late (a kill before it took its time) moves with it, so it lasts as planned.

    >>> rest = [Fault(12, "kill"), Fault(20, "db_start")]
    >>> [(f.at_s, f.action) for f in applied(rest, Fault(10, "db_stop"), 14.5)]
    [(12, 'kill'), (24.5, 'db_start')]
    """
    end = OUTAGES.get(fault.action)
    if end is None:
        return schedule
    moved = [replace(f, at_s=max(f.at_s, at_s + f.at_s - fault.at_s)) if f.action == end else f
             for f in schedule]
    return sorted(moved, key=lambda f: f.at_s)


def fault_schedule(duration_s: float, *, kills: int, broker_restarts: int, db_outage_s: float,
                   upstream_down_s: float, upstream_503_s: float) -> list[Fault]:
    """Faults over ``duration_s`` of publishing: the platform down from 10 %, the broker
    restarted at 30 % (and 80 %), the database stopped from 40 %, the platform answering 503
    from 70 %, each outage at most a fifth of the run; kills evenly spaced, kept 4 s away from
    a broker restart.

    >>> [(round(f.at_s), f.action) for f in fault_schedule(100, kills=2, broker_restarts=1,
    ...  db_outage_s=10, upstream_down_s=5, upstream_503_s=5)]  # doctest: +NORMALIZE_WHITESPACE
    [(10, 'upstream_down'), (15, 'upstream_up'), (25, 'kill'), (30, 'broker_restart'),
     (40, 'db_stop'), (50, 'db_start'), (70, 'upstream_503'), (75, 'upstream_ok'), (75, 'kill')]
    """
    cap = duration_s / 5
    faults = [Fault(0.10 * duration_s, "upstream_down"),
              Fault(0.10 * duration_s + min(upstream_down_s, cap), "upstream_up"),
              Fault(0.40 * duration_s, "db_stop"),
              Fault(0.40 * duration_s + min(db_outage_s, cap), "db_start"),
              Fault(0.70 * duration_s, "upstream_503"),
              Fault(0.70 * duration_s + min(upstream_503_s, cap), "upstream_ok")]
    restarts = [0.30 * duration_s, 0.80 * duration_s][:broker_restarts]
    restarts += [duration_s * (0.3 + 0.5 * i / broker_restarts)
                 for i in range(2, broker_restarts)]
    faults += [Fault(at, "broker_restart") for at in restarts]
    for i in range(kills):
        at = duration_s * (i + 0.5) / kills
        for restart in restarts:
            if abs(at - restart) < 4:
                at = restart + 4 if at >= restart else restart - 4
        faults.append(Fault(at, "kill"))
    return sorted(faults, key=lambda f: (f.at_s, f.action in ("kill",)))


# --- the servers --------------------------------------------------------------------------------

@dataclass
class Stack:
    workdir: Path
    mq: Mosquitto
    vm: VictoriaMetrics
    receiver: Receiver
    gateway: GatewayProcess
    key: str
    standby: GatewayProcess | None = None
    """Waiting on the data directory to take over from :attr:`gateway`."""

    @property
    def data(self) -> Path:
        return self.gateway.data_dir


def start_stack(workdir: Path, registry: Path, *, vm_dedup: bool = True,
                extra_env: dict[str, str] | None = None, standby: bool = False) -> Stack:
    mq = Mosquitto(workdir / "mosquitto")
    vm = VictoriaMetrics(workdir / "victoria-metrics",
                         dedup_interval="1ms" if vm_dedup else None)
    receiver = Receiver(SECRET.encode())
    key = secrets.token_urlsafe(32)
    env = {"HOMECARE_REGISTRY_FILE": str(registry), "HOMECARE_API_KEY": key,
           "HOMECARE_UPSTREAM_URL": receiver.url, "HOMECARE_UPSTREAM_SECRET": SECRET,
           "HOMECARE_UPSTREAM_SOURCE": SOURCE, "HOMECARE_UPSTREAM_TIMEOUT_S": "5",
           "HOMECARE_MQTT_CLIENT_ID": "chaos-gateway", **(extra_env or {})}
    gateway = GatewayProcess(workdir / "gateway", mqtt_url=mq.url, env=env)
    started: list[Callable[[], None]] = []
    try:
        for server in (mq, vm, receiver):
            server.start()
            started.append(server.stop)
        store = store_env(vm)
        store.pop("HOMECARE_CLOCK_WINDOW_S", None)  # the deployment's default window (7 days)
        gateway.env.update({**store, **env})
        started.append(gateway.stop)
        gateway.start()
        gateway.wait_connected(60)
        waiting = None
        if standby:
            waiting = launch_standby(gateway, workdir / "gateway-standby")
            started.insert(0, waiting.stop)  # stopped first: else it takes over
            wait_standing_by(waiting)
    except BaseException:
        for stop in reversed(started):  # nothing left running behind a failed start
            with contextlib.suppress(Exception):
                stop()
        raise
    return Stack(workdir, mq, vm, receiver, gateway, key, waiting)


def launch_standby(serving: GatewayProcess, workdir: Path) -> GatewayProcess:
    """``homecare gateway --standby`` for ``serving``'s data directory, port and client id."""
    standby = GatewayProcess(workdir, mqtt_url=serving.env["HOMECARE_MQTT_URL"],
                             env=serving.env, port=serving.port, args=("--standby",))
    standby.launch()
    return standby


def wait_standing_by(standby: GatewayProcess, timeout: float = 60.0) -> None:
    """Until ``standby`` waits on the data directory (its imports and settings done)."""
    deadline = time.monotonic() + timeout
    while "gateway.standby " not in standby.log_path.read_text(errors="replace"):
        if standby.proc is None or standby.proc.poll() is not None:
            raise RuntimeError(f"the standby gateway exited\n{standby.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the standby gateway is not waiting\n{standby.log_tail()}")
        time.sleep(0.1)


def stop_stack(stack: Stack) -> None:
    stops: list[Callable[[], None]] = [] if stack.standby is None else [stack.standby.stop]
    for stop in (*stops, stack.gateway.stop, stack.vm.stop, stack.mq.stop, stack.receiver.stop):
        with contextlib.suppress(Exception):
            stop()


def spool_mark(data: Path) -> tuple[int, int]:
    """The spool's newest segment and its size: it grows with every batch committed."""
    newest = (-1, 0)
    with contextlib.suppress(OSError):
        for path in (data / "spool").glob("*.seg"):
            with contextlib.suppress(OSError, ValueError):
                newest = max(newest, (int(path.stem), path.stat().st_size))
    return newest


def wait_spool_growth(data: Path, since: tuple[int, int], started: float, *,
                      timeout: float = 60.0,
                      ready: Callable[[], bool] = lambda: True) -> float | None:
    """Seconds from ``started`` (monotonic) until the spool grows past the lowest mark seen
    from ``since`` on (a restarted gateway may first cut a torn record off); None on
    timeout."""
    low = since
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mark = spool_mark(data)
        if mark < low:
            low = mark
        elif mark > low and ready():
            return time.monotonic() - started
        time.sleep(0.01)
    return None


def kill_and_restart(stack: Stack) -> dict[str, Any]:
    """SIGKILL the gateway; its standby takes over and a new standby is started (with
    :attr:`ChaosOptions.standby`), else a new gateway is started at once; how long until it
    took in again."""
    old = stack.gateway
    started = time.monotonic()
    old.kill()
    killed_s = time.monotonic() - started
    since = spool_mark(stack.data)  # after the kill: a mark taken before it missed the old
    # process's last appends, which then counted as the new one's (0.03 s in one run)
    promoted = stack.standby
    if promoted is not None:
        new = promoted
        stack.standby = launch_standby(promoted, old.workdir)
    else:
        new = GatewayProcess(old.workdir, mqtt_url=stack.mq.url, env=old.env, port=old.port)
    api: dict[str, Any] = {}

    def start() -> None:
        try:
            if promoted is not None:
                new.wait_started(timeout=60)
            else:
                new.start(timeout=60)
            api["s"] = time.monotonic() - started
        except Exception as exc:
            api["error"] = repr(exc)

    starter = threading.Thread(target=start, name="gateway-start")
    starter.start()
    resumed = wait_spool_growth(stack.data, since, started, ready=lambda: new.proc is not None)
    starter.join(90)
    stack.gateway = new
    if stack.standby is not None:
        wait_standing_by(stack.standby)
    record: dict[str, Any] = {"killed_s": round(killed_s, 3), "standby": promoted is not None,
                              "ingest_resumed_s": None if resumed is None else round(resumed, 3),
                              "api_ready_s": round(api["s"], 2) if "s" in api else None}
    if "error" in api:
        record["error"] = api["error"]
    return record


def restart_broker(stack: Stack, down_s: float = 3.0) -> dict[str, Any]:
    """A clean restart (SIGTERM: the broker saves its state), ``down_s`` before it starts."""
    started = time.monotonic()
    stack.mq.stop()
    time.sleep(down_s)
    stack.mq.start()
    up = time.monotonic() - started
    resumed = wait_spool_growth(stack.data, spool_mark(stack.data), time.monotonic())
    return {"broker_down_s": round(up, 2),
            "ingest_resumed_after_broker_up_s": None if resumed is None else round(resumed, 3)}


# --- the dispatcher -----------------------------------------------------------------------------

class Dispatcher(threading.Thread):
    """Acknowledges open alerts and resolves the ones acknowledged a round ago, through the
    API, as a station's dispatchers would; a round that fails (the gateway being killed) is
    skipped."""

    def __init__(self, stack: Stack, every_s: float) -> None:
        super().__init__(name="chaos-dispatcher", daemon=True)
        self.stack = stack
        self.every_s = every_s
        self.stopping = threading.Event()
        self.counts: Counter[str] = Counter()

    def run(self) -> None:
        with httpx.Client(timeout=5.0) as http:
            while not self.stopping.wait(self.every_s):
                try:
                    self._round(http)
                except (httpx.HTTPError, ValueError, KeyError):
                    self.counts["failed_rounds"] += 1

    def _round(self, http: httpx.Client) -> None:
        url = f"{self.stack.gateway.url}/api/v1/alerts"
        auth = {"Authorization": f"Bearer {self.stack.key}"}
        acked = http.get(url, params={"status": "acknowledged", "limit": 200}, headers=auth)
        acked.raise_for_status()
        for alert in acked.json()["items"]:
            if self.stopping.is_set():
                return
            r = http.post(f"{url}/{alert['id']}/resolve", headers=auth,
                          json={"note": "chaos run: handled", "outcome": "handled_by_phone"})
            self.counts[f"resolve_{r.status_code}"] += 1
        opened = http.get(url, params={"status": "open", "limit": 200}, headers=auth)
        opened.raise_for_status()
        for alert in opened.json()["items"]:
            if self.stopping.is_set():
                return
            r = http.post(f"{url}/{alert['id']}/acknowledge", headers=auth, json={})
            self.counts[f"acknowledge_{r.status_code}"] += 1


# --- sampling -----------------------------------------------------------------------------------

def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def sample(gateway: GatewayProcess) -> dict[str, Any]:
    """The gateway's gauges now (empty while it is down)."""
    row: dict[str, Any] = {"rss_mb": rss_mb(gateway.proc.pid if gateway.proc else None)}
    try:
        m = gateway.metrics()
    except (httpx.HTTPError, OSError, ValueError):
        return row
    row.update({
        "received": m.get("homecare_messages_received_total", 0.0),
        "inbox": m.get("homecare_inbox_depth", 0.0),
        "spool_points": m.get("homecare_spool_pending_points", 0.0),
        "upstream_pending": sum(v for k, v in m.items()
                                if k.startswith("homecare_upstream_pending")),
        "alerts_open": sum(v for k, v in m.items() if k.startswith("homecare_alerts_open")),
        "db_up": m.get("homecare_db_up"), "mqtt": m.get("homecare_mqtt_connected")})
    return row


# --- the run ------------------------------------------------------------------------------------

@dataclass
class RunState:
    faults: list[dict[str, Any]] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    db_down: bool = False


def _apply(stack: Stack, fault: Fault, state: RunState, t: float) -> None:
    entry: dict[str, Any] = {"at_s": round(t, 1), "action": fault.action}
    print(f"chaos: {t:7.1f} s  {fault.action}", file=sys.stderr, flush=True)
    if fault.action == "kill":
        record = kill_and_restart(stack)
        record["at_s"] = round(t, 1)
        record["db_down"] = state.db_down
        state.kills.append(record)
        entry.update(record)
    elif fault.action == "broker_restart":
        entry.update(restart_broker(stack))
    elif fault.action == "db_stop":
        stack.vm.stop()
        state.db_down = True
    elif fault.action == "db_start":
        stack.vm.start()
        state.db_down = False
    elif fault.action == "upstream_down":
        stack.receiver.stop()
    elif fault.action == "upstream_up":
        stack.receiver.start()
    elif fault.action == "upstream_503":
        stack.receiver.mode = "unavailable"
    elif fault.action == "upstream_ok":
        stack.receiver.mode = "ok"
    state.faults.append(entry)


def _expected_upstream(data: Path) -> list[str]:
    alerts = sqlite_rows(data / "alerts.sqlite3", "SELECT seq FROM changes")
    records = sqlite_rows(data / "servicelog.sqlite3", "SELECT seq FROM service_log")
    return ([f"{SOURCE}/alert/{s}" for (s,) in alerts]
            + [f"{SOURCE}/service/{s}" for (s,) in records])


def _settle(stack: Stack, timeout_s: float) -> dict[str, Any]:
    """Until the gateway has taken in and written everything, and the platform has every
    change and record the logs held when it was last checked."""
    started = time.monotonic()
    deadline = started + timeout_s
    stable_since: float | None = None
    last_received = -1.0
    ingest_s = None
    while time.monotonic() < deadline:
        row = sample(stack.gateway)
        quiet = (row.get("mqtt") == 1 and row.get("inbox") == 0 and row.get("spool_points") == 0
                 and row.get("received") == last_received)
        last_received = row.get("received", -1.0)
        if quiet:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 5:
                ingest_s = time.monotonic() - started
                break
        else:
            stable_since = None
        time.sleep(0.5)
    upstream_s = None
    while time.monotonic() < deadline:
        if set(_expected_upstream(stack.data)) <= set(stack.receiver.keys()):
            upstream_s = time.monotonic() - started
            break
        time.sleep(1.0)
    return {"ingest_settled_s": None if ingest_s is None else round(ingest_s, 1),
            "upstream_settled_s": None if upstream_s is None else round(upstream_s, 1)}


def _traffic_chunks(path: Path, size: int = 20_000) -> Iterator[list[tuple[str, bytes]]]:
    chunk: list[tuple[str, bytes]] = []
    with path.open("rb") as lines:
        for line in lines:
            received = decode_line(line)
            chunk.append((received.topic, received.payload))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


EXPORT_END_S = 4_102_444_800
"""2100-01-01: the export's end. Without one VictoriaMetrics exports up to now, and retimed
points may sit ahead of now: each batch of a device whose clock is wrong is placed after the
previous one with its samples' spacing, so a backlog (or traffic faster than life) runs ahead
of the receipt clock (measured: 22 minutes ahead in the first full run)."""


def point_ledger(traffic: Path, registry: Registry, vm: VictoriaMetrics) -> PointLedger:
    ledger = PointLedger(registry=registry)
    for chunk in _traffic_chunks(traffic):
        ledger.add(chunk)
    vm.flush()
    names = httpx.get(f"{vm.url}/api/v1/label/__name__/values", timeout=60).json()["data"]
    names.sort(key=lambda n: not n.endswith("_device_ts"))  # retimed points first
    for name in names:
        with httpx.stream("POST", f"{vm.url}/api/v1/export", timeout=300,
                          data={"match[]": f'{{__name__="{name}"}}', "start": 0,
                                "end": EXPORT_END_S}) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.strip():
                    continue
                series = msgspec.json.decode(line)
                labels = dict(series["metric"])
                labels.pop("__name__", None)
                labels.pop("db", None)
                tags = frozenset(labels.items())
                if name.endswith("_device_ts"):
                    ledger.retimed(measurement_of(name) or name, tags, series["timestamps"],
                                   series["values"])
                else:
                    ledger.compare(name, tags, series["timestamps"])
    return ledger


def _vm_deduplicated(vm: VictoriaMetrics) -> float | None:
    try:
        text = httpx.get(f"{vm.url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vm_deduplicated_samples_total"))


def _wall_labels(labels: list[Label], clock: list[tuple[int, int]]) -> list[Label]:
    """Labels moved from the simulated clock to the wall clock of their publishing."""
    sim = np.asarray([c[0] for c in clock], dtype=np.float64)
    wall = np.asarray([c[1] for c in clock], dtype=np.float64)

    def at(t: int) -> int:
        return int(np.interp(t, sim, wall))

    return [msgspec.structs.replace(label, start=at(label.start),
                                    end=max(at(label.end), at(label.start)))
            for label in labels]


def other_alerts(labels: list[Label], clock: list[tuple[int, int]], data: Path
                 ) -> dict[str, Any]:
    """The non-critical types: labels and alerts per type, recall with the labels moved to
    the wall clock (for information only)."""
    rows = sqlite_rows(data / "alerts.sqlite3", "SELECT alert FROM alerts")
    alerts = [msgspec.json.decode(r[0]) for r in rows]
    records = [AlertRecord(id=a["id"], type=a["type"], site=a["site"], bed=a["bed"] or "",
                           opened_at=a["opened_at"]) for a in alerts]
    others = [x for x in labels if x.type not in CRITICAL]
    scored = evaluate(_wall_labels(others, clock), records, tolerance_s=120.0) if clock else None
    out: dict[str, Any] = {}
    for row in scored.rows() if scored is not None else []:
        if row.get("type") in CRITICAL or row.get("type") == "all":
            continue
        out[row["type"]] = {k: row.get(k) for k in ("labels", "detected", "alerts", "recall")}
    return out


def verdict(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Each guarantee with its figure and whether it held."""
    points, calls = figures["points"], figures["critical"]
    up, rec = figures["upstream"], figures["recovery"]

    def check(name: str, ok: bool, figure: Any) -> dict[str, Any]:
        return {"guarantee": name, "held": bool(ok), "figure": figure}

    return [
        check("no point lost", points["lost"] == 0, points["lost"]),
        check("no point duplicated", points["duplicated"] == 0, points["duplicated"]),
        check("no critical call missed", calls["calls_missed"] == 0, calls["calls_missed"]),
        check("no labelled critical incident missed", calls["labels_missed"] == 0,
              calls["labels_missed"]),
        check(f"no critical call late (> {calls['late_limit_ms'] / 1000:g} s)",
              calls["calls_late"] == 0 and calls["labels_late"] == 0,
              calls["calls_late"] + calls["labels_late"]),
        check("every upstream record delivered", up["missing"] == 0 and up["expected"] > 0,
              up["missing"]),
        check("no upstream record duplicated", up["duplicated"] == 0, up["duplicated"]),
        check("upstream in order", up["out_of_order"] == 0, up["out_of_order"]),
        check("every upstream request signed", up["unsigned"] == 0, up["unsigned"]),
        check(f"ingest resumed < {rec['limit_s']:g} s after each kill",
              rec["over_limit"] == 0 and rec["kills"] > 0,
              (rec["ingest_resumed_s"] or {}).get("max")),
        check("gateway stopped cleanly at the end", figures["clean_stop"],
              figures["clean_stop"]),
    ]


def run(options: ChaosOptions) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    started = time.monotonic()
    load_before = os.getloadavg()
    duration_s = options.messages / options.rate
    plan = TrafficPlan(mqtt_url="", out_dir=workdir / "sent", messages=options.messages,
                       rate=options.rate, beds=options.beds, sites=options.sites,
                       seed=options.seed, incidents_per_bed_day=options.incidents_per_bed_day,
                       fault_rate=options.fault_rate,
                       sim_start_ms=sim_start(options.messages, options.beds,
                                              int(time.time() * 1000)))
    registry_path = workdir / "registry.toml"
    registry_path.write_text(registry_toml(plan.config()))
    try:
        stack = start_stack(workdir, registry_path, vm_dedup=options.vm_dedup,
                            standby=options.standby)
    except BaseException:
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    plan = replace(plan, mqtt_url=stack.mq.url)
    state = RunState()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    published = ctx.Value("q", 0)
    publisher = ctx.Process(target=publisher_main, args=(plan, published, child),
                            name="chaos-publisher")
    dispatcher = Dispatcher(stack, options.dispatcher_every_s)
    traffic: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    try:
        publisher.start()
        if not parent.poll(120):
            raise RuntimeError("the publisher did not connect")
        message = parent.recv()
        if message[0] != "ready":
            raise RuntimeError(f"publisher: {message}")
        schedule = fault_schedule(duration_s, kills=options.kills,
                                  broker_restarts=options.broker_restarts,
                                  db_outage_s=options.db_outage_s,
                                  upstream_down_s=options.upstream_down_s,
                                  upstream_503_s=options.upstream_503_s)
        dispatcher.start()
        parent.send("go")
        t0 = time.monotonic()
        deadline = t0 + duration_s * 3 + 600
        stopped = False
        next_sample = 0.0
        while True:
            now = time.monotonic() - t0
            if parent.poll():
                message = parent.recv()
                if message[0] == "failed":
                    raise RuntimeError(f"publisher failed: {message[1]}")
                traffic = message[1]
                break
            while schedule and schedule[0].at_s <= now:
                fault = schedule.pop(0)
                _apply(stack, fault, state, now)
                schedule = applied(schedule, fault, now)
                now = time.monotonic() - t0
            if now >= next_sample:
                row = sample(stack.gateway)
                row.update({"t_s": round(now, 1), "published": published.value})
                state.timeline.append(row)
                next_sample = now + 1.0
            if time.monotonic() > deadline:
                if stopped:
                    raise TimeoutError("the publisher did not stop")
                parent.send("stop")
                stopped = True
                deadline = time.monotonic() + 300
            time.sleep(0.05)
        for fault in schedule:  # publishing ended first: restore, skip the rest
            if fault.action in RESTORES:
                _apply(stack, fault, state, time.monotonic() - t0)
            else:
                state.faults.append({"at_s": None, "action": fault.action, "skipped": True})
        print(f"chaos: published {traffic.get('sent')} in {traffic.get('seconds')} s; "
              "settling", file=sys.stderr, flush=True)
        settled = _settle(stack, options.settle_timeout_s)
        dispatcher.stopping.set()
        dispatcher.join(30)
        end_row = sample(stack.gateway)
        if stack.standby is not None:  # else it takes over when the gateway stops
            stack.standby.stop()
            stack.standby = None
        stack.gateway.stop(timeout=60)
        clean_stop = stack.gateway.returncode == 0
        print("chaos: ledger", file=sys.stderr, flush=True)
        figures = ledger(options, stack, workdir, traffic)
        figures.update({
            "clean_stop": clean_stop, "settle": settled, "faults": state.faults,
            "kills": state.kills, "dispatcher": dict(dispatcher.counts),
            "gateway_end": end_row,
            "peak_rss_mb": max((r["rss_mb"] for r in state.timeline if r.get("rss_mb")),
                               default=None),
            "recovery": recovery_summary(state.kills, limit_s=options.recovery_limit_s)})
    finally:
        dispatcher.stopping.set()
        with contextlib.suppress(Exception):
            parent.send("stop")
        publisher.join(60)
        if publisher.is_alive():
            publisher.kill()
        stop_stack(stack)
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    traffic.pop("clock", None)
    figures["verdict"] = verdict(figures)
    figures["passed"] = all(v["held"] for v in figures["verdict"])
    figures.update({
        "options": asdict(options), "traffic": traffic,
        "seconds": round(time.monotonic() - started),
        "load_average": {"before": [round(x, 1) for x in load_before],
                         "after": [round(x, 1) for x in os.getloadavg()]},
        "workdir": str(workdir) if options.keep else None,
        "timeline": state.timeline[::5]})
    return figures


def ledger(options: ChaosOptions, stack: Stack, workdir: Path, traffic: dict[str, Any]
           ) -> dict[str, Any]:
    sent = workdir / "sent"
    registry = Registry.load(workdir / "registry.toml")
    began = time.monotonic()
    points = point_ledger(sent / "traffic.jsonl", registry, stack.vm)
    print(f"chaos: points compared in {time.monotonic() - began:.0f} s", file=sys.stderr,
          flush=True)
    data = stack.data
    dead_rows = sqlite_rows(data / "deadletters.sqlite3",
                            "SELECT topic, sha256, reason FROM dead_letters")
    labels = read_labels((sent / "labels.jsonl").read_bytes())
    calls = read_calls(msgspec.json.decode(line)
                       for line in (sent / "calls.jsonl").read_bytes().splitlines() if line)
    changes = [(at, action, msgspec.json.decode(alert)) for at, action, alert in sqlite_rows(
        data / "alerts.sqlite3", "SELECT at, action, alert FROM changes ORDER BY seq")]
    pending = [k for (k,) in sqlite_rows(
        data / "outbox.sqlite3", "SELECT key FROM outbox WHERE state = 'pending' AND "
        "destination = ?", (PLATFORM,))]
    accepted = [Accepted(d.key, d.body, d.signed) for d in stack.receiver.accepted]
    return {
        "points": {**points.finish(),
                   "vm_deduplicated_samples": _vm_deduplicated(stack.vm)},
        "dead_letters": dead_letter_ledger(points.dead_expected, points.dead_sent,
                                           dead_rows),
        "critical": call_ledger(calls, changes, labels,
                                late_ms=round(options.late_limit_s * 1000)),
        "upstream": upstream_ledger(_expected_upstream(data), accepted, pending=pending,
                                    redelivered=stack.receiver.duplicates),
        "alert_changes": dict(Counter(action for _, action, _ in changes)),
        "other_alert_types": other_alerts(labels, traffic.get("clock") or [], data),
    }


# --- results ------------------------------------------------------------------------------------

def markdown(figures: dict[str, Any]) -> str:
    """The summary table of a run (chaos.md)."""
    p, d, c, u = (figures["points"], figures["dead_letters"], figures["critical"],
                  figures["upstream"])
    t = figures.get("traffic", {})
    lines = [
        "# Chaos run", "",
        f"{figures.get('when', '?')}, {figures['seconds']} s in all; load average before "
        f"{figures['load_average']['before']}, after {figures['load_average']['after']}. "
        "Written by `make chaos` (bench/chaos.py).", "",
        f"Traffic: {t.get('sent', 0):,} messages published ({t.get('msgs_per_s')} msg/s over "
        f"{t.get('seconds')} s), {t.get('calls', 0)} calls, {t.get('labels', 0)} labelled "
        f"incidents, faults {t.get('faults', {})}.", "",
        *([f"Note: {figures['note']}.", ""] if figures.get("note") else []),
        "## Verdict", "", "| guarantee | figure | held |", "|---|---:|---|"]
    lines += [f"| {v['guarantee']} | {v['figure']} | {'yes' if v['held'] else '**NO**'} |"
              for v in figures["verdict"]]
    lines += ["", "## Ledger", "", "| what | figure |", "|---|---:|"]
    rows = [("points expected", p["expected"]), ("points stored", p["stored"]),
            ("points lost", p["lost"]), ("points duplicated", p["duplicated"]),
            ("points unexpected", p["unexpected"]),
            ("points retimed (device clock outside the window)", p["retimed"]),
            ("retimed points stored twice (README's stated limit)",
             p["retimed_stored_twice"]),
            ("writes absorbed by the store's deduplication", p["vm_deduplicated_samples"]),
            ("dead letters sent / distinct", f"{d['sent']} / {d['distinct']}"),
            ("dead letters stored (distinct) / missing", f"{d['stored_distinct']} / "
                                                          f"{d['missing']}"),
            ("dead letters stored more than once", d["stored_more_than_once"]),
            ("critical calls / took effect / missed / late",
             f"{c['calls']} / {c['calls_took_effect']} / {c['calls_missed']} / "
             f"{c['calls_late']}"),
            ("call -> alert change, ms", c["call_to_alert_ms"]),
            ("critical labels / missed / late / no call sent",
             f"{c['labels']} / {c['labels_missed']} / {c['labels_late']} / "
             f"{c['labels_without_call']}"),
            ("upstream expected / accepted / missing / pending at stop",
             f"{u['expected']} / {u['accepted']} / {u['missing']} / {u['pending_at_stop']}"),
            ("upstream duplicated / out of order / unsigned / redelivered requests",
             f"{u['duplicated']} / {u['out_of_order']} / {u['unsigned']} / "
             f"{u['redelivered_requests']}"),
            ("recovery after kills (ingest resumed, s)", figures["recovery"]),
            ("peak gateway RSS, MB", figures.get("peak_rss_mb"))]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "## Dead letters by reason", "", "| reason | sent | distinct | stored | "
              "missing |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r} | {v['sent']} | {v['distinct']} | {v['stored']} | {v['missing']} |"
              for r, v in d["by_reason"].items()]
    lines += ["", "## Kills", "", "| at s | ingest resumed s | API ready s | database down |",
              "|---:|---:|---:|---|"]
    lines += [f"| {k['at_s']} | {k['ingest_resumed_s']} | {k['api_ready_s']} | "
              f"{'yes' if k.get('db_down') else ''} |" for k in figures["kills"]]
    lines += ["", "## Faults", "", "| at s | action | detail |", "|---:|---|---|"]
    for f in figures["faults"]:
        detail = {k: v for k, v in f.items() if k not in ("at_s", "action")}
        lines.append(f"| {f['at_s']} | {f['action']} | {detail or ''} |")
    others = figures.get("other_alert_types") or {}
    if others:
        lines += ["", "## Other alert types (information only: time runs faster than life "
                  "here)", "", "| type | labels | detected | alerts | recall |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {k} | {v['labels']} | {v['detected']} | {v['alerts']} | {v['recall']} |"
                  for k, v in others.items()]
    return "\n".join(lines) + "\n"


def write(figures: dict[str, Any], name: str = "chaos") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"machine": report.machine(), **figures}
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(figures))
    return RESULTS / f"{name}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("chaos", "soak"), default="chaos")
    parser.add_argument("--quick", action="store_true",
                        help="20,000 messages, 2 kills, short outages; nothing written")
    parser.add_argument("--messages", type=int)
    parser.add_argument("--rate", type=float, help="messages per second")
    parser.add_argument("--beds", type=int)
    parser.add_argument("--kills", type=int)
    parser.add_argument("--broker-restarts", type=int)
    parser.add_argument("--db-outage-s", type=float)
    parser.add_argument("--upstream-down-s", type=float)
    parser.add_argument("--upstream-503-s", type=float)
    parser.add_argument("--recovery-limit-s", type=float)
    parser.add_argument("--no-vm-dedup", action="store_true",
                        help="VictoriaMetrics without deduplication (shows the ledger "
                             "counting the points a kill makes the gateway write again)")
    parser.add_argument("--minutes", type=float, help="soak: how long (default 30)")
    parser.add_argument("--no-standby", action="store_true",
                        help="no standby gateway: each kill is followed by a plain start")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories")
    parser.add_argument("--no-write", action="store_true", help="print, write no results")
    args = parser.parse_args(argv)
    if args.mode == "soak":
        from bench import chaos_soak

        return chaos_soak.main(args)
    options = ChaosOptions.quick() if args.quick else ChaosOptions()
    overrides = {name: getattr(args, name) for name in (
        "messages", "rate", "beds", "kills", "broker_restarts", "db_outage_s",
        "upstream_down_s", "upstream_503_s", "recovery_limit_s")
        if getattr(args, name) is not None}
    options = replace(options, keep=args.keep, vm_dedup=not args.no_vm_dedup,
                      standby=not args.no_standby, **overrides)
    try:
        figures = run(options)
    except Exception as exc:
        print(f"chaos: the run failed: {exc!r}", file=sys.stderr)
        return 2
    figures["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    print(markdown(figures))
    if not args.no_write and not args.quick:
        print(f"chaos: results in {write(figures)}", file=sys.stderr)
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
