"""The ingest pipeline: decode, deduplicate, route, and build the batch to commit.

``process`` is pure CPU work on the event loop (chunks of a few thousand messages): decode with
the device codec, drop duplicates, format line protocol for the time-series sink, hand accepted
messages to the downstream stages (detector, alerts, service log), and set aside rejected
messages for the dead-letter store. ``take`` hands the batch to the checkpoint
(:mod:`gateway.ingest.checkpoint`), which makes it durable (spool, dead letters, the stages'
own commits) and only then acknowledges it to the broker.

(A module over 400 lines: the two ways in, ``process`` and ``process_urgent``, share the
admission, the hand-over to the stages and its failure handling, which must stay one code.)

The urgent lane: ``process_urgent`` takes emergency button and fall events as soon as they are
read from a socket, ahead of the telemetry queued before them, and hands them to the urgent
stages (the alert rules) at once; the gateway commits the alert and the API stream shows it
within milliseconds. The same raw messages still pass through ``process`` in their turn, which
stores and acknowledges them as usual without giving them to the urgent stages again.

Two MQTT sessions deliver those events (:mod:`gateway.ingest.urgentsession`): the main one,
in order behind whatever the broker queued for it, and the urgent one, which carries nothing
else. Each call reaches the urgent stages once, from whichever copy came first
(:class:`~gateway.ingest.dedup.FirstCopies`, keyed by device, ``seq`` and content, counted by
session in ``homecare_urgent_calls_first``); only the main session's copy is deduplicated,
stored and handed to the other stages, so a call is stored once whichever session was first,
and still raises its alert when either session is down.

No message stops intake: the codec answers every input with a value, and a message whose
handling raises anyway (decode, dedup, formatting, a stage's ``accept``) is dead-lettered as
``internal_error`` with the exception and where it was raised, acknowledged with its batch,
and the batch goes on; a stage that raises on a batch is given it again one message at a time,
so the good messages of that batch still reach it.

Retained messages (the broker's stored copy, sent on a new subscription) on an ``event``
channel are stored state, never a new call: they are stored (time series) and acknowledged,
but no stage and not the urgent lane sees them. Status and telemetry go on as usual.

A device the registry lists has one place (:meth:`devices.registry.Registry.misplaced`): a
message that puts it on another site, bed or kind is a dead letter (``device_misplaced``,
the detail naming where it is registered and where it was seen), counted in
``homecare_messages_misplaced``, and reaches no stage, so it raises no alert for that bed and
opens no live state there; the broker's ACL (``homecare acl``) refuses it first. The check is
one dict look-up, made only for an address not seen before in its place, so presses pay
nothing for it. Devices the registry does not list are registered on first sight as before, in
a bounded memo (:class:`~devices.registry.Registry`, ``first_sight_max``): each of their
messages marks them seen (one dict move), so a flood of made-up ids forgets the least recently
seen, and a device forgotten is registered again by its next message; its calls never wait on
it (counted in ``homecare_devices_first_sight_evicted``, logged once a minute).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple, Protocol

from devices.codec import Codec, Message, Rejected
from devices.devicetime import ClockWindow
from devices.registry import Placement, Registry
from devices.topics import Address, Channel, is_urgent
from gateway.config import Settings
from gateway.ingest.dedup import CallKey, Deduplicator, FirstCopies, Verdict
from gateway.ingest.message import RawMessage
from gateway.ingest.registrywatch import RegistryWatch
from gateway.monitoring import Metrics
from gateway.storage.deadletters import DeadLetter
from gateway.storage.sourcebudget import SourceBudget
from gateway.tsdb.lineprotocol import LineEncoder

log = logging.getLogger("homecare.pipeline")

INTERNAL_ERROR: Final = "internal_error"
"""Dead-letter reason of a message whose handling raised: a bug of ours that this input met."""
ERROR_LOG_INTERVAL_S: Final = 60.0
"""Internal errors are logged (with a traceback) at most this often; every one is counted."""
DEVICE_MISPLACED: Final = "device_misplaced"
"""Dead-letter reason of a message from a device the registry lists for another site, bed or
kind."""
DEVICE_OVER_BUDGET: Final = "device_over_budget"
"""Dead-letter reason of a message from a device past its intake budget (bytes a second on
average, and a burst: the ``device_bytes_per_second`` and ``device_burst_bytes`` settings).
Never an emergency button or fall event: a call is always taken."""
MISPLACED_LOG_INTERVAL_S: Final = 60.0
"""Misplaced devices are logged at most this often (the latest one, and how many since);
every message is counted."""
KNOWN_MAX: Final = 100_000
"""Addresses remembered as seen in their place (so their messages skip the placement check
and registration, both idempotent): the oldest forgotten first, so made-up ids cannot grow it
(each holds its Address, about 500 bytes with 64-character ids)."""
AUTO_REGISTERED_LOG_INTERVAL_S: Final = 60.0
"""Devices registered on first sight are logged at most this often (how many since the last
line, and the latest one's topic): the first at once, then one line per interval while more
come, however many made-up ids a flood brings; every one is counted in
``homecare_devices_auto_registered``."""


class Stage(Protocol):
    """A downstream consumer of accepted messages (detector, alert engine, service log)."""

    name: str

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        """Take a batch of new messages, in arrival order. Fast, in memory, no I/O. After it
        raised, the same messages come again one at a time: taking one twice has no effect."""

    def commit(self) -> None:
        """Make what ``accept`` took durable. Runs in a worker thread before acknowledgement."""


class SourcedStage(Stage, Protocol):
    """A stage that keeps the messages as received, not only decoded (the detector journal,
    :class:`gateway.detect.journal.JournaledStage`): the pipeline calls ``accept_sources``
    instead of ``accept``."""

    def accept_sources(self, messages: Sequence[Message], received_ms: Sequence[int],
                       sources: Sequence[RawMessage]) -> None:
        """``accept`` with ``sources[i]`` the raw message ``messages[i]`` was decoded from."""


class Batch(NamedTuple):
    """What one commit makes durable (:func:`gateway.ingest.checkpoint.commit`)."""

    lines: list[str]
    """Line-protocol points for the spool."""
    points: int
    deadletters: list[DeadLetter]
    raws: list[RawMessage]
    """The received messages, acknowledged once the rest is on disk."""


class Pipeline:
    def __init__(self, *, metrics: Metrics,
                 registry: Registry | None = None, stages: Sequence[Stage] = (),
                 urgent_stages: Sequence[Stage] = (), codec: Codec | None = None,
                 dedup_window: int = 64, clock_window: ClockWindow | None = None,
                 device_budget: SourceBudget | None = None,
                 registry_watch: RegistryWatch | None = None) -> None:
        """``urgent_stages`` (a subset of ``stages``) also take urgent messages ahead of their
        turn through :meth:`process_urgent`, and then not again in :meth:`process`.
        ``clock_window``: which device times are stored as sent (:mod:`devices.devicetime`).
        ``device_budget``: the payload bytes each device (its topic but the channel) may send,
        at its messages' receipt times; beyond it a message is dead-lettered
        (:data:`DEVICE_OVER_BUDGET`) before it is decoded, so one device sending valid but
        enormous batches cannot fill the spool, the memory or the loop (an emergency button
        or fall event is never held to it). ``registry_watch``: the registry file, read
        again when a listed device is seen out of its place and the file changed
        (:mod:`gateway.ingest.registrywatch`)."""
        self.codec = codec or Codec()
        self.registry_watch = registry_watch
        self.dedup = Deduplicator(window=dedup_window)
        self.encoder = LineEncoder(window=clock_window)
        self.metrics = metrics
        self.registry = registry or Registry()
        self.stages = tuple(stages)
        self.urgent_stages = tuple(urgent_stages)
        if any(stage not in self.stages for stage in self.urgent_stages):
            raise ValueError("urgent_stages must be among stages")
        self._early: dict[int, tuple[RawMessage, Message | Rejected | None]] = {}
        """Urgent messages handled ahead of their turn, by ``id`` of the raw message (which
        the entry keeps alive, so the id is not reused): the decoded message, None for a
        duplicate, or why it failed. :meth:`process` removes the entry when it reaches the raw
        message."""
        self._first_copies = FirstCopies()
        """The calls the urgent stages took, from either session's copy."""
        self._known: dict[Address, bool] = {}
        """Addresses seen in their place and registered, at most :data:`KNOWN_MAX`: whether
        the device was registered on first sight (its registration is then marked seen
        again, :meth:`Registry.seen`, so the registry forgets the least recently seen)."""
        self._lines: list[str] = []
        self._points = 0
        self._rejected: list[DeadLetter] = []
        self._raws: list[RawMessage] = []
        self._oldest: float | None = None
        self._registered = 0
        self._last_registered = ""
        self._registered_unlogged = 0
        self._next_registered_log = 0.0
        self._evicted_counted = self.registry.first_sight_evicted
        self._evicted_unlogged = 0
        self._next_evicted_log = 0.0
        self._errors_unlogged = 0
        self._next_error_log = 0.0
        self._misplaced: dict[str, int] = {}
        """Misplaced messages since the last count, by what differs (site, bed, kind)."""
        self._misplaced_unlogged = 0
        self._last_misplaced = ""
        self._next_misplaced_log = 0.0
        self.device_budget = device_budget
        self._over_budget = 0
        """Messages over their device's budget since the last log line."""
        self._last_over_budget = ""
        self._next_over_budget_log = 0.0

    # --- CPU part (event loop) ----------------------------------------------------------------

    def process(self, raws: Sequence[RawMessage]) -> None:
        """Take the next raw messages in receipt order into the current batch.

        Never raises for a message: one whose handling raises (a bug of ours met by this
        input, in the codec, dedup, formatting or a stage) becomes a dead letter
        (``internal_error``) and the others go on (:meth:`_hand_on`).
        """
        if not raws:
            return
        if self._oldest is None:
            self._oldest = time.monotonic()
        admit = self._admit
        lines = self._lines
        to_line = self.encoder.lines
        accepted: list[Message] = []
        received: list[int] = []
        sources: list[RawMessage] = []
        early_at: list[int] = []
        """Positions in ``accepted`` of messages the urgent stages already took."""
        rejected_by_reason: dict[str, int] = {}
        duplicates_before = self.dedup.stats.duplicates
        registered_before = self._registered
        retimed_before = self.encoder.retimed
        points = 0
        retained = 0
        early = self._early
        for raw in raws:
            step = "admit"
            try:
                was_early = bool(early) and id(raw) in early
                if was_early:
                    # Seen by process_urgent: decoded and deduplicated there, and given to the
                    # urgent stages; the rest of its way (storage, other stages) goes on here.
                    admitted = early.pop(id(raw))[1]
                else:
                    admitted = admit(raw)
                if admitted is None:
                    continue  # a duplicate
                if isinstance(admitted, Rejected):
                    self._dead_letter(raw, admitted, rejected_by_reason)
                    continue
                message = admitted
                step = "format"
                written = len(lines)
                try:
                    points += to_line(message, lines, raw.received_ms)
                except BaseException:
                    del lines[written:]
                    raise
            except Exception as exc:
                self._dead_letter(raw, self._internal_error(step, exc), rejected_by_reason)
                continue
            if raw.retain and message.address.channel is Channel.EVENT:
                retained += 1  # stored state (kept in the time series), never a new call
                continue
            if was_early:
                early_at.append(len(accepted))
            accepted.append(message)
            received.append(raw.received_ms)
            sources.append(raw)
        self._raws.extend(raws)
        self._points += points
        if accepted:
            rest: tuple[list[Message], list[int], list[RawMessage]] | None = None
            for stage in self.stages:
                if early_at and stage in self.urgent_stages:
                    if rest is None:
                        skip = set(early_at)
                        keep = [i for i in range(len(accepted)) if i not in skip]
                        rest = ([accepted[i] for i in keep], [received[i] for i in keep],
                                [sources[i] for i in keep])
                    if rest[0]:
                        self._hand_on(stage, *rest, rejected_by_reason)
                else:
                    self._hand_on(stage, accepted, received, sources, rejected_by_reason)
        m = self.metrics
        m.received.inc(len(raws))
        m.accepted.inc(len(accepted) + retained)
        m.points_retimed.inc(self.encoder.retimed - retimed_before)
        if retained:
            m.retained_events.inc(retained)
        for reason, n in rejected_by_reason.items():
            m.rejected.labels(reason).inc(n)
        self._count_admissions(duplicates_before, registered_before)

    def process_urgent(self, raws: Sequence[RawMessage]) -> int:
        """Hand urgent messages (emergency button, fall) to the urgent stages ahead of the
        messages received before them; returns how many were handed on.

        A message of the main session must also be passed to :meth:`process` later, in its
        turn, which stores and acknowledges it as usual without giving it to the urgent
        stages again. Rejected ones (malformed, misplaced) are left for :meth:`process` to
        dead-letter with their reason, and retained ones to store (never a call). Call it
        before :meth:`process` sees the same raw messages.

        A copy from the urgent session (:attr:`RawMessage.urgent_session`) only ever goes to
        the urgent stages, and only when no copy of the same call reached them before; it is
        never deduplicated, stored or dead-lettered here (the main session's copy is), and its
        acknowledgement is the caller's, once the alert changes are committed. If an urgent
        stage cannot take it, the main session's copy is handed to the stages in its place.

        Never raises for a message, like :meth:`process`.
        """
        accepted: list[Message] = []
        received: list[int] = []
        sources: list[RawMessage] = []
        keys: dict[int, CallKey] = {}
        by_session = [0, 0]
        """Calls handed on, by session: main, urgent."""
        rejected_by_reason: dict[str, int] = {}
        duplicates_before = self.dedup.stats.duplicates
        registered_before = self._registered
        first = self._first_copies.first
        for raw in raws:
            if raw.retain:
                continue
            copy = raw.urgent_session
            try:
                admitted = self._admit_copy(raw) if copy else self._admit(raw)
            except Exception as exc:
                rejected = self._internal_error("urgent_copy" if copy else "admit", exc)
                if not copy:
                    self._early[id(raw)] = (raw, rejected)
                continue
            if not copy:
                self._early[id(raw)] = (raw, admitted)
            if admitted is None or isinstance(admitted, Rejected):
                continue
            a = admitted.address
            key = (a.site, a.bed, a.device, admitted.payload.seq, hash(raw.payload))
            if not first(key):
                continue  # the other session's copy reached the urgent stages first
            keys[id(raw)] = key
            accepted.append(admitted)
            received.append(raw.received_ms)
            sources.append(raw)
            by_session[copy] += 1

        def failed(raw: RawMessage, rejected: Rejected) -> None:
            if raw.urgent_session:
                self._first_copies.forget(keys[id(raw)])  # the main copy goes in its place
            else:
                self._dead_letter(raw, rejected, rejected_by_reason)

        if accepted:
            for stage in self.urgent_stages:
                self._hand_on(stage, accepted, received, sources, rejected_by_reason,
                              failed=failed)
            calls = self.metrics.calls_first
            for session, n in zip(("main", "urgent"), by_session, strict=True):
                if n:
                    calls.labels(session).inc(n)
        for reason, n in rejected_by_reason.items():
            self.metrics.rejected.labels(reason).inc(n)
        self._count_admissions(duplicates_before, registered_before)
        return len(accepted)

    def _hand_on(self, stage: Stage, messages: list[Message], received_ms: list[int],
                 sources: list[RawMessage], rejected_by_reason: dict[str, int], *,
                 failed: Callable[[RawMessage, Rejected], None] | None = None) -> None:
        """``stage.accept`` the batch; if it raises, again one message at a time, so that
        only the messages the stage cannot take are dead-lettered (``internal_error``) and
        every other one reaches it. A stage takes a message it has seen again without effect
        (it must already: after a crash the broker delivers unacknowledged messages again).
        ``failed``: what becomes of a message the stage cannot take, instead of a dead
        letter."""
        with_sources = getattr(stage, "accept_sources", None)
        try:
            if with_sources is not None:
                with_sources(messages, received_ms, sources)
            else:
                stage.accept(messages, received_ms)
            return
        except Exception as exc:
            if len(messages) == 1:
                rejected = self._internal_error(f"stage:{stage.name}", exc)
                if failed is not None:
                    failed(sources[0], rejected)
                else:
                    self._dead_letter(sources[0], rejected, rejected_by_reason)
                return
        for message, received, raw in zip(messages, received_ms, sources, strict=True):
            try:
                if with_sources is not None:
                    with_sources([message], [received], [raw])
                else:
                    stage.accept([message], [received])
            except Exception as exc:
                rejected = self._internal_error(f"stage:{stage.name}", exc)
                if failed is not None:
                    failed(raw, rejected)
                else:
                    self._dead_letter(raw, rejected, rejected_by_reason)

    def _dead_letter(self, raw: RawMessage, rejected: Rejected,
                     rejected_by_reason: dict[str, int]) -> None:
        topic = raw.topic if isinstance(raw.topic, str) else raw.topic.decode("utf-8", "replace")
        self._rejected.append(DeadLetter(raw.received_ms, topic, raw.payload, rejected.reason,
                                         rejected.detail))
        rejected_by_reason[rejected.reason] = rejected_by_reason.get(rejected.reason, 0) + 1

    def _internal_error(self, step: str, exc: Exception) -> Rejected:
        """The dead-letter reason for a message whose handling raised at ``step``; counted,
        and logged with its traceback at most once per :data:`ERROR_LOG_INTERVAL_S`."""
        self.metrics.internal_errors.labels(step).inc()
        self._errors_unlogged += 1
        now = time.monotonic()
        if now >= self._next_error_log:
            self._next_error_log = now + ERROR_LOG_INTERVAL_S
            log.error("pipeline.internal_error step=%s errors=%d; dead-lettered as %s, intake "
                      "goes on", step, self._errors_unlogged, INTERNAL_ERROR, exc_info=exc)
            self._errors_unlogged = 0
        return Rejected(INTERNAL_ERROR, f"{step}: {_summary(exc)}")

    def _count_admissions(self, duplicates_before: int, registered_before: int) -> None:
        """Metrics (and a log line for new devices) for what :meth:`_admit` did since."""
        self.metrics.duplicates.inc(self.dedup.stats.duplicates - duplicates_before)
        new = self._registered - registered_before
        if new:
            self.metrics.auto_registered.inc(new)
            self._registered_unlogged += new
        if self._registered_unlogged:
            now = time.monotonic()
            if now >= self._next_registered_log:
                self._next_registered_log = now + AUTO_REGISTERED_LOG_INTERVAL_S
                log.info("registry.auto_registered devices=%d last=%r",
                         self._registered_unlogged, self._last_registered)
                self._registered_unlogged = 0
        evicted = self.registry.first_sight_evicted - self._evicted_counted
        if evicted:
            self._evicted_counted += evicted
            self.metrics.first_sight_evicted.inc(evicted)
            self._evicted_unlogged += evicted
        if self._evicted_unlogged:
            now = time.monotonic()
            if now >= self._next_evicted_log:
                self._next_evicted_log = now + AUTO_REGISTERED_LOG_INTERVAL_S
                log.info("registry.first_sight_evicted devices=%d held=%d last=%r",
                         self._evicted_unlogged, self.registry.first_sight_devices,
                         self.registry.last_evicted)
                self._evicted_unlogged = 0
        if self._over_budget:
            now = time.monotonic()
            if now >= self._next_over_budget_log:
                self._next_over_budget_log = now + MISPLACED_LOG_INTERVAL_S
                log.warning("ingest.device_over_budget messages=%d last=%r; dead-lettered as %s "
                            "(device_bytes_per_second, device_burst_bytes)", self._over_budget,
                            self._last_over_budget, DEVICE_OVER_BUDGET)
                self._over_budget = 0
        if self._misplaced:
            for differs, n in self._misplaced.items():
                self.metrics.misplaced.labels(differs).inc(n)
            self._misplaced.clear()
            now = time.monotonic()
            if now >= self._next_misplaced_log:
                self._next_misplaced_log = now + MISPLACED_LOG_INTERVAL_S
                log.warning("ingest.device_misplaced messages=%d last=%r; dead-lettered as %s",
                            self._misplaced_unlogged, self._last_misplaced, DEVICE_MISPLACED)
                self._misplaced_unlogged = 0

    def _admit(self, raw: RawMessage) -> Message | Rejected | None:
        """Decode; None for a duplicate; a listed device out of its place is rejected; registers
        a device seen for the first time; a device past its budget is rejected undecoded.
        Called once per raw message (the urgent lane keeps its answer for :meth:`process`)."""
        budget = self.device_budget
        if (budget is not None and isinstance(topic := raw.topic, str)
                and len(topic) <= BUDGET_TOPIC_CHARS):
            device = topic[:topic.rfind("/")]
            # A call is charged too, but never held: only a payload no call needs (a button
            # or fall event padded with unknown fields) is, like any other message.
            if (not budget.charge(device, len(raw.payload), raw.received_ms)
                    and (len(raw.payload) > CALL_BYTES_MAX or not is_urgent(topic))):
                return self._past_budget(device)
        decoded = self.codec.decode(raw.topic, raw.payload)
        if isinstance(decoded, Rejected):
            return decoded
        a = decoded.address
        unlisted = self._known.get(a)
        first_sight = unlisted is None
        if first_sight and (place := self._out_of_place(a)) is not None:
            return self._misplaced_device(a, place)
        payload = decoded.payload
        if self.dedup.check((a.site, a.bed, a.device), payload.seq, payload.ts,
                            hash(raw.payload)) is Verdict.DUPLICATE:
            return None
        if first_sight or (unlisted and not self.registry.seen(a)):
            self._register(a)
        return decoded

    def _admit_copy(self, raw: RawMessage) -> Message | Rejected:
        """:meth:`_admit` for the urgent session's copy of a call: decoded, a listed device out
        of its place refused (the main session's copy is counted and dead-lettered), a device
        seen for the first time registered; not deduplicated (:meth:`process_urgent` keeps
        the calls taken; the main session's copies are deduplicated as ever). A payload over
        :data:`CALL_BYTES_MAX` is no call's: it is not taken ahead, its main session's copy
        goes the main way, through the device's budget."""
        if len(raw.payload) > CALL_BYTES_MAX:
            return Rejected(DEVICE_OVER_BUDGET, "urgent session: a payload no call needs")
        decoded = self.codec.decode(raw.topic, raw.payload)
        if isinstance(decoded, Rejected):
            return decoded
        a = decoded.address
        unlisted = self._known.get(a)
        if unlisted is None:
            if self._out_of_place(a) is not None:
                return Rejected(DEVICE_MISPLACED, "seen by the urgent session")
            self._register(a)
        elif unlisted and not self.registry.seen(a):
            self._register(a)
        return decoded

    def _out_of_place(self, address: Address) -> Placement | None:
        """Where the registry lists a device ``address`` puts elsewhere; judged again against
        the registry file when it changed since it was read (a device moved to another bed,
        the broker already told: :mod:`gateway.ingest.registrywatch`)."""
        place = self.registry.misplaced(address)
        if place is None or self.registry_watch is None:
            return place
        fresh = self.registry_watch.changed()
        if fresh is None:
            return place
        moved = self.registry.update_places(fresh)
        if moved:
            gone = set(moved)
            for stale in [a for a in self._known if a.device in gone]:
                del self._known[stale]  # judged at their new place from their next message
        log.warning("registry.changed_on_disk devices_placed_anew=%d first=%r; listed devices "
                    "are judged by their places in the file now, the rest of it (beds, "
                    "settings, time zones) is applied at the next restart", len(moved),
                    moved[:3])
        return self.registry.misplaced(address)

    def _past_budget(self, device: str) -> Rejected:
        """The dead-letter reason for a message over its device's budget; logged with
        :meth:`_count_admissions` (at most a line a minute), counted by its reason."""
        budget = self.device_budget
        assert budget is not None
        self._over_budget += 1
        self._last_over_budget = device
        return Rejected(DEVICE_OVER_BUDGET, f"{device} sent more than {budget.bytes_per_s:.0f} "
                        f"bytes/s on average after a burst of {budget.burst_bytes} bytes")

    def _misplaced_device(self, address: Address, place: Placement) -> Rejected:
        """The dead-letter reason for a listed device seen out of its place; counted (by what
        differs) in :meth:`_count_admissions`. Misplaced addresses never enter ``_known``, so
        every one of their messages comes here."""
        differs = place.differs(address) or "kind"
        self._misplaced[differs] = self._misplaced.get(differs, 0) + 1
        self._misplaced_unlogged += 1
        detail = (f"{address.device} is registered at {place.site}/{place.bed} as {place.kind}; "
                  f"seen at {address.site}/{address.bed} as {address.kind}")
        self._last_misplaced = detail
        return Rejected(DEVICE_MISPLACED, detail)

    def _register(self, address: Address) -> None:
        """Register a device seen for the first time, or again after the registry forgot it
        (counted as new again: the registry no longer knew it)."""
        known = self._known
        if len(known) >= KNOWN_MAX and address not in known:
            del known[next(iter(known))]
        device, new = self.registry.ensure(address)
        known[address] = device.auto_registered
        if new:
            self._registered += 1
            self._last_registered = address.topic

    @property
    def registered_total(self) -> int:
        """Devices registered on first sight (not in the registry) since start."""
        return self._registered

    @property
    def pending_messages(self) -> int:
        return len(self._raws)

    @property
    def pending_points(self) -> int:
        return self._points

    @property
    def pending_age_s(self) -> float:
        return 0.0 if self._oldest is None else time.monotonic() - self._oldest

    def take(self) -> Batch:
        """Detach the current batch for committing; the pipeline starts a new one."""
        batch = Batch(self._lines, self._points, self._rejected, self._raws)
        self._lines, self._points, self._rejected, self._raws = [], 0, [], []
        self._oldest = None
        return batch


CALL_BYTES_MAX: Final = 4096
"""An emergency button or fall event is never held to its device's budget up to this size (a
call of the contract is about 100 bytes; unknown fields are allowed, so some room): past the
budget a larger one is dead-lettered like any message, so a device cannot send its flood as
``fall_cleared`` events padded with junk (a tester filled the detectors' journal so, 257 MB in
5 s, 2026-12-03)."""
BUDGET_TOPIC_CHARS: Final = 320
"""Topics longer than any of the contract (``homecare/v1/`` and three ids of at most 64
characters, a kind, a channel) are not charged to a device budget: the codec rejects them
anyway, and 20,000 remembered topics of 64 KiB would hold 1.3 GB."""
DEVICE_BUDGET_DEVICES: Final = 20_000
"""Devices whose intake budget is remembered (least recently heard forgotten first): a hub's
listed devices several times over, so a device keeps its bucket while it floods, and a flood
of made-up ids costs bounded memory (a forgotten device starts again with a full burst)."""


def device_budget(settings: Settings) -> SourceBudget | None:
    """The intake budget per device the settings give (None: no limit)."""
    if not settings.device_bytes_per_second:
        return None
    return SourceBudget(bytes_per_s=settings.device_bytes_per_second,
                        burst_bytes=settings.device_burst_bytes,
                        max_sources=DEVICE_BUDGET_DEVICES)


def _summary(exc: BaseException) -> str:
    """``Type: message (at file:line function < ...)``, innermost frame first."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " < ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
                       for f in reversed(frames))
    text = f"{type(exc).__name__}: {exc}"[:300]
    return f"{text} (at {where})" if where else text
