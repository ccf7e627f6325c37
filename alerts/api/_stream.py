"""The alert change stream: Server-Sent Events, resumable without gaps or repeats.

Each change is one event::

    id: <change seq>
    event: <action: opened, updated, escalated, acknowledged, resolved, ...>
    data: <the AlertChange as JSON, one line>

A client that reconnects with ``Last-Event-ID: <seq>`` (header, or ``?last_event_id=`` for
clients that cannot set headers) first gets every change after ``seq`` from the alert store,
then live changes; without it, only changes from now on. Idle streams carry a comment line
(``: keep-alive``) every ``sse_heartbeat_s``.

Change seqs are unique and increasing, but may skip a range after the alert store was restored
from a backup (see :mod:`alerts.store`): the numbers the lost changes had are never reused.

A ``Last-Event-ID`` the store cannot resume from never gives a silent stream: inside a range
skipped after a restore (the client saw changes the restored store lost), above the newest
change (the store was replaced, or restored without its high-water file) or not a change seq at
all, the stream starts with one ``reset`` event::

    id: <head: the newest change seq>
    event: reset
    data: {"reason": "store_restored" | "ahead_of_store" | "invalid_last_event_id",
           "head": <seq>, "detail": ...}

and then goes on from that head. The client has missed changes it cannot get back one by one:
it reloads its alert list (``GET /api/v1/alerts``) and keeps reading; the ``id:`` of the reset
makes its next reconnection resume from the head. (The store keeps every change it has, so any
other ``Last-Event-ID`` below the head is resumed exactly.)

A stream lives as long as its key: it re-checks the key every ``key_recheck_s`` and, once
the key is revoked, ends with a last comment (``: key revoked``); reconnecting then answers
401. One key holds at most ``sse_streams_per_key`` streams at once (:meth:`ChangeHub.take_slot`;
one more is refused with 429), so a leaked key cannot pin the gateway's connections.

A change not stored yet is shown as an *unstored* event: the same ``event:`` and change, its
``seq`` null, ``"unstored": true``, and no ``id:`` (a client resumes from what is stored); once
written, it comes again as usual, with its ``id:``. Two kinds of change come so: every critical
change of an emergency call (a press, a fall), just before its commit, so the dispatchers'
screens never wait for the alert store's fsync; and any change the store cannot write yet (its
disk full), at once; a stream opened while changes wait to be stored is shown them as it
subscribes. A client keeps the alert from either; the stored event that follows an
unstored one is the same change confirmed, not a new one (the console does not ring twice).
An unstored change the gateway could not store before it died never comes stored: the broker
sends the call again (it was not acknowledged), which opens its alert anew, and a client drops
the orphan when it next reloads the alert list (the console does so on every reconnection).

Live changes come from the engine's listener, called in the committing worker thread after the
commit: the :class:`ChangeHub` only hands them to the event loop (``call_soon_threadsafe``),
so the engine never waits for a client. Each client has a bounded buffer; a client that falls
further behind is disconnected (a last comment says so) and resumes with ``Last-Event-ID``.
Gaps are impossible by construction: a stream subscribes before it reads the store, reads the
store again until no change committed meanwhile is left unread, then goes live and says so with
a comment, ``: live`` (a client that has read it is shown every change from then on as it
happens, unstored ones included); every change with an ``id:`` is committed before it is
published, and changes a client already has (``seq`` not above the last it was sent) are
skipped; a hole in the live sequence, should one appear, is filled from the store.

This module is over 400 lines because the contract above (resumption, resets, key re-checks,
unstored changes) and the hub that carries it are one piece: each half relies on the other's
ordering rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Final, Literal

import msgspec

from alerts.model import AlertChange
from alerts.store import AlertStore

log = logging.getLogger("homecare.api.stream")

REPLAY_PAGE = 500

ResetReason = Literal["store_restored", "ahead_of_store", "invalid_last_event_id"]
RESET_DETAIL: Final[dict[str, str]] = {
    "store_restored": "the alert store was restored from a backup and no longer has the "
                      "changes up to Last-Event-ID: reload the alerts; the stream goes on "
                      "from head",
    "ahead_of_store": "Last-Event-ID is above the newest change (the alert store was restored "
                      "or replaced): reload the alerts; the stream goes on from head",
    "invalid_last_event_id": "Last-Event-ID is not a change seq: reload the alerts; the "
                             "stream goes on from head",
}


class Unstored:
    """A change shown before it is stored (:meth:`ChangeHub.publish_unstored`)."""

    __slots__ = ("change",)

    def __init__(self, change: AlertChange) -> None:
        self.change = change


class Subscription:
    """One client's bounded buffer of live changes (event loop only). While its stream still
    replays the store (``replaying``), stored changes are not buffered, only the highest seq
    among them is kept (``passed``): the stream reads them from the store, so a long replay
    during a storm cannot overflow the buffer."""

    __slots__ = ("changes", "closed", "limit", "overflowed", "passed", "replaying", "wake")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.changes: deque[AlertChange | Unstored] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self.replaying = True
        self.passed = 0

    def offer(self, changes: list[AlertChange] | list[Unstored]) -> None:
        if self.overflowed or self.closed or not changes:
            return
        if self.replaying and isinstance(changes[-1], AlertChange):
            self.passed = max(self.passed, changes[-1].seq)  # published in seq order
            return
        if len(self.changes) + len(changes) > self.limit:
            self.overflowed = True
            self.changes.clear()
        else:
            self.changes.extend(changes)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class StreamSlot:
    """One of a key's places for an open stream; :meth:`release` gives it back (once)."""

    __slots__ = ("_owner", "_slots")

    def __init__(self, slots: Counter[str], owner: str) -> None:
        self._slots: Counter[str] | None = slots
        self._owner = owner

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots[self._owner] -= 1
            if slots[self._owner] <= 0:
                del slots[self._owner]


