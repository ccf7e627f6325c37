"""The round buffer: batches handed to the detectors, held as columns until their next round.

Every detector gets every batch (``update``), but they all evaluate on one grid
(:data:`EVALUATE_INTERVAL_MS` of message clock), so the buffer takes each batch once, however
many detectors hand it over, extracts its columns once (:func:`~gateway.detect._batch.extract`)
and seals what came in since the last round into one :class:`~gateway.detect._batch.Batch`,
ordered by bed and time, that each detector then takes once (:meth:`RoundBuffer.rounds_for`).

Threads: ``feed`` may be called (event loop) while one other thread cuts and takes rounds (a
worker thread), not more. Message objects do not pile up between rounds: beyond
:data:`MAX_PENDING_MESSAGES` they are extracted by the caller of ``feed``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Final

from devices.codec import Message
from gateway.detect._batch import Batch, Chunk, concatenate, sorted_round

EVALUATE_INTERVAL_MS: Final = 60_000
"""Detectors fold in their buffered batches and evaluate at most this often (message clock),
all on the same grid, so one round's columns are extracted once for all of them and numpy
works on a round's worth of samples at a time. Conditions here last minutes or hours; the
emergency path (buttons, falls) does not go through the detectors."""
MAX_PENDING_MESSAGES: Final = 128
"""Buffered messages beyond which they are extracted into columns at once, by the caller of
``update``: message objects do not pile up for a minute (memory, garbage-collector passes),
and each extraction is done in the flow of intake instead of in one long block that would
hold up the event loop or, in a worker thread, compete with it for the interpreter lock. The
extracted parts are joined into one round at evaluation. Each extraction is one block of the
event loop: 4,000 messages held it 17-32 ms during the 100,000-id flood's intake while
emergency calls waited to be read (flood benchmark with a loop-lag probe, 2026-12-03); 500
of the flood's made-up devices took 1.7 ms (median; 1.2 of it the quarantine's caps), 128 take
0.64 ms, 0.49 s in all for the 100,000 against 0.37 (the 100,000 ids through the pipeline in
one process, 2026-12-03)."""
ROUND_MAX_MESSAGES: Final = 200_000
"""A round is sealed early once it holds this many messages (bounded memory without ticks)."""


class RoundBuffer:
    """Batches fed by several consumers (detectors), handed back to each as sealed rounds."""

    def __init__(self, *, extract: Callable[[Sequence[Chunk]], Batch],
                 prepare: Callable[[Batch], None],
                 round_messages: int = MAX_PENDING_MESSAGES) -> None:
        if round_messages < 1:
            raise ValueError("round_messages must be positive")
        self.round_messages = round_messages
        """Buffered messages beyond which ``feed`` extracts them (:data:`MAX_PENDING_MESSAGES`)."""
        self._extract = extract
        """Columns of buffered batches (numbers new beds and devices)."""
        self._prepare = prepare
        """Called on each round as it is sealed, ordered by bed and time, before anyone
        takes it (changes it in place)."""
        self._lock = threading.Lock()
        """Guards the buffer: ``feed`` (event loop) may run while another thread evaluates."""
        self._cutting = threading.Lock()
        """One extraction at a time (it numbers new beds and devices), rounds in order."""
        self._parts: list[Batch] = []
        """Extracted, not yet sealed into a round (guarded by ``_cutting``)."""
        self._parts_messages = 0
        self._pending: list[Chunk] = []
        self._pending_messages = 0
        self._last_fed: tuple[object, object, set[int]] | None = None
        self._rounds: list[tuple[int, Batch]] = []
        self._round = 0
        self._consumers: dict[int, int] = {}

    def register(self) -> int:
        """A new consumer of rounds (one per detector); returns its id."""
        consumer = len(self._consumers)
        self._consumers[consumer] = self._round
        return consumer

    def feed(self, consumer: int, messages: Sequence[Message],
             received_ms: Sequence[int]) -> None:
        """Buffer a batch. The same batch objects handed to several detectors in turn (as the
        alerting stage does) are buffered once; a detector handing the same objects again
        means a new batch."""
        if len(messages) != len(received_ms):
            raise ValueError("messages and received_ms differ in length")
        with self._lock:
            last = self._last_fed
            if last is not None and last[0] is messages and last[1] is received_ms \
                    and consumer not in last[2]:
                last[2].add(consumer)
                return
            self._last_fed = (messages, received_ms, {consumer})
            self._pending.append((messages, received_ms))
            self._pending_messages += len(messages)
            full = self._pending_messages > self.round_messages
        if full:
            self.extract_pending()

    def extract_pending(self) -> None:
        """Extract the buffered messages into columns now (a part of the next round), so that
        message objects do not pile up; the round is sealed by :meth:`cut`, or once it holds
        :data:`ROUND_MAX_MESSAGES`."""
        with self._cutting:
            with self._lock:
                # ``_last_fed`` stays: the other detectors may still hand over the same batch.
                pending, self._pending = self._pending, []
                self._pending_messages = 0
            if pending:
                self._add_part(self._extract(pending))

    def add_columns(self, batch: Batch) -> None:
        """Add messages already extracted into columns (:func:`~gateway.detect._batch.extract`
        with the same fleet) to the next round, after what was fed before."""
        self.extract_pending()
        with self._cutting:
            self._add_part(batch)

    def _add_part(self, batch: Batch) -> None:
        """Under ``_cutting``."""
        self._parts.append(batch)
        self._parts_messages += len(batch.device)
        if self._parts_messages >= ROUND_MAX_MESSAGES:
            self._seal()

    def cut(self) -> None:
        """Extract everything buffered and seal it, with the parts extracted before, into the
        next round: one batch per round, whatever the number of parts, since a detector's
        ``_update`` costs the same for a small batch as for a large one at fleet scale. A
        round's samples are ordered by bed and time (:func:`~gateway.detect._batch.by_bed`):
        detectors rely on it."""
        self.extract_pending()
        with self._cutting:
            self._seal()

    def _seal(self) -> None:
        """Under ``_cutting``: the extracted parts become one round."""
        if not self._parts:
            return
        batch = sorted_round(self._parts[0] if len(self._parts) == 1
                             else concatenate(self._parts))
        self._prepare(batch)
        self._parts, self._parts_messages = [], 0
        with self._lock:
            self._round += 1
            self._rounds.append((self._round, batch))

    def rounds_for(self, consumer: int) -> list[Batch]:
        """The rounds ``consumer`` has not seen yet, oldest first."""
        with self._lock:
            seen = self._consumers[consumer]
            batches = [batch for number, batch in self._rounds if number > seen]
            self._consumers[consumer] = self._round
            oldest = min(self._consumers.values())
            if self._rounds and self._rounds[0][0] <= oldest:
                self._rounds = [(n, b) for n, b in self._rounds if n > oldest]
        return batches
