"""Limits on what one request, one client and one key may cost (ASGI middleware and state).

* :class:`BodyLimit`: a request body over the limit is refused (413, JSON), before or while it
  is read. A ``Content-Length`` over the limit is refused before anything is read; a body
  without one (chunked) is counted as it arrives and refused once it passes the limit.
* :class:`PathGuard`: a path that cannot name anything (a control character such as NUL once
  decoded, broken percent-encoding, bytes that are not UTF-8, longer than
  :data:`MAX_PATH_BYTES`) is answered 400 before routing, so no file lookup or handler ever
  sees it (it used to answer 500). Such requests are counted and logged at most
  :data:`LOG_LINES_PER_MINUTE` times a minute.
* :class:`AuthThrottle`: failed authentications per client address in a sliding minute; once
  an address has used up its budget, every API request from it is refused (429 with
  ``Retry-After``) without its key being checked, until the oldest failure is a minute old;
  :class:`ProvenKeys` lets a key that worked within the last day through all the same.
* :class:`ApiMetrics`: the API's Prometheus counters.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import unquote_to_bytes

from prometheus_client import CollectorRegistry, Counter
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("homecare.api")

MAX_PATH_BYTES: Final = 2048
"""Longest request path accepted (as sent, percent-encoded)."""
LOG_LINES_PER_MINUTE: Final = 20
"""Lines about refused requests (bad paths, failed authentications) written per minute at
most, over all clients together; the rest are counted, and the next line says how many."""
AUTH_WINDOW_S: Final = 60.0
MAX_TRACKED_CLIENTS: Final = 4096
PROVEN_KEY_S: Final = 86_400.0
"""How long a key that authenticated stays welcome from a throttled address."""
MAX_PROVEN_KEYS: Final = 4096
"""Client addresses whose failures are remembered (the least recent are forgotten first)."""

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ApiMetrics:
    """The API's counters, on the gateway's registry (a private one when none is given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.auth_failures = Counter(
            "homecare_api_auth_failures",
            "API requests refused for their key, and acknowledge links refused, by reason: "
            "missing, malformed (not `Bearer <key>`), unknown, revoked, link_invalid (not "
            "ours, altered), link_expired, link_used (POST of a spent link), throttled (429: "
            "the client address has used up api_auth_failures_per_minute; a key was not "
            "checked, a link refused)", ["reason"], registry=r)
        self.bad_requests = Counter(
            "homecare_http_bad_requests",
            "Requests refused (400) before routing for a path that names nothing, by reason",
            ["reason"], registry=r)
        self.streams_refused = Counter(
            "homecare_api_streams_refused",
            "Event streams refused (429) because their key had api_streams_per_key open",
            registry=r)
        self.streams_ended = Counter(
            "homecare_api_streams_ended",
            "Event streams the gateway ended, by reason: key_revoked (its key was revoked "
            "while it was open), too_slow (the client fell too far behind)", ["reason"],
            registry=r)


class LogBudget:
    """At most ``per_minute`` lines a minute; what is left out is counted and reported with
    the next line written.

    >>> budget = LogBudget(per_minute=2, clock=lambda: 0.0)
    >>> [budget.allow() for _ in range(4)]
    [(True, 0), (True, 0), (False, 0), (False, 0)]
    >>> budget.clock = lambda: 61.0
    >>> budget.allow()
    (True, 2)
    """

    def __init__(self, *, per_minute: int = LOG_LINES_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._window_start = float("-inf")
        self._written = 0
        self._suppressed = 0

    def allow(self) -> tuple[bool, int]:
        """Whether a line may be written now, and how many were left out before it."""
        now = self.clock()
        if now - self._window_start >= 60.0:
            self._window_start, self._written = now, 0
        if self._written >= self.per_minute:
            self._suppressed += 1
            return False, 0
        self._written += 1
        suppressed, self._suppressed = self._suppressed, 0
        return True, suppressed


def client_address(scope: Scope) -> str:
    """Who sent the request, for per-client limits: its address, IPv6 by its /64 network
    (one host usually holds a whole /64).

    >>> client_address({"client": ("192.0.2.7", 5000)})
    '192.0.2.7'
    >>> client_address({"client": ("2001:db8:1:2:3:4:5:6", 5000)})
    '2001:db8:1:2::/64'
    >>> client_address({})
    'unknown'
    """
    client = scope.get("client")
    host = str(client[0]) if client else ""
    return client_group(host) if host else "unknown"


def client_group(host: str) -> str:
    """The address a per-client limit counts ``host`` under (IPv6: its /64)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def _json_answer(send: Send, status: int, error: str, detail: str,
                       headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body over {limit} bytes")


class BodyLimit:
    """``max_bytes`` per request body; ``larger``: a limit of its own for some paths (exact)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int,
                 larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.max_bytes)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _json_answer(send, 413, "too_large",
                                       f"request body over {limit} bytes",
                                       [(b"connection", b"close")])
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def path_problem(scope: Scope) -> str | None:
    """Why the request's path cannot name anything, or ``None``.

    >>> path_problem({"raw_path": b"/console/index.html%00.js", "path": "/console/index.html"})
    'control_character'
    >>> path_problem({"raw_path": b"/%ZZ", "path": "/%ZZ"})
    'bad_percent_encoding'
    >>> path_problem({"raw_path": b"/a%C3%28", "path": "/a"})
    'not_utf8'
    >>> path_problem({"raw_path": b"/console/app.js", "path": "/console/app.js"}) is None
    True
    """
    raw = scope.get("raw_path")
    path: str = scope.get("path", "")
    if not isinstance(raw, bytes | bytearray):
        raw = path.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_PATH_BYTES:
        return "too_long"
    if _BAD_ESCAPE.search(raw):
        return "bad_percent_encoding"
    try:
        decoded = unquote_to_bytes(bytes(raw)).decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    if _CONTROL.search(decoded) or _CONTROL.search(path):
        return "control_character"
    return None


_PATH_DETAIL: Final = {
    "too_long": f"the path is longer than {MAX_PATH_BYTES} bytes",
    "bad_percent_encoding": "the path has a % not followed by two hex digits",
    "not_utf8": "the path, percent-decoded, is not UTF-8",
    "control_character": "the path has a control character (such as %00)",
}


class PathGuard:
    """ASGI middleware: 400 for a path that names nothing (see :func:`path_problem`)."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log_budget = LogBudget()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = path_problem(scope) if scope["type"] in ("http", "websocket") else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        self.metrics.bad_requests.labels(problem).inc()
        allowed, suppressed = self.log_budget.allow()
        if allowed:
            path: str = scope.get("path", "")
            log.info("http.bad_request reason=%s client=%s path=%r suppressed=%d", problem,
                     client_address(scope), path[:200], suppressed)
        if scope["type"] == "http":
            await _json_answer(send, 400, "bad_request", _PATH_DETAIL[problem])


class ProvenKeys:
    """Digests of tokens that authenticated within the last :data:`PROVEN_KEY_S` (bounded,
    oldest forgotten first): such a token is still checked while its address is throttled
    (see :mod:`alerts.api._auth`). Only a digest is kept, never the token.

    >>> now = [0.0]
    >>> proven = ProvenKeys(clock=lambda: now[0])
    >>> proven.add("hc_k1_secret"); proven.known("hc_k1_secret"), proven.known("guess")
    (True, False)
    >>> now[0] = PROVEN_KEY_S + 1
    >>> proven.known("hc_k1_secret")
    False
    """

    def __init__(self, *, max_keys: int = MAX_PROVEN_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def add(self, token: str) -> None:
        self.add_digest(self._digest(token))

    def add_digest(self, digest: bytes, *, age_s: float = 0.0) -> None:
        """A token by its SHA-256 that authenticated ``age_s`` ago: how the ones from before a
        restart are learnt again (:meth:`alerts.keys.KeyStore.recent_uses`)."""
        seen = self.clock() - max(0.0, age_s)
        if self._seen.get(digest, float("-inf")) > seen:
            return
        self._seen.pop(digest, None)
        self._seen[digest] = seen
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)

    def known(self, token: str) -> bool:
        seen = self._seen.get(self._digest(token))
        return seen is not None and self.clock() - seen < PROVEN_KEY_S


class AuthThrottle:
    """Failed authentications per client address in a sliding minute (event loop only).

    An address that has failed ``failures_per_minute`` times within the last minute is locked
    until the oldest of those failures is a minute old: at most that many wrong keys are ever
    checked from one address in any minute. Memory is bounded: at most
    :data:`MAX_TRACKED_CLIENTS` addresses, each with at most ``failures_per_minute`` times.

    >>> now = [0.0]
    >>> throttle = AuthThrottle(failures_per_minute=2, clock=lambda: now[0])
    >>> throttle.failed("192.0.2.7"), throttle.failed("192.0.2.7")
    (1, 2)
    >>> throttle.retry_after_s("192.0.2.7"), throttle.retry_after_s("192.0.2.8")
    (60, None)
    >>> now[0] = 60.0
    >>> throttle.retry_after_s("192.0.2.7") is None
    True
    """

    def __init__(self, *, failures_per_minute: int, max_clients: int = MAX_TRACKED_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures_per_minute < 1:
            raise ValueError("failures_per_minute must be positive")
        self.failures_per_minute = failures_per_minute
        self.max_clients = max_clients
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after_s(self, client: str) -> int | None:
        """Seconds until ``client`` may try a key again, or ``None`` when it may now."""
        times = self._failures.get(client)
        if times is None or len(times) < self.failures_per_minute:
            return None
        wait = times[0] + AUTH_WINDOW_S - self.clock()
        if wait <= 0:
            return None
        return max(1, int(wait + 0.999))

    def failed(self, client: str) -> int:
        """Record one failure of ``client``; its failures within the last minute."""
        now = self.clock()
        times = self._failures.pop(client, None)
        if times is None:
            times = deque(maxlen=self.failures_per_minute)
        while times and now - times[0] >= AUTH_WINDOW_S:
            times.popleft()
        times.append(now)
        self._failures[client] = times  # most recent last
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
        while self._failures:  # forget addresses quiet for a minute (oldest first)
            oldest = next(iter(self._failures.values()))
            if now - oldest[-1] < AUTH_WINDOW_S:
                break
            self._failures.popitem(last=False)
        return len(times)

    @property
    def clients(self) -> int:
        return len(self._failures)