class ChangeHub:
    """Fans committed alert changes out to stream clients on the event loop, and changes not
    stored yet (unstored) too: those it also keeps until their stored copy passes, and hands
    them to each stream that subscribes meanwhile, so a console that (re)connects while the
    alert store cannot write still sees the calls waiting to be written."""

    def __init__(self, *, queue_size: int = 1000, streams_per_key: int = 16) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be positive")
        if streams_per_key < 1:
            raise ValueError("streams_per_key must be positive")
        self.queue_size = queue_size
        self.streams_per_key = streams_per_key
        self._subscribers: set[Subscription] = set()
        self._slots: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, AlertChange] = {}
        """Unstored changes whose stored copy has not been published yet, by ``seq`` (any
        thread: the engine calls both listeners in order, under its own locks)."""
        self._pending_lock = threading.Lock()
        self.closed = False
        self.disconnected_slow = 0

    def take_slot(self, owner: str) -> StreamSlot | None:
        """A place for one more stream of ``owner`` (a key id), or ``None`` when it has
        ``streams_per_key`` open. The stream releases it when it ends."""
        if self._slots[owner] >= self.streams_per_key:
            return None
        self._slots[owner] += 1
        return StreamSlot(self._slots, owner)

    def streams_of(self, owner: str) -> int:
        return self._slots.get(owner, 0)

    # --- worker thread --------------------------------------------------------------------

    def publish(self, changes: list[AlertChange]) -> None:
        """The engine listener: never blocks, never raises."""
        if self._pending:
            with self._pending_lock:
                for change in changes:
                    self._pending.pop(change.seq, None)
        loop = self._loop
        if loop is None or not self._subscribers or not changes:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            loop.call_soon_threadsafe(self._dispatch, changes)

    def publish_unstored(self, changes: list[AlertChange]) -> None:
        """The engine's listener of changes not stored yet: never blocks or raises. On the
        event loop itself (an emergency call shown before its commit) the streams are handed
        the changes at once, not a loop turn later."""
        with self._pending_lock:
            self._pending.update((c.seq, c) for c in changes)
        loop = self._loop
        if loop is None or not self._subscribers or not changes:
            return
        unstored = [Unstored(c) for c in changes]
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._dispatch(unstored)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._dispatch, unstored)

    # --- event loop -----------------------------------------------------------------------

    def _dispatch(self, changes: list[AlertChange] | list[Unstored]) -> None:
        for subscription in list(self._subscribers):
            subscription.offer(changes)
            if subscription.overflowed:
                self._subscribers.discard(subscription)
                self.disconnected_slow += 1

    def subscribe(self) -> Subscription:
        self._loop = asyncio.get_running_loop()
        subscription = Subscription(self.queue_size)
        if self.closed:
            subscription.close()
        else:
            self._subscribers.add(subscription)
            with self._pending_lock:
                pending = [Unstored(c) for _, c in sorted(self._pending.items())]
            if pending:
                subscription.offer(pending)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def close(self) -> None:
        """End every stream (shutdown)."""
        self.closed = True
        for subscription in list(self._subscribers):
            subscription.close()
        self._subscribers.clear()

    @property
    def clients(self) -> int:
        return len(self._subscribers)


