"""Alert latency: emergency button press published -> alert received on the API's SSE stream.

Set-up, all real processes on this machine: mosquitto, ``homecare gateway`` (writing to
VictoriaMetrics when it is installed, as a deployment would), a background publisher in its own
process pushing realistic simulator traffic (:func:`simulators.load.pregenerate`) at a paced
10,000 msg/s, and this process, which subscribes to ``/api/v1/alerts/stream`` and presses
buttons. Each press is on its own bed (site ``bench``), so each one opens a new critical alert
(the engine folds further presses of a bed into its open alert, which would not be a new
event). Presses are spaced 10-30 ms apart at random so they do not line up with the gateway's
batching.

Latency is measured on one clock (this process): from just before the PUBLISH is written to
the socket to the first ``opened`` event for that bed being parsed from the stream: the call
shown unstored, before the alert store's commit (``stored_ms``: the same press to its stored
event, after the commit's fsync; ``lost`` counts presses never stored). The background
rate reported is what the gateway counted (``homecare_messages_received_total``) during the
presses, not what was asked for.

To show what limits the figure, the latency is also split at the gateway's receipt time (the
alert's ``opened_at``, same machine clock): publish -> socket read (broker, TCP, the gateway's
pushback when its inbox is full) and socket read -> stream (inbox, pipeline, commit, SSE), next
to the gateway's own receipt-to-disk and batch-commit histograms.

A second row in the same run (``slow_database``) repeats the measurement with a slow neighbour:
the gateway's database is a loopback HTTP server (:mod:`tests.slowdb`) that takes writes at once
but answers queries only after 30 s, and 12 clients keep asking the API for bed history (two
days back, so every request is a database query) throughout. Its p99 is reported beside the
normal row's, with their ratio (target: at most 2x).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from bench.alertstream import AlertStream
from devices.broker import BrokerUrl
from devices.mqttwire import publish_packet
from simulators.load import pregenerate
from simulators.mqtt import Publisher
from tests.servers import GatewayProcess, Mosquitto, VictoriaMetrics
from tests.slowdb import SlowDatabase

SITE = "bench"
BACKGROUND_RATE = 10_000
BACKGROUND_BEDS = 2_500
"""At ~4 messages per bed per second (DESIGN.md's scale anchor), 10k msg/s is ~2,500 beds."""
BACKGROUND_BEHIND_MS = 3_600_000
"""How far before now the background traffic's device clocks start (see _background_main)."""
WARMUP_S = 3.0
DRAIN_TIMEOUT_S = 15.0
SLOW_QUERY_S = 30.0
"""The slow database answers history queries after this long (writes at once)."""
HISTORY_CLIENTS = 12
"""Concurrent bed-history requests kept in flight during the slow-database row."""
HISTORY_BED = ("site-01", "bed-0001")
"""A background bed (known to the gateway from the traffic) whose history is asked for."""


# --- background traffic (child process) -------------------------------------------------------

def _background_main(url: str, rate: float, n_messages: int, seed: int,
                     conn: Connection) -> None:
    # Device clocks a live fleet's gateway stores as sent. The traffic is published about 60x
    # faster than it was "measured" (280,000 messages span ~29 simulated minutes, sent in
    # ~28 s), so it starts an hour back: had it started now, its device times would run
    # up to 29 min ahead of receipt, beyond the 15 min the gateway trusts, and most points
    # would take the retiming path (devices/devicetime.py) that only wrong clocks take.
    messages = pregenerate(beds=BACKGROUND_BEDS, n_messages=n_messages, seed=seed,
                           start_ms=int(time.time() * 1000) - BACKGROUND_BEHIND_MS)
    conn.send(("ready", len(messages)))
    if conn.recv() != "go":
        return
    sent, seconds = asyncio.run(_paced(url, messages, rate, conn))
    conn.send(("done", sent, seconds))


async def _paced(url: str, messages: list[tuple[str, bytes]], rate: float,
                 conn: Connection, connections: int = 4) -> tuple[int, float]:
    """Publish at ``rate`` msg/s (QoS 1, flow-controlled by PUBACKs) until done or told to
    stop; messages of one topic always share a connection, so each device stays in order."""
    broker = BrokerUrl.parse(url)
    publishers = [Publisher(broker, client_id=f"bench-bg-{i}", max_inflight=5_000,
                            reconnect=False, drain_timeout_s=5.0) for i in range(connections)]
    await asyncio.gather(*(p.connect() for p in publishers))
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    tick = 0.005
    try:
        while sent < len(messages) and not conn.poll():
            due = min(len(messages), int((loop.time() - started) * rate))
            if due > sent:
                shards: dict[int, list[tuple[bytes, bytes]]] = {}
                for topic, payload in messages[sent:due]:
                    raw = topic.encode()
                    shards.setdefault(zlib.crc32(raw) % connections, []).append((raw, payload))
                for i, chunk in shards.items():
                    publisher = publishers[i]
                    await publisher.wait_window(len(chunk))
                    ids = publisher.allocate_ids(len(chunk))
                    publisher.write_many(
                        [publish_packet(t, p, qos=1, retain=False, packet_id=pid)
                         for (t, p), pid in zip(chunk, ids, strict=True)], ids)
                sent = due
            await asyncio.sleep(tick)  # pacing: the next slice of the schedule
        seconds = loop.time() - started
        await asyncio.gather(*(p.drain() for p in publishers))
    finally:
        await asyncio.gather(*(p.disconnect() for p in publishers), return_exceptions=True)
    return sent, seconds


# --- presses and the stream (this process) ----------------------------------------------------

class _Stream(AlertStream):
    """The SSE stream: times the first ``opened`` event of each bench bed (shown unstored,
    before the alert store's commit) and its stored one."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(url, key)
        self.opened: dict[str, float] = {}
        self.stored: dict[str, float] = {}
        self.opened_at: dict[str, tuple[int, float]] = {}
        """bed -> (the alert's opened_at: gateway receipt time, wall-clock ms on arrival)"""
        self.expected = 0
        self.all_in = asyncio.Event()
        self.events = 0

    def on_opened(self, alert: dict[str, Any], now: float, unstored: bool) -> None:
        self.events += 1
        if alert["site"] == SITE:
            self.opened.setdefault(alert["bed"], now)
            self.opened_at.setdefault(alert["bed"], (alert["opened_at"], time.time() * 1000))
            if not unstored:
                self.stored.setdefault(alert["bed"], now)
            if len(self.stored) >= self.expected:
                self.all_in.set()


async def _press_all(mqtt_url: str, presses: int, stream: _Stream, seed: int
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """Press every button; returns when each press was published, on the monotonic clock
    (for the latency) and the wall clock (to split it at the gateway's receipt time)."""
    rng = random.Random(seed)
    client = Publisher(BrokerUrl.parse(mqtt_url), client_id="bench-presses", reconnect=False)
    await client.connect()
    pressed: dict[str, float] = {}
    pressed_wall: dict[str, float] = {}
    stream.expected = presses
    try:
        for i in range(presses):
            bed = f"p-{i:05d}"
            topic = f"homecare/v1/{SITE}/{bed}/button/btn-{i:05d}/event"
            payload = json.dumps({"ts": time.time_ns() // 1_000_000, "seq": 1,
                                  "event": "press"}).encode()
            pressed_wall[bed] = time.time() * 1000
            pressed[bed] = time.perf_counter()
            client.publish_nowait(topic, payload, qos=1)
            await asyncio.sleep(rng.uniform(0.010, 0.030))
        await client.drain()
    finally:
        await client.disconnect()
    return pressed, pressed_wall


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def run(*, quick: bool = False, presses: int | None = None,
        background_rate: float = BACKGROUND_RATE, keep: bool = False,
        profile_to: Path | None = None, with_database: bool = True,
        slow_database: bool = True) -> dict[str, Any]:
    """The figures. ``keep``: leave the servers' directories (logs) in the temp dir;
    ``profile_to``: also record the gateway with py-spy (collapsed stacks) during the run;
    ``with_database=False``: the gateway keeps points in its spool only;
    ``slow_database``: also the slow-database row (same run, after the normal one)."""
    presses = presses or (100 if quick else 1000)
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    key = secrets.token_urlsafe(32)
    mq = Mosquitto(workdir / "mosquitto")
    vm: VictoriaMetrics | None = None
    try:
        mq.start()
        env = {"HOMECARE_API_KEY": key, "HOMECARE_LOG_LEVEL": "warning"}
        store = "none (spool only)"
        if with_database and (shutil.which("victoria-metrics")
                              or Path("/usr/bin/victoria-metrics").exists()):
            vm = VictoriaMetrics(workdir / "vm")
            vm.start()
            env.update({"HOMECARE_INFLUX_URL": vm.url, "HOMECARE_INFLUX_API": "v2",
                        "HOMECARE_INFLUX_ORG": "bench", "HOMECARE_INFLUX_BUCKET": "homecare",
                        "HOMECARE_INFLUX_TOKEN": "bench"})
            store = "victoria-metrics (InfluxDB v2 write API)"
        figures = _row(workdir / "normal", mq, key, env, presses, background_rate,
                       profile_to=profile_to, history_clients=0)
        figures["store"] = store
        if slow_database:
            with SlowDatabase(query_delay_s=SLOW_QUERY_S) as db:
                env.update({"HOMECARE_INFLUX_URL": db.url, "HOMECARE_INFLUX_API": "v2",
                            "HOMECARE_INFLUX_ORG": "bench",
                            "HOMECARE_INFLUX_BUCKET": "homecare",
                            "HOMECARE_INFLUX_TOKEN": "bench"})
                # A broker of its own: the normal row's gateway left a persistent session on
                # ``mq`` that queues (and autosaves) all 10k msg/s for nobody, which cost this
                # row 300+ ms at p99 between publish and receipt (measured).
                slow_mq = Mosquitto(workdir / "mosquitto-slow-db")
                slow_mq.start()
                try:
                    slow = _row(workdir / "slow-db", slow_mq, key, env, presses,
                                background_rate, profile_to=None,
                                history_clients=HISTORY_CLIENTS)
                finally:
                    slow_mq.stop()
                slow["database_queries"] = db.queries
                slow["database_writes"] = db.writes
            slow["store"] = (f"loopback server: writes at once, queries answered after "
                             f"{SLOW_QUERY_S:g} s; {HISTORY_CLIENTS} concurrent history "
                             "requests throughout")
            figures["slow_database"] = slow
            if figures.get("p99") and slow.get("p99"):
                figures["slow_database_p99_ratio"] = round(slow["p99"] / figures["p99"], 2)
        return figures
    finally:
        if vm is not None:
            vm.stop()
        mq.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _row(workdir: Path, mq: Mosquitto, key: str, env: dict[str, str], presses: int,
         background_rate: float, *, profile_to: Path | None, history_clients: int
         ) -> dict[str, Any]:
    """One row: a fresh gateway (own session, data dir) and background publisher on ``mq``."""
    mean_gap_s = 0.020
    seconds = WARMUP_S + presses * mean_gap_s + 5.0
    n_background = int(background_rate * seconds)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    background: Any = None
    gateway: GatewayProcess | None = None
    try:
        background = ctx.Process(target=_background_main, name="bench-background",
                                 args=(mq.url, background_rate, n_background, 11, child))
        background.start()
        gateway = GatewayProcess(workdir, mqtt_url=mq.url, env={
            **env, "HOMECARE_MQTT_CLIENT_ID": f"bench-latency-{workdir.name}"})
        gateway.start()
        gateway.wait_connected()
        if not parent.poll(300):
            raise TimeoutError("background traffic was not generated in time")
        _, generated = parent.recv()
        profiler = None
        if profile_to is not None and gateway.proc is not None:
            profiler = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                 str(gateway.proc.pid), "--format", "raw", "--output", str(profile_to),
                 "--rate", "200", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            figures = asyncio.run(_measure(gateway, mq.url, key, presses, parent,
                                           background_rate, history_clients))
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
        figures["background_generated_messages"] = generated
        return figures
    finally:
        with contextlib.suppress(Exception):
            parent.send("stop")
        if background is not None:
            background.join(30)
            if background.is_alive():
                background.kill()
        if gateway is not None:
            gateway.stop()


async def _history_load(url: str, key: str, clients: int, answers: dict[str, int]) -> None:
    """Keep ``clients`` bed-history requests in flight (each asks again once answered)."""
    site, bed = HISTORY_BED

    async def client(http: httpx.AsyncClient) -> None:
        while True:
            now = int(time.time() * 1000)
            try:
                r = await http.get(
                    f"{url}/api/v1/beds/{site}/{bed}/series",
                    params={"metric": "heart_rate", "since": now - 2 * 86_400_000,
                            "until": now - 86_400_000},
                    headers={"Authorization": f"Bearer {key}"})
                outcome = str(r.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            answers[outcome] = answers.get(outcome, 0) + 1
            if outcome != "504":
                await asyncio.sleep(0.5)  # refused at once: ask again shortly, not in a spin

    limits = httpx.Limits(max_connections=clients * 2)
    async with httpx.AsyncClient(timeout=SLOW_QUERY_S * 2, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))


async def _measure(gateway: GatewayProcess, mqtt_url: str, key: str, presses: int,
                   control: Connection, background_rate: float, history_clients: int = 0
                   ) -> dict[str, Any]:
    stream = _Stream(gateway.url, key)
    reader = asyncio.create_task(stream.run(), name="bench-stream")
    answers: dict[str, int] = {}
    history: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(30):
            await stream.connected.wait()
        control.send("go")
        if history_clients:
            history = asyncio.create_task(
                _history_load(gateway.url, key, history_clients, answers), name="history")
        await asyncio.sleep(WARMUP_S)  # background at full rate before the first press
        before = await asyncio.to_thread(gateway.metrics)
        started = time.perf_counter()
        pressed, pressed_wall = await _press_all(mqtt_url, presses, stream, seed=5)
        elapsed = time.perf_counter() - started
        after = await asyncio.to_thread(gateway.metrics)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await stream.all_in.wait()
        drained = await asyncio.to_thread(gateway.metrics)
    finally:
        for task in (reader, history):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    control.send("stop")
    bg_published = await asyncio.to_thread(control.recv) if control.poll(30) else None
    latencies = [(stream.opened[bed] - t) * 1000 for bed, t in pressed.items()
                 if bed in stream.opened]
    stored = [(stream.stored[bed] - t) * 1000 for bed, t in pressed.items()
              if bed in stream.stored]
    received = (after.get("homecare_messages_received_total", 0)
                - before.get("homecare_messages_received_total", 0))
    figures: dict[str, Any] = {
        "presses": presses,
        "alerts_received": len(stored),
        "lost": presses - len(stored),
        "shown_before_stored": sum(1 for bed in stream.stored
                                   if stream.opened[bed] < stream.stored[bed]),
        "background_msgs_per_s": round((received - presses) / elapsed),
        "background_target_msgs_per_s": background_rate,
        "seconds": round(elapsed, 2),
        "stream_reconnects": stream.reconnects,
    }
    if bg_published is not None:
        _, sent, secs = bg_published
        figures["background_published_msgs_per_s"] = round(sent / secs) if secs else None
    if latencies:
        figures.update({
            "p50": round(_percentile(latencies, 50), 2),
            "p95": round(_percentile(latencies, 95), 2),
            "p99": round(_percentile(latencies, 99), 2),
            "max": round(max(latencies), 2),
            "mean": round(statistics.fmean(latencies), 2),
        })
    if stored:
        figures["stored_ms"] = _quantiles(stored)
    figures["gateway_inbox_depth_end"] = after.get("homecare_inbox_depth", 0)
    if history_clients:
        figures["history_clients"] = history_clients
        figures["history_answers"] = dict(sorted(answers.items()))
        figures["history_in_flight_end"] = after.get("homecare_history_in_flight", 0)
    # Where the time goes, at the gateway's receipt time (the alert's opened_at; same
    # machine, same wall clock): broker and socket before it, gateway and stream after.
    before_receipt = [stream.opened_at[b][0] - pressed_wall[b] for b in pressed_wall
                      if b in stream.opened_at]
    after_receipt = [arrived - opened for opened, arrived in stream.opened_at.values()]
    if before_receipt:
        figures["publish_to_gateway_receipt_ms"] = _quantiles(before_receipt)
        figures["gateway_receipt_to_stream_ms"] = _quantiles(after_receipt)
    # The gateway's own histograms, up to when the last alert came in.
    inside = _histogram_quantiles(before, drained, "homecare_alert_open_latency_seconds",
                                  'severity="critical"')
    if inside:
        figures["gateway_receipt_to_disk_ms"] = inside
    commit = _histogram_quantiles(before, drained, "homecare_commit_seconds", "le=")
    if commit:
        figures["gateway_batch_commit_ms"] = commit
    for generation in (0, 1, 2):
        pauses = _histogram_quantiles(before, drained, "homecare_gc_pause_seconds",
                                      f'generation="{generation}"')
        if pauses:
            figures[f"gateway_gc_gen{generation}_pause_ms"] = pauses
    return figures


def _quantiles(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(_percentile(values, q), 1) for q in (50, 95, 99)}


def _histogram_quantiles(before: dict[str, float], after: dict[str, float], name: str,
                         labels: str) -> dict[str, float | None]:
    """p50/p99 upper bounds (bucket edges, ms) of a Prometheus histogram over the run: the
    gateway's own view of the same alerts, from socket read to alert store commit."""
    buckets: list[tuple[float, float]] = []
    prefix = f"{name}_bucket{{"
    for key, value in after.items():
        if not key.startswith(prefix) or labels not in key:
            continue
        le = key.split('le="', 1)[1].split('"', 1)[0]
        buckets.append((float(le), value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return {}
    out: dict[str, float | None] = {}
    for q in (50, 99):
        edge = next(le for le, count in buckets if count >= total * q / 100)
        out[f"p{q}_le"] = edge * 1000 if edge != float("inf") else None
    edge = next(le for le, count in buckets if count >= total)
    out["max_le"] = edge * 1000 if edge != float("inf") else None
    out["count"] = total
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
