"""The HTTP side holds against cheap tricks (issue 17), on a real ``homecare gateway`` process
with real mosquitto, over loopback: idle and half-sent connections, a flood of wrong keys from
one address, a revoked key's open stream, streams piled up on one key, malformed paths, pages
without security headers, a guessable bootstrap key.

Every load loop is bounded in count and time; nothing is timed. The figures of the connection
flood (``/healthz`` latency while it is held) are printed for the report, not asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import secrets
import selectors
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from alerts.api._limits import LOG_LINES_PER_MINUTE
from gateway.config import Settings
from simulators.load import publish_all
from tests.servers import GatewayProcess, Mosquitto

pytestmark = pytest.mark.integration

HELD = 1100
"""Idle, half-sent connections held open during the flood (more than the common 1,024 fds)."""
NOFILE = 1024
"""The gateway runs with this open-files limit, soft and hard, so it cannot raise it."""
ATTACKERS = [f"127.0.0.{n}" for n in range(10, 21)]
"""Source addresses of the flood (loopback is a /8): 100 connections each."""
THROTTLED = "127.0.0.2"
"""Source address of the wrong-key flood; the honest clients use 127.0.0.1."""
KEY = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {KEY}"}


class LimitedGateway(GatewayProcess):
    """A gateway on a host with the common limit of 1,024 open files (soft and hard)."""

    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--", *super().command()]


def _enough_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"this test needs {needed} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_a_client_that_never_reads_its_answer_is_cut_off(gateway: GatewayProcess) -> None:
    """Slow read (found by the fresh tester of #17): a small receive window, a large answer
    asked for and never read held the connection for good; 250 such per address took the
    server's every connection with no key."""
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    slow.settimeout(10)
    slow.connect((gateway.host, gateway.port))
    slow.sendall(b"GET /docs-assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: gateway\r\n\r\n")
    try:
        closed = 'homecare_http_connections_closed_total{reason="write_timeout"}'
        deadline = time.monotonic() + 30
        while gateway.metrics().get(closed, 0) < 1:
            assert time.monotonic() < deadline, "a stalled answer was never cut off"
            time.sleep(0.5)
    finally:
        slow.close()
    assert httpx.get(f"{gateway.url}/healthz", timeout=10).status_code == 200


def _half_sent(gateway: GatewayProcess, source: str) -> socket.socket:
    """A connection that sends most of a request head and then nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect((gateway.host, gateway.port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Padding: ")
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def _wait_all_closed(socks: list[socket.socket], timeout: float) -> int:
    """How many of ``socks`` the server closed within ``timeout`` seconds."""
    closed = 0
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while closed < len(socks) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    closed += 1
    return closed


def _press(broker: Mosquitto, bed: str) -> None:
    payload = json.dumps({"ts": int(time.time() * 1000), "seq": 1, "event": "press"}).encode()

    async def publish() -> None:
        async with asyncio.timeout(30):
            await publish_all(broker.url, [
                (f"homecare/v1/site-http/{bed}/button/btn-{bed}/event", payload)])

    asyncio.run(publish())


def _alerts_of(gateway: GatewayProcess, bed: str, timeout: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{gateway.url}/api/v1/alerts", params={"bed": bed},
                             headers=AUTH, timeout=10)
        assert response.status_code == 200, response.text
        items: list[dict[str, object]] = response.json()["items"]
        if items:
            return items
        time.sleep(0.05)
    raise TimeoutError(f"no alert for {bed}\n{gateway.log_tail()}")


def _raw(gateway: GatewayProcess, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send exactly these bytes; the status and the whole answer (the server closes or the
    answer's length is reached)."""
    with socket.create_connection((gateway.host, gateway.port), timeout=timeout) as sock:
        sock.sendall(request)
        return _answer(sock)


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and the whole of the next answer on ``sock`` (read until the server closes
    or the answer's length is reached)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    match = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
    while match and len(body) < int(match.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, head + b"\r\n\r\n" + body


# --- a flood of idle, half-sent connections ---------------------------------------------------

def test_healthz_and_a_press_get_through_1100_idle_half_sent_connections(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    _enough_open_files(HELD + 512)
    gateway = LimitedGateway(tmp_path / "gateway", mqtt_url=mosquitto.url,
                             env={"HOMECARE_API_KEY": KEY})
    gateway.start()
    held: list[socket.socket] = []
    try:
        gateway.wait_connected()
        quiet = []
        for _ in range(20):
            began = time.perf_counter()
            assert httpx.get(f"{gateway.url}/healthz", timeout=15).status_code == 200
            quiet.append((time.perf_counter() - began) * 1000)
        with httpx.Client(base_url=gateway.url, timeout=30) as console, \
                console.stream("GET", "/api/v1/alerts/stream", headers=AUTH) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            started = time.monotonic()
            for n in range(HELD):
                held.append(_half_sent(gateway, ATTACKERS[n % len(ATTACKERS)]))
            opened_s = time.monotonic() - started

            latencies = []
            for _ in range(20):
                began = time.perf_counter()
                response = httpx.get(f"{gateway.url}/healthz", timeout=15)
                latencies.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200
            _press(mosquitto, "bed-flood")
            alert = _alerts_of(gateway, "bed-flood")[0]
            assert alert["type"] == "emergency_button"
            deadline = time.monotonic() + 30
            for line in lines:  # the console's stream, opened before the flood, still runs
                if "bed-flood" in line:
                    break
                assert time.monotonic() < deadline, "the press never reached the open stream"
            cut_while_held = sum(_closed_by_server(sock) for sock in held)
        header_timeout = Settings.model_fields["http_header_timeout_s"].default
        started = time.monotonic()
        closed = _wait_all_closed(held, header_timeout + 60)
        all_closed_s = time.monotonic() - started
        assert closed == HELD, "connections that never finish their head must be closed"
        metrics = gateway.metrics()
        assert gateway.proc is not None
        assert gateway.proc.poll() is None
    finally:
        for sock in held:
            sock.close()
        gateway.stop()
    log = gateway.log_path.read_text(errors="replace")
    assert "out of system resource" not in log, "the gateway ran out of file descriptors"
    print(f"\n[figures] /healthz before: median {statistics.median(quiet):.1f} ms, max "
          f"{max(quiet):.1f} ms (n=20); {HELD} half-sent connections opened in {opened_s:.2f} "
          f"s; /healthz during the hold: median {statistics.median(latencies):.1f} ms, max "
          f"{max(latencies):.1f} ms (n=20); closed by the server while held: {cut_while_held}; "
          f"all closed {all_closed_s:.1f} s after the checks; closed by reason: "
          f"{ {k: v for k, v in metrics.items() if 'connections_closed' in k} }")


# --- a flood of slow readers ------------------------------------------------------------------

SLOW_CAP = 100
"""``http_max_connections`` of the slow-read flood's gateway (small, so the flood is too)."""
SLOW_READERS = 150
SLOW_SOURCES = [f"127.0.0.{n}" for n in range(2, 7)]
"""Five source addresses, 30 slow readers each: each under the per-client cap of 40."""
BIG_ANSWER = b"GET /docs-assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: gateway\r\n\r\n"
"""A public answer of 1.5 MB, larger than the kernel buffers between the two ends."""


def _slow_reader(gateway: GatewayProcess, source: str) -> socket.socket | None:
    """A connection that asks for a large answer with a tiny receive window and then reads
    only its first bytes; ``None`` if the server closed it before it could ask."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.settimeout(10)
    try:
        sock.bind((source, 0))
        sock.connect((gateway.host, gateway.port))
        sock.sendall(BIG_ANSWER)
    except OSError:
        sock.close()
        return None
    return sock


def _being_answered(sock: socket.socket) -> bool:
    """The server started the answer (its status line came back) and keeps the connection."""
    try:
        return sock.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _answers(call: Callable[[], httpx.Response], timeout: float) -> httpx.Response | None:
    """``call``'s answer, retried on a refused or reset connection until ``timeout`` seconds
    have passed; ``None`` if it never answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return call()
        except httpx.TransportError:
            time.sleep(0.2)
    return None


def test_healthz_the_api_and_an_open_stream_get_through_slow_readers(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Slow read at the cap (found by a verifier of #17): 1,100 connections from five
    addresses, each asking for a large public answer and reading it slowly or never, held
    every connection; busy ones were never cut for room, and the write timeout only set the
    pace at which they were reopened. Scaled down: a cap of 100, 150 slow readers. The write
    timeout is set long here, so only making room at the cap can let anyone in."""
    _enough_open_files(SLOW_READERS + 512)
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env={
        "HOMECARE_API_KEY": KEY,
        "HOMECARE_HTTP_MAX_CONNECTIONS": str(SLOW_CAP),
        "HOMECARE_HTTP_MAX_CONNECTIONS_PER_CLIENT": "40",
        "HOMECARE_HTTP_WRITE_TIMEOUT_S": "300",
    })
    gateway.start()
    readers: list[socket.socket] = []
    try:
        gateway.wait_connected()
        with httpx.Client(base_url=gateway.url, timeout=30) as console, \
                console.stream("GET", "/api/v1/alerts/stream", headers=AUTH) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            for n in range(SLOW_READERS):
                sock = _slow_reader(gateway, SLOW_SOURCES[n % len(SLOW_SOURCES)])
                if sock is not None:
                    readers.append(sock)
            held = sum(_being_answered(sock) for sock in readers)
            assert held >= SLOW_CAP // 2, f"the flood did not take hold: {held} answered"
            started = time.monotonic()
            health = _answers(lambda: httpx.get(f"{gateway.url}/healthz", timeout=20), 20)
            health_s = time.monotonic() - started
            assert health is not None, "/healthz never answered during the slow-read flood"
            assert health.status_code == 200
            beds = _answers(lambda: httpx.get(f"{gateway.url}/api/v1/beds", headers=AUTH,
                                              timeout=20), 20)
            assert beds is not None, "the API never answered during the slow-read flood"
            assert beds.status_code == 200
            _press(mosquitto, "bed-slow-read")
            deadline = time.monotonic() + 30
            for line in lines:  # the console's stream, opened before the flood, still runs
                if "bed-slow-read" in line:
                    break
                assert time.monotonic() < deadline, "the press never reached the open stream"
        closed: dict[str, float] = {}
        with contextlib.suppress(httpx.TransportError):  # the figures, while the flood is held
            closed = {k: v for k, v in gateway.metrics().items()
                      if k.startswith("homecare_http_connections_closed_total")}
        assert gateway.proc is not None
        assert gateway.proc.poll() is None
    finally:
        for sock in readers:
            sock.close()
        gateway.stop()
    print(f"\n[figures] {SLOW_READERS} slow readers from {len(SLOW_SOURCES)} addresses against "
          f"a cap of {SLOW_CAP}: {held} were being answered; /healthz answered "
          f"{health_s:.1f} s after the first try; closed by reason: {closed}")


# --- one gateway for the rest -----------------------------------------------------------------

@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("http-hardening")
    broker = Mosquitto(root / "mosquitto")
    broker.start()
    process = GatewayProcess(root / "gateway", mqtt_url=broker.url, env={
        "HOMECARE_API_KEY": KEY,
        "HOMECARE_HTTP_HEADER_TIMEOUT_S": "2",
        "HOMECARE_HTTP_BODY_TIMEOUT_S": "2",
        "HOMECARE_API_STREAMS_PER_KEY": "2",
        "HOMECARE_HTTP_WRITE_TIMEOUT_S": "2",
    })
    try:
        process.start()
        process.wait_connected()
        yield process
    finally:
        process.stop()
        broker.stop()


def create_key(gateway: GatewayProcess, name: str, role: str = "viewer") -> str:
    response = httpx.post(f"{gateway.url}/api/v1/keys", headers=AUTH,
                          json={"name": name, "role": role}, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_a_head_or_a_body_that_never_completes_is_cut_off(gateway: GatewayProcess) -> None:
    head = socket.create_connection((gateway.host, gateway.port), timeout=10)
    head.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
    body = socket.create_connection((gateway.host, gateway.port), timeout=10)
    body.sendall(b"POST /api/v1/visits/check-in HTTP/1.1\r\nHost: gateway\r\nAuthorization: "
                 b"Bearer " + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"site\": ")
    try:
        assert _wait_all_closed([head, body], timeout=30) == 2
    finally:
        head.close()
        body.close()
    metrics = gateway.metrics()
    assert metrics.get('homecare_http_connections_closed_total{reason="header_timeout"}', 0) >= 1
    assert metrics.get('homecare_http_connections_closed_total{reason="body_timeout"}', 0) >= 1
    assert httpx.get(f"{gateway.url}/healthz", timeout=10).status_code == 200
    assert "api.internal_error" not in gateway.log_tail()


def test_wrong_keys_from_one_address_get_429_after_the_budget(gateway: GatewayProcess) -> None:
    budget = Settings.model_fields["api_auth_failures_per_minute"].default
    assert budget < 3000
    wrong = [f"hck_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}" for _ in range(3001)]
    # Two dispatchers behind the same address (a station's NAT): one has used her key today,
    # the other's key is new and has never been used.
    keys = [httpx.post(f"{gateway.url}/api/v1/keys", headers=AUTH, timeout=10,
                       json={"name": name, "role": "dispatcher"}).json()["token"]
            for name in ("nat-used", "nat-new")]
    used, new = ({"Authorization": f"Bearer {token}"} for token in keys)
    assert httpx.get(f"{gateway.url}/api/v1/beds", headers=used, timeout=10).status_code == 200
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + 180
    transport = httpx.HTTPTransport(local_address=THROTTLED)
    started = time.monotonic()
    with httpx.Client(base_url=gateway.url, transport=transport, timeout=10) as attacker:
        for token in wrong:
            answers.append(attacker.get("/api/v1/beds",
                                        headers={"Authorization": f"Bearer {token}"}))
            assert time.monotonic() < deadline
        sent_s = time.monotonic() - started
        locked_out = attacker.get("/api/v1/beds", headers=new)
        colleague = attacker.get("/api/v1/beds", headers=used)
        # Without a trusted proxy configured, X-Forwarded-For names nobody.
        posing = attacker.get("/api/v1/beds", headers={
            "Authorization": f"Bearer {wrong[0]}", "X-Forwarded-For": "127.0.0.1"})
    statuses = [a.status_code for a in answers]
    assert statuses[:budget] == [401] * budget
    # The budget refills at budget a minute: on a loaded machine sending takes longer than a
    # minute, and the refilled ones are answered 401 again, one at a time.
    refilled = int(sent_s * budget / 60) + 1
    assert budget < statuses.count(401) + 1 <= budget + refilled + 1
    assert set(statuses[budget:]) <= {401, 429}
    assert statuses[budget] == 429
    last = answers[-1]  # the 3,001st wrong key within a minute
    assert last.status_code == 429
    assert 1 <= int(last.headers["Retry-After"]) <= 60
    assert last.json()["error"] == "too_many_requests"
    assert locked_out.status_code == 429, "a key not yet proven is not tried from there"
    assert colleague.status_code == 200, "a key that worked today still works from there"
    assert posing.status_code == 429, "a forwarded-for header does not dodge the throttle"
    assert httpx.get(f"{gateway.url}/api/v1/beds", headers=AUTH, timeout=10).status_code == 200
    metrics = gateway.metrics()
    assert metrics['homecare_api_auth_failures_total{reason="unknown"}'] == statuses.count(401)
    assert (metrics['homecare_api_auth_failures_total{reason="throttled"}']
            == statuses.count(429) + 2)
    log = gateway.log_path.read_text(errors="replace")
    auth_lines = [line for line in log.splitlines() if "api.auth" in line]
    assert any("api.auth_failed" in line and THROTTLED in line for line in auth_lines)
    assert any("api.auth_throttled" in line and THROTTLED in line for line in auth_lines)
    # A few lines within the minute; a loaded machine's run spans minutes, and each minute
    # may log up to LOG_LINES_PER_MINUTE of its (refilled) failures.
    minutes = int((time.monotonic() - started) // 60)
    assert len(auth_lines) <= 5 + LOG_LINES_PER_MINUTE * minutes, "logged, not one line each"
    assert not any(token in log for token in wrong), "a key never reaches the log"
    print(f"\n[figures] 3,001 wrong keys from one address in {sent_s:.2f} s "
          f"({3001 / sent_s:.0f}/s): {statuses.count(401)} answered 401, "
          f"{statuses.count(429)} answered 429")


def test_a_revoked_keys_open_stream_is_closed(gateway: GatewayProcess) -> None:
    token = create_key(gateway, "revoked-while-streaming")
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=gateway.url, timeout=30) as client, client.stream(
            "GET", "/api/v1/alerts/stream",
            headers={"Authorization": f"Bearer {token}"}) as stream:
        assert stream.status_code == 200
        chunks = stream.iter_bytes()
        assert next(chunks).startswith(b"retry:")
        revoked = httpx.delete(f"{gateway.url}/api/v1/keys/revoked-while-streaming",
                               headers=AUTH, timeout=10)
        assert revoked.status_code == 200
        tail = b""
        for chunk in chunks:  # ends when the server ends the stream
            tail += chunk
            assert time.monotonic() < deadline, "the revoked key's stream is still open"
    assert b"key revoked" in tail
    again = httpx.get(f"{gateway.url}/api/v1/alerts/stream",
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert again.status_code == 401
    assert gateway.metric('homecare_api_streams_ended_total{reason="key_revoked"}') >= 1


def test_one_key_holds_a_bounded_number_of_streams(gateway: GatewayProcess) -> None:
    token = create_key(gateway, "many-tabs")
    headers = {"Authorization": f"Bearer {token}"}
    with contextlib.ExitStack() as streams:
        client = streams.enter_context(httpx.Client(base_url=gateway.url, timeout=30))
        for _ in range(2):  # HOMECARE_API_STREAMS_PER_KEY=2
            opened = streams.enter_context(client.stream("GET", "/api/v1/alerts/stream",
                                                         headers=headers))
            assert opened.status_code == 200
        third = httpx.get(f"{gateway.url}/api/v1/alerts/stream", headers=headers, timeout=10)
        assert third.status_code == 429
        assert third.json()["error"] == "too_many_requests"
        assert int(third.headers["Retry-After"]) >= 1
        with client.stream("GET", "/api/v1/alerts/stream", headers=AUTH) as other:
            assert other.status_code == 200, "another key is not affected"
    deadline = time.monotonic() + 20
    while True:  # closed streams give their places back
        with httpx.Client(base_url=gateway.url, timeout=30) as client, client.stream(
                "GET", "/api/v1/alerts/stream", headers=headers) as again:
            if again.status_code == 200:
                break
        assert time.monotonic() < deadline, "closed streams still count"
        time.sleep(0.1)


MALFORMED = [
    b"/console/index.html%00.js",
    b"/api/v1/alerts%00",
    b"/%ZZ",
    b"/console/%C3%28.js",
    b"/docs%0d%0aX-Injected:%20yes",
    b"/console/" + b"a" * 5000,
]


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p[:30].decode())
def test_a_malformed_path_answers_400(gateway: GatewayProcess, path: bytes) -> None:
    status, answer = _raw(gateway, b"GET " + path + b" HTTP/1.1\r\nHost: gateway\r\n"
                                   b"Connection: close\r\n\r\n")
    assert status == 400, answer[:300]
    assert httpx.get(f"{gateway.url}/healthz", timeout=10).status_code == 200


def test_values_in_the_log_are_escaped(gateway: GatewayProcess) -> None:
    status, _ = _raw(gateway, b"GET /console/index.html%00.js HTTP/1.1\r\nHost: gateway\r\n"
                              b"Connection: close\r\n\r\n")
    assert status == 400
    _raw(gateway, b"GET /api/v1/beds%0aforged-line HTTP/1.1\r\nHost: gateway\r\n"
                  b"Connection: close\r\n\r\n")
    log = gateway.log_path.read_bytes()
    assert b"\x00" not in log
    assert not re.search(rb"\nforged-line", log)
    assert b"http.bad_request" in log
    assert b"index.html\\x00.js" in log


@pytest.mark.parametrize("path", [b"/console/index.html/", b"/api/v1/beds/", b"/healthz/",
                                  b"/docs/"])
def test_no_redirect_is_built_from_the_host_header(gateway: GatewayProcess, path: bytes) -> None:
    """A trailing slash once answered 307 to ``http://<Host header>/...``: an open redirect
    for anyone who can make a browser send a forged Host."""
    status, answer = _raw(gateway, b"GET " + path + b" HTTP/1.1\r\nHost: evil.example\r\n"
                                   b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                                   b"Connection: close\r\n\r\n")
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert b"evil.example" not in head, head
    assert not 300 <= status < 400, head
    assert status == 404, head


# --- request heads of hostile clients ------------------------------------------------------

CHUNKED_WRITE = (b"POST /api/v1/alerts/x/ack HTTP/1.1\r\nHost: gateway\r\n"
                 b"Transfer-Encoding: chunked\r\n")
"""A write without a key whose body is chunked: the API answers 401 without reading it."""
MALFORMED_CLOSED = 'homecare_http_connections_closed_total{reason="malformed_request"}'


def _until_closed(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (failing if it does not)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the connection was left open after {received[:300]!r}")
    return received


def _assert_no_error_logged(gateway: GatewayProcess, since: int) -> None:
    """A client's malformed request is no error of ours: since the log's offset ``since``,
    a warning at most, no error, no traceback (read after a round trip, so that whatever
    the request set off has run)."""
    assert httpx.get(f"{gateway.url}/healthz", timeout=10).status_code == 200
    written = gateway.log_path.read_bytes()[since:].decode(errors="replace")
    for unwanted in ("api.internal_error", "Exception in ASGI application", "Traceback"):
        assert unwanted not in written, written
    lines = written.splitlines()
    assert not [line for line in lines if " ERROR " in line], written
    warnings = [line for line in lines if " WARNING " in line and "log_suppressed" not in line]
    assert len(warnings) <= 1, written


@pytest.mark.parametrize("body", [b"hello\r\n", b"5\r\nhello\r\n0\r\n\r\n"],
                         ids=["not-chunks", "chunks"])
def test_a_body_framed_two_ways_is_answered_400_once_and_closed(
        gateway: GatewayProcess, body: bytes) -> None:
    """Found by a tester (#17): with both Transfer-Encoding and Content-Length and a body that
    is not chunks, uvicorn answered 400, then the API its 401 to the same request; h11 refused
    that, and the gateway logged ``api.internal_error`` and "Exception in ASGI application",
    each with a traceback. With a body that is chunks, it answered 401 and kept the
    connection open (RFC 9112 section 6.1: such a request's connection must be closed)."""
    counted = gateway.metric(MALFORMED_CLOSED)
    logged = gateway.log_path.stat().st_size
    with socket.create_connection((gateway.host, gateway.port), timeout=10) as sock:
        sock.sendall(CHUNKED_WRITE + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    _assert_no_error_logged(gateway, logged)
    assert gateway.metric(MALFORMED_CLOSED) == counted + 1


def test_a_body_found_malformed_after_its_answer_only_closes_the_connection(
        gateway: GatewayProcess) -> None:
    """The answer (401) sent before the body was read, then the body is not chunks: uvicorn
    answered 400 after it, h11 refused that, and asyncio logged "protocol.data_received() call
    failed" with a traceback. A request is answered once: the connection is closed."""
    logged = gateway.log_path.stat().st_size
    with socket.create_connection((gateway.host, gateway.port), timeout=10) as sock:
        sock.sendall(CHUNKED_WRITE + b"\r\n")
        status, answer = _answer(sock)
        assert status == 401, answer[:300]
        sock.sendall(b"zz\r\n")  # not a chunk size
        assert _until_closed(sock) == b""
    _assert_no_error_logged(gateway, logged)


def _request(target: bytes, key: str | None = None) -> bytes:
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
    return (b"GET " + target + b" HTTP/1.1\r\nHost: gateway\r\n" + auth
            + b"Connection: close\r\n\r\n")


WRONG_KEY = f"hck_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


@pytest.mark.parametrize(("absolute", "origin", "key", "status"), [
    (b"http://evil.example/healthz", b"/healthz", None, 200),
    (b"HTTP://evil.example:8080/api/v1/beds?limit=5", b"/api/v1/beds?limit=5", KEY, 200),
    (b"http://evil.example/api/v1/beds", b"/api/v1/beds", WRONG_KEY, 401),
    (b"https://user@evil.example/console/index.html", b"/console/index.html", None, 200),
    (b"http://evil.example", b"/", None, 200),
], ids=["healthz", "api", "api-wrong-key", "console", "no-path"])
def test_an_absolute_form_target_is_answered_as_its_path(
        gateway: GatewayProcess, absolute: bytes, origin: bytes, key: str | None,
        status: int) -> None:
    """RFC 9112 section 3.2.2: a server must accept the absolute-form (``GET http://host/x``);
    it answered 404 (found by a tester, #17). Its authority is ignored."""
    got, answer = _raw(gateway, _request(absolute, key))
    expected, same = _raw(gateway, _request(origin, key))
    assert (got, expected) == (status, status), answer[:300]
    assert answer.partition(b"\r\n\r\n")[2] == same.partition(b"\r\n\r\n")[2]


def test_an_absolute_form_target_is_checked_by_its_path(gateway: GatewayProcess) -> None:
    """A path that names nothing is 400 in the absolute-form too, and the check (and its log
    line) sees the path, not ``http://...``."""
    logged = gateway.log_path.stat().st_size
    status, answer = _raw(gateway, _request(b"http://evil.example/console/index.html%00.js"))
    assert status == 400, answer[:300]
    assert b'"bad_request"' in answer
    assert b"path='/console/index.html\\x00.js'" in gateway.log_path.read_bytes()[logged:]
    status, answer = _raw(gateway, _request(b"http:///healthz"))  # no host
    assert status == 400, answer[:300]


HTML_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.mark.parametrize("path", ["/docs", "/", "/console/index.html"])
def test_html_pages_carry_security_headers(gateway: GatewayProcess, path: str) -> None:
    response = httpx.get(f"{gateway.url}{path}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for name, value in HTML_HEADERS.items():
        assert response.headers.get(name) == value, (path, name, dict(response.headers))
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    script_src = re.search(r"script-src ([^;]*)", policy)
    assert script_src is not None, policy
    assert "'unsafe-inline'" not in script_src.group(1), policy
    assert "default-src 'self'" in policy


def test_every_answer_says_nosniff(gateway: GatewayProcess) -> None:
    for path in ("/healthz", "/openapi.json", "/docs-assets/swagger-ui.css", "/api/v1/beds"):
        response = httpx.get(f"{gateway.url}{path}", timeout=10)
        assert response.headers.get("x-content-type-options") == "nosniff", path


def test_the_docs_page_works_under_its_policy(gateway: GatewayProcess) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("system chromium is not installed (make test installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda msg: errors.append(msg.text)
                    if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{gateway.url}/docs")
            sync_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text(
                "Home-care gateway", timeout=15_000)
            sync_api.expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
        finally:
            browser.close()
    assert not errors, errors


# --- reverse proxies ----------------------------------------------------------------------------

@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
        mosquitto: Mosquitto, tmp_path: Path, trusted: str) -> None:
    """A local process sending a new X-Forwarded-For with each wrong key must not pass as
    many clients (uvicorn's default believes it from loopback); from a configured proxy the
    header names the client, which is then throttled on its own."""
    budget = 5
    process = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env={
        "HOMECARE_API_KEY": KEY, "HOMECARE_API_AUTH_FAILURES_PER_MINUTE": str(budget),
        "HOMECARE_HTTP_TRUSTED_PROXIES": trusted})
    process.start()
    try:
        process.wait_connected()
        statuses = [httpx.get(f"{process.url}/api/v1/beds", timeout=10, headers={
            "Authorization": f"Bearer hck_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}",
            "X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(2 * budget)]
        honest = httpx.get(f"{process.url}/api/v1/beds", headers=AUTH, timeout=10)
        if trusted:
            assert statuses == [401] * (2 * budget), "each forwarded client has its own budget"
            assert honest.status_code == 200
            assert "client=198.51.100.0" in process.log_path.read_text(errors="replace")
        else:
            assert statuses == [401] * budget + [429] * budget, "one client: the peer"
    finally:
        process.stop()


# --- the bootstrap key ------------------------------------------------------------------------

@pytest.mark.parametrize("weak", ["integration-admin-key-0123456789", "sixteen-chars-ok"])
def test_a_guessable_bootstrap_key_stops_the_gateway_at_start(
        tmp_path: Path, weak: str) -> None:
    env = {**os.environ, "HOMECARE_API_KEY": weak, "HOMECARE_DATA_DIR": str(tmp_path / "data"),
           "HOMECARE_MQTT_URL": "mqtt://127.0.0.1:1", "HOMECARE_API_ADDR": "127.0.0.1:0"}
    process = subprocess.Popen([sys.executable, "-m", "homecare.cli", "gateway"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the gateway started with a guessable bootstrap key")
    text = output.decode(errors="replace")
    assert process.returncode == 2, text
    assert "HOMECARE_API_KEY" in text
    assert "secrets.token_urlsafe(32)" in text
    assert weak not in text, "the refused key is not echoed"
