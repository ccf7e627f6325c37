"""The request heads the app sees: h11's parser, stricter on framing, the absolute-form read.

uvicorn's h11 protocol parses each connection with an ``h11.Connection``; the gateway's
(:func:`gateway.http._connections.guarded_protocol`) parses with :class:`RequestParser`,
which differs in two ways:

* A request with both ``Transfer-Encoding`` and ``Content-Length`` is malformed: h11 reads its
  body as chunked and answers, but a proxy in front may have read it by its length, and what
  one sees as the rest of the body the other sees as a second request (request smuggling).
  RFC 9112 section 6.1 lets a server refuse it and says it must close the connection after
  answering it; here it is refused like any request h11 cannot parse (400, closed).
* A request target in absolute-form (``GET http://host/healthz``) is routed by its path, as
  its origin-form (``GET /healthz``) would be: RFC 9112 section 3.2.2 says a server must
  accept it. The authority in it is ignored: nothing the gateway answers depends on a host
  name, and the ``Host`` header is passed on as sent, as it always was (h11 still requires
  it of HTTP/1.1). An ``http`` or ``https`` target without a host (``http:///healthz``) is
  malformed (the RFC says to reject it as invalid). So every check of the path (the app's
  :class:`~alerts.api._limits.PathGuard`) sees the path itself, never ``http://...``.
* Nothing the gateway serves is asked for by an HTTP/2 connection preface (``PRI *
  HTTP/2.0``: h11 read it as a request, answered 404, then 400 for the rest of the preface on
  the same connection), an authority-form target (``CONNECT host:443``) or ``*`` other than
  ``OPTIONS *``: each is malformed here (400, closed) by :func:`unservable`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import h11

_ABSOLUTE: Final = re.compile(rb"(?i:https?)://([^/?#]*)")
"""An ``http`` or ``https`` absolute-form target's scheme and authority (group 1)."""


class MalformedTarget(ValueError):
    """An absolute-form target that names no host."""


def origin_form(target: bytes) -> bytes:
    """``target`` as its origin-form: an ``http(s)`` absolute-form target without its scheme
    and authority (``/`` when it has no path); any other target as it is.

    :class:`MalformedTarget` for an ``http(s)`` target with an empty authority.

    >>> origin_form(b"http://evil.example/api/v1/beds?site=a")
    b'/api/v1/beds?site=a'
    >>> origin_form(b"HTTPS://user@evil.example:8443"), origin_form(b"http://x?a=1")
    (b'/', b'/?a=1')
    >>> origin_form(b"/healthz"), origin_form(b"*"), origin_form(b"ftp://x/healthz")
    (b'/healthz', b'*', b'ftp://x/healthz')
    >>> origin_form(b"http:///healthz")
    Traceback (most recent call last):
    ...
    gateway.http._parser.MalformedTarget: absolute-form target without a host
    """
    if target.startswith(b"/"):
        return target
    match = _ABSOLUTE.match(target)
    if match is None:
        return target
    if not match.group(1):
        raise MalformedTarget("absolute-form target without a host")
    rest = target[match.end():]
    return rest if rest.startswith(b"/") else b"/" + rest


def unservable(method: bytes, target: bytes) -> str | None:
    """Why a request line (its target already in origin-form) names nothing an origin server
    answers; None when it may.

    >>> unservable(b"PRI", b"*"), unservable(b"CONNECT", b"evil.example:443")
    ('an HTTP/2 connection preface', 'a CONNECT request')
    >>> unservable(b"GET", b"*"), unservable(b"OPTIONS", b"*"), unservable(b"GET", b"/healthz")
    ('a target that is not a path', None, None)
    """
    if method == b"PRI":
        return "an HTTP/2 connection preface"
    if method == b"CONNECT":
        return "a CONNECT request"
    if not target.startswith(b"/") and not (method == b"OPTIONS" and target == b"*"):
        return "a target that is not a path"
    return None


def framed_twice(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request says both ``Transfer-Encoding`` and ``Content-Length``.

    >>> framed_twice([(b"transfer-encoding", b"chunked"), (b"content-length", b"5")])
    True
    >>> framed_twice([(b"content-length", b"5")])
    False
    """
    names = {bytes(name).lower() for name, _ in headers}
    return b"transfer-encoding" in names and b"content-length" in names


class RequestParser(h11.Connection):
    """h11's server side, with the two differences above: a malformed head raises
    ``h11.RemoteProtocolError`` (uvicorn answers 400 and closes), an absolute-form target
    arrives as its origin-form."""

    def __init__(self, max_incomplete_event_size: int | None = None) -> None:
        if max_incomplete_event_size is None:
            super().__init__(h11.SERVER)
        else:
            super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        event = super().next_event()
        if not isinstance(event, h11.Request):
            return event
        if framed_twice(event.headers):
            raise h11.RemoteProtocolError(
                "both Transfer-Encoding and Content-Length", error_status_hint=400)
        try:
            target = origin_form(event.target)
        except MalformedTarget as exc:
            raise h11.RemoteProtocolError(str(exc), error_status_hint=400) from exc
        why = unservable(bytes(event.method), target)
        if why is not None:
            raise h11.RemoteProtocolError(f"{why} is not served", error_status_hint=400)
        if target is event.target:
            return event
        return h11.Request(method=event.method, headers=event.headers, target=target,
                           http_version=event.http_version)
