"""``/api/v1/keys`` and ``/api/v1/audit``: key management and the audit trail (admin)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from alerts.api._auth import Admin, require
from alerts.api._context import ApiContext
from alerts.api._errors import ApiError, error_responses
from alerts.api._models import (
    AuditEntryOut,
    AuditList,
    KeyCreateBody,
    KeyCreated,
    KeyList,
    KeyOut,
)
from alerts.errors import InvalidKeyName, KeyExists, KeyNotFound
from alerts.keys import NAME_PATTERN, ApiKey, Role


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(name=key.name, role=key.role, created_at=key.created_at,
                  created_by=key.created_by, revoked_at=key.revoked_at,
                  revoked_by=key.revoked_by)


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["keys"])
    admin = Depends(require(Role.ADMIN))
    keys = ctx.keys

    @api.get("/keys", response_model=KeyList, dependencies=[admin],
             responses=error_responses(403), summary="API keys (never their tokens)")
    async def list_keys(
        include_revoked: Annotated[bool, Query()] = False,
    ) -> KeyList:
        found = await asyncio.to_thread(keys.list_keys, include_revoked=include_revoked)
        return KeyList(items=[key_out(k) for k in found])

    @api.post("/keys", response_model=KeyCreated, status_code=201,
              responses=error_responses(400, 403, 409, 413), summary="Create a key")
    async def create_key(body: KeyCreateBody, key: Admin) -> KeyCreated:
        """The token is in this answer only; store it now."""
        try:
            created, token = await asyncio.to_thread(keys.create, body.name, body.role,
                                                     actor=key.name, now_ms=ctx.clock())
        except KeyExists as exc:
            raise ApiError(409, str(exc)) from exc
        except InvalidKeyName as exc:
            raise ApiError(400, str(exc)) from exc
        return KeyCreated(**key_out(created).model_dump(), token=token)

    @api.delete("/keys/{name}", response_model=KeyOut, responses=error_responses(403, 404),
                summary="Revoke a key (at once)")
    async def revoke_key(name: Annotated[str, Path(pattern=NAME_PATTERN)],
                         key: Admin) -> KeyOut:
        try:
            revoked = await asyncio.to_thread(keys.revoke, name, actor=key.name,
                                              now_ms=ctx.clock())
        except KeyNotFound as exc:
            raise ApiError(404, str(exc)) from exc
        return key_out(revoked)

    @api.get("/audit", response_model=AuditList, dependencies=[admin],
             responses=error_responses(403), tags=["audit"],
             summary="Writes made through the API, newest first")
    async def audit(
        actor: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> AuditList:
        entries = await asyncio.to_thread(keys.audit_log, limit=limit, actor=actor)
        return AuditList(items=[AuditEntryOut(id=e.id, at=e.at, actor=e.actor, action=e.action,
                                              target=e.target, status=e.status)
                                for e in entries])

    return api
