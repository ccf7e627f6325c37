"""systemd's notifications (READY, STATUS, STOPPING, WATCHDOG) as systemd receives them: a real
unix datagram socket bound by the test stands in for systemd's $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sdnotify import Notifier


@contextlib.contextmanager
def systemd_socket(path: Path | str) -> Iterator[socket.socket]:
    """The socket systemd listens on (``@name``: the abstract namespace)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = "\0" + str(path)[1:] if str(path).startswith("@") else str(path)
    sock.bind(address)
    try:
        yield sock
    finally:
        sock.close()


def received(sock: socket.socket, timeout: float = 5.0) -> str:
    sock.settimeout(timeout)
    return sock.recv(4096).decode()


def pending(sock: socket.socket) -> list[str]:
    """Every datagram already waiting, without waiting for more."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        return out
    finally:
        sock.setblocking(True)


def hang(seconds: float) -> None:
    """Block the calling thread (here: the event loop), as a hung loop would."""
    time.sleep(seconds)


def test_outside_systemd_there_is_no_notifier() -> None:
    assert Notifier.from_environ({}) is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": ""}) is None


def test_ready_status_and_stopping_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with systemd_socket(path) as sock:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(path)})
        assert notifier is not None
        assert notifier.watchdog_s is None
        assert notifier.ready("ingesting")
        assert received(sock) == "READY=1\nSTATUS=ingesting"
        assert notifier.status("reconnecting to the broker")
        assert received(sock) == "STATUS=reconnecting to the broker"
        assert notifier.stopping()
        assert received(sock) == "STOPPING=1"


def test_an_abstract_socket_address_is_understood() -> None:
    name = f"@homecare-test-{os.getpid()}-{time.monotonic_ns()}"
    with systemd_socket(name) as sock:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": name})
        assert notifier is not None
        notifier.ready()
        assert received(sock) == "READY=1"


def test_the_watchdog_interval_comes_from_systemd(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "30000000"}
    notifier = Notifier.from_environ(env)
    assert notifier is not None
    assert notifier.watchdog_s == 30.0
    mine = Notifier.from_environ({**env, "WATCHDOG_PID": str(os.getpid())})
    assert mine is not None
    assert mine.watchdog_s == 30.0
    other = Notifier.from_environ({**env, "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other is not None
    assert other.watchdog_s is None, "the watchdog is another process's"


async def test_the_event_loop_feeds_the_watchdog_and_a_hung_loop_does_not(
        tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with systemd_socket(path) as sock:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(path),
                                          "WATCHDOG_USEC": "300000"})
        assert notifier is not None
        feeding = asyncio.create_task(notifier.feed_watchdog())
        try:
            for _ in range(3):
                assert await asyncio.to_thread(received, sock) == "WATCHDOG=1"
            # The loop hangs (a blocking call on it) for several watchdog periods: nothing
            # feeds the watchdog meanwhile, so systemd would kill and restart the gateway.
            pending(sock)
            hang(1.0)
            assert pending(sock) == [], "fed while the event loop was blocked"
            # Running again, it feeds again.
            assert await asyncio.to_thread(received, sock) == "WATCHDOG=1"
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding


async def test_without_a_watchdog_feeding_returns_at_once(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert notifier is not None
    async with asyncio.timeout(5):
        await notifier.feed_watchdog()


def test_a_missing_socket_is_reported_never_raised(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier is not None
    with caplog.at_level("WARNING"):
        assert not notifier.ready()
        assert not notifier.stopping()
    failures = [r for r in caplog.records if "sdnotify" in r.getMessage()]
    assert len(failures) == 1, "logged once, not at every notification"
