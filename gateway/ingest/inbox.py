"""The bounded hand-off from the MQTT connections to the pipeline, with the urgent lane."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from devices.topics import is_urgent
from gateway.ingest.message import RawMessage

URGENT_FEED_MAX: Final = 10_000
"""Messages of the urgent session waiting in the urgent lane beyond which its socket stops
being read (pushback, as for the inbox): only a flood of button or fall events gets there."""
INBOX_MAX_BYTES: Final = 64 * 1024**2
"""The default bound of :attr:`Inbox.max_bytes` (the ``inbox_max_bytes`` setting)."""
UNLISTED_COPIES_MAX: Final = 10_000
"""The urgent session's copies of calls from unlisted devices held in :attr:`Inbox.unlisted`
beyond which more such copies are not held (:attr:`Inbox.copies_passed`): the main session's
copy of each is the call then. Never the socket's pushback: a listed device's call read behind
them must still be read."""


class Intake(Protocol):
    """Where an MQTT connection puts what it reads (:class:`Inbox`, :class:`UrgentFeed`)."""

    on_space: Callable[[], None] | None
    """Called when there is room again after :meth:`put_many` said stop."""
    pauses: int
    shed: int

    def put_many(self, items: Sequence[RawMessage]) -> bool:
        """Take messages; False when the connection should stop reading for now."""
        ...


class Inbox:
    """A bounded hand-off from the MQTT connection to the pipeline (same event loop).

    Messages stay in receipt order in the inbox. Those that may raise a critical alert
    (:func:`is_urgent`) are also put in :attr:`urgent`, a second lane the gateway drains first,
    so an emergency call never waits behind a backlog of telemetry; they still take their turn
    in the inbox for storage and acknowledgement.

    With :attr:`listed` set (the registry's :meth:`~devices.registry.Registry.lists_topic`),
    a call from a device the registry does not list at that place goes to :attr:`unlisted`
    instead, which the gateway takes after the urgent lane and a slice at a time: twenty
    thousand made-up buttons pressing at once (a hostile fleet, a replayed capture) still open
    their alerts, each one, but a listed device's call never waits behind them. Neither lane
    drops a call: the urgent session's copies beyond :data:`UNLISTED_COPIES_MAX` are handed
    back unheld (:meth:`take_passed`: acknowledged, their main session's copies the calls).

    While the gateway cannot commit (a store on disk failing), a full inbox would stop the
    socket and hide new emergency calls behind the held telemetry. :meth:`shed_when_full`
    then keeps the socket read: urgent messages are still taken (up to twice the bound), the
    others are left unacknowledged (counted in :attr:`shed`) for the broker to send again
    after :meth:`~gateway.ingest.connection.MqttSource.recall`.
    """

    def __init__(self, maxsize: int, *, max_bytes: int = INBOX_MAX_BYTES) -> None:
        if maxsize < 1 or max_bytes < 1:
            raise ValueError("maxsize and max_bytes must be positive")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        """Payload bytes beyond which the inbox is full too (a flood of 64 KiB batches would
        otherwise hold ``maxsize`` times that in memory)."""
        self.bytes = 0
        """Payload bytes in the inbox now."""
        self._items: deque[RawMessage] = deque()
        self._ready = asyncio.Event()
        self._interrupted = False
        self.urgent: deque[RawMessage] = deque()
        self.unlisted: deque[RawMessage] = deque()
        """Calls from devices the registry does not list there (with :attr:`listed` set)."""
        self.urgent_ready = asyncio.Event()
        """Set while either lane holds a call (or copies wait to be acknowledged)."""
        self._waiting: dict[int, None] = {}
        """The main session's copies in :attr:`unlisted` the ingest task has not claimed
        (:meth:`claim`), by ``id`` (each held by the lane, so no id is reused meanwhile)."""
        self.listed: Callable[[str], bool] | None = None
        """Whether a call on this topic is from a device listed there; unset: every one is."""
        self._passed: list[RawMessage] = []
        self.copies_passed = 0
        """Urgent-session copies not held (:data:`UNLISTED_COPIES_MAX`), since start."""
        self.on_space: Callable[[], None] | None = None
        self.on_urgent_space: Callable[[], None] | None = None
        """Called when the urgent lane is emptied (:class:`UrgentFeed` resumes its socket)."""
        self.on_urgent: Callable[[], None] | None = None
        """Called, in the read that put them there, when messages entered the urgent lane:
        the gateway takes an emergency call to the rules and the streams in that very read
        rather than a loop turn later (:meth:`gateway.runtime.Gateway._urgent_read`)."""
        self.pauses = 0
        self.shedding = False
        self.shed = 0
        """Messages left unacknowledged while shedding (since the gateway started)."""

    def shed_when_full(self, on: bool) -> None:
        """Keep reading while full, taking only urgent messages (on), or push back (off)."""
        self.shedding = on
        if on and self.on_space is not None:
            self.on_space()

    def put_many(self, items: Sequence[RawMessage]) -> bool:
        """Add messages; returns False when the inbox is now full (stop reading)."""
        if self.shedding and self.full:
            kept = [item for item in items if is_urgent(item.topic)]
            self.shed += len(items) - len(kept)
            items = kept
            if len(self._items) + len(kept) >= 2 * self.maxsize:
                self.shedding = False  # a flood of urgent messages: push back after all
        self._items.extend(items)
        self.bytes += sum([len(item.payload) for item in items])
        urgent = [item for item in items if not item.retain and is_urgent(item.topic)]
        self._ready.set()
        more = self.shedding or not self.full
        self.put_urgent(urgent)
        return more

    def put_urgent(self, items: Sequence[RawMessage]) -> None:
        """Add messages to the urgent lane only (the urgent session's copies: never stored,
        so never in the inbox proper; :meth:`put_many` puts the main session's here too), or
        to :attr:`unlisted` for devices :attr:`listed` says are not listed there."""
        if not items:
            return
        listed = self.listed
        if listed is not None:
            # (A topic that is not UTF-8 is no device's: kept, for the codec to reject.)
            items = [item for item in items
                     if not isinstance(item.topic, str) or listed(item.topic)
                     or self._later(item)]
            if not items:
                self.urgent_ready.set()
                return
        self.urgent.extend(items)
        self.urgent_ready.set()
        if self.on_urgent is not None:
            self.on_urgent()

    def _later(self, item: RawMessage) -> bool:
        """Put a call of an unlisted device in :attr:`unlisted` (or, an urgent-session copy
        beyond :data:`UNLISTED_COPIES_MAX`, with those to acknowledge unheld); always False."""
        if item.urgent_session and len(self.unlisted) >= UNLISTED_COPIES_MAX:
            self._passed.append(item)
            self.copies_passed += 1
        else:
            self.unlisted.append(item)
            if not item.urgent_session:
                self._waiting[id(item)] = None
        return False

    def take_urgent(self) -> list[RawMessage]:
        """Everything in the urgent lane (oldest first), emptying it."""
        items = list(self.urgent)
        self.urgent.clear()
        if not self.unlisted and not self._passed:
            self.urgent_ready.clear()
        if self.on_urgent_space is not None:
            self.on_urgent_space()
        return items

    def take_unlisted(self, max_items: int) -> list[RawMessage]:
        """The oldest calls of :attr:`unlisted`, at most ``max_items``, but for the main
        session's copies the ingest task has claimed meanwhile (passed over: they are its)."""
        unlisted = self.unlisted
        waiting = self._waiting
        items: list[RawMessage] = []
        while unlisted and len(items) < max_items:
            item = unlisted.popleft()
            if item.urgent_session:
                items.append(item)
            elif id(item) in waiting:
                del waiting[id(item)]
                items.append(item)
            # else: a main copy the ingest task claimed, which is its to process
        if not unlisted and not self.urgent and not self._passed:
            self.urgent_ready.clear()
        return items

    def claim(self, items: Sequence[RawMessage]) -> None:
        """The ingest task is about to process ``items`` (the main session's messages): those
        still waiting in :attr:`unlisted` are its now, taken by the pipeline's
        :meth:`~gateway.ingest.pipeline.Pipeline.process` to the urgent stages with the rest,
        and :meth:`take_unlisted` passes over them. (A call must reach
        :meth:`~gateway.ingest.pipeline.Pipeline.process_urgent`, if at all, before
        ``process`` sees it.) Free while no main copy waits there."""
        waiting = self._waiting
        if waiting:
            for item in items:
                waiting.pop(id(item), None)

    def take_passed(self) -> list[RawMessage]:
        """The urgent session's copies not held (:meth:`_later`), to acknowledge as handled:
        their main session's copies are the calls."""
        passed, self._passed = self._passed, []
        return passed

    async def get(self, max_items: int) -> list[RawMessage]:
        """At least one message, at most ``max_items``; waits while empty.

        Returns an empty list only after :meth:`interrupt`.
        """
        while not self._items and not self._interrupted:
            self._ready.clear()
            await self._ready.wait()
        if self._interrupted:
            self._interrupted = False
            return []
        items = self._items
        n = min(max_items, len(items))
        popleft = items.popleft
        batch = [popleft() for _ in range(n)]
        self.bytes -= sum([len(item.payload) for item in batch])
        if (self.on_space is not None and len(items) <= self.maxsize // 2
                and self.bytes <= self.max_bytes // 2):
            self.on_space()
        return batch

    @property
    def full(self) -> bool:
        """Whether the inbox holds its bound of messages or of payload bytes."""
        return len(self._items) >= self.maxsize or self.bytes >= self.max_bytes

    def unget(self, items: Sequence[RawMessage]) -> None:
        """Put back at the front, in order, messages :meth:`get` handed out and the caller did
        not process (its step ran out of time): they are next, ahead of everything else. Not
        counted against the bound again, nor put in the urgent lane again."""
        if items:
            self._items.extendleft(reversed(items))
            self.bytes += sum([len(item.payload) for item in items])
            self._ready.set()

    def interrupt(self) -> None:
        """Wake a waiting :meth:`get` with an empty batch (used at shutdown)."""
        self._interrupted = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)


class UrgentFeed:
    """The urgent session's intake: what it reads goes to the :class:`Inbox`'s urgent lane
    only, never to the inbox proper (the main session delivers the same messages, and those
    are the copies stored and acknowledged in turn).

    Bounded like the inbox: with ``maxsize`` or more messages in the urgent lane the urgent
    session stops reading until the lane is taken.

    >>> inbox = Inbox(100)
    >>> feed = UrgentFeed(inbox, maxsize=2)
    >>> press = RawMessage("homecare/v1/s/b/button/btn/event", b"{}", 1, 1, 0,
    ...                    urgent_session=True)
    >>> feed.put_many([press]), len(inbox), len(inbox.urgent)
    (True, 0, 1)
    >>> feed.put_many([press])  # the lane is full: stop reading
    False
    """

    def __init__(self, inbox: Inbox, *, maxsize: int = URGENT_FEED_MAX) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be positive")
        self.inbox = inbox
        self.maxsize = maxsize
        self.on_space: Callable[[], None] | None = None
        self.pauses = 0
        self.shed = 0
        inbox.on_urgent_space = self._space

    def put_many(self, items: Sequence[RawMessage]) -> bool:
        self.inbox.put_urgent(items)
        return len(self.inbox.urgent) < self.maxsize

    def _space(self) -> None:
        if self.on_space is not None:
            self.on_space()
