"""Flood of unknown devices: made-up ids by the hundred thousand, then their silence.

Set-up, all real processes on this machine: mosquitto, ``homecare gateway`` (points kept in its
spool: no database, so the figure is the gateway's own), with a registry of one site
(``bench``) of :data:`REGISTERED_BEDS` beds, each with a listed button, and short default
heartbeats (:data:`HEARTBEAT_S` x :data:`OFFLINE_FACTOR`: a device not listed is offline after
10 s of silence). Then, from a publisher in its own process (at a lower priority,
:data:`FLOOD_NICE`), :data:`FLOOD_IDS` devices the
registry does not know, one valid message each (a status, or one infrared, audio or vitals
sample), every one a made-up site, bed and device (one in ten a made-up bed of the registered
site), published as fast as the broker takes them; then silence, so that every one of them is
overdue at the detectors' next round.

Throughout, this process presses a listed button every 50-150 ms (each on its own bed, so each
press opens a new critical alert) and times it from the PUBLISH to the first ``opened`` event on
the API's SSE stream, as :mod:`bench.latency` does: the call shown unstored, before the alert
store's commit (``*_stored_ms``: to its stored event, after the commit's fsync; ``lost``:
presses never stored). Presses are grouped by phase (after
:data:`WARMUP_S` of presses not counted): ``quiet`` (before the flood), and ``storm``: from the
flood's first message until :data:`AFTER_FLOOD_S` after its last, which covers the intake of
the flood and the detectors' round that finds the devices silent; ``storm_flood`` and
``storm_offline`` split it (the presses published while the flood is published, and those from
2 s before the first alert other than a press opened to the latest, at least 10 s: the alert
storm). ``storm_intake`` are the presses published from the flood's first message until the
gateway has received all of it (its ``homecare_messages_received_total``, polled every 0.2 s):
the presses that, on one MQTT session, wait behind the flood queued at the broker, which the
urgent session (:mod:`gateway.ingest.urgentsession`) takes out of band. Which session delivered
each call first is reported from the gateway (``homecare_urgent_calls_first_total``).

``BENCH_FLOOD_PRESSES=<file>``: also write every press there, one JSON array a line (bed, phase,
seconds since the flood's first message, ms to the stream, to the gateway's receipt, to the C
client), to see when the slow ones came.

Reported: the gateway's peak RSS (the kernel's high-water mark, ``VmHWM``) beside its RSS when
quiet; the alerts opened other than presses (in all, how many site and type pairs, the ten
largest ``site/type`` counts: the made-up sites share ``_unregistered``) and the members of
each open summary; the messages left out of the detectors; and button -> stream p50/p99 per
phase with the storm/quiet ratios (target: p99 within 2x), split at the gateway's receipt.

The ceiling, in the same run: the C ``mosquitto_sub`` subscribed (QoS 1, its own session) to
the listed buttons' event topics, stamping each press on arrival. Publish -> its arrival is the
fastest any client on this machine is handed a press by the broker while the flood is in
flight; the gateway's publish -> receipt is reported against it per phase (``*_ceiling_ms``,
``*_p99_vs_ceiling``), so the share of the delay that is the broker and the shared CPU, not the
gateway, is measured rather than guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from bench.alertstream import AlertStream
from devices.broker import BrokerUrl
from devices.mqttwire import publish_packet
from simulators.mqtt import Publisher
from tests.servers import GatewayProcess, Mosquitto

SITE = "bench"
REGISTERED_BEDS = 2_500
"""Each press is on a bed of its own: enough for the warm-up, quiet and storm presses (about
2,100)."""
FLOOD_IDS = 100_000
HEARTBEAT_S = 5
OFFLINE_FACTOR = 2
FLOOD_NICE = 10
"""The flood's publisher runs at this niceness. It stands for 100,000 devices in their homes,
whose CPU is not the hub's; at the same priority it took one of this machine's two cores for
the ~2 s of its publishing, from the broker and the gateway alike (the C client's storm p99
then 4-16 ms), so the presses of those seconds measured the bench more than the gateway.
Lower priority, it still publishes on whatever CPU the hub leaves (during the intake the
gateway takes one core, the broker 6-8 % of the other). The presses and the C client run at
normal priority.

