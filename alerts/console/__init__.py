"""The dispatcher console: a static single-page app served by the gateway's own HTTP app.

Everything the browser needs is in ``static/`` (HTML, CSS, ES modules, an SVG icon): no CDN,
no build step, so the console works on a care station without internet. The page talks only
to the alert API (``/api/v1``) with the dispatcher's API key, which it keeps in the tab's
``sessionStorage``; these routes serve files and need no key.

``router`` serves ``/`` (the page; views are ``#/...`` fragments, so a reload keeps the view)
and ``/console/<file>``. Mount it with ``app.include_router(router)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC: Final = Path(__file__).parent / "static"

_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

_HEADERS: Final = {
    # The page runs with the dispatcher's key: nothing may frame it or load foreign code.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files; always revalidated, so an upgraded gateway never serves a stale console.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _file(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    media_type = _TYPES.get(path.suffix)
    if media_type is None or not path.is_relative_to(STATIC.resolve()) or not path.is_file():
        raise HTTPException(status_code=404)
    return FileResponse(path, media_type=media_type, headers=_HEADERS)


@router.get("/")
async def console_page() -> FileResponse:
    return _file("index.html")


@router.get("/console/{name}")
async def console_asset(name: str) -> FileResponse:
    return _file(name)


__all__ = ["STATIC", "router"]
