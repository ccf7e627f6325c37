"""Live runs: every simulated device is its own MQTT client, publishing at real or
accelerated time (or at a fixed message rate) until stopped.

Each home device connects with its own client id and a last will (``state: offline``,
retained, on its status topic) and publishes its online status retained. A ``device_offline``
incident with a will drops the device's connection, so the broker itself announces it
offline; the device reconnects when the incident ends. A replaced device publishes its
offline status and disconnects cleanly; its successor connects only when it is installed.
Badges travel between homes, so they have no status topic of their own and no will.

Traffic is generated in a worker thread a batch ahead of publishing, so generating the next
chunk of a thousand devices never stalls the event loop that paces and publishes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import msgspec

from devices import Codec, Status
from devices.broker import BrokerUrl
from devices.labels import encode_label
from devices.mqttwire import Will
from simulators.config import SimConfig
from simulators.errors import MqttError
from simulators.mqtt import Publisher
from simulators.stream import Simulation, live
from simulators.traffic import Action, Emission

_BATCH = 256
_TICK_S = 0.5


@dataclass(slots=True)
class LiveStats:
    """Progress of a live run, updated as it publishes."""

    sim_start_ms: int
    sim_now_ms: int = 0
    published: int = 0
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    devices: int = 0
    connected: int = 0
    dropped: int = 0
    """Device connections dropped on purpose (will published by the broker)."""
    lag_s: float = 0.0
    """How far publishing is behind schedule (the machine cannot keep up when this grows)."""
    recent: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=8))
    """Latest notable events, newest last."""
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


class _Devices:
    """The MQTT clients, one per device id."""

    def __init__(self, sim: Simulation, url: BrokerUrl, prefix: str, keepalive: int) -> None:
        self.clients: dict[str, Publisher] = {}
        self.status_topics: dict[str, str] = {}
        self.down: set[str] = set()
        """Devices without a connection: lost, replaced, or not installed yet."""
        for bed in sim.beds:
            traffic = bed.traffic
            for device in traffic.devices:
                self.clients[device.id] = Publisher(
                    url, client_id=f"{prefix}-{traffic.spec.site}-{device.id}",
                    will=Will(device.status_topic, device.will()), keepalive=keepalive)
                self.status_topics[device.id] = device.status_topic
                if device.active_from_ms is not None:
                    self.down.add(device.id)
            badge = traffic.spec.badge
            if badge not in self.clients:
                self.clients[badge] = Publisher(
                    url, client_id=f"{prefix}-{traffic.spec.site}-{badge}", keepalive=keepalive)

    async def connect_all(self, concurrency: int = 100) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(client: Publisher) -> None:
            async with gate:
                await client.connect()

        await asyncio.gather(*(one(c) for d, c in self.clients.items() if d not in self.down))

    async def close_all(self) -> None:
        await asyncio.gather(*(c.disconnect() for c in self.clients.values()),
                             return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.clients.values()),
                             return_exceptions=True)


def _raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def run_live(config: SimConfig, url: str | BrokerUrl, *, speed: float = 1.0,
                   duration_s: float | None = None, rate: float | None = None,
                   stop: asyncio.Event | None = None, client_prefix: str = "sim",
                   labels_out: BinaryIO | None = None,
                   on_tick: Callable[[LiveStats], None] | None = None,
                   offline_on_exit: bool = True, start_ms: int | None = None) -> LiveStats:
    """Publish the simulation until ``duration_s`` (real seconds) passes or ``stop`` is set.

    ``speed`` 60 plays one simulated minute per second, timestamps following the simulated
    clock from ``start_ms`` (default: now). ``rate`` instead publishes a fixed number of
    messages per second, as fast as the traffic allows. On a clean stop each connected
    device publishes a retained offline status (``offline_on_exit``) and disconnects; a
    crash leaves that to the broker's last wills.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    broker = BrokerUrl.parse(url) if isinstance(url, str) else url
    stop = stop or asyncio.Event()
    begin = start_ms if start_ms is not None else int(time.time() * 1000)
    lead_ms = max(60_000, round(3_000 * speed)) if rate is None else 60_000
    sim = live(config, start_ms=begin, lead_ms=lead_ms)
    devices = _Devices(sim, broker, client_prefix, round(config.telemetry.keepalive_s))
    _raise_file_limit(len(devices.clients) + 256)
    stats = LiveStats(sim_start_ms=begin, sim_now_ms=begin, devices=len(devices.clients))
    messages = sim.messages()
    try:
        await devices.connect_all()
        stats.connected = len(devices.clients) - len(devices.down)
        await _publish(messages, devices, stats, stop=stop, speed=speed, rate=rate,
                       duration_s=duration_s, on_tick=on_tick)
        if offline_on_exit:
            await _announce_offline(sim, devices, stats)
    finally:
        await devices.close_all()
        stats.connected = 0
    if labels_out is not None:
        labels = [label for label in sim.labels() if label.start <= stats.sim_now_ms]
        labels_out.write(b"".join(encode_label(label) for label in labels))
    return stats