The niceness is its session's (:func:`_lower_priority`): with the kernel's autogroups on (as on
this machine), CPU is shared between sessions first, and a process's own niceness only weighs
against its session's other processes. The broker and the gateway each run in a session of
their own (:mod:`tests.servers`), so until 2026-12-03 the publisher, at niceness 10 in the
bench's session, still took a third of the two cores from each of them while it published: the
gateway's event loop, runnable, was off the CPU 3-12 ms at a time (its callbacks' wall time
4-13 ms against 0.5-1 ms of CPU), which was the storm's slowest presses."""
QUIET_S = 60.0
"""Long enough for about 600 quiet presses: the quiet p99, every ratio's denominator, is then
the sixth worst press, not one press's luck. With 30 s (about 300 presses, the third worst)
the quiet p99 of otherwise alike runs on this shared machine ranged 2.3-10 ms (2026-12-03),
and the storm ratio with it."""
WARMUP_S = 5.0
"""Presses before the quiet phase, not counted: the first seconds after the gateway starts
(caches, the first alert commits) would make the quiet baseline, and so every ratio, look
better or worse than the gateway at rest."""
AFTER_FLOOD_S = 130.0
"""The storm phase lasts this long after the flood's last message is published: the detectors
evaluate once a minute, the silent devices are overdue 10 s after their message, and a round
that came while the flood was still being taken in leaves the rest to the next one."""
AFTER_PRESSES_S = 30.0
""":data:`AFTER_FLOOD_S` of :func:`run_presses`: the made-up presses open their alerts as they
are read, not at a detectors' round."""
PRESS_GAP_S = (0.05, 0.15)
DEPLOYED_BROKER_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / \
    "mosquitto.conf"
PRESS_FLOOD_IDS = 20_000
KINDS = ("infrared", "audio", "fall", "button")
RECEIVED = "homecare_messages_received_total"
"""The gateway's counter of MQTT messages received (the flood's intake is done when it has
counted what the publisher sent)."""


def deployed_autosave_s(config: Path = DEPLOYED_BROKER_CONFIG) -> int:
    """The broker's ``autosave_interval`` as deployed: how often mosquitto writes every queued
    message to disk, in its only thread. The test servers' 1 s (a kill in a fault test loses
    little) would have the broker write the flood's queue every second while the presses wait."""
    for line in config.read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition(" ")
        if name == "autosave_interval":
            return int(value)
    raise ValueError(f"{config}: no autosave_interval")


def registry_toml(beds: int) -> str:
    lines = ["[defaults]", f"heartbeat_s = {HEARTBEAT_S}", f"offline_factor = {OFFLINE_FACTOR}",
             'timezone = "UTC"', ""]
    for n in range(beds):
        lines += [f"[sites.{SITE}.beds.p-{n:05d}.devices.btn-{n:05d}]", 'kind = "button"',
                  "heartbeat_s = 86400", ""]
    return "\n".join(lines)


def flood_messages(n: int, now_ms: int, *, presses: bool = False) -> list[tuple[str, bytes]]:
    """``n`` made-up devices, one valid message each (``presses``: each a button press)."""
    out = []
    for i in range(n):
        site, bed = (SITE, f"x-{i:06d}") if i % 10 == 0 else (f"x-{i:06d}", "bed")
        kind = "button" if presses else KINDS[i % len(KINDS)]
        device = f"{kind[:2]}-x{i:06d}"
        if kind == "infrared":
            channel, body = "telemetry", {"presence": True, "motion": 0, "people": 1,
                                          "zone": "room"}
        elif kind == "audio":
            channel, body = "telemetry", {"level_db": 40.0, "voice": False}
        elif kind == "fall":
            channel, body = "telemetry", {"in_bed": True, "heart_rate": 70.0,
                                          "breathing_rate": 15.0}
        elif presses:
            channel, body = "event", {"event": "press"}
        else:
            channel, body = "status", {"state": "online", "battery": 80}
        payload = json.dumps({"ts": now_ms, "seq": 1, **body}).encode()
        out.append((f"homecare/v1/{site}/{bed}/{kind}/{device}/{channel}", payload))
    return out


