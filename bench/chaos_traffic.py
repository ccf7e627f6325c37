"""The traffic of the chaos and soak runs: simulated beds published live at a steady rate from
a process of its own, with a record of what was sent.

The simulator (:func:`simulators.live`) makes the beds' messages lazily, incidents with their
ground-truth labels, caregiver visits and, when asked, faults (bad payloads, stray topics,
duplicates, reordering, clock skew, bursts). They are published in receipt order at
``rate`` messages a second (QoS 1) over a few connections, all messages of one device on the
same connection, so each device stays in order. The connections reconnect when the broker goes
away and resend what was in flight (DUP); nothing new is written on a connection before its
resend, so a device's order survives a broker restart too.

Device clocks: the traffic is published faster than it was "lived" (hours of beds in
minutes), so it starts in the past (:func:`sim_start`) and its device times stay behind the
receipt clock, as a live fleet's do; only the faults' clock skew takes some outside the
gateway's window.

What was sent is written to ``out_dir``:

* ``traffic.jsonl``: every message in the recorded-traffic format (:func:`devices.encode_line`,
  with ``retain`` for statuses), in publishing order: the ledger's ground truth, and
  ``homecare replay`` can read it;
* ``calls.jsonl``: each emergency call and fall event (:data:`CALL_EVENTS`) with its device,
  ``seq``, device time, simulated receipt time ``t`` and the wall-clock time it was handed to
  the connection (``published_ms``);
* ``labels.jsonl``: the ground-truth labels of incidents that began within the published span
  (up to :data:`LABELS_BEFORE_END_MS` before its end).

The parent process talks to :func:`publisher_main` over a pipe: ``"go"`` starts publishing,
``"stop"`` ends it early; the child answers ``("ready", {...})`` once connected,
``("warm", {...})`` once a warm-up (:attr:`TrafficPlan.warmup_messages`) is out, and
``("done", {...})`` with its figures. ``published`` (a shared counter) follows the progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec

from devices import BrokerUrl, encode_label, encode_line, publish_packet
from simulators import Action, Emission, Publisher, SimConfig, live

CALL_EVENTS: Final = frozenset({"press", "long_press", "fall_detected"})
"""The events that are calls (alerts.rules.CALLS): each must open or repeat a critical alert."""

MESSAGES_PER_BED_MINUTE: Final = 3.8
"""Messages a simulated bed sends per simulated minute at the default rates (measured: 100,000
messages of 500 beds spanned 52 simulated minutes)."""

TICK_S: Final = 0.01
CHUNK: Final = 2_000
"""At most this many messages are generated and written per tick."""
LABELS_BEFORE_END_MS: Final = 15 * 60_000
"""Labels are kept if they began this long before the last message: a call's own message (a
burst fault holds one back for up to 8 minutes) is then among those published."""
RECONNECT_LIMIT_S: Final = 120.0
"""A connection that stays down this long ends the run (the broker is not coming back)."""


class Counter(Protocol):
    """A ``multiprocessing.Value('q')``: what the parent reads for progress."""

    value: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TrafficPlan:
    """What to publish, and where to write what was sent."""

    mqtt_url: str
    out_dir: Path
    messages: int
    rate: float
    """Messages per second."""
    beds: int = 500
    sites: int = 5
    seed: int = 16
    incidents_per_bed_day: float = 4.0
    faults: bool = True
    fault_rate: float = 0.002
    sim_start_ms: int = 0
    """Simulated time of the first message (see :func:`sim_start`)."""
    connections: int = 4
    max_inflight: int = 5_000
    client_prefix: str = "chaos-pub"
    drain_timeout_s: float = 180.0
    warmup_messages: int = 0
    """The first messages, published at ``warmup_rate`` (then ``rate``); the child says
    ``("warm", {...})`` once they are out."""
    warmup_rate: float = 0.0

    def config(self) -> SimConfig:
        return SimConfig(beds=self.beds, sites=self.sites, seed=self.seed,
                         incidents_per_bed_day=self.incidents_per_bed_day,
                         faults=self.faults, fault_rate=self.fault_rate)


def sim_start(messages: int, beds: int, now_ms: int, *, spare: float = 0.3,
              margin_ms: int = 3_600_000) -> int:
    """Where the simulated clock starts so that ``messages`` of ``beds`` beds stay behind
    ``now_ms``, however fast they are published: their span, a share ``spare`` of it more,
    and ``margin_ms`` before now.

    >>> span_h = (now := 10**12) - sim_start(228_000, 1_000, now, spare=0, margin_ms=0)
    >>> span_h / 3_600_000
    1.0
    """
    span_ms = messages / (beds * MESSAGES_PER_BED_MINUTE) * 60_000
    return now_ms - int(span_ms * (1 + spare)) - margin_ms


def _device(topic: str) -> bytes:
    parts = topic.split("/")
    return (parts[5] if len(parts) > 5 else topic).encode()


def _call(e: Emission) -> dict[str, Any] | None:
    """The call this message is (an emergency button or fall event), or None."""
    parts = e.topic.split("/")
    if len(parts) != 7 or parts[4] not in ("button", "fall") or parts[6] != "event":
        return None
    try:
        body = msgspec.json.decode(e.payload)
    except msgspec.DecodeError:
        return None
    if not isinstance(body, dict) or body.get("event") not in CALL_EVENTS:
        return None
    seq, ts = body.get("seq"), body.get("ts")
    if not isinstance(seq, int) or not isinstance(ts, int):
        return None
    return {"site": parts[2], "bed": parts[3], "kind": parts[4], "device": parts[5],
            "seq": seq, "ts": ts, "event": body["event"], "t": e.t}


def publisher_main(plan: TrafficPlan, published: Counter, conn: Connection) -> None:
    """Entry point of the publisher process."""
    try:
        figures = asyncio.run(_publish(plan, published, conn))
    except BaseException as exc:  # the parent must hear of it, whatever it was
        with contextlib.suppress(OSError):
            conn.send(("failed", repr(exc)))
        raise
    conn.send(("done", figures))


async def _wait_connected(publisher: Publisher) -> None:
    deadline = time.monotonic() + RECONNECT_LIMIT_S
    while not publisher.connected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{publisher.client_id}: no broker for {RECONNECT_LIMIT_S:g} s "
                               f"({publisher.error!r})")
        await asyncio.sleep(0.05)


async def _publish(plan: TrafficPlan, published: Counter, conn: Connection) -> dict[str, Any]:
    config = plan.config()
    sim = live(config, start_ms=plan.sim_start_ms)
    messages = sim.messages()
    broker = BrokerUrl.parse(plan.mqtt_url)
    publishers = [Publisher(broker, client_id=f"{plan.client_prefix}-{i}",
                            max_inflight=plan.max_inflight, reconnect=True,
                            drain_timeout_s=plan.drain_timeout_s)
                  for i in range(plan.connections)]
    await asyncio.gather(*(p.connect() for p in publishers))
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    conn.send(("ready", {"sim_start_ms": plan.sim_start_ms}))
    command = await asyncio.to_thread(conn.recv)
    if command != "go":
        await asyncio.gather(*(p.disconnect() for p in publishers), return_exceptions=True)
        return {"sent": 0}
    loop = asyncio.get_running_loop()
    started = loop.time()
    started_wall_ms = int(time.time() * 1000)
    sent = 0
    last_t = plan.sim_start_ms
    clock: list[tuple[int, int]] = []
    calls = 0
    steady: float | None = None
    stopped_early = False
    with (plan.out_dir / "traffic.jsonl").open("wb") as traffic, \
            (plan.out_dir / "calls.jsonl").open("wb") as calls_out:
        while sent < plan.messages:
            if conn.poll():
                stopped_early = conn.recv() == "stop"
                if stopped_early:
                    break
            if sent < plan.warmup_messages:
                due = min(plan.warmup_messages,
                          int((loop.time() - started) * plan.warmup_rate))
            else:
                if steady is None:
                    steady = loop.time()
                    if plan.warmup_messages:
                        conn.send(("warm", {"messages": sent,
                                            "seconds": round(steady - started, 1),
                                            "sim_ms": last_t}))
                due = min(plan.messages,
                          plan.warmup_messages + int((loop.time() - steady) * plan.rate))
            if due <= sent:
                await asyncio.sleep(TICK_S)
                continue
            count = min(due - sent, CHUNK)
            shards: list[list[tuple[bytes, bytes, bool]]] = [[] for _ in publishers]
            lines: list[bytes] = []
            now_ms = int(time.time() * 1000)
            call_lines: list[bytes] = []
            for _ in range(count):
                e = next(messages)
                retain = e.action != Action.PUBLISH
                shards[zlib.crc32(_device(e.topic)) % len(publishers)].append(
                    (e.topic.encode(), e.payload, retain))
                lines.append(encode_line(e.t, e.topic, e.payload, retain=retain))
                call = _call(e)
                if call is not None:
                    call["published_ms"] = now_ms
                    call_lines.append(msgspec.json.encode(call) + b"\n")
                last_t = e.t
            for publisher, shard in zip(publishers, shards, strict=True):
                if not shard:
                    continue
                await _wait_connected(publisher)
                async with asyncio.timeout(RECONNECT_LIMIT_S):  # a broker that stops acking
                    await publisher.wait_window(len(shard))
                await _wait_connected(publisher)
                ids = publisher.allocate_ids(len(shard))
                publisher.write_many(
                    [publish_packet(t, p, qos=1, retain=r, packet_id=pid)
                     for (t, p, r), pid in zip(shard, ids, strict=True)], ids)
            traffic.write(b"".join(lines))
            if call_lines:
                calls_out.write(b"".join(call_lines))
                calls += len(call_lines)
            sent += count
            published.value = sent
            if not clock or now_ms - clock[-1][1] >= 1_000:
                clock.append((last_t, now_ms))
        seconds = loop.time() - started
        drained = True
        try:
            async with asyncio.timeout(plan.drain_timeout_s):
                await asyncio.gather(*(p.drain() for p in publishers))
        except TimeoutError:
            drained = False
    acknowledged = sum(p.acknowledged for p in publishers)
    await asyncio.gather(*(p.disconnect() for p in publishers), return_exceptions=True)
    await asyncio.gather(*(p.close() for p in publishers), return_exceptions=True)
    clock.append((last_t, int(time.time() * 1000)))
    labels = [label for label in sim.labels() if label.start <= last_t - LABELS_BEFORE_END_MS]
    (plan.out_dir / "labels.jsonl").write_bytes(b"".join(encode_label(x) for x in labels))
    faults: dict[str, int] = {}
    for injector in sim.fault_injectors():
        for fault in injector.log:
            if fault.t <= last_t:
                faults[fault.kind] = faults.get(fault.kind, 0) + 1
    return {"sent": sent, "acknowledged": acknowledged, "drained": drained,
            "stopped_early": stopped_early, "seconds": round(seconds, 1),
            "msgs_per_s": round(sent / seconds) if seconds else None,
            "calls": calls, "labels": len(labels), "faults": dict(sorted(faults.items())),
            "sim_start_ms": plan.sim_start_ms, "sim_end_ms": last_t,
            "started_wall_ms": started_wall_ms, "clock": clock}


__all__ = ["CALL_EVENTS", "MESSAGES_PER_BED_MINUTE", "TrafficPlan", "publisher_main",
           "sim_start"]