async def _publish(messages: Iterator[Emission], devices: _Devices, stats: LiveStats, *,
                   stop: asyncio.Event, speed: float, rate: float | None,
                   duration_s: float | None, on_tick: Callable[[LiveStats], None] | None) -> None:
    loop = asyncio.get_running_loop()
    begin = loop.time()
    deadline = None if duration_s is None else begin + duration_s
    next_tick = begin
    counter = itertools.count()

    def take() -> list[Emission]:
        return list(itertools.islice(messages, _BATCH))

    corked: set[Publisher] = set()

    def flush() -> None:
        for client in corked:
            client.uncork()
        corked.clear()

    pending = asyncio.ensure_future(asyncio.to_thread(take))
    try:
        while True:
            flush()
            batch = await pending
            if not batch:
                return
            pending = asyncio.ensure_future(asyncio.to_thread(take))
            for e in batch:
                i = next(counter)
                due = begin + (i / rate if rate else (e.t - stats.sim_start_ms) / 1000 / speed)
                now = loop.time()
                while due > now or now >= next_tick:
                    flush()
                    if stop.is_set() or (deadline is not None and now >= deadline):
                        return
                    if now >= next_tick:
                        next_tick = now + _TICK_S
                        if on_tick is not None:
                            on_tick(stats)
                    if due > now:
                        await asyncio.sleep(min(due - now, _TICK_S))
                    now = loop.time()
                if stop.is_set() or (deadline is not None and now >= deadline):
                    return
                stats.lag_s = max(0.0, now - due)
                client = devices.clients[e.device]
                if client not in corked:
                    client.cork()
                    corked.add(client)
                await _one(e, devices, stats)
    finally:
        flush()
        with contextlib.suppress(Exception):
            await pending  # the worker thread must be done with the generator


async def _one(e: Emission, devices: _Devices, stats: LiveStats) -> None:
    client = devices.clients[e.device]
    stats.sim_now_ms = max(stats.sim_now_ms, e.t)
    if e.action == Action.WILL:
        client.abort()
        devices.down.add(e.device)
        stats.dropped += 1
        stats.connected -= 1
        stats.recent.append(f"{e.device} lost (broker publishes its will)")
        return
    if e.action == Action.CONNECT and e.device in devices.down:
        status = msgspec.json.decode(e.payload, type=Status)
        will = Codec().encode_payload(Status(ts=status.ts, seq=0, state="offline"))
        client.set_will(Will(devices.status_topics[e.device], will))
        client.reopen()
        try:
            await client.connect()
        except (OSError, MqttError, TimeoutError) as exc:
            stats.recent.append(f"{e.device} reconnect failed: {exc}")
            return
        devices.down.discard(e.device)
        stats.connected += 1
        stats.recent.append(f"{e.device} back online")
    retain = e.action in (Action.RETAIN, Action.CONNECT, Action.RETIRE)
    await client.publish(e.topic, e.payload, qos=1, retain=retain)
    stats.published += 1
    if e.action == Action.RETIRE:
        await client.disconnect()
        devices.down.add(e.device)
        stats.connected -= 1
        stats.recent.append(f"{e.device} replaced (offline, disconnected)")
    parts = e.topic.split("/")
    kind = parts[4] if len(parts) == 7 else "invalid"
    stats.kinds[kind] += 1
    if len(parts) == 7 and parts[6] == "event":
        stats.recent.append(f"{parts[3]} {kind} {_event_name(e.payload)}")


def _event_name(payload: bytes) -> str:
    try:
        body = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return "?"
    return str(body.get("event", "?")) if isinstance(body, dict) else "?"


async def _announce_offline(sim: Simulation, devices: _Devices, stats: LiveStats) -> None:
    """Retained offline status from every connected home device, so the broker's retained
    state never claims that a stopped simulator's devices are online."""
    codec = Codec()
    for bed in sim.beds:
        for device in bed.traffic.devices:
            client = devices.clients[device.id]
            if device.id in devices.down or not client.connected:
                continue
            device.seq += 1
            payload = codec.encode_payload(Status(
                ts=max(0, stats.sim_now_ms + device.clock_ms), seq=device.seq, state="offline",
                battery=None, fw=device.fw, heartbeat_s=device.heartbeat_s))
            await client.publish(device.status_topic, payload, qos=1, retain=True)
