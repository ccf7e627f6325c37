"""The HTTP server's own log lines are the gateway's: on a real ``homecare gateway`` process
over loopback, a flood of malformed requests and of unsupported upgrades (each a warning of
uvicorn's, logger ``uvicorn.error``) writes at most :data:`REPEATS_PER_MINUTE` lines of each
kind, in the gateway's format (every line a JSON object with ``HOMECARE_LOG_FORMAT=json``),
and one ``http.log_suppressed`` line per kind counting the rest (found by a tester: 3,000 bad
requests wrote 3,000 plain-text lines in 1.3 s, in the middle of a JSON log).

Every loop is bounded in count; nothing is timed.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from gateway.logs import REPEATS_PER_MINUTE
from tests.servers import GatewayProcess, Mosquitto

pytestmark = pytest.mark.integration

MALFORMED = b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"
"""A header line without a colon: h11 refuses it, uvicorn answers 400 and logs a warning."""
UPGRADE = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\n"
           b"Upgrade: h2c\r\n\r\n")
"""An upgrade uvicorn does not offer: answered as a plain request, with a warning."""
INVALID = "Invalid HTTP request received."
UNSUPPORTED = "Unsupported upgrade request."
SENT = {INVALID: 300, UNSUPPORTED: 60}


def _status(gateway: GatewayProcess, request: bytes) -> int:
    """Send ``request`` on a new connection; the answer's status (0: none), read until the
    server closes."""
    with socket.create_connection((gateway.host, gateway.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def _text_line(line: str) -> tuple[str, str, int]:
    """``(kind, message, count)`` of a text line: a line of a kind of ``SENT`` ("line"), a
    summary of one ("summary", with its count), or anything else ("other")."""
    for message in SENT:
        if f"message={message!r}" in line and "http.log_suppressed" in line:
            return "summary", message, int(line.rsplit("count=", 1)[1].split()[0])
        if message in line:
            return "line", message, 0
    return "other", "", 0


def _json_line(line: str) -> tuple[str, str, int]:
    entry = json.loads(line)
    assert isinstance(entry, dict), line
    assert {"ts", "level", "logger", "msg"} <= entry.keys(), line
    if entry.get("event") == "http.log_suppressed" and entry.get("message") in SENT:
        assert entry["source"] == "uvicorn.error", line
        return "summary", entry["message"], entry["count"]
    if entry["msg"] in SENT:
        assert entry["logger"] == "uvicorn.error", line
        return "line", entry["msg"], 0
    return "other", "", 0


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_flood_of_malformed_requests_writes_a_bounded_log_in_the_gateways_format(
        tmp_path: Path, mosquitto: Mosquitto, log_format: str) -> None:
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url,
                             env={"HOMECARE_LOG_FORMAT": log_format})
    gateway.start()
    try:
        for _ in range(SENT[INVALID]):
            assert _status(gateway, MALFORMED) == 400
        for _ in range(SENT[UNSUPPORTED]):
            assert _status(gateway, UPGRADE) == 200
        suppressed = gateway.metric(
            'homecare_http_log_lines_suppressed_total{source="uvicorn.error"}')
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()

    lines = gateway.log_path.read_text(encoding="utf-8").splitlines()
    assert lines
    parse = _json_line if log_format == "json" else _text_line
    written = dict.fromkeys(SENT, 0)
    summed = dict.fromkeys(SENT, 0)
    for line in lines:
        try:
            kind, message, count = parse(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line in the JSON log: {line!r}")
        if kind == "line":
            written[message] += 1
        elif kind == "summary":
            summed[message] += count
    for message, sent in SENT.items():
        assert 0 < written[message] <= REPEATS_PER_MINUTE, (message, written)
        assert written[message] + summed[message] == sent, (message, written, summed)
    if log_format == "text":
        assert f"WARNING uvicorn.error {INVALID}" in "\n".join(lines)
    assert suppressed == sum(SENT.values()) - sum(written.values())
