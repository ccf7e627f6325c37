"""The bounded hand-off from the MQTT connection to the pipeline, with the urgent lane."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from devices.topics import is_urgent
from gateway.ingest.message import RawMessage


class Inbox:
    """A bounded hand-off from the MQTT connection to the pipeline (same event loop).

    Messages stay in receipt order in the inbox. Those that may raise a critical alert
    (:func:`is_urgent`) are also put in :attr:`urgent`, a second lane the gateway drains first,
    so an emergency call never waits behind a backlog of telemetry; they still take their turn
    in the inbox for storage and acknowledgement.

    While the gateway cannot commit (a store on disk failing), a full inbox would stop the
    socket and hide new emergency calls behind the held telemetry. :meth:`shed_when_full`
    then keeps the socket read: urgent messages are still taken (up to twice the bound), the
    others are left unacknowledged (counted in :attr:`shed`) for the broker to send again
    after :meth:`~gateway.ingest.connection.MqttSource.recall`.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be positive")
        self.maxsize = maxsize
        self._items: deque[RawMessage] = deque()
        self._ready = asyncio.Event()
        self._interrupted = False
        self.urgent: deque[RawMessage] = deque()
        self.urgent_ready = asyncio.Event()
        self.on_space: Callable[[], None] | None = None
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
        if self.shedding and len(self._items) >= self.maxsize:
            kept = [item for item in items if is_urgent(item.topic)]
            self.shed += len(items) - len(kept)
            items = kept
            if len(self._items) + len(kept) >= 2 * self.maxsize:
                self.shedding = False  # a flood of urgent messages: push back after all
        self._items.extend(items)
        urgent = [item for item in items if not item.retain and is_urgent(item.topic)]
        if urgent:
            self.urgent.extend(urgent)
            self.urgent_ready.set()
        self._ready.set()
        return self.shedding or len(self._items) < self.maxsize

    def take_urgent(self) -> list[RawMessage]:
        """Everything in the urgent lane (oldest first), emptying it."""
        items = list(self.urgent)
        self.urgent.clear()
        self.urgent_ready.clear()
        return items

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
        if self.on_space is not None and len(items) <= self.maxsize // 2:
            self.on_space()
        return batch

    def interrupt(self) -> None:
        """Wake a waiting :meth:`get` with an empty batch (used at shutdown)."""
        self._interrupted = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)
