"""Errors as JSON ``{"error": <code>, "detail": ...}``, never a stack trace.

Installed on the whole app, so ``/healthz`` and friends answer errors in the same shape.
422: the request breaks the OpenAPI document (validation errors keep ``loc``, ``msg`` and
``type`` but never echo the input back). 400: the request fits the document but cannot be
served as asked (a cursor this gateway did not make, ``since`` after ``until``, a reserved key
name), or its path names nothing. 429: too many failed authentications from the address, or
too many streams on one key (with ``Retry-After``). A client gone while its request was read
(a body cut off by the body timeout) is no error of ours: nothing is logged.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from alerts.api._models import PERSON_ID_ERROR, ErrorBody
from alerts.errors import (
    AlertNotFound,
    HandlingRefused,
    InvalidCursor,
    InvalidTransition,
    ResidentStoreUnavailable,
    ServiceLogUnavailable,
    StoreUnavailable,
)

log = logging.getLogger("homecare.api")

MISSING_HINTS: Final = {
    "outcome": "Field required: an outcome code says how the alert ended (one of the "
               "station's codes, GET /api/v1/handling)",
}
"""Clearer words for a required field left out than "Field required", by field name."""

CODES: Final = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "invalid_request",
    429: "too_many_requests", 500: "internal_error", 502: "bad_gateway", 503: "unavailable",
}


class ApiError(Exception):
    """An answer other than success, raised anywhere in a handler."""

    def __init__(self, status: int, detail: Any = None, *, error: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(str(detail))
        self.status = status
        self.error = error or code(status)
        self.detail = detail
        self.headers = headers


def code(status: int) -> str:
    if status in CODES:
        return CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def error_response(status: int, detail: Any = None, *, error: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=error or code(status), detail=detail)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    return {status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
            for status in statuses}


def install(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.detail, error=exc.error, headers=exc.headers)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(exc.status_code, exc.detail, headers=exc.headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        detail = [{"loc": list(e.get("loc", ())), "msg": _message(e),
                   "type": str(e.get("type", ""))} for e in errors[:20]]
        if errors and all(e.get("type") == PERSON_ID_ERROR for e in errors):
            # Fits the document (its pattern) but breaks the id rule: 400, as documented.
            return error_response(400, detail, error="invalid_id")
        return error_response(422, detail)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return error_response(404, str(exc))

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        return error_response(409, str(exc))

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HandlingRefused)
        return error_response(400, exc.detail, error=exc.reason)

    async def bad_cursor(request: Request, exc: Exception) -> JSONResponse:
        return error_response(400, str(exc))

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.error("api.store_unavailable path=%s error=%s", request.url.path, exc)
        return error_response(503, "storage is unavailable; retry shortly",
                              headers={"Retry-After": "5"})

    async def client_gone(request: Request, exc: Exception) -> JSONResponse:
        return error_response(400, "the client went away while the request was read")

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("api.internal_error path=%s", request.url.path, exc_info=exc)
        return error_response(500, "internal error; it has been logged")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(AlertNotFound, not_found)
    app.add_exception_handler(InvalidTransition, conflict)
    app.add_exception_handler(HandlingRefused, refused)
    app.add_exception_handler(InvalidCursor, bad_cursor)
    app.add_exception_handler(StoreUnavailable, unavailable)
    app.add_exception_handler(ServiceLogUnavailable, unavailable)
    app.add_exception_handler(ResidentStoreUnavailable, unavailable)
    app.add_exception_handler(sqlite3.OperationalError, unavailable)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, internal)


def _message(error: Mapping[str, Any]) -> str:
    loc = error.get("loc", ())
    if error.get("type") == "missing" and loc and str(loc[-1]) in MISSING_HINTS:
        return MISSING_HINTS[str(loc[-1])]
    return str(error.get("msg", ""))
