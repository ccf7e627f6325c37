"""A slow time-series database on loopback: writes answered at once, queries held back.

Speaks just enough of the InfluxDB v1 and v2 HTTP APIs for the gateway: ``/write`` and
``/api/v2/write`` read the body and answer ``write_status`` (204, or 401/403 to refuse the
credentials); ``/query`` and ``/api/v2/query`` are held until :meth:`SlowDatabase.release` is
called or ``query_delay_s`` has passed, then answer an empty result. The test or benchmark sees
how many queries arrived and how many are held, so it can check the order of events instead of
timing them.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from tests.servers import free_port


class SlowDatabase:
    def __init__(self, *, query_delay_s: float = 3600.0, write_status: int = 204) -> None:
        self.query_delay_s = query_delay_s
        self.write_status = write_status
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.writes = 0
        self.written_bytes = 0
        self.queries = 0
        self.held = 0
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="slow-db",
                                        daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        db = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, body: bytes = b"",
                        content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/ping", "/health"):
                    self._answer(204)
                elif path in ("/query", "/api/v2/query"):
                    self._query(path)
                else:
                    self._answer(404)

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                body = self._body()
                if path in ("/write", "/api/v2/write"):
                    with db._lock:
                        db.writes += 1
                        db.written_bytes += len(body)
                    status = db.write_status
                    detail = (b'{"code":"unauthorized","message":"unauthorized access"}'
                              if status in (401, 403) else b"")
                    self._answer(status, detail)
                elif path in ("/query", "/api/v2/query"):
                    self._query(path)
                else:
                    self._answer(404)

            def _query(self, path: str) -> None:
                with db._lock:
                    db.queries += 1
                    db.held += 1
                try:
                    db._released.wait(db.query_delay_s)
                finally:
                    with db._lock:
                        db.held -= 1
                try:
                    if path == "/query":
                        self._answer(200, json.dumps({"results": [{}]}).encode())
                    else:
                        self._answer(200, b"", "text/csv; charset=utf-8")
                except OSError:
                    pass  # the client gave up (its time-out): nothing to answer

        return Handler

    def start(self) -> SlowDatabase:
        self._thread.start()
        return self

    def release(self) -> None:
        """Answer every held query now, and every later one at once."""
        self._released.set()

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SlowDatabase:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
