"""Offline runs: recorded traffic (JSONL, DESIGN.md "Recorded traffic") plus labels.

One line per message, ``{"t": <receipt ms>, "topic": "...", "payload": "<raw text>"}``, or
``"payload_b64"`` when the payload is not UTF-8; lines in receipt order. The bytes depend only
on the configuration and the seed, never on the machine, the clock or dict order.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

import msgspec

from devices import KINDS, TopicError, parse_topic
from devices.labels import ALERT_TYPES, encode_label
from devices.traffic import encode_line
from simulators.faults import FAULT_KINDS
from simulators.stream import Simulation
from simulators.traffic import Emission

_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class Summary:
    """What a run produced; ``kinds`` counts ``invalid`` for topics outside the contract."""

    messages: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    first_t: int | None = None
    last_t: int | None = None
    elapsed_s: float = 0.0

    def lines(self) -> list[str]:
        """A short human summary."""
        rate = self.messages / self.elapsed_s if self.elapsed_s else 0.0
        out = [f"messages: {self.messages:,} in {self.elapsed_s:.1f} s ({rate:,.0f}/s)",
               "per kind: " + _counts(self.kinds, (*sorted(KINDS), "invalid")),
               "per channel: " + _counts(self.channels, ("telemetry", "event", "status")),
               f"labels: {sum(self.labels.values())} (" + _counts(self.labels, ALERT_TYPES) + ")"]
        if self.faults:
            out.append(f"faults: {sum(self.faults.values())} ("
                       + _counts(self.faults, FAULT_KINDS) + ")")
        return out


def _counts(counter: Counter[str], order: Iterable[str]) -> str:
    return ", ".join(f"{name} {counter[name]:,}" for name in order if counter[name])


def traffic_line(e: Emission) -> bytes:
    """The JSONL line (with newline) for one received message (:mod:`devices.traffic`)."""
    return encode_line(e.t, e.topic, e.payload)


def write(sim: Simulation, out: BinaryIO, *, labels_out: BinaryIO | None = None,
          faults_out: BinaryIO | None = None,
          progress: Callable[[float], None] | None = None) -> Summary:
    """Write the whole run; ``progress`` gets the simulated share done (0..1) now and then."""
    started = time.perf_counter()
    summary = Summary()
    span = _span(sim)
    topic_parts: dict[str, tuple[str, str]] = {}
    buffer: list[bytes] = []
    for n, e in enumerate(sim.messages(), 1):
        buffer.append(traffic_line(e))
        parts = topic_parts.get(e.topic)
        if parts is None:
            parts = topic_parts[e.topic] = _kind_channel(e.topic)
        summary.kinds[parts[0]] += 1
        summary.channels[parts[1]] += 1
        if summary.first_t is None:
            summary.first_t = e.t
        summary.last_t = e.t
        if n % 20_000 == 0:
            out.write(b"".join(buffer))
            buffer.clear()
            if progress is not None and span is not None:
                progress(min(1.0, (e.t - span[0]) / max(1, span[1] - span[0])))
    out.write(b"".join(buffer))
    summary.messages = sum(summary.kinds.values())
    labels = sim.labels()
    summary.labels.update(label.type for label in labels)
    if labels_out is not None:
        labels_out.write(b"".join(encode_label(label) for label in labels))
    faults = sorted(f for inj in sim.fault_injectors() for f in inj.log)
    summary.faults.update(f.kind for f in faults)
    if faults_out is not None:
        faults_out.write(b"".join(_encoder.encode(f._asdict()) + b"\n" for f in faults))
    if progress is not None:
        progress(1.0)
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _span(sim: Simulation) -> tuple[int, int] | None:
    ends = [bed.end_ms for bed in sim.beds]
    if not sim.beds or any(end is None for end in ends):
        return None
    return min(bed.start_ms for bed in sim.beds), max(end for end in ends if end is not None)


def _kind_channel(topic: str) -> tuple[str, str]:
    try:
        address = parse_topic(topic)
    except TopicError:
        return "invalid", "invalid"
    return address.kind.value, address.channel.value