# --- the flood (child process) ------------------------------------------------------------------

def _lower_priority(nice: int) -> None:
    """This process at niceness ``nice``, against the hub's processes too: a session of its own
    whose autogroup has that niceness (with autogroups, a process's niceness weighs only within
    its session; ``/proc/self/autogroup`` absent when the kernel has none)."""
    os.setsid()
    os.nice(nice)
    with contextlib.suppress(FileNotFoundError):
        Path("/proc/self/autogroup").write_text(f"{nice}\n", encoding="ascii")


def _flood_main(url: str, n: int, presses: bool, conn: Connection) -> None:
    _lower_priority(FLOOD_NICE)
    messages = flood_messages(n, int(time.time() * 1000), presses=presses)
    conn.send(("ready", len(messages)))
    if conn.recv() != "go":
        return
    sent, seconds = asyncio.run(_publish_all(url, messages))
    conn.send(("done", sent, seconds))


async def _publish_all(url: str, messages: list[tuple[str, bytes]], connections: int = 2,
                       slice_size: int = 2_000) -> tuple[int, float]:
    broker = BrokerUrl.parse(url)
    publishers = [Publisher(broker, client_id=f"bench-flood-{i}", max_inflight=5_000,
                            reconnect=False, drain_timeout_s=120.0) for i in range(connections)]
    await asyncio.gather(*(p.connect() for p in publishers))
    started = time.perf_counter()
    try:
        for first in range(0, len(messages), slice_size):
            shards: dict[int, list[tuple[bytes, bytes]]] = {}
            for topic, payload in messages[first:first + slice_size]:
                raw = topic.encode()
                shards.setdefault(zlib.crc32(raw) % connections, []).append((raw, payload))
            for i, chunk in shards.items():
                publisher = publishers[i]
                await publisher.wait_window(len(chunk))
                ids = publisher.allocate_ids(len(chunk))
                publisher.write_many(
                    [publish_packet(t, p, qos=1, retain=False, packet_id=pid)
                     for (t, p), pid in zip(chunk, ids, strict=True)], ids)
            await asyncio.sleep(0)
        await asyncio.gather(*(p.drain() for p in publishers))
        return len(messages), time.perf_counter() - started
    finally:
        await asyncio.gather(*(p.disconnect() for p in publishers), return_exceptions=True)


# --- this process: stream, presses, RSS ---------------------------------------------------------

class _Stream(AlertStream):
    """The SSE stream: alerts opened per site and type, and when each press's alert came."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(url, key)
        self.opened: dict[str, int] = {}
        self.pressed_opened: dict[str, float] = {}
        """bed -> when its press's alert was first shown (unstored, before the commit)"""
        self.pressed_stored: dict[str, float] = {}
        """bed -> when its stored opening came (after the alert store's commit)"""
        self.opened_at: dict[str, tuple[int, float]] = {}
        """bed -> (the alert's opened_at: gateway receipt time, wall-clock ms on arrival)"""
        self.expected: int | None = None
        self.all_in = asyncio.Event()
        self.storm_seen: tuple[float, float] = (0.0, 0.0)
        """When the first and the latest alert other than a press opened (monotonic)."""

    def on_opened(self, alert: dict[str, Any], now: float, unstored: bool) -> None:
        if not unstored:  # each alert counted once, when stored
            key = f"{alert['site']}/{alert['type']}"
            self.opened[key] = self.opened.get(key, 0) + 1
            if alert["type"] != "emergency_button":
                self.storm_seen = (self.storm_seen[0] or now, now)
        if (alert["site"] == SITE and alert["type"] == "emergency_button"
                and alert["bed"].startswith("p-")):  # a listed button (made-up beds: x-)
            self.pressed_opened.setdefault(alert["bed"], now)
            self.opened_at.setdefault(alert["bed"], (alert["opened_at"], time.time() * 1000))
            if not unstored:
                self.pressed_stored.setdefault(alert["bed"], now)
        if self.expected is not None and len(self.pressed_stored) >= self.expected:
            self.all_in.set()


