"""Load generation for benchmarks and tests: realistic messages made up front, then pushed
as fast as the broker acknowledges them.

``pregenerate`` runs the simulator (no faults) and keeps ``(topic, payload)`` pairs, so a
benchmark measures the gateway, not the generator. ``publish_all`` pipelines QoS 1 PUBLISH
packets over a few connections with a large window of unacknowledged messages and returns
once every PUBACK is in. Messages of one topic always go over the same connection, so each
device's messages stay in order.
"""

from __future__ import annotations

import asyncio
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice

from devices.broker import BrokerUrl
from devices.mqttwire import publish_packet
from simulators.clock import local_ms
from simulators.config import DEFAULT_START, SimConfig
from simulators.mqtt import Publisher
from simulators.stream import live
from simulators.traffic import Action


def pregenerate(beds: int, n_messages: int, seed: int = 1, *,
                timezone: str = "Asia/Shanghai", start_ms: int | None = None,
                ) -> list[tuple[str, bytes]]:
    """``n_messages`` realistic messages of ``beds`` beds in receipt order, identical for the
    same arguments. Device times start at ``start_ms``, by default at a fixed start (local
    midnight of the default start date); pass the current time for traffic that is published
    at once, so that device clocks agree with the receipt clock as a live fleet's would."""
    if n_messages < 0:
        raise ValueError("n_messages must not be negative")
    config = SimConfig(beds=beds, seed=seed, timezones=(timezone,))
    if start_ms is None:
        start_ms = local_ms(DEFAULT_START, 0.0, timezone)
    sim = live(config, start_ms=start_ms, chunk_ms=15 * 60_000)
    wanted = ((e.topic, e.payload) for e in sim.messages() if e.action != Action.WILL)
    return list(islice(wanted, n_messages))


@dataclass(frozen=True, slots=True)
class PublishResult:
    messages: int
    seconds: float

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("inf")


async def publish_all(url: str | BrokerUrl, messages: Sequence[tuple[str, bytes]], *,
                      qos: int = 1, connections: int = 4, window: int = 20_000,
                      batch: int = 500, client_prefix: str = "homecare-load",
                      ) -> PublishResult:
    """Publish every message and return when the broker has acknowledged all (QoS 1) or
    they are written (QoS 0). Raises :class:`~simulators.mqtt.MqttError`/``OSError`` when the
    broker is unreachable; bound the wait with :func:`asyncio.timeout` around the call."""
    if qos not in (0, 1):
        raise ValueError("qos must be 0 or 1")
    if not 1 <= connections <= 64:
        raise ValueError("connections must be between 1 and 64")
    broker = BrokerUrl.parse(url) if isinstance(url, str) else url
    shards: list[list[tuple[bytes, bytes]]] = [[] for _ in range(connections)]
    encoded: dict[str, tuple[bytes, int]] = {}
    for topic, payload in messages:
        hit = encoded.get(topic)
        if hit is None:
            raw = topic.encode()
            hit = encoded[topic] = (raw, zlib.crc32(raw) % connections)
        shards[hit[1]].append((hit[0], payload))
    publishers = [Publisher(broker, client_id=f"{client_prefix}-{os.getpid()}-{i}",
                            max_inflight=window, reconnect=False, drain_timeout_s=5.0)
                  for i in range(connections)]
    try:
        await asyncio.gather(*(p.connect() for p in publishers))
        started = time.perf_counter()
        await asyncio.gather(*(_pump(p, shard, qos, batch)
                               for p, shard in zip(publishers, shards, strict=True)))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(p.disconnect() for p in publishers),
                             return_exceptions=True)
    return PublishResult(len(messages), elapsed)


async def _pump(publisher: Publisher, shard: list[tuple[bytes, bytes]], qos: int,
                batch: int) -> None:
    for i in range(0, len(shard), batch):
        chunk = shard[i:i + batch]
        if qos == 0:
            await publisher.wait_window(0)
            publisher.publish_raw([publish_packet(t, p, qos=0, retain=False) for t, p in chunk])
            continue
        await publisher.wait_window(len(chunk))
        ids = publisher.allocate_ids(len(chunk))
        publisher.write_many(
            [publish_packet(t, p, qos=1, retain=False, packet_id=pid)
             for (t, p), pid in zip(chunk, ids, strict=True)], ids)
    await publisher.drain()