_encoder = msgspec.json.Encoder()


def format_event(change: AlertChange) -> bytes:
    data = _encoder.encode(change)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (change.seq, change.action.encode(), data)


def format_unstored(change: AlertChange) -> bytes:
    data = msgspec.to_builtins(change)
    data["seq"] = None
    data["unstored"] = True
    return b"event: %s\ndata: %s\n\n" % (change.action.encode(), _encoder.encode(data))


def format_reset(head: int, reason: ResetReason) -> bytes:
    data = _encoder.encode({"reason": reason, "head": head, "detail": RESET_DETAIL[reason]})
    return b"id: %d\nevent: reset\ndata: %s\n\n" % (head, data)


def resume_point(query: int | None, header: str | None) -> int | str | None:
    """Where a client resumes: ``?last_event_id=`` first, else the ``Last-Event-ID`` header
    (a change seq as an ``int``; any other text as is, answered with a ``reset``)."""
    if query is not None:
        return query
    if header is None or not header.strip():
        return None
    text = header.strip()
    return int(text) if text.isascii() and text.isdigit() else text


StreamEnd = Literal["closed", "key_revoked", "too_slow"]


async def event_stream(hub: ChangeHub, store: AlertStore, *,
                       last_event_id: int | str | None, follow: bool = True,
                       heartbeat_s: float = 15.0, retry_ms: int = 2000,
                       key_active: Callable[[], bool] | None = None, recheck_s: float = 2.0,
                       on_end: Callable[[StreamEnd], None] | None = None,
                       ) -> AsyncIterator[bytes]:
    """The bytes of one client's stream; see the module docstring. ``last_event_id``: a change
    seq, or text that is none (see :func:`resume_point`). ``key_active`` (a blocking call, run
    on a thread) is asked every ``recheck_s`` whether the stream's key still works; the stream
    ends when it does not. ``on_end`` hears why the stream ended, however it ends."""
    ended: StreamEnd = "closed"
    try:
        async with contextlib.aclosing(_event_stream(
                hub, store, last_event_id=last_event_id, follow=follow,
                heartbeat_s=heartbeat_s, retry_ms=retry_ms, key_active=key_active,
                recheck_s=recheck_s)) as chunks:
            async for chunk in chunks:
                if chunk is _KEY_REVOKED:
                    ended = "key_revoked"
                elif chunk is _TOO_SLOW:
                    ended = "too_slow"
                yield chunk
    finally:
        if on_end is not None:
            on_end(ended)


_LIVE: Final = b": live\n\n"
_KEY_REVOKED: Final = b": key revoked; this stream is closed\n\n"
_TOO_SLOW: Final = b": disconnected: too far behind; reconnect with Last-Event-ID\n\n"


class _Cursor:
    """Where one stream is in the store: ``sent``, the last change seq it was sent."""

    __slots__ = ("sent", "store")

    def __init__(self, store: AlertStore, sent: int) -> None:
        self.store = store
        self.sent = sent

    async def catch_up(self, until: int | None = None) -> AsyncIterator[bytes]:
        """The stored changes after ``sent`` (up to ``until``), read a page at a time."""
        while until is None or self.sent < until:
            page = await asyncio.to_thread(self.store.changes_since, self.sent, REPLAY_PAGE)
            for change in page:
                if until is not None and change.seq > until:
                    return
                self.sent = change.seq
                yield format_event(change)
            if len(page) < REPLAY_PAGE:
                return