class _RssSampler(threading.Thread):
    """The gateway's resident memory, sampled every 0.25 s (and its high-water mark)."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="bench-rss", daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def status_mb(self, field: str) -> float | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def run(self) -> None:
        while not self.stop.wait(0.25):
            rss = self.status_mb("VmRSS")
            if rss is not None:
                self.samples.append((time.perf_counter(), rss))


async def _press(client: Publisher, n: int) -> tuple[str, float, float]:
    """Press listed button ``n``: its bed, and when (monotonic clock, wall-clock ms)."""
    bed = f"p-{n:05d}"
    topic = f"homecare/v1/{SITE}/{bed}/button/btn-{n:05d}/event"
    payload = json.dumps({"ts": time.time_ns() // 1_000_000, "seq": 1,
                          "event": "press"}).encode()
    wall = time.time() * 1000
    at = time.perf_counter()
    client.publish_nowait(topic, payload, qos=1)
    return bed, at, wall


class _CeilingSubscriber:
    """``mosquitto_sub`` on the listed buttons' events: bed -> wall-clock ms of arrival."""

    def __init__(self, mqtt_url: str, out: Path) -> None:
        broker = BrokerUrl.parse(mqtt_url)
        self.out = out
        self._file = out.open("wb")
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1",
             "-i", "bench-flood-ceiling", "-t", f"homecare/v1/{SITE}/+/button/+/event",
             "-F", "%U %t"], stdout=self._file, stderr=subprocess.DEVNULL)

    def stop(self) -> dict[str, float]:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._file.close()
        arrived: dict[str, float] = {}
        for line in self.out.read_text(encoding="utf-8", errors="replace").splitlines():
            stamp, _, topic = line.partition(" ")
            parts = topic.split("/")
            if len(parts) == 7:
                with contextlib.suppress(ValueError):
                    arrived.setdefault(parts[3], float(stamp) * 1000)
        return arrived


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _latency(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"presses": len(values), "p50": round(_percentile(values, 50), 2),
            "p99": round(_percentile(values, 99), 2), "max": round(max(values), 2),
            "mean": round(statistics.fmean(values), 2)}


