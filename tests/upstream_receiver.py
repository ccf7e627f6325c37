"""A stand-in for the city platform (or a family's or the institution's webhook): a real HTTP
server on loopback that takes upstream deliveries the way the platform must (signature checked,
duplicates dropped by idempotency key) and can be taken down, made to fail (503), to answer
given keys with 500 or refuse them (400), or to answer slowly."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway.upstream import verify
from tests.servers import free_port


@dataclass
class Delivery:
    key: str
    body: dict[str, Any]
    signed: bool
    at: float = field(default_factory=time.monotonic)
    """When it was accepted (``time.monotonic()``)."""


@dataclass
class Receiver:
    secret: bytes
    port: int = field(default_factory=free_port)
    mode: str = "ok"
    """``ok`` (200), ``unavailable`` (503)."""
    refuse: set[str] = field(default_factory=set)
    """Keys answered with 400."""
    fail: set[str] = field(default_factory=set)
    """Keys answered with 500 (a server error about that entry: retried by the gateway)."""
    delay_s: float = 0.0
    """How long each request is held before it is answered (a slow receiver); a request
    counts as arrived when it is answered."""
    attempts: list[str] = field(default_factory=list)
    """Every request's key, in arrival order (retries included)."""
    accepted: list[Delivery] = field(default_factory=list)
    """Each key once, in the order first accepted."""
    duplicates: int = 0
    arrivals: int = 0
    """Requests that arrived, counted before they are answered (a slow one is in flight)."""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/homecare/ingest"

    def keys(self) -> list[str]:
        with self._lock:
            return [d.key for d in self.accepted]

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` keys were accepted (``False`` on timeout)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.accepted) >= count, timeout)

    def wait_arrivals(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` requests arrived, answered or not (``False`` on timeout)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.arrivals >= count, timeout)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.arrivals += 1
                    receiver._changed.notify_all()
                if receiver.delay_s > 0:
                    time.sleep(receiver.delay_s)
                key = self.headers.get("Idempotency-Key", "")
                signed = verify(receiver.secret, self.headers.get("X-Homecare-Signature", ""),
                                body)
                with receiver._lock:
                    receiver.attempts.append(key)
                    if receiver.mode == "unavailable":
                        status = 503
                    elif key in receiver.fail:
                        status = 500
                    elif key in receiver.refuse or not signed:
                        status = 400 if signed else 401
                    else:
                        status = 200
                        if key in {d.key for d in receiver.accepted}:
                            receiver.duplicates += 1
                        else:
                            receiver.accepted.append(Delivery(key, json.loads(body), signed))
                            receiver._changed.notify_all()
                with contextlib.suppress(ConnectionError):  # the sender gave up waiting
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"ok": %s}' % (b"true" if status == 200 else b"false"))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
