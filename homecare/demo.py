"""``homecare demo``: the whole system on one machine with nothing installed (``make run``).

One process runs an embedded MQTT broker (:mod:`homecare.embedded_broker`), simulated beds
publishing to it with an incident every few minutes (:mod:`simulators.live`), and a real
:class:`~gateway.runtime.Gateway` subscribed to it, serving the alert API and the dispatcher
console on ``http://127.0.0.1:8080`` with a dispatcher key created at start and printed. Time
series stay in the gateway's local spool and its in-memory 24 h window (no database needed).

Ctrl-C (or ``--duration``) stops the beds first, then the gateway (which commits and
acknowledges what it holds), then the broker.

The beds live at ``speed`` times real time, their messages stamped with simulated time, so
the demo's gateway keeps simulated time too (:func:`simulated_clock`): a gateway on the real
clock saw every device time run ahead of receipt (15 minutes ahead after 15 s at speed 60:
a wrong clock on every device, an alert storm within a minute) and judged visits timed by the
badge against minutes sensed by receipt (``too_short`` on every visit; issue #16). So the
times the console and the alert store show are simulated times.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import secrets
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from alerts.model import AlertChange, Severity
from gateway import logs
from gateway.config import Settings, load
from gateway.runtime import Gateway
from homecare.embedded_broker import EmbeddedBroker

log = logging.getLogger("homecare.demo")

DEFAULT_PORT: Final = 8080
DEMO_KEY_NAME: Final = "demo-dispatcher"
READY_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoOptions:
    """What ``homecare demo`` was asked for (validated by the CLI)."""

    duration_s: float | None = None
    beds: int = 20
    speed: float = 60.0
    incidents_per_bed_day: float = 0.5
    seed: int = 1
    port: int | None = None
    """None: 8080, or a free port if 8080 is taken."""
    data_dir: Path | None = None
    """None: a temporary directory removed at exit."""


@dataclass(slots=True)
class _Traffic:
    """Messages per second over a sliding window, from the gateway's received counter."""

    window_s: float = 5.0
    samples: collections.deque[tuple[float, float]] = field(
        default_factory=lambda: collections.deque(maxlen=64))

    def add(self, now: float, total: float) -> float:
        self.samples.append((now, total))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window_s:
            self.samples.popleft()
        t0, n0 = self.samples[0]
        return (total - n0) / (now - t0) if now > t0 else 0.0


