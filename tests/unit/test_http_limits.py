"""The HTTP limits without sockets (issue 17): the connection guard's caps and evictions, the
failed-authentication throttle, paths that name nothing, security headers, escaped log lines.
The same behaviours are exercised end to end in ``tests/integration/test_http_hardening.py``."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import h11
import httpx
import pytest
from fastapi import FastAPI

from alerts.api import ApiContext, install
from alerts.api._limits import AuthThrottle, LogBudget, client_group, path_problem
from alerts.keys import KeyStore
from alerts.livestate import LiveState
from alerts.servicelog import ServiceLog
from devices.registry import Registry
from gateway import logs
from gateway.http._connections import ConnectionGuard
from gateway.http._pages import PAGE_POLICY, SecurityHeaders, docs_page
from gateway.http._parser import RequestParser


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True

    def __repr__(self) -> str:
        return self.name


def test_a_new_connection_past_the_cap_evicts_the_oldest_waiting_one() -> None:
    closed: list[str] = []
    guard = ConnectionGuard(max_connections=3, max_per_client=10, closed=closed.append)
    first, second, third = Conn("first"), Conn("second"), Conn("third")
    for conn in (first, second, third):
        assert guard.admit(conn, "192.0.2.1")
    guard.busy(first)  # being answered: never evicted
    newcomer = Conn("newcomer")
    assert guard.admit(newcomer, "192.0.2.9")
    assert (first.evicted, second.evicted, third.evicted) == (False, True, False)
    assert guard.open == 3
    assert closed == ["evicted"]


def test_a_connection_waiting_again_after_its_answer_goes_to_the_back() -> None:
    guard = ConnectionGuard(max_connections=2, max_per_client=10)
    old, young = Conn("old"), Conn("young")
    guard.admit(old, "a")
    guard.admit(young, "b")
    guard.busy(old)
    guard.waiting(old)  # answered, keep-alive: now the youngest waiting one
    assert guard.admit(Conn("new"), "c")
    assert young.evicted
    assert not old.evicted


def test_when_every_connection_is_busy_the_new_one_is_refused() -> None:
    closed: list[str] = []
    guard = ConnectionGuard(max_connections=2, max_per_client=10, closed=closed.append)
    for name in ("a", "b"):
        conn = Conn(name)
        guard.admit(conn, name)
        guard.busy(conn)
    assert not guard.admit(Conn("c"), "c")
    assert guard.open == 2
    assert closed == ["refused"]


def test_one_client_past_its_cap_evicts_its_own_oldest_not_others() -> None:
    guard = ConnectionGuard(max_connections=100, max_per_client=2)
    other = Conn("other")
    guard.admit(other, "198.51.100.1")
    mine = [Conn(f"mine-{n}") for n in range(2)]
    for conn in mine:
        guard.admit(conn, "192.0.2.1")
    assert guard.admit(Conn("mine-2"), "192.0.2.1")
    assert [c.evicted for c in mine] == [True, False]
    assert not other.evicted
    busy_client = ConnectionGuard(max_connections=100, max_per_client=1)
    held = Conn("held")
    busy_client.admit(held, "192.0.2.1")
    busy_client.busy(held)
    assert not busy_client.admit(Conn("more"), "192.0.2.1")


def test_at_the_cap_a_long_stalled_answer_makes_room_from_the_address_holding_most() -> None:
    """Slow read: connections being answered whose clients take nothing filled the cap and,
    being busy, were never evicted; every new connection was refused."""
    now = [0.0]
    closed: list[str] = []
    guard = ConnectionGuard(max_connections=6, max_per_client=10, stalled_after_s=2,
                            closed=closed.append, clock=lambda: now[0])
    stream = Conn("stream")  # a dispatcher's event stream, read as it comes
    guard.admit(stream, "198.51.100.1")
    guard.busy(stream)
    few = Conn("few")  # stalled, but its address holds fewer connections
    guard.admit(few, "192.0.2.1")
    guard.busy(few)
    guard.stalled(few)
    many = [Conn(f"many-{n}") for n in range(4)]
    for conn in many:
        guard.admit(conn, "203.0.113.9")
        guard.busy(conn)
        guard.stalled(conn)
        now[0] += 0.1
    assert not guard.admit(Conn("too-early"), "198.51.100.1"), "not stalled long enough yet"
    now[0] = 10.0
    assert guard.admit(Conn("probe"), "198.51.100.1")
    assert [c.evicted for c in many] == [True, False, False, False], "the longest stalled one"
    assert not few.evicted
    assert not stream.evicted
    assert closed == ["refused", "evicted_stalled"]
    guard.progressing(many[1])  # its client read some: busy again, not evictable
    assert guard.admit(Conn("probe-2"), "198.51.100.1")
    assert [c.evicted for c in many] == [True, False, True, False]
    assert guard.stalled_count == 2


def test_at_the_cap_a_waiting_connection_of_the_same_address_goes_before_a_stalled_one() -> None:
    now = [0.0]
    guard = ConnectionGuard(max_connections=3, max_per_client=10, stalled_after_s=1,
                            clock=lambda: now[0])
    stalled, idle = Conn("stalled"), Conn("idle")
    guard.admit(stalled, "203.0.113.9")
    guard.busy(stalled)
    guard.stalled(stalled)
    guard.admit(idle, "203.0.113.9")
    guard.admit(Conn("other"), "192.0.2.1")
    now[0] = 5.0
    assert guard.admit(Conn("new"), "192.0.2.2")
    assert (idle.evicted, stalled.evicted) == (True, False)


def test_one_client_past_its_cap_makes_room_from_its_own_stalled_answers() -> None:
    now = [0.0]
    guard = ConnectionGuard(max_connections=100, max_per_client=2, stalled_after_s=1,
                            clock=lambda: now[0])
    other = Conn("other")
    guard.admit(other, "198.51.100.1")
    guard.busy(other)
    guard.stalled(other)
    mine = [Conn(f"mine-{n}") for n in range(2)]
    for conn in mine:
        guard.admit(conn, "192.0.2.1")
        guard.busy(conn)
    guard.stalled(mine[1])
    now[0] = 5.0
    assert guard.admit(Conn("mine-2"), "192.0.2.1")
    assert [c.evicted for c in mine] == [False, True]
    assert not other.evicted


def test_a_connection_answered_again_or_closed_is_no_longer_stalled() -> None:
    guard = ConnectionGuard(max_connections=10, max_per_client=10)
    conn = Conn("a")
    guard.admit(conn, "a")
    guard.stalled(conn)  # waiting for a head: already evictable, not counted twice
    assert guard.stalled_count == 0
    guard.busy(conn)
    guard.stalled(conn)
    assert guard.stalled_count == 1
    guard.waiting(conn)  # its answer is complete
    assert guard.stalled_count == 0
    guard.busy(conn)
    guard.stalled(conn)
    guard.forget(conn)
    assert (guard.stalled_count, guard.open) == (0, 0)


def test_forgetting_is_idempotent_and_frees_the_place() -> None:
    guard = ConnectionGuard(max_connections=1, max_per_client=1)
    conn = Conn("a")
    guard.admit(conn, "a")
    guard.forget(conn)
    guard.forget(conn)
    assert guard.open == 0
    assert guard.waiting_count == 0
    fresh = Conn("b")
    assert guard.admit(fresh, "a")
    assert not conn.evicted


def test_ipv6_clients_are_limited_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert client_group("2001:db8::1") == client_group("2001:db8::ffff") == "2001:db8::/64"
    assert client_group("2001:db8:0:1::1") != client_group("2001:db8::1")
    assert client_group("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_group("not-an-address") == "not-an-address"


def test_the_throttle_allows_the_budget_per_sliding_minute() -> None:
    now = [0.0]
    throttle = AuthThrottle(failures_per_minute=3, clock=lambda: now[0])
    for t in (0.0, 10.0, 20.0):
        now[0] = t
        assert throttle.retry_after_s("a") is None
        throttle.failed("a")
    assert throttle.retry_after_s("a") == 40  # until the first failure is a minute old
    assert throttle.retry_after_s("b") is None
    now[0] = 60.0
    assert throttle.retry_after_s("a") is None
    throttle.failed("a")  # three in the last minute again (10, 20, 60): locked till 70
    assert throttle.retry_after_s("a") == 10


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    now = [0.0]
    throttle = AuthThrottle(failures_per_minute=1, max_clients=100, clock=lambda: now[0])
    for n in range(1000):
        throttle.failed(f"198.51.100.{n % 250}-{n}")
    assert throttle.clients == 100
    now[0] = 120.0
    throttle.failed("fresh")
    assert throttle.clients == 1, "addresses quiet for a minute are forgotten"


def test_a_log_budget_counts_what_it_leaves_out() -> None:
    now = [0.0]
    budget = LogBudget(per_minute=3, clock=lambda: now[0])
    assert [budget.allow()[0] for _ in range(10)] == [True] * 3 + [False] * 7
    now[0] = 60.0
    assert budget.allow() == (True, 7)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"/console/index.html%00.js", "control_character"),
    (b"/docs%0d%0aX-Injected:%20yes", "control_character"),
    (b"/%ZZ", "bad_percent_encoding"),
    (b"/a%2", "bad_percent_encoding"),
    (b"/console/%C3%28.js", "not_utf8"),
    (b"/" + b"a" * 3000, "too_long"),
])
def test_paths_that_name_nothing_are_told_apart(raw: bytes, reason: str) -> None:
    assert path_problem({"raw_path": raw, "path": raw.decode("latin-1")}) == reason


@pytest.mark.parametrize("raw", [b"/", b"/console/app.js", b"/api/v1/beds/site-01/bed%2D1",
                                 "/caf\u00e9".encode(), b"/docs"])
def test_ordinary_paths_pass(raw: bytes) -> None:
    assert path_problem({"raw_path": raw, "path": raw.decode()}) is None


def _parsed(head: bytes) -> object:
    parser = RequestParser()
    parser.receive_data(head)
    return parser.next_event()


def test_an_absolute_form_target_reaches_the_app_as_its_path() -> None:
    event = _parsed(b"GET http://evil.example:81/api/v1/beds?site=a HTTP/1.1\r\n"
                    b"Host: gateway\r\n\r\n")
    assert isinstance(event, h11.Request)
    assert event.target == b"/api/v1/beds?site=a"
    assert dict(event.headers)[b"host"] == b"gateway"  # the Host header as sent


@pytest.mark.parametrize("head", [
    b"POST /api/v1/keys HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 5\r\n\r\n",
    b"GET http:///healthz HTTP/1.1\r\nHost: g\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # a tester: answered 404, then 400, on one connection
    b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: g\r\n\r\n",
], ids=["framed-twice", "no-host", "http2-preface", "connect", "star"])
def test_a_malformed_request_head_is_refused_by_the_parser(head: bytes) -> None:
    with pytest.raises(h11.RemoteProtocolError):
        _parsed(head)


@pytest.fixture
async def app_client(tmp_path: Path) -> httpx.AsyncClient:
    ctx = ApiContext(keys=KeyStore(tmp_path / "keys.sqlite3",
                                   bootstrap_token=secrets.token_urlsafe(32)),
                     registry=Registry(), live=LiveState(),
                     service_log=ServiceLog(tmp_path / "servicelog.sqlite3"))
    app = FastAPI()
    install(app, ctx)
    app.add_middleware(SecurityHeaders)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_a_nul_in_the_path_is_400_before_routing(app_client: httpx.AsyncClient) -> None:
    async with app_client as client:
        response = await client.get("/api/v1/alerts%00")
        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_html_gets_the_strict_policy_unless_it_brings_its_own() -> None:
    page = docs_page(title="t", openapi_url="/openapi.json", assets_url="/docs-assets")
    policy = page.headers["content-security-policy"]
    assert "'sha256-" in policy
    assert "unsafe-inline" not in policy
    assert policy != PAGE_POLICY
    assert "frame-ancestors 'none'" in PAGE_POLICY


def test_log_lines_cannot_carry_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("info", "text")
    try:
        logging.getLogger("homecare.test").warning("http.bad_request path=%s", "/a\x00b\r\nforged")
        try:
            raise ValueError("bad \x1b[31m value\nsecond line")
        except ValueError:
            logging.getLogger("homecare.test").exception("boom value=%s", "x\ty")
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert "\x00" not in err
    assert "\x1b" not in err
    assert "path=/a\\x00b\\r\\nforged" in err
    assert "value=x\\ty" in err
    assert "\nforged" not in err
    assert "\\x1b[31m value" in err


def test_bidirectional_overrides_are_escaped_in_log_lines() -> None:
    """Found by the fresh tester of #17: U+202E reorders what a terminal shows."""
    from gateway.logs import escape

    assert escape("/a\u202eb\u2066c\u200f") == "/a\\u202eb\\u2066c\\u200f"
