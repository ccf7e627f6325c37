"""HTTP connections bounded in number and in how long they may dawdle.

uvicorn (0.54) has ``limit_concurrency`` (a 503 once a request head has arrived, while the
connection itself stays open) and ``timeout_keep_alive`` (idle between requests), but no limit
on how long a request head or body may take, nor on how many connections sit open: 1,100
connections that each sent half a request head held every file descriptor of a process with
the common 1,024 limit, and ``/healthz``, the API and the console went dark. Here:

* :class:`ConnectionGuard` counts open connections, in total and per client address, and
  keeps those *waiting* for a request head (fresh, idle between requests, or half-sent) in
  age order. A new connection past a cap closes the oldest waiting one (of its own address
  first, for the per-client cap); if every connection is busy, the new one is closed at once.
  A connection being answered (an event stream included) is not cut for room, only by the
  write timeout below.
* :func:`guarded_protocol` is uvicorn's h11 protocol with that guard and three deadlines: the
  request head must be complete within ``header_timeout_s`` of the connection opening (or of
  its previous answer), its body within ``body_timeout_s`` of the head, and an answer whose
  client reads nothing (the send buffer full, :data:`SEND_BUFFER_BYTES` in the kernel) may
  stall for ``write_timeout_s`` at most: a slow-read client cannot hold a connection.
* :func:`connection_cap` keeps the cap below the process's open-files limit, and
  :func:`raise_open_files_limit` raises that limit to its hard limit first.

The asyncio accept loop takes up to ``backlog`` connections per turn before any is seen here,
so the listening backlog is small (:data:`BACKLOG`) and counted in the headroom.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

from uvicorn.protocols.http.h11_impl import H11Protocol

from alerts.api import client_group

if TYPE_CHECKING:
    from gateway.config import Settings

log = logging.getLogger("homecare.http")

BACKLOG: Final = 128
SEND_BUFFER_BYTES: Final = 256 * 1024
"""Kernel send buffer per HTTP connection (instead of autotuned up to 4 MiB)."""
"""Listening backlog: connections accepted in one turn of the event loop at most."""
FD_HEADROOM: Final = 256
"""Descriptors kept for everything but HTTP connections (stores, spool, broker, threads)."""
OPEN_FILES_WANTED: Final = 65_536
"""The soft open-files limit is raised to this (or the hard limit, if lower)."""
MIN_CONNECTIONS: Final = 16


class Evictable(Protocol):
    def evict(self) -> None:
        """Close this connection now (it was waiting for a request head)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    """The HTTP server's limits (see ``http_*`` in :class:`~gateway.config.Settings`)."""

    header_timeout_s: float
    body_timeout_s: float
    write_timeout_s: float
    max_connections: int
    max_connections_per_client: int
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks whose ``X-Forwarded-For`` is believed (none by default)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(header_timeout_s=settings.http_header_timeout_s,
                   body_timeout_s=settings.http_body_timeout_s,
                   write_timeout_s=settings.http_write_timeout_s,
                   max_connections=settings.http_max_connections,
                   max_connections_per_client=settings.http_max_connections_per_client,
                   trusted_proxies=tuple(part.strip() for part in
                                         settings.http_trusted_proxies.split(",")
                                         if part.strip()))


class ConnectionGuard:
    """Open connections counted in total and per client; the waiting ones in age order.

    Pure bookkeeping on the event loop: it never closes a connection itself, it tells the one
    to evict (:meth:`Evictable.evict`).

    >>> class Conn:
    ...     def __init__(self, name): self.name = name
    ...     def evict(self): print("evicted", self.name)
    >>> guard = ConnectionGuard(max_connections=2, max_per_client=2)
    >>> a, b, c = Conn("a"), Conn("b"), Conn("c")
    >>> guard.admit(a, "192.0.2.1"), guard.admit(b, "192.0.2.2")
    (True, True)
    >>> guard.busy(b)
    >>> guard.admit(c, "192.0.2.3")
    evicted a
    True
    >>> guard.busy(c)
    >>> guard.admit(Conn("d"), "192.0.2.4")
    False
    """

    def __init__(self, *, max_connections: int, max_per_client: int,
                 closed: Callable[[str], None] | None = None) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.closed = closed
        self._client: dict[Evictable, str] = {}
        self._per_client: dict[str, int] = {}
        self._waiting: dict[Evictable, None] = {}
        self._waiting_by_client: dict[str, dict[Evictable, None]] = {}

    @property
    def open(self) -> int:
        return len(self._client)

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    def admit(self, conn: Evictable, client: str) -> bool:
        """Count a new connection, evicting the oldest waiting one to stay under the caps
        (waiting from now on); ``False`` when nothing can make room (close it)."""
        if self._per_client.get(client, 0) >= self.max_per_client:
            mine = self._waiting_by_client.get(client)
            if not mine:
                self._count("refused")
                return False
            self._evict(next(iter(mine)))
        if len(self._client) >= self.max_connections:
            if not self._waiting:
                self._count("refused")
                return False
            self._evict(next(iter(self._waiting)))
        self._client[conn] = client
        self._per_client[client] = self._per_client.get(client, 0) + 1
        self.waiting(conn)
        return True

    def waiting(self, conn: Evictable) -> None:
        """``conn`` waits for a request head: it may be evicted, the oldest first."""
        client = self._client.get(conn)
        if client is None:
            return
        self._unwait(conn, client)
        self._waiting[conn] = None
        self._waiting_by_client.setdefault(client, {})[conn] = None

    def busy(self, conn: Evictable) -> None:
        """``conn`` is being answered: never evicted."""
        client = self._client.get(conn)
        if client is not None:
            self._unwait(conn, client)

    def forget(self, conn: Evictable) -> None:
        """``conn`` is closed (idempotent)."""
        client = self._client.pop(conn, None)
        if client is None:
            return
        self._unwait(conn, client)
        left = self._per_client[client] - 1
        if left:
            self._per_client[client] = left
        else:
            del self._per_client[client]

    def _unwait(self, conn: Evictable, client: str) -> None:
        if conn in self._waiting:
            del self._waiting[conn]
            mine = self._waiting_by_client[client]
            del mine[conn]
            if not mine:
                del self._waiting_by_client[client]

    def _evict(self, victim: Evictable) -> None:
        self.forget(victim)
        self._count("evicted")
        victim.evict()

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
    incomplete).
    """

    guarded: ClassVar[_Guarded]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_reason = ""
        self._request: object | None = None
        self._stalled: asyncio.TimerHandle | None = None

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

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

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
            if cycle.more_body:
                self._arm(self.guarded.limits.body_timeout_s, "body_timeout")
            else:
                self._disarm()
        elif not cycle.more_body and self._deadline_reason == "body_timeout":
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request (handle_events)
        cycle = self.cycle
        if self.transport.is_closing() or (cycle is not None and not cycle.response_complete):
            return
        self.guarded.guard.waiting(self)
        self._arm(self.guarded.limits.header_timeout_s, "header_timeout")

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
