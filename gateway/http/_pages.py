"""Pages for people: security headers on every answer, and the OpenAPI page under a policy.

:class:`SecurityHeaders` (ASGI middleware, the whole app) adds ``X-Content-Type-Options:
nosniff`` to every answer and, to every HTML page, ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer`` and a strict ``Content-Security-Policy`` (:data:`PAGE_POLICY`:
nothing but the gateway's own files, no inline script, no framing), unless the page set its own
(the console does). :func:`docs_page` is Swagger UI from the gateway's own files: its one
inline script is allowed by its SHA-256 in the page's policy, never by ``'unsafe-inline'``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'")
"""The Content-Security-Policy of an HTML page that does not set its own."""

_HTML_HEADERS: Final = (
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


class SecurityHeaders:
    """ASGI middleware: ``nosniff`` everywhere; framing, referrer and script policy on HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {bytes(name).lower() for name, _ in headers}
                added = [(b"x-content-type-options", b"nosniff")]
                content_type = next((bytes(value) for name, value in headers
                                     if bytes(name).lower() == b"content-type"), b"")
                if content_type.startswith(b"text/html"):
                    added += [*_HTML_HEADERS,
                              (b"content-security-policy", PAGE_POLICY.encode())]
                headers += [(name, value) for name, value in added if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def docs_page(*, title: str, openapi_url: str, assets_url: str) -> HTMLResponse:
    """Swagger UI for ``openapi_url`` from the gateway's own assets, with a policy that lets
    in exactly its own inline script (by hash) and nothing from elsewhere."""
    page = get_swagger_ui_html(
        openapi_url=openapi_url, title=title, oauth2_redirect_url=None,
        swagger_js_url=f"{assets_url}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets_url}/swagger-ui.css",
        swagger_favicon_url=f"{assets_url}/favicon.png")
    html = bytes(page.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html))
    policy = (f"default-src 'self'; script-src 'self' {hashes}; style-src 'self'; "
              "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
              "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
    return HTMLResponse(html, headers={"Content-Security-Policy": policy,
                                       "Cache-Control": "no-cache"})