async def _event_stream(hub: ChangeHub, store: AlertStore, *,
                        last_event_id: int | str | None, follow: bool, heartbeat_s: float,
                        retry_ms: int, key_active: Callable[[], bool] | None,
                        recheck_s: float) -> AsyncGenerator[bytes, None]:
    subscription = hub.subscribe() if follow else None
    try:
        yield b"retry: %d\n\n" % retry_ms
        head = await asyncio.to_thread(store.last_seq)
        reason: ResetReason | None = None
        if last_event_id is None:
            sent = head
        elif isinstance(last_event_id, str):
            sent, reason = head, "invalid_last_event_id"
        elif last_event_id > head:
            sent, reason = head, "ahead_of_store"
        elif await asyncio.to_thread(store.skipped_range, last_event_id) is not None:
            sent, reason = head, "store_restored"
        else:
            sent = last_event_id
        if reason is not None:
            log.info("api.stream_reset reason=%s head=%d", reason, head)
            yield format_reset(head, reason)
        cursor = _Cursor(store, sent)
        async for chunk in cursor.catch_up():
            yield chunk
        if subscription is None:
            return
        # Changes committed while the store was read are there now (committed before they are
        # published): read again until none passed unread, then go live in the same loop turn
        # as the last check, so none falls between.
        while subscription.passed > cursor.sent:
            async for chunk in cursor.catch_up():
                yield chunk
        subscription.replaying = False
        yield _LIVE
        async for chunk in _live(subscription, cursor, heartbeat_s=heartbeat_s,
                                 key_active=key_active, recheck_s=recheck_s):
            yield chunk
    finally:
        if subscription is not None:
            hub.unsubscribe(subscription)


async def _live(subscription: Subscription, cursor: _Cursor, *, heartbeat_s: float,
                key_active: Callable[[], bool] | None,
                recheck_s: float) -> AsyncGenerator[bytes, None]:
    """The live part of a stream: its subscription's changes, keep-alives and key checks."""
    shown: set[int] = set()
    """The unstored changes this stream has shown."""
    prune_above = REPLAY_PAGE
    """Size of :data:`shown` at which those stored and sent since are dropped from it: twice
    what was left the last time, so that thousands of calls shown before their commit cost a
    prune now and then, not one per event."""
    loop = asyncio.get_running_loop()
    next_check = loop.time() + recheck_s
    quiet_since = loop.time()
    while True:
        if subscription.closed:
            return
        if subscription.overflowed:
            yield _TOO_SLOW
            return
        now = loop.time()
        if key_active is not None and now >= next_check:
            if not await asyncio.to_thread(key_active):
                yield _KEY_REVOKED
                return
            next_check = loop.time() + recheck_s
            continue
        if not subscription.changes:
            if now - quiet_since >= heartbeat_s:
                quiet_since = now
                yield b": keep-alive\n\n"
                continue
            wait = quiet_since + heartbeat_s - now
            if key_active is not None:
                wait = min(wait, next_check - now)
            subscription.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await subscription.wake.wait()
            continue
        change = subscription.changes.popleft()
        if isinstance(change, Unstored):
            seq = change.change.seq
            # Not if stored and sent meanwhile, nor twice (a change shown as the stream
            # subscribed is both among the hub's pending ones and dispatched to it).
            if seq > cursor.sent and seq not in shown:
                if len(shown) > prune_above:
                    shown = {s for s in shown if s > cursor.sent}
                    prune_above = max(REPLAY_PAGE, 2 * len(shown))
                shown.add(seq)
                quiet_since = loop.time()
                yield format_unstored(change.change)
            continue
        if change.seq <= cursor.sent:
            continue
        if change.seq > cursor.sent + 1:
            async for chunk in cursor.catch_up(until=change.seq - 1):
                yield chunk
        cursor.sent = change.seq
        quiet_since = loop.time()
        yield format_event(change)
