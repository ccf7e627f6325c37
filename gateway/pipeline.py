"""The ingest pipeline: decode, deduplicate, route; then commit durably before acknowledging.

``process`` is pure CPU work on the event loop (chunks of a few thousand messages): decode with
the device codec, drop duplicates, format line protocol for the time-series sink, hand accepted
messages to the downstream stages (detector, alerts, service log), and set aside rejected
messages for the dead-letter store. ``commit`` is the blocking part, run in a worker thread: the
spool append (fsync), the dead letters and every stage's own durable commit. Only after it
returns are the batch's messages acknowledged to the broker.

The urgent lane: ``process_urgent`` takes emergency button and fall events as soon as they are
read from the socket, ahead of the telemetry queued before them, and hands them to the urgent
stages (the alert rules) at once; the gateway commits the alert and the API stream shows it
within milliseconds. The same raw messages still pass through ``process`` in their turn, which
stores and acknowledges them as usual without giving them to the urgent stages again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

from devices.codec import Codec, Message, Rejected
from devices.registry import Registry
from devices.topics import Address
from gateway.deadletter import DeadLetter, DeadLetterStore
from gateway.dedup import Deduplicator, Verdict
from gateway.lineprotocol import LineEncoder
from gateway.metrics import Metrics
from gateway.mqtt import RawMessage
from gateway.spool import Spool

log = logging.getLogger("homecare.pipeline")

CLOCK_SKEW_MS = 5 * 60 * 1000
"""Device clocks further than this from receipt time are counted as skewed."""


class Stage(Protocol):
    """A downstream consumer of accepted messages (detector, alert engine, service log)."""

    name: str

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        """Take a batch of new messages, in arrival order. Fast, in memory, no I/O."""

    def commit(self) -> None:
        """Make what ``accept`` took durable. Runs in a worker thread before acknowledgement."""


class Pipeline:
    def __init__(self, *, spool: Spool, deadletters: DeadLetterStore, metrics: Metrics,
                 registry: Registry | None = None, stages: Sequence[Stage] = (),
                 urgent_stages: Sequence[Stage] = (), codec: Codec | None = None,
                 dedup_window: int = 64) -> None:
        """``urgent_stages`` (a subset of ``stages``) also take urgent messages ahead of their
        turn through :meth:`process_urgent`, and then not again in :meth:`process`."""
        self.codec = codec or Codec()
        self.dedup = Deduplicator(window=dedup_window)
        self.encoder = LineEncoder()
        self.spool = spool
        self.deadletters = deadletters
        self.metrics = metrics
        self.registry = registry or Registry()
        self.stages = tuple(stages)
        self.urgent_stages = tuple(urgent_stages)
        if any(stage not in self.stages for stage in self.urgent_stages):
            raise ValueError("urgent_stages must be among stages")
        self._early: dict[int, tuple[RawMessage, Message | None]] = {}
        """Urgent messages handled ahead of their turn, by ``id`` of the raw message (which
        the entry keeps alive, so the id is not reused): the decoded message, or None for a
        duplicate. :meth:`process` removes the entry when it reaches the raw message."""
        self._known: set[Address] = set()
        self._lines: list[str] = []
        self._points = 0
        self._rejected: list[DeadLetter] = []
        self._raws: list[RawMessage] = []
        self._oldest: float | None = None
        self.clock_skewed = 0
        self._registered = 0
        self._last_registered = ""

    # --- CPU part (event loop) ----------------------------------------------------------------

    def process(self, raws: Sequence[RawMessage]) -> None:
        if not raws:
            return
        if self._oldest is None:
            self._oldest = time.monotonic()
        admit = self._admit
        lines = self._lines
        to_line = self.encoder.lines
        accepted: list[Message] = []
        received: list[int] = []
        rejected_by_reason: dict[str, int] = {}
        duplicates_before = self.dedup.stats.duplicates
        registered_before = self._registered
        points = 0
        early = self._early
        early_accepted: list[Message] = []
        for raw in raws:
            if early and id(raw) in early:
                # Seen by process_urgent: decoded and deduplicated there, and given to the
                # urgent stages; the rest of its way (storage, other stages) goes on here.
                handled = early.pop(id(raw))[1]
                if handled is None:
                    continue
                message = handled
                early_accepted.append(message)
            else:
                admitted = admit(raw)
                if admitted is None:
                    continue  # a duplicate
                if isinstance(admitted, Rejected):
                    topic = raw.topic if isinstance(raw.topic, str) else raw.topic.decode(
                        "utf-8", "replace")
                    self._rejected.append(DeadLetter(raw.received_ms, topic, raw.payload,
                                                     admitted.reason, admitted.detail))
                    rejected_by_reason[admitted.reason] = \
                        rejected_by_reason.get(admitted.reason, 0) + 1
                    continue
                message = admitted
            if abs(message.payload.ts - raw.received_ms) > CLOCK_SKEW_MS:
                self.clock_skewed += 1
            points += to_line(message, lines)
            accepted.append(message)
            received.append(raw.received_ms)
        self._raws.extend(raws)
        self._points += points
        rest_messages: list[Message] = []
        rest_received: list[int] = []
        if accepted:
            if early_accepted:
                skip = {id(m) for m in early_accepted}
                rest = [(m, r) for m, r in zip(accepted, received, strict=True)
                        if id(m) not in skip]
                rest_messages = [m for m, _ in rest]
                rest_received = [r for _, r in rest]
            for stage in self.stages:
                if early_accepted and stage in self.urgent_stages:
                    if rest_messages:
                        stage.accept(rest_messages, rest_received)
                else:
                    stage.accept(accepted, received)
        m = self.metrics
        m.received.inc(len(raws))
        m.accepted.inc(len(accepted))
        for reason, n in rejected_by_reason.items():
            m.rejected.labels(reason).inc(n)
        self._count_admissions(duplicates_before, registered_before)

    def process_urgent(self, raws: Sequence[RawMessage]) -> int:
        """Hand urgent messages (emergency button, fall) to the urgent stages ahead of the
        messages received before them; returns how many were handed on.

        Each raw message must also be passed to :meth:`process` later, in its turn, which
        stores and acknowledges it as usual without giving it to the urgent stages again.
        Malformed ones are left for :meth:`process` to dead-letter. Call it before
        :meth:`process` sees the same raw messages.
        """
        accepted: list[Message] = []
        received: list[int] = []
        duplicates_before = self.dedup.stats.duplicates
        registered_before = self._registered
        for raw in raws:
            admitted = self._admit(raw)
            if isinstance(admitted, Rejected):
                continue
            self._early[id(raw)] = (raw, admitted)
            if admitted is not None:
                accepted.append(admitted)
                received.append(raw.received_ms)
        if accepted:
            for stage in self.urgent_stages:
                stage.accept(accepted, received)
        self._count_admissions(duplicates_before, registered_before)
        return len(accepted)

    def _count_admissions(self, duplicates_before: int, registered_before: int) -> None:
        """Metrics (and a log line for new devices) for what :meth:`_admit` did since."""
        self.metrics.duplicates.inc(self.dedup.stats.duplicates - duplicates_before)
        new = self._registered - registered_before
        if new:
            self.metrics.auto_registered.inc(new)
            log.info("registry.auto_registered devices=%d last=%s", new, self._last_registered)

    def _admit(self, raw: RawMessage) -> Message | Rejected | None:
        """Decode; None for a duplicate; registers a device seen for the first time."""
        decoded = self.codec.decode(raw.topic, raw.payload)
        if isinstance(decoded, Rejected):
            return decoded
        a = decoded.address
        payload = decoded.payload
        if self.dedup.check((a.site, a.bed, a.device), payload.seq, payload.ts,
                            hash(raw.payload)) is Verdict.DUPLICATE:
            return None
        if a not in self._known:
            self._register(a)
        return decoded

    def _register(self, address: Address) -> None:
        if len(self._known) > 1_000_000:
            self._known.clear()
        self._known.add(address)
        _, new = self.registry.ensure(address)
        if new:
            self._registered += 1
            self._last_registered = address.topic

    @property
    def pending_messages(self) -> int:
        return len(self._raws)

    @property
    def pending_points(self) -> int:
        return self._points

    @property
    def pending_age_s(self) -> float:
        return 0.0 if self._oldest is None else time.monotonic() - self._oldest

    def take(self) -> tuple[list[str], int, list[DeadLetter], list[RawMessage]]:
        """Detach the current batch for committing; the pipeline starts a new one."""
        batch = (self._lines, self._points, self._rejected, self._raws)
        self._lines, self._points, self._rejected, self._raws = [], 0, [], []
        self._oldest = None
        return batch

    # --- durable part (worker thread) ---------------------------------------------------------

    def commit(self, lines: list[str], points: int, rejected: list[DeadLetter]) -> None:
        """Spool the points (fsync), store dead letters, commit the stages. Blocking.

        Retry-safe: each part that succeeded empties its list, so calling again with the same
        lists after a failure (disk trouble in a later part) does not store anything twice.
        """
        if lines:
            self.spool.append("\n".join(lines).encode(), points)
            lines.clear()
        if rejected:
            self.deadletters.add(rejected)
            rejected.clear()
        for stage in self.stages:
            stage.commit()
