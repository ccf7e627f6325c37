"""HTTP connections bounded in number and in how long they may dawdle.

uvicorn (0.54) has ``limit_concurrency`` (a 503 once a request head has arrived, while the
connection itself stays open) and ``timeout_keep_alive`` (idle between requests), but no limit
on how long a request head or body may take, nor on how many connections sit open: 1,100
connections that each sent half a request head held every file descriptor of a process with
the common 1,024 limit, and ``/healthz``, the API and the console went dark. Here:

* :class:`ConnectionGuard` counts open connections, in total and per client address, and
  keeps those *waiting* for a request head (fresh, idle between requests, or half-sent) and
  those *stalled* on their client mid-request (its request body still incomplete, or its
  answer not taken: the send buffer full) in age order. A new connection past the cap closes
  one of them, taken from the address holding the most connections: its oldest waiting one,
  else its longest-stalled one if stalled for ``evict_stalled_after_s`` at least (past the
  per-client cap, the same from its own address). If none qualifies, the new one is closed at
  once. A connection making progress (an answer being read, an event stream its client
  keeps up with) is never cut for room. Without the stalled ones, connections that ask for a
  large public answer and read it slowly or never held every place: busy, never evicted,
  and the write timeout only set the pace at which an attacker reopened them.
* :func:`guarded_protocol` is uvicorn's h11 protocol with that guard and three deadlines: the
  request head must be complete within ``header_timeout_s`` of the connection opening (or of
  its previous answer), its body within ``body_timeout_s`` of the head, and an answer whose
  client reads nothing (the send buffer full, :data:`SEND_BUFFER_BYTES` in the kernel) may
  stall for ``write_timeout_s`` at most: a slow-read client cannot hold a connection. It
  parses with :class:`~gateway.http._parser.RequestParser` (a body framed two ways is
  malformed, an absolute-form target is read as its path), and a malformed request is
  answered 400 (unless its answer has begun) and closed, counted as ``malformed_request``,
  never answered a second time by the app.
* :func:`connection_cap` keeps the cap below the process's open-files limit, and
  :func:`raise_open_files_limit` raises that limit to its hard limit first.

The asyncio accept loop takes up to ``backlog`` connections per turn before any is seen here,
so the listening backlog is small (:data:`BACKLOG`) and counted in the headroom.

This module is over 400 lines: the guard, the protocol that applies it and the limits that
size it are one mechanism, read together (split, each part would have to explain the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from alerts.api import client_group
from gateway.http._parser import RequestParser

if TYPE_CHECKING:
    from gateway.config import Settings

log = logging.getLogger("homecare.http")

BACKLOG: Final = 128
"""Listening backlog: connections accepted in one turn of the event loop at most."""
SEND_BUFFER_BYTES: Final = 256 * 1024
"""Kernel send buffer per HTTP connection (instead of autotuned up to 4 MiB)."""
FD_HEADROOM: Final = 256
"""Descriptors kept for everything but HTTP connections (stores, spool, broker, threads)."""
OPEN_FILES_WANTED: Final = 65_536
"""The soft open-files limit is raised to this (or the hard limit, if lower)."""
MIN_CONNECTIONS: Final = 16


class Evictable(Protocol):
    def evict(self) -> None:
        """Close this connection now (it was waiting for a request head, or stalled)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    """The HTTP server's limits (see ``http_*`` in :class:`~gateway.config.Settings`)."""

    header_timeout_s: float
    body_timeout_s: float
    write_timeout_s: float
    max_connections: int
    max_connections_per_client: int
    evict_stalled_after_s: float = 2.0
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks whose ``X-Forwarded-For`` is believed (none by default)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(header_timeout_s=settings.http_header_timeout_s,
                   body_timeout_s=settings.http_body_timeout_s,
                   write_timeout_s=settings.http_write_timeout_s,
                   max_connections=settings.http_max_connections,
                   max_connections_per_client=settings.http_max_connections_per_client,
                   evict_stalled_after_s=settings.http_evict_stalled_after_s,
                   trusted_proxies=tuple(part.strip() for part in
                                         settings.http_trusted_proxies.split(",")
                                         if part.strip()))


