"""Authentication (every ``/api`` request) and authorisation (a role per route).

:class:`ApiAuth` is ASGI middleware in front of everything under ``/api``: it answers 401 to
a request without a valid ``Authorization: Bearer <key>`` before any routing or body parsing,
so no route (or unknown path) under ``/api`` says anything without a key. It puts the key on
``request.state.api_key`` and records every write (POST/PUT/PATCH/DELETE) in the key store's
audit table with the key's name and the answer's status.

Every refusal is counted (``homecare_api_auth_failures_total{reason}``). Wrong keys are
limited per client address (:class:`~alerts.api._limits.AuthThrottle`, through
:class:`FailedAuth`, which the acknowledge links share: a made-up, expired or spent link is a
failed authentication too): once an address has failed ``api_auth_failures_per_minute`` times
within a minute, each of its API requests is answered 429 with ``Retry-After``, its key
unchecked, until the oldest failure is a minute old; except a key that has worked (from
anywhere) within the last day (:class:`~alerts.api._limits.ProvenKeys`, learnt again after a
restart from the key store's ``key_uses``): it is checked as usual and, if still valid, served.
Several dispatchers behind one address (a station's NAT) are so not locked out by one
misconfigured client, while the guesses from that address still get 429 unchecked. Failures
are logged, never the key: an address's first failure in a minute and its lockout, at most 20
lines a minute in all (the rest counted). The client address is the peer's unless
``http_trusted_proxies`` names the peer (then its ``X-Forwarded-For``).

:func:`require` is the per-route dependency that checks the role (403) and declares the bearer
scheme in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts.api._errors import ApiError
from alerts.api._limits import (
    PROVEN_KEY_S,
    ApiMetrics,
    AuthThrottle,
    LogBudget,
    ProvenKeys,
    client_address,
)
from alerts.keys import MAX_TOKEN_LENGTH, ApiKey, KeyStore, Role

log = logging.getLogger("homecare.api")

PREFIX: Final = "/api"
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
COUNTED_REASONS: Final = frozenset({"unknown", "revoked", "link_invalid", "link_expired",
                                    "link_used"})
"""Failures that spend an address's budget: a key or an acknowledge link was tried (one that
is not ours or altered, expired, or already used). A request without a key, or with a header
that is not ``Bearer <key>``, guesses nothing (it is counted, not limited)."""

bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="An API key: `Authorization: Bearer <key>`. Roles: viewer "
                                "(read), dispatcher (also acknowledge/resolve, check in/out), "
                                "admin (also manage keys).")


def _token(scope: Scope) -> tuple[str | None, str]:
    """The bearer token, or ``None`` and why not (``missing``, ``malformed``)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text: str = bytes(value).decode("latin-1")
            scheme, _, token = text.partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token and len(token) <= MAX_TOKEN_LENGTH:
                return token, ""
            return None, "malformed"
    return None, "missing"


class FailedAuth:
    """Failed authentications wherever a secret is tried (API keys, acknowledge links): one
    budget per client address (``throttle``), counted by reason, logged without the secret."""

    def __init__(self, *, throttle: AuthThrottle, metrics: ApiMetrics) -> None:
        self.throttle = throttle
        self.metrics = metrics
        self.log_budget = LogBudget()

    def retry_after_s(self, client: str) -> int | None:
        """Seconds until ``client`` may try a secret again, or ``None`` when it may now."""
        return self.throttle.retry_after_s(client)

    def refused(self) -> None:
        """Count one request answered 429 (its secret unchecked)."""
        self.metrics.auth_failures.labels("throttled").inc()

    def failed(self, client: str, reason: str, path: str) -> None:
        """Count one failure of ``client``; ``path`` is logged, so it must not hold the secret."""
        self.metrics.auth_failures.labels(reason).inc()
        if reason not in COUNTED_REASONS:
            return
        failures = self.throttle.failed(client)
        locked = failures >= self.throttle.failures_per_minute
        if failures != 1 and not locked:
            return
        allowed, suppressed = self.log_budget.allow()
        if not allowed:
            return
        if locked:
            log.warning("api.auth_throttled client=%s failures=%d window_s=60 retry_after_s=%d "
                        "suppressed=%d; its API requests answer 429 meanwhile", client,
                        failures, self.throttle.retry_after_s(client) or 0, suppressed)
        else:
            log.info("api.auth_failed client=%s reason=%s path=%r suppressed=%d; further "
                     "failures from it are counted (homecare_api_auth_failures_total)",
                     client, reason, path[:200], suppressed)


