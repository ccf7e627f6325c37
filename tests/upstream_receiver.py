"""A stand-in for the city platform (or a family's or the institution's webhook): a real HTTP
server on loopback that takes upstream deliveries the way the platform must (signature checked,
duplicates dropped by idempotency key) and can be taken down, made to fail (503), to answer
given keys with 500 or refuse them (400), or to answer slowly.

It keeps the service log's chain as the platform must: the head delivered with each service
record (:meth:`Receiver.check_record`), each new record checked to continue the chain received
(its ``prev_hash`` the hash of the record before, its hash recomputed when the share has every
hashed field, a record sent again under its key with another hash); :meth:`Receiver.audit`
compares the gateway's log, read back, with what was received, and :meth:`Receiver.kept_heads`
is what ``homecare verify-log --heads`` takes. The hash is computed here from its definition
(sha256 of the previous hash and the record's canonical JSON), not with the gateway's code."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway.upstream import verify
from tests.servers import free_port

GENESIS = "0" * 64
HASHED = ("seq", "origin", "at", "recorded_at", "site", "bed", "caregiver", "visit", "event",
          "method", "services", "source", "device", "actor")
"""The fields a record's hash covers, besides any others it has but its two hashes."""


def record_hash(record: dict[str, Any]) -> str | None:
    """The record's hash from its definition, or ``None`` when its share lacks a field."""
    if any(name not in record for name in (*HASHED, "prev_hash")):
        return None
    body = {k: v for k, v in record.items() if k not in ("prev_hash", "hash")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(record["prev_hash"].encode() + text.encode()).hexdigest()


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
    heads: dict[int, str] = field(default_factory=dict)
    """The service log's chain heads received (seq -> hash), as the platform keeps them."""
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Each service record as first received."""
    chain_problems: list[tuple[int, str]] = field(default_factory=list)
    """``(seq, what)`` for each record that did not continue the chain received."""
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

    def check_record(self, body: dict[str, Any]) -> None:
        """Keep the head delivered with a service record and check that the record continues
        the chain received so far (every accepted delivery, duplicates too: a record sent
        again under its key with another hash is the log rewritten)."""
        record = body.get("record") or {}
        seq = record.get("seq")
        head = body.get("head")
        if not isinstance(head, dict) or not isinstance(head.get("seq"), int):
            self.chain_problems.append((seq or 0, f"record {seq} came with no head"))
            return
        head_seq, head_hash = head["seq"], str(head.get("hash"))
        if head_seq != seq or record.get("hash", head_hash) != head_hash:
            self.chain_problems.append((head_seq, f"record {seq} came with another's head"))
            return
        known = self.heads.get(head_seq)
        if known is not None:
            if known != head_hash:
                self.chain_problems.append((head_seq, f"record {head_seq} came again with "
                                                      "another hash: the log was rewritten"))
            return
        before = GENESIS if head_seq == 1 else self.heads.get(head_seq - 1)
        prev = record.get("prev_hash")
        if prev is not None and before is not None and prev != before:
            self.chain_problems.append((head_seq, f"record {head_seq} does not continue the "
                                                  f"chain: record {head_seq - 1} is not the "
                                                  "one received"))
        elif (digest := record_hash(record)) is not None and digest != head_hash:
            self.chain_problems.append((head_seq, f"record {head_seq} does not hash to its "
                                                  "hash"))
        self.heads[head_seq] = head_hash
        self.records[head_seq] = record

    def kept_heads(self) -> list[tuple[int, str]]:
        with self._lock:
            return sorted(self.heads.items())

    def audit(self, log: list[dict[str, Any]]) -> tuple[int | None, str]:
        """The first record received that the gateway's ``log`` (records read back, each
        with every field, its ``prev_hash`` and ``hash``) no longer holds as received, and
        what is wrong with it; ``(None, ...)`` when it holds them all."""
        by_seq = {record["seq"]: record for record in log}
        with self._lock:
            kept = sorted(self.heads.items())
            received = dict(self.records)
        for seq, digest in kept:
            record = by_seq.get(seq)
            if record is None:
                return seq, f"record {seq} is gone"
            if record.get("hash") != digest:
                return seq, f"record {seq} is not the one received (another hash)"
            if any(record.get(k) != v for k, v in received.get(seq, {}).items()):
                return seq, f"record {seq} was changed since it was received"
            if record_hash(record) not in (None, digest):
                return seq, f"record {seq} does not hash to its hash"
        return None, "every record received is in the log as received"

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
                        parsed = json.loads(body)
                        if parsed.get("kind") == "service_record":
                            receiver.check_record(parsed)
                        if key in {d.key for d in receiver.accepted}:
                            receiver.duplicates += 1
                        else:
                            receiver.accepted.append(Delivery(key, parsed, signed))
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