class ConnectionGuard:
    """Open connections counted in total and per client; the evictable ones in age order.

    Evictable: *waiting* for a request head, or *stalled* on the client mid-request for
    ``stalled_after_s`` at least. Pure bookkeeping on the event loop: it never closes a
    connection itself, it tells the one to evict (:meth:`Evictable.evict`).

    >>> class Conn:
    ...     def __init__(self, name): self.name = name
    ...     def evict(self): print("evicted", self.name)
    >>> now = [0.0]
    >>> guard = ConnectionGuard(max_connections=2, max_per_client=2, stalled_after_s=2,
    ...                         clock=lambda: now[0])
    >>> a, b, c = Conn("a"), Conn("b"), Conn("c")
    >>> guard.admit(a, "192.0.2.1"), guard.admit(b, "192.0.2.2")
    (True, True)
    >>> guard.busy(b)
    >>> guard.admit(c, "192.0.2.3")
    evicted a
    True
    >>> guard.busy(c)
    >>> guard.stalled(c)  # its client reads nothing of the answer
    >>> guard.admit(Conn("d"), "192.0.2.4")  # c not stalled long enough yet
    False
    >>> now[0] = 2.0
    >>> guard.admit(Conn("e"), "192.0.2.5")
    evicted c
    True
    """

    def __init__(self, *, max_connections: int, max_per_client: int,
                 stalled_after_s: float = 2.0, closed: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.stalled_after_s = stalled_after_s
        self.closed = closed
        self._clock = clock
        self._seq = 0
        self._client: dict[Evictable, str] = {}
        self._per_client: dict[str, int] = {}
        self._waiting: dict[Evictable, str] = {}
        self._waiting_by_client: dict[str, dict[Evictable, int]] = {}
        """Per address, its waiting connections, oldest first (value: order of waiting)."""
        self._stalled: dict[Evictable, str] = {}
        self._stalled_by_client: dict[str, dict[Evictable, tuple[float, int]]] = {}
        """Per address, its stalled connections, longest stalled first (since, order)."""

    @property
    def open(self) -> int:
        return len(self._client)

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    @property
    def stalled_count(self) -> int:
        return len(self._stalled)

    def admit(self, conn: Evictable, client: str) -> bool:
        """Count a new connection, evicting a waiting or long-stalled one to stay under the
        caps (waiting from now on); ``False`` when nothing can make room (close it)."""
        if (self._per_client.get(client, 0) >= self.max_per_client
                and not self._evict_one((client,))):
            self._count("refused")
            return False
        if (len(self._client) >= self.max_connections
                and not self._evict_one(self._waiting_by_client.keys()
                                        | self._stalled_by_client.keys())):
            self._count("refused")
            return False
        self._client[conn] = client
        self._per_client[client] = self._per_client.get(client, 0) + 1
        self.waiting(conn)
        return True

    def waiting(self, conn: Evictable) -> None:
        """``conn`` waits for a request head: it may be evicted, the oldest first."""
        client = self._client.get(conn)
        if client is None:
            return
        self._unwait(conn)
        self._unstall(conn)
        self._seq += 1
        self._waiting[conn] = client
        self._waiting_by_client.setdefault(client, {})[conn] = self._seq

    def busy(self, conn: Evictable) -> None:
        """``conn`` is being answered and making progress: not evicted."""
        if conn in self._client:
            self._unwait(conn)
            self._unstall(conn)

    def stalled(self, conn: Evictable) -> None:
        """``conn``, being answered, waits on its client (the rest of its request body, or
        room in the send buffer): evictable once so for ``stalled_after_s``."""
        client = self._client.get(conn)
        if client is None or conn in self._waiting or conn in self._stalled:
            return
        self._seq += 1
        self._stalled[conn] = client
        self._stalled_by_client.setdefault(client, {})[conn] = (self._clock(), self._seq)

    def progressing(self, conn: Evictable) -> None:
        """``conn``'s client caught up: busy again."""
        self._unstall(conn)

    def forget(self, conn: Evictable) -> None:
        """``conn`` is closed (idempotent)."""
        client = self._client.pop(conn, None)
        if client is None:
            return
        self._unwait(conn)
        self._unstall(conn)
        left = self._per_client[client] - 1
        if left:
            self._per_client[client] = left
        else:
            del self._per_client[client]

    def _unwait(self, conn: Evictable) -> None:
        client = self._waiting.pop(conn, None)
        if client is not None:
            mine = self._waiting_by_client[client]
            del mine[conn]
            if not mine:
                del self._waiting_by_client[client]

    def _unstall(self, conn: Evictable) -> None:
        client = self._stalled.pop(conn, None)
        if client is not None:
            mine = self._stalled_by_client[client]
            del mine[conn]
            if not mine:
                del self._stalled_by_client[client]

    def _evict_one(self, clients: Iterable[str]) -> bool:
        """Evict, among ``clients``, from the address holding the most connections: its oldest
        waiting connection, else its longest-stalled one if stalled long enough (ties: the
        oldest). ``False`` if none qualifies. Linear in the addresses with a candidate."""
        cutoff = self._clock() - self.stalled_after_s
        victim: Evictable | None = None
        best: tuple[int, bool, int] | None = None
        for client in clients:
            waiting = self._waiting_by_client.get(client)
            if waiting:
                conn, seq = next(iter(waiting.items()))
                key = (self._per_client[client], True, -seq)
            else:
                stalled = self._stalled_by_client.get(client)
                if not stalled:
                    continue
                conn, (since, seq) = next(iter(stalled.items()))
                if since > cutoff:
                    continue
                key = (self._per_client[client], False, -seq)
            if best is None or key > best:
                victim, best = conn, key
        if victim is None or best is None:
            return False
        self.forget(victim)
        self._count("evicted" if best[1] else "evicted_stalled")
        victim.evict()
        return True

    def _count(self, reason: str) -> None:
        if self.closed is not None:
            self.closed(reason)


@dataclass(frozen=True, slots=True)
class _Guarded:
    guard: ConnectionGuard
    limits: HttpLimits
    closed: Callable[[str], None]


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol under a :class:`ConnectionGuard`, with head and body deadlines.

    States: *waiting* (from the connection's start, and again after each answer, until a
    request head is complete: the head deadline runs, the guard may evict it), *busy* (from a
    complete head until its answer is complete: the body deadline runs while the body is
    incomplete), within it *stalled* while the body is incomplete or the send buffer is full
    (the guard may evict it once so for ``evict_stalled_after_s``).
    """

    guarded: ClassVar[_Guarded]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = RequestParser(self.config.h11_max_incomplete_event_size)
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_reason = ""
        self._request: object | None = None
        self._stalled: asyncio.TimerHandle | None = None
        self._paused = False
        self._body_pending = False
        self._stall_told = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A bounded kernel send buffer: what a client that never reads can pin in memory
            # (autotuned, up to 4 MiB each), and what the write timeout sees as stalled.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        super().connection_made(transport)  # type: ignore[arg-type]
        peer = client_group(str(self.client[0])) if self.client else "unknown"
        if not self.guarded.guard.admit(self, peer):
            self.transport.abort()
            return
        self._arm(self.guarded.limits.header_timeout_s, "header_timeout")

    def pause_writing(self) -> None:
        """The send buffer is full (the client reads nothing): cut the connection if it stays
        so for ``write_timeout_s`` (a slow-read client cannot hold a busy connection)."""
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.guarded.limits.write_timeout_s,
                                                 self._expire, "write_timeout")
        self._paused = True
        self._tell_stall()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        self._paused = False
        self._tell_stall()

    def _tell_stall(self) -> None:
        """Tell the guard whether this connection waits on its client mid-request."""
        stalled = self._paused or self._body_pending
        if stalled and not self._stall_told:
            self._stall_told = True
            self.guarded.guard.stalled(self)
        elif not stalled and self._stall_told:
            self._stall_told = False
            self.guarded.guard.progressing(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        self._disarm()
        self.guarded.guard.forget(self)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is None or self.transport.is_closing():
            return
        if cycle is not self._request:  # a request head is complete
            self._request = cycle
            self.guarded.guard.busy(self)
            self._stall_told = False
            self._body_pending = cycle.more_body
            if cycle.more_body:
                self._arm(self.guarded.limits.body_timeout_s, "body_timeout")
            else:
                self._disarm()
            self._tell_stall()
        elif not cycle.more_body and self._deadline_reason == "body_timeout":
            self._disarm()
            self._body_pending = False
            self._tell_stall()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request (handle_events)
        cycle = self.cycle
        if self.transport.is_closing() or (cycle is not None and not cycle.response_complete):
            return
        self.guarded.guard.waiting(self)
        self._stall_told = False
        self._body_pending = False
        self._arm(self.guarded.limits.header_timeout_s, "header_timeout")

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (its head, or its body once the app has it): answered
        400 and closed, unless its answer has begun or been sent, then only closed. The app
        still working on it is told its client is gone (its answer is dropped, its reads end):
        uvicorn alone let it answer after the 400, and h11 refused that with an exception
        logged at ERROR, twice with tracebacks (found by a tester, issue 17)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.guarded.closed("malformed_request")
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            super().send_400_response(msg)
        else:
            self.transport.close()

    def evict(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.abort()

    def _arm(self, delay_s: float, reason: str) -> None:
        self._disarm()
        self._deadline_reason = reason
        self._deadline = self.loop.call_later(delay_s, self._expire, reason)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._deadline_reason = ""

    def _expire(self, reason: str) -> None:
        self._deadline = None
        self._deadline_reason = ""
        if self.transport.is_closing():
            return
        self.guarded.closed(reason)
        self.guarded.guard.forget(self)
        self.transport.abort()


def guarded_protocol(limits: HttpLimits, guard: ConnectionGuard,
                     closed: Callable[[str], None]) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn (``Config(http=...)``): h11 under ``guard``."""
    return type("GuardedH11Protocol", (_GuardedH11Protocol,),
                {"guarded": _Guarded(guard, limits, closed)})


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> tuple[int, int]:
    """Raise the soft open-files limit toward ``wanted`` (never past the hard limit);
    ``(before, after)``. Many hosts start processes at 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("http.open_files_limit_unchanged soft=%d hard=%d error=%s", soft, hard,
                        exc)
            return soft, soft
        return soft, target
    return soft, soft


def connection_cap(wanted: int) -> int:
    """``wanted`` connections, or fewer if the open-files limit leaves less room.

    >>> connection_cap(10) <= 10
    True
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, max(MIN_CONNECTIONS, soft - FD_HEADROOM - BACKLOG))