def run(*, quick: bool = False, flood_ids: int | None = None, keep: bool = False,
        profile_to: Path | None = None, presses: bool = False) -> dict[str, Any]:
    """The figures. ``flood_ids``: how many made-up devices (default :data:`FLOOD_IDS`, a
    tenth with ``quick``); ``keep``: leave the servers' directories (logs) in the temp dir;
    ``profile_to``: also record the gateway with py-spy (raw collapsed stacks); ``presses``:
    every made-up device presses its button (:func:`run_presses`)."""
    n = flood_ids or (FLOOD_IDS // 10 if quick else FLOOD_IDS)
    workdir = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    key = secrets.token_urlsafe(32)
    registry = workdir / "registry.toml"
    registry.write_text(registry_toml(REGISTERED_BEDS), encoding="utf-8")
    mq = Mosquitto(workdir / "mosquitto", autosave_interval_s=deployed_autosave_s())
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    flood: Any = None
    gateway: GatewayProcess | None = None
    try:
        mq.start()
        flood = ctx.Process(target=_flood_main, name="bench-flood",
                            args=(mq.url, n, presses, child))
        flood.start()
        gateway = GatewayProcess(workdir / "gateway", mqtt_url=mq.url, env={
            "HOMECARE_API_KEY": key, "HOMECARE_LOG_LEVEL": "warning",
            "HOMECARE_REGISTRY_FILE": str(registry),
            "HOMECARE_MQTT_CLIENT_ID": "bench-flood-gateway"})
        gateway.start()
        gateway.wait_connected()
        if not parent.poll(300):
            raise TimeoutError("the flood was not generated in time")
        _, generated = parent.recv()
        assert gateway.proc is not None
        rss = _RssSampler(gateway.proc.pid)
        rss.start()
        profiler = None
        if profile_to is not None:
            profiler = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                 str(gateway.proc.pid), "--format", "raw", "--output", str(profile_to),
                 "--rate", "100", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            figures = asyncio.run(_measure(
                gateway, mq.url, key, parent, rss,
                after_flood_s=AFTER_PRESSES_S if presses else AFTER_FLOOD_S))
        finally:
            rss.stop.set()
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
        figures["flood_ids"] = generated
        figures["registered_beds"] = REGISTERED_BEDS
        figures["offline_after_s"] = HEARTBEAT_S * OFFLINE_FACTOR
        figures["store"] = "none (spool only)"
        figures["broker_autosave_s"] = mq.autosave_interval_s
        return figures
    finally:
        with contextlib.suppress(Exception):
            parent.send("stop")
        if flood is not None:
            flood.join(30)
            if flood.is_alive():
                flood.kill()
        if gateway is not None:
            gateway.stop()
        mq.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def _measure(gateway: GatewayProcess, mqtt_url: str, key: str, control: Connection,
                   rss: _RssSampler, *, after_flood_s: float) -> dict[str, Any]:
    stream = _Stream(gateway.url, key)
    reader = asyncio.create_task(stream.run(), name="bench-stream")
    rng = random.Random(17)
    client = Publisher(BrokerUrl.parse(mqtt_url), client_id="bench-flood-presses",
                       reconnect=False)
    pressed: dict[str, tuple[float, str]] = {}
    pressed_wall: dict[str, float] = {}
    marks: dict[str, float] = {}
    intake: asyncio.Task[None] | None = None
    count = 0
    ceiling = _CeilingSubscriber(mqtt_url, Path(tempfile.mkstemp(prefix="bench-ceiling-")[1]))
    ceiling_arrived: dict[str, float] = {}
    metrics_client = httpx.AsyncClient(timeout=5)
    try:
        async with asyncio.timeout(30):
            await stream.connected.wait()
        await client.connect()
        await asyncio.sleep(1.0)
        started = time.perf_counter()
        while time.perf_counter() - started < WARMUP_S:  # not counted
            await _press(client, count)
            count += 1
            await asyncio.sleep(rng.uniform(*PRESS_GAP_S))
        # Quiet: presses only.
        started = time.perf_counter()
        while time.perf_counter() - started < QUIET_S:
            bed, at, wall = await _press(client, count)
            pressed[bed] = (at, "quiet")
            pressed_wall[bed] = wall
            count += 1
            await asyncio.sleep(rng.uniform(*PRESS_GAP_S))
        marks["quiet_rss_mb"] = rss.status_mb("VmRSS") or 0.0
        before = await asyncio.to_thread(gateway.metrics)
        # The flood, then silence; presses go on.
        control.send("go")
        marks["flood_start"] = time.perf_counter()
        intake = asyncio.create_task(_intake_done(metrics_client, gateway, before, marks),
                                     name="bench-intake")
        flood_end: float | None = None
        while flood_end is None or time.perf_counter() - flood_end < after_flood_s:
            if count >= REGISTERED_BEDS:
                break
            now = time.perf_counter()
            if flood_end is None and control.poll():
                _, sent, seconds = control.recv()
                flood_end = now
                marks["flood_published"] = sent
                marks["flood_seconds"] = seconds
            if now - marks["flood_start"] > 600:
                raise TimeoutError("the flood took over 10 minutes")
            bed, at, wall = await _press(client, count)
            phase = "storm_flood" if flood_end is None else "storm"
            pressed[bed] = (at, phase)
            pressed_wall[bed] = wall
            count += 1
            await asyncio.sleep(rng.uniform(*PRESS_GAP_S))
        await client.drain()
        stream.expected = len(pressed)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await stream.all_in.wait()
        after = await asyncio.to_thread(gateway.metrics)
        alerts = await _open_summaries(gateway.url, key)
    finally:
        if intake is not None:
            intake.cancel()
        await metrics_client.aclose()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await client.disconnect()
        ceiling_arrived = ceiling.stop()
        ceiling.out.unlink(missing_ok=True)
    # Latency by phase. The alert storm: from 2 s before the first alert other than a press
    # opened (the detectors' round that found the devices offline) to the latest, at least
    # 10 s.
    first, last = stream.storm_seen
    storm_window = (first - 2, max(last, first + 10)) if first else None
    intake_end = marks.get("intake_end", float("-inf"))

    def by_phase(arrived: dict[str, float]) -> dict[str, list[float]]:
        phases: dict[str, list[float]] = {"quiet": [], "storm": [], "storm_flood": [],
                                          "storm_intake": [], "storm_offline": []}
        for bed, (at, phase) in pressed.items():
            if bed not in arrived:
                continue
            ms = (arrived[bed] - at) * 1000
            if phase == "quiet":
                phases["quiet"].append(ms)
                continue
            phases["storm"].append(ms)
            if phase == "storm_flood":
                phases["storm_flood"].append(ms)
            if at <= intake_end:
                phases["storm_intake"].append(ms)
            if storm_window is not None and storm_window[0] <= at <= storm_window[1]:
                phases["storm_offline"].append(ms)
        return phases

    latency = {name: _latency(values) for name, values in by_phase(stream.pressed_opened).items()}
    stored = {name: _latency(values) for name, values in by_phase(stream.pressed_stored).items()}
    opened = {k: v for k, v in stream.opened.items() if not k.endswith("/emergency_button")}
    # Where the storm's time goes, at the gateway's receipt time (the alert's opened_at, same
    # machine clock): broker and socket (the gateway reading the flood in order) before it,
    # pipeline, alert commit and stream after.
    split: dict[str, dict[str, list[float]]] = {}
    ceilings: dict[str, list[float]] = {}
    for bed, (at, phase) in pressed.items():
        if bed in ceiling_arrived:
            names = {"quiet"} if phase == "quiet" else {"storm", phase}
            if phase != "quiet" and at <= intake_end:
                names.add("storm_intake")
            for name in names:
                ceilings.setdefault(name, []).append(ceiling_arrived[bed] - pressed_wall[bed])
    for bed, (at, phase) in pressed.items():
        if bed in stream.opened_at:
            received, arrived = stream.opened_at[bed]
            names = {phase} if phase == "quiet" else {phase, "storm"}
            if phase != "quiet" and at <= intake_end:
                names.add("storm_intake")
            for name in names:
                parts = split.setdefault(name, {"before": [], "after": []})
                parts["before"].append(received - pressed_wall[bed])
                parts["after"].append(arrived - received)
    figures: dict[str, Any] = {
        "peak_rss_mb": round(rss.status_mb("VmHWM") or max(r for _, r in rss.samples), 1),
        "quiet_rss_mb": round(marks["quiet_rss_mb"], 1),
        "end_rss_mb": round(rss.samples[-1][1], 1) if rss.samples else None,
        "flood_msgs_per_s": round(marks["flood_published"] / marks["flood_seconds"])
        if marks.get("flood_seconds") else None,
        "flood_received": round(after.get(RECEIVED, 0)
                                - before.get(RECEIVED, 0)),
        "flood_intake_s": round(marks["intake_end"] - marks["flood_start"], 1)
        if "intake_end" in marks else None,
        "calls_first_by_session": {
            session: round(after[f'homecare_urgent_calls_first_total{{session="{session}"}}'])
            for session in ("main", "urgent")
            if f'homecare_urgent_calls_first_total{{session="{session}"}}' in after}
        or None,
        "unwatched_messages": round(after.get("homecare_detect_unwatched_messages", 0)),
        "alert_storm_after_flood_s": round(first - marks["flood_start"], 1) if first else None,
        "alert_storm_s": round(last - first, 1) if first else None,
        "alerts_opened_total": sum(opened.values()),
        "alerts_opened_site_types": len(opened),
        "alerts_opened": dict(sorted(opened.items(), key=lambda kv: (-kv[1], kv[0]))[:10]),
        "max_opened_per_site_and_type": max(opened.values(), default=0),
        "summaries_open": alerts,
        "made_up_calls_opened": sum(
            n for k, n in stream.opened.items() if k.endswith("/emergency_button"))
        - len(stream.pressed_stored),
        "presses": len(pressed),
        "lost": len(pressed) - sum(1 for b in pressed if b in stream.pressed_stored),
        "shown_before_stored": sum(1 for b in stream.pressed_stored
                                   if stream.pressed_opened[b] < stream.pressed_stored[b]),
        "stream_reconnects": stream.reconnects,
    }
    # Collector passes during the run (they stop the loop): count, total and over 100 ms.
    gc_passes: dict[str, dict[str, float]] = {}
    for gen in ("0", "1", "2"):
        def delta(metric: str, gen: str = gen) -> float:
            name = f'homecare_gc_pause_seconds_{metric}'
            return after.get(name, 0.0) - before.get(name, 0.0)
        passes = delta(f'count{{generation="{gen}"}}')
        if passes:
            gc_passes[gen] = {
                "passes": round(passes), "total_ms": round(1000 * delta(
                    f'sum{{generation="{gen}"}}'), 1),
                "over_100ms": round(passes - delta(f'bucket{{generation="{gen}",le="0.1"}}'))}
    figures["gc_passes"] = gc_passes
    for name, values in latency.items():
        if values:
            figures[f"{name}_ms"] = values
    for name, values in stored.items():
        if values:
            figures[f"{name}_stored_ms"] = values
    for phase, parts in split.items():
        figures[f"{phase}_publish_to_receipt_ms"] = _latency(parts["before"])
        figures[f"{phase}_receipt_to_stream_ms"] = _latency(parts["after"])
    for phase, delays in ceilings.items():
        figures[f"{phase}_ceiling_ms"] = _latency(delays)
        ours = figures.get(f"{phase}_publish_to_receipt_ms")
        if ours:
            figures[f"{phase}_receipt_p99_vs_ceiling"] = round(
                ours["p99"] / max(_percentile(delays, 99), 0.01), 2)
    quiet, storm = latency["quiet"], latency["storm"]
    if quiet and storm:
        figures["storm_p50_ratio"] = round(storm["p50"] / quiet["p50"], 2)
        figures["storm_p99_ratio"] = round(storm["p99"] / quiet["p99"], 2)
    for phase in ("storm_flood", "storm_intake", "storm_offline"):
        if quiet and latency[phase]:
            figures[f"{phase}_p99_ratio"] = round(latency[phase]["p99"] / quiet["p99"], 2)
    if figures.get("quiet_ceiling_ms") and figures.get("storm_ceiling_ms"):
        # The same ratio for the C client: how much later the broker hands any client a press
        # during the storm, on this machine in this run (no gateway in that path).
        figures["ceiling_storm_p99_ratio"] = round(
            figures["storm_ceiling_ms"]["p99"] / max(figures["quiet_ceiling_ms"]["p99"], 0.01), 2)
    if out := os.environ.get("BENCH_FLOOD_PRESSES"):
        # Every press, to see where the slow ones fall: bed, phase, seconds since the flood's
        # first message, ms to the stream, to the gateway's receipt, to the C client.
        rows = []
        for bed, (at, phase) in pressed.items():
            shown = stream.pressed_opened.get(bed)
            receipt = stream.opened_at.get(bed, (None,))[0]
            came = ceiling_arrived.get(bed)
            rows.append(json.dumps([bed, phase, round(at - marks["flood_start"], 3),
                                    shown and round((shown - at) * 1000, 2),
                                    receipt and round(receipt - pressed_wall[bed], 2),
                                    came and round(came - pressed_wall[bed], 2)]))
        await asyncio.to_thread(Path(out).write_text, "\n".join(rows) + "\n", "utf-8")
    for phase in ("storm", "storm_intake"):
        if stored["quiet"] and stored[phase]:
            figures[f"{phase}_stored_p99_ratio"] = round(
                stored[phase]["p99"] / stored["quiet"]["p99"], 2)
    return figures


def run_presses(*, quick: bool = False) -> dict[str, Any]:
    """:func:`run` with :data:`PRESS_FLOOD_IDS` made-up buttons (a tenth with ``quick``), each
    pressed once: a hostile or broken fleet (or a replayed capture) raising emergency calls
    from sites and beds the registry does not list. Every one of them must still open its
    critical alert (a new button is never ignored: ``made_up_calls_opened``), and the listed
    buttons' presses meanwhile must not wait behind them (``storm_p99_ratio``)."""
    return run(quick=quick, presses=True,
               flood_ids=PRESS_FLOOD_IDS // 10 if quick else PRESS_FLOOD_IDS)


async def _intake_done(client: httpx.AsyncClient, gateway: GatewayProcess,
                       before: dict[str, float], marks: dict[str, float]) -> None:
    """Set ``marks["intake_end"]`` once the gateway has received the whole flood (the
    messages it counted since ``before`` reach what the publisher says it sent).

    Polled on this loop with one client kept open, the one counter read from the text: the
    presses of the intake are timed by this very process, and each
    :meth:`GatewayProcess.metrics <tests.servers.GatewayProcess.metrics>` (a new client, whose
    TLS context alone is ~20 ms of this process's interpreter, in a thread) five times a second
    made its stream reader wait for the interpreter: the intake's presses measured the bench
    (receipt -> stream p99 8.8 ms against 2.5 when quiet, 2026-12-03). ``client`` is made
    before the presses begin: made here, at the flood's first message, it held this loop, and
    the press published then reached the stream 40-110 ms late in every run."""
    start = before.get(RECEIVED, 0)
    while True:
        await asyncio.sleep(0.2)
        if "flood_published" not in marks:
            continue
        with contextlib.suppress(httpx.HTTPError, ValueError):
            received = _counter((await client.get(f"{gateway.url}/metrics")).text, RECEIVED)
            if received - start >= marks["flood_published"]:
                marks["intake_end"] = time.perf_counter()
                return


def _counter(text: str, name: str) -> float:
    """The value of the unlabelled sample ``name`` in a Prometheus text exposition.

    >>> _counter("# HELP x_total X.\\nx_total 12.0\\nx_created 1.7e9\\n", "x_total")
    12.0
    """
    at = text.index(f"\n{name} ") + len(name) + 2
    return float(text[at:text.index("\n", at)])


async def _open_summaries(url: str, key: str) -> dict[str, int]:
    """Members of each open summary alert (``site/type``), from the API."""
    out: dict[str, int] = {}
    params: dict[str, Any] = {"status": "open", "severity": ["high", "medium", "low"],
                              "limit": 1000}
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(200):  # bounded: 200,000 alerts at most
            r = await client.get(f"{url}/api/v1/alerts", params=params,
                                 headers={"Authorization": f"Bearer {key}"})
            r.raise_for_status()
            page = r.json()
            for alert in page["items"]:
                if alert.get("evidence", {}).get("summary"):
                    out[f"{alert['site']}/{alert['type']}"] = alert["evidence"]["count"]
            if not page.get("next_cursor"):
                break
            params["cursor"] = page["next_cursor"]
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