class _Dashboard:
    """The terminal view: where to point the browser, traffic, open alerts, latest changes."""

    def __init__(self, gateway: Gateway, *, url: str, key: str) -> None:
        self.gateway = gateway
        self.url = url
        self.key = key
        self.traffic = _Traffic()
        self.changes: collections.deque[tuple[float, AlertChange]] = collections.deque(maxlen=6)
        self.sim_now_ms: int | None = None

    def on_changes(self, changes: list[AlertChange]) -> None:
        """Engine listener (worker thread): appending to a deque is thread-safe."""
        now = time.monotonic()
        for change in changes:
            if change.action in ("opened", "escalated", "acknowledged", "resolved",
                                 "auto_resolved", "downgraded"):
                self.changes.append((now, change))

    def status_line(self, *, final: bool = False) -> Text:
        received = self.gateway.metrics.registry.get_sample_value(
            "homecare_messages_received_total") or 0.0
        rate = self.traffic.add(time.monotonic(), received)
        open_alerts = self.gateway.alerts.open_alerts()
        critical = sum(1 for a in open_alerts if a.severity is Severity.CRITICAL)
        unacked = sum(1 for a in open_alerts if a.status == "open")
        line = Text()
        if final:
            line.append(f"{received:,.0f} messages received  ")
        else:
            line.append("● ", style="green")
            line.append(f"{rate:,.0f} msg/s", style="bold")
            line.append(f"  ({received:,.0f} messages)  ")
        line.append(f"open alerts {len(open_alerts)}", style="bold")
        line.append(f" ({unacked} unacknowledged, ")
        line.append(f"{critical} critical", style="bold red" if critical else "")
        line.append(")")
        if self.sim_now_ms is not None:
            sim = dt.datetime.fromtimestamp(self.sim_now_ms / 1000, tz=dt.UTC)
            line.append(f"  simulated time {sim:%Y-%m-%d %H:%M}Z", style="dim")
        return line

    def __rich__(self) -> Group:
        head = Text()
        head.append("console ", style="dim")
        head.append(self.url, style="bold cyan")
        head.append("   key ", style="dim")
        head.append(self.key, style="bold")
        rows = Table(box=None, show_header=False, pad_edge=False)
        now = time.monotonic()
        for at, change in reversed(self.changes):
            a = change.alert
            rows.add_row(f"{now - at:4.0f}s ago", change.action, a.severity.value,
                         a.type.value, f"{a.site}/{a.bed}", style=(
                             "bold red" if a.severity is Severity.CRITICAL
                             and change.action == "opened" else None))
        parts: list[Any] = [head, self.status_line()]
        if self.changes:
            parts += [Text("latest alert changes", style="dim"), rows]
        return Group(*parts)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _choose_port(host: str, wanted: int | None, console: Console) -> int:
    if wanted is not None:
        return wanted
    if _port_free(host, DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port = int(s.getsockname()[1])
    console.print(f"port {DEFAULT_PORT} is taken; serving on {port} instead (--port to choose)")
    return port


@contextlib.contextmanager
def _data_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="homecare-demo-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def simulated_clock(speed: float) -> Iterator[None]:
    """``time.time`` and ``time.time_ns`` run ``speed`` times as fast as real time from now.

    The gateway stamps receipt, evaluation, alert and audit times with them; the simulator
    starts its clock from them. One process holds the broker, the beds and the gateway, so
    they all keep the one simulated clock. Intervals waited on (event loop, threads) use
    the monotonic clock and stay real. Restored on exit."""
    if speed == 1:
        yield
        return
    real_time, real_time_ns = time.time, time.time_ns
    origin_ns, origin_mono_ns = real_time_ns(), time.monotonic_ns()

    def time_ns() -> int:
        return origin_ns + round((time.monotonic_ns() - origin_mono_ns) * speed)

    def time_s() -> float:
        return time_ns() / 1e9

    time.time, time.time_ns = time_s, time_ns
    try:
        yield
    finally:
        time.time, time.time_ns = real_time, real_time_ns


def create_demo_key(gateway: Gateway) -> str:
    """A fresh dispatcher key in the gateway's key store (an older demo key is revoked)."""
    from alerts.errors import KeyNotFound
    from alerts.keys import Role

    keys = gateway.keys
    with contextlib.suppress(KeyNotFound):
        keys.revoke(DEMO_KEY_NAME, actor="demo")
    _, token = keys.create(DEMO_KEY_NAME, Role.DISPATCHER, actor="demo")
    return token


def demo_settings(*, mqtt_url: str, data_dir: Path, port: int, bootstrap_key: str,
                  timezone: str) -> Settings:
    """Gateway settings for the demo: embedded broker (MQTT 3.1.1), local data, no database,
    day and night in the simulated homes' ``timezone`` (not the machine's: on a UTC machine
    the Shanghai homes' afternoon was night, a false night bed exit for every bed up)."""
    return load(
        mqtt_url=mqtt_url, mqtt_protocol="3.1.1", mqtt_client_id="homecare-demo-gateway",
        data_dir=data_dir, api_addr=f"127.0.0.1:{port}", influx_url=None,
        spool_max_bytes=256 * 1024 * 1024, log_level="warning", api_key=bootstrap_key,
        timezone=timezone)


async def run_demo(options: DemoOptions, *, console: Console | None = None) -> None:
    """Run the demo until ``options.duration_s`` passes, SIGINT or SIGTERM."""
    from simulators.config import ForcedIncident, SimConfig
    from simulators.live import LiveStats, run_live

    console = console or Console(stderr=True)
    logs.setup("warning")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim_config = SimConfig(
        beds=options.beds, seed=options.seed,
        incidents_per_bed_day=options.incidents_per_bed_day,
        forced=(ForcedIncident(type="emergency_button", bed="bed-0001"),
                ForcedIncident(type="fall", bed=f"bed-{min(options.beds, 2):04d}")))
    port = _choose_port("127.0.0.1", options.port, console)
    with _data_dir(options.data_dir) as data_dir, simulated_clock(options.speed):
        async with EmbeddedBroker() as broker:
            console.print(f"embedded broker at {broker.url}")
            settings = demo_settings(mqtt_url=broker.url, data_dir=data_dir, port=port,
                                     bootstrap_key=secrets.token_urlsafe(32),
                                     timezone=sim_config.timezones[0])
            gateway = Gateway(settings)
            key = create_demo_key(gateway)
            url = f"http://127.0.0.1:{port}/"
            dashboard = _Dashboard(gateway, url=url, key=key)
            gateway.alerts.add_listener(dashboard.on_changes)
            async with asyncio.TaskGroup() as tasks:
                running = tasks.create_task(gateway.run(), name="demo-gateway")
                try:
                    await _wait_started(gateway, running)
                    for line in (f"dispatcher console at {url}",
                                 f"API key (dispatcher): {key}",
                                 f"data in {data_dir}; Ctrl-C stops"):
                        console.print(line, soft_wrap=True, highlight=False)

                    def tick(stats: LiveStats) -> None:
                        dashboard.sim_now_ms = stats.sim_now_ms

                    with Live(dashboard, console=console, refresh_per_second=2,
                              transient=not console.is_terminal):
                        await run_live(sim_config, broker.url, speed=options.speed,
                                       duration_s=options.duration_s, stop=stop,
                                       client_prefix="demo", on_tick=tick)
                finally:
                    gateway.stop()
                await running
            console.print(dashboard.status_line(final=True), soft_wrap=True)
    console.print("demo stopped")


async def _wait_started(gateway: Gateway, running: asyncio.Task[None]) -> None:
    """Until the gateway listens on HTTP and is connected to the broker."""
    async with asyncio.timeout(READY_TIMEOUT_S):
        while not (gateway.http_started.is_set() and gateway.source.connected.is_set()):
            if running.done():
                running.result()
                raise RuntimeError("the gateway stopped during start-up")
            await asyncio.sleep(0.05)
