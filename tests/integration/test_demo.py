"""``homecare demo`` (what ``make run`` starts) as a user runs it: one command, nothing else
installed, the console and the API on the port asked for, a printed key that works, alerts
from the simulated beds, and a clean stop."""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOMECARE = str(Path(sys.executable).parent / "homecare")
KEY_LINE = re.compile(r"API key \(dispatcher\): (\S+)")


class Demo:
    """A running ``homecare demo`` whose output lines are read as they come."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [HOMECARE, "demo", "--port", str(self.port), *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line matching {pattern.pattern!r}:\n{self.text}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.output.append(line)
            found = pattern.search(line)
            if found:
                return found

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code

    @property
    def text(self) -> str:
        return "".join(self.output)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def demo_factory() -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.kill()


def _until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def test_demo_serves_console_and_api_with_a_printed_key_and_stops_after_its_duration(
        demo_factory: list[Demo]) -> None:
    demo = Demo("--duration", "25", "--beds", "4")
    demo_factory.append(demo)
    key = demo.wait_for(KEY_LINE).group(1)

    assert httpx.get(f"{demo.url}/healthz", timeout=5).json() == {"status": "ok"}
    page = httpx.get(f"{demo.url}/", timeout=5)
    assert page.status_code == 200
    assert 'data-i18n="app.name"' in page.text  # texts come from the console's catalogue
    assert "/console/app.js" in page.text
    catalogue = httpx.get(f"{demo.url}/console/i18n.js", timeout=5)
    assert catalogue.status_code == 200
    assert "zh-CN" in catalogue.text
    assert httpx.get(f"{demo.url}/console/app.js", timeout=5).status_code == 200
    assert httpx.get(f"{demo.url}/api/v1/alerts", timeout=5).status_code == 401

    auth = {"Authorization": f"Bearer {key}"}

    def forced_incidents() -> set[str]:
        body = httpx.get(f"{demo.url}/api/v1/alerts", headers=auth, timeout=5).json()
        return {a["type"] for a in body["items"]}

    # The demo forces an emergency call and a fall within its first seconds.
    _until(lambda: {"emergency_button", "fall"} <= forced_incidents(), timeout=20,
           what="the demo's emergency call and fall did not open alerts")
    call = next(a for a in httpx.get(f"{demo.url}/api/v1/alerts", headers=auth,
                                     params={"type": "emergency_button"}, timeout=5
                                     ).json()["items"])
    acked = httpx.post(f"{demo.url}/api/v1/alerts/{call['id']}/acknowledge", headers=auth,
                       json={}, timeout=5)
    assert acked.status_code == 200, "the printed key is a dispatcher's"
    beds = httpx.get(f"{demo.url}/api/v1/beds", headers=auth, timeout=5).json()["items"]
    assert {b["bed"] for b in beds} >= {"bed-0001", "bed-0002"}

    assert demo.finish(timeout=60) == 0, demo.text
    assert "demo stopped" in demo.text


def test_demo_stops_cleanly_on_ctrl_c(demo_factory: list[Demo]) -> None:
    demo = Demo("--beds", "2")
    demo_factory.append(demo)
    demo.wait_for(KEY_LINE)
    assert httpx.get(f"{demo.url}/healthz", timeout=5).status_code == 200
    demo.proc.send_signal(signal.SIGINT)
    assert demo.finish(timeout=30) == 0, demo.text
    assert "demo stopped" in demo.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{demo.url}/healthz", timeout=2)


def test_demo_alerts_are_its_incidents_not_its_speed(tmp_path: Path) -> None:
    """Issue #16: at speed 60 the demo's gateway judged simulated times by the real clock.
    Device times ran ahead of receipt (a wrong clock on every device: a ``sensor_fault``
    storm about 57 s in) and visits timed by the badge were judged against minutes sensed by
    receipt (``service_anomaly`` ``too_short``). Two minutes of the default demo (two
    simulated hours) open the forced call and fall and neither of those."""
    data = tmp_path / "data"
    demo = Demo("--duration", "120", "--data-dir", str(data))
    try:
        assert demo.finish(timeout=240) == 0, demo.text
    finally:
        demo.kill()
    with contextlib.closing(sqlite3.connect(data / "alerts.sqlite3")) as db:
        alerts = db.execute("SELECT type, bed FROM alerts ORDER BY opened_at").fetchall()
    types = [t for t, _ in alerts]
    assert {"emergency_button", "fall"} <= set(types), alerts
    assert "sensor_fault" not in types, alerts
    assert "service_anomaly" not in types, alerts