class ApiAuth:
    """ASGI middleware: 401 for ``/api`` without a valid key, 429 for an address that tried
    too many wrong ones; audit of every write."""

    def __init__(self, app: ASGIApp, *, keys: KeyStore, failures: FailedAuth) -> None:
        self.app = app
        self.keys = keys
        self.failures = failures
        self.proven = ProvenKeys()
        self._learn_proven()

    def _learn_proven(self) -> None:
        """The keys that worked within the last day before a restart, from the key store
        (oldest first, so that the bound forgets the oldest)."""
        now_ms = time.time_ns() // 1_000_000
        try:
            uses = self.keys.recent_uses(since_ms=now_ms - int(PROVEN_KEY_S * 1000))
        except sqlite3.Error:
            log.exception("api.key_uses_unreadable; keys used before the restart wait out a "
                          "lockout of their address")
            return
        for digest, at in sorted(uses, key=lambda use: use[1]):
            self.proven.add_digest(digest, age_s=(now_ms - at) / 1000)

    def _verify(self, token: str) -> tuple[ApiKey | None, str]:
        """The key behind ``token`` (blocking); a key that works is remembered in the store."""
        key, reason = self.keys.verify(token)
        if key is not None:
            try:
                self.keys.note_use(token)
            except sqlite3.Error:
                log.exception("api.key_use_not_written key=%s", key.name)
        return key, reason

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        client = client_address(scope)
        token, reason = _token(scope)
        retry_after = self.failures.retry_after_s(client)
        if retry_after is not None and (token is None or not self.proven.known(token)):
            self.failures.refused()
            await _too_many(send, retry_after)
            return
        key = None
        if token is not None:
            key, reason = await asyncio.to_thread(self._verify, token)
            if key is not None:
                self.proven.add(token)
        if key is None:
            self.failures.failed(client, reason, path)
            await _unauthorized(send, "missing API key: send Authorization: Bearer <key>"
                                if reason == "missing" else "invalid or revoked API key")
            return
        scope.setdefault("state", {})["api_key"] = key
        method: str = scope.get("method", "GET")
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    # Alert and bed data must not linger in shared or browser caches.
                    message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
            await send(message)

        if method not in WRITE_METHODS:
            await self.app(scope, receive, send_status)
            return

        try:
            await self.app(scope, receive, send_status)
        finally:
            try:
                await asyncio.to_thread(self.keys.audit, actor=key.name, action=method,
                                        target=path, status=status)
            except Exception:
                log.exception("api.audit_failed actor=%s path=%s", key.name, path)


async def _too_many(send: Send, retry_after: int) -> None:
    body = json.dumps({"error": "too_many_requests",
                       "detail": f"too many failed authentications from this address; retry "
                                 f"after {retry_after} s"}).encode()
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


async def _unauthorized(send: Send, detail: str) -> None:
    body = json.dumps({"error": "unauthorized", "detail": detail}).encode()
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b'Bearer realm="homecare"')]})
    await send({"type": "http.response.body", "body": body})


def require(role: Role) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: the request's key, which must have ``role`` or a higher one."""

    async def check(request: Request, _credentials: Annotated[
            HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ApiKey:
        key = getattr(request.state, "api_key", None)
        if not isinstance(key, ApiKey):  # the middleware is missing: refuse, never allow
            raise ApiError(401, "missing API key", headers={"WWW-Authenticate": "Bearer"})
        if not key.role.allows(role):
            raise ApiError(403, f"the key {key.name!r} has role {key.role.value}; "
                                f"this needs {role.value}")
        return key

    check.__name__ = f"require_{role.value}"
    return check


_KNOWN_QUERY: dict[int, frozenset[str]] = {}


async def known_query_only(request: Request) -> None:
    """Refuse query parameters the route does not declare (422): a misspelt filter
    (``?staus=open``) must not silently widen an answer."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _KNOWN_QUERY.get(id(route))
    if known is None:
        names: set[str] = set()
        pending = [dependant]
        while pending:
            node = pending.pop()
            names.update(p.alias or p.name for p in node.query_params)
            pending.extend(node.dependencies)
        known = _KNOWN_QUERY[id(route)] = frozenset(names)
    unknown = [name for name in request.query_params if name not in known]
    if unknown:
        raise ApiError(422, [{"loc": ["query", name[:64]], "msg": "unknown query parameter",
                              "type": "extra_forbidden"} for name in unknown[:20]])


# Module-level, so that routes can name them in (stringified) annotations.
Viewer = Annotated[ApiKey, Depends(require(Role.VIEWER))]
Dispatcher = Annotated[ApiKey, Depends(require(Role.DISPATCHER))]
Admin = Annotated[ApiKey, Depends(require(Role.ADMIN))]
