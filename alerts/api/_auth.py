"""Authentication (every ``/api`` request) and authorisation (a role per route).

:class:`ApiAuth` is ASGI middleware in front of everything under ``/api``: it answers 401 to
a request without a valid ``Authorization: Bearer <key>`` before any routing or body parsing,
so no route (or unknown path) under ``/api`` says anything without a key. It puts the key on
``request.state.api_key`` and records every write (POST/PUT/PATCH/DELETE) in the key store's
audit table with the key's name and the answer's status.

:func:`require` is the per-route dependency that checks the role (403) and declares the bearer
scheme in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts.api._errors import ApiError
from alerts.keys import ApiKey, KeyStore, Role

log = logging.getLogger("homecare.api")

PREFIX: Final = "/api"
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_HEADER_TOKEN: Final = 512

bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="An API key: `Authorization: Bearer <key>`. Roles: viewer "
                                "(read), dispatcher (also acknowledge/resolve, check in/out), "
                                "admin (also manage keys).")


def _token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text: str = bytes(value).decode("latin-1")
            scheme, _, token = text.partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token and len(token) <= MAX_HEADER_TOKEN:
                return token
            return None
    return None


class ApiAuth:
    """ASGI middleware: 401 for ``/api`` without a valid key; audit of every write."""

    def __init__(self, app: ASGIApp, *, keys: KeyStore) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        token = _token(scope)
        key = await asyncio.to_thread(self.keys.authenticate, token) if token else None
        if key is None:
            await _unauthorized(send, "missing API key: send Authorization: Bearer <key>"
                                if token is None else "invalid or revoked API key")
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
