"""Real servers for tests: started on free loopback ports with temp config and data dirs.

Each server is a small class with ``start``/``stop``/``kill``/``restart``; readiness is polled
with a deadline, never slept for. Fixtures in ``conftest.py`` own their lifetime.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``predicate`` until it returns something true (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(what)


def sqlite_rows(db_path: Path, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
    """Rows of a gateway's SQLite store, read from outside (empty while it does not exist
    or the table is not made yet)."""
    if not db_path.exists():
        return []
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, *, timeout: float = 20.0,
                  proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def require_binary(name: str, *candidates: str) -> str:
    for candidate in (name, *candidates):
        found = shutil.which(candidate)
        if found:
            return found
        if os.path.isabs(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        f"{name} is not installed; `make test` installs it (apt-get install {name})")


class Server:
    """A child process listening on one loopback port."""

    name = "server"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The child's environment; ``None`` inherits ours unchanged."""
        return None

    def launch(self) -> subprocess.Popen[bytes]:
        """The process started, not waited for (:meth:`start` waits until it listens)."""
        if self.proc is None or self.proc.poll() is not None:
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, start_new_session=True, env=self.environment())
            log.close()
        return self.proc

    def start(self, *, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.launch()
        self.wait_started(timeout=timeout)

    def wait_started(self, *, timeout: float = 30.0) -> None:
        """Until the launched process listens and is ready; stopped and raised when not."""
        try:
            wait_for_port(self.host, self.port, timeout=timeout, proc=self.proc)
            self.wait_ready(timeout=timeout)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {exc}\n{self.log_tail()}") from exc

    def wait_ready(self, *, timeout: float) -> None:
        """Beyond a listening port; servers override when they need more."""

    def stop(self, *, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.returncode = self.proc.returncode
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Mosquitto(Server):
    """Eclipse Mosquitto with persistence on, as the deployment config has it.

    Anonymous and unrestricted unless given a ``password_file`` (then nobody connects without
    a password) and an ``acl_file`` (then nobody does what it does not allow)."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, *, extra_config: str = "",
                 config_file: Path | None = None, password_file: Path | None = None,
                 acl_file: Path | None = None, autosave_interval_s: int = 1) -> None:
        super().__init__(workdir, port)
        self.autosave_interval_s = autosave_interval_s
        """How often the broker writes its in-memory state to disk: every second by default
        (a kill in a fault test loses little); a benchmark of the deployment passes the
        deployed value (``autosave_interval`` in deploy/mosquitto/mosquitto.conf)."""
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.extra_config = extra_config
        self.config_file = config_file
        self.password_file = password_file
        self.acl_file = acl_file

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def write_config(self) -> Path:
        path = self.workdir / "mosquitto.conf"
        path.write_text(
            f"listener {self.port} {self.host}\n"
            + (f"allow_anonymous false\npassword_file {self.password_file}\n"
               if self.password_file else "allow_anonymous true\n")
            + (f"acl_file {self.acl_file}\n" if self.acl_file else "")
            + "user root\n"
            "persistence true\n"
            f"persistence_location {self.data_dir}/\n"
            f"autosave_interval {self.autosave_interval_s}\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            "max_packet_size 1048576\n"
            "set_tcp_nodelay true\n"  # as deployed (deploy/mosquitto/mosquitto.conf)
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"{self.extra_config}\n"
        )
        return path

    def command(self) -> list[str]:
        binary = require_binary("mosquitto", "/usr/sbin/mosquitto")
        config = self.config_file or self.write_config()
        return [binary, "-c", str(config)]


class Influxd(Server):
    """InfluxDB 1.x (Debian ``influxdb``): the v1 ``/write`` and ``/query`` HTTP API.

    Listens only on loopback: the HTTP API on :attr:`port` and the RPC/meta service (used by
    backup/restore) on :attr:`rpc_port`; every other listener is off. No usage reporting.
    """

    name = "influxd"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.rpc_port = free_port()
        while self.rpc_port == self.port:
            self.rpc_port = free_port()
        self.data_root = self.workdir / "influxdb"
        self.config_path = self.workdir / "influxdb.conf"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def write_config(self) -> Path:
        root = self.data_root
        self.config_path.write_text(
            "reporting-enabled = false\n"
            f'bind-address = "{self.host}:{self.rpc_port}"\n'
            "[meta]\n"
            f'  dir = "{root / "meta"}"\n'
            "  retention-autocreate = true\n"
            "  logging-enabled = false\n"
            "[data]\n"
            f'  dir = "{root / "data"}"\n'
            f'  wal-dir = "{root / "wal"}"\n'
            '  wal-fsync-delay = "0s"\n'
            '  index-version = "inmem"\n'
            "  query-log-enabled = false\n"
            "[monitor]\n"
            "  store-enabled = false\n"
            "[subscriber]\n"
            "  enabled = false\n"
            "[continuous_queries]\n"
            "  enabled = false\n"
            "[http]\n"
            "  enabled = true\n"
            f'  bind-address = "{self.host}:{self.port}"\n'
            "  auth-enabled = false\n"
            "  log-enabled = false\n"
            "  pprof-enabled = false\n"
            "  unix-socket-enabled = false\n"
            "[ifql]\n"
            "  enabled = false\n"
            "[logging]\n"
            '  level = "warn"\n'
            "  suppress-logo = true\n"
        )
        return self.config_path

    def command(self) -> list[str]:
        binary = require_binary("influxd", "/usr/bin/influxd")
        return [binary, "-config", str(self.write_config())]

    def wait_ready(self, *, timeout: float) -> None:
        _poll_http(f"{self.url}/ping", {204}, timeout=timeout, proc=self.proc)

    def create_database(self, name: str) -> None:
        self._post_query(f'CREATE DATABASE "{name}"')

    def write(self, db: str, lines: str | bytes, *, precision: str = "ms") -> None:
        """Line protocol through the v1 ``/write`` API."""
        body = lines.encode() if isinstance(lines, str) else lines
        r = httpx.post(f"{self.url}/write", params={"db": db, "precision": precision},
                       content=body, timeout=10)
        if r.status_code != 204:
            raise RuntimeError(f"influxd /write: {r.status_code} {r.text}")

    def query(self, db: str, influxql: str) -> list[dict[str, Any]]:
        """Rows of an InfluxQL query (v1 ``/query``), one dict per point, times as epoch ms.

        Tags of ``GROUP BY`` series are merged into each row.
        """
        r = httpx.get(f"{self.url}/query",
                      params={"db": db, "q": influxql, "epoch": "ms"}, timeout=10)
        r.raise_for_status()
        rows: list[dict[str, Any]] = []
        for result in r.json().get("results", []):
            if "error" in result:
                raise RuntimeError(f"influxd query {influxql!r}: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags") or {}
                for values in series.get("values", []):
                    rows.append({"_measurement": series.get("name"), **tags,
                                 **dict(zip(series["columns"], values, strict=True))})
        return rows

    def _post_query(self, influxql: str) -> None:
        r = httpx.post(f"{self.url}/query", data={"q": influxql}, timeout=10)
        r.raise_for_status()
        for result in r.json().get("results", []):
            if "error" in result:
                raise RuntimeError(f"influxd {influxql!r}: {result['error']}")


class VictoriaMetrics(Server):
    """VictoriaMetrics single-node (Debian ``victoria-metrics``).

    Accepts InfluxDB line protocol on ``/write`` (v1) and ``/api/v2/write`` (v2), so the
    gateway's InfluxDB writers are tested against it. Retention is 100 years so replays of old
    simulated timestamps are kept; the query latency offset and response cache are off so a
    point is readable as soon as :meth:`flush` returns. Exact duplicates are stored unless
    ``dedup_interval`` is set (e.g. ``"1ms"``), unlike InfluxDB which overwrites them.
    """

    name = "victoria-metrics"

    def __init__(self, workdir: Path, port: int | None = None, *,
                 dedup_interval: str | None = None) -> None:
        super().__init__(workdir, port)
        self.data_dir = self.workdir / "data"
        self.dedup_interval = dedup_interval
        self._has_force_flush: bool | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        binary = require_binary("victoria-metrics", "/usr/bin/victoria-metrics")
        cmd = [
            binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]
        if self.dedup_interval:
            cmd.append(f"-dedup.minScrapeInterval={self.dedup_interval}")
        return cmd

    def wait_ready(self, *, timeout: float) -> None:
        _poll_http(f"{self.url}/health", {200}, timeout=timeout, proc=self.proc)

    def flush(self) -> None:
        """Make every accepted point searchable now (``/internal/force_flush``).

        Versions without that endpoint make points searchable within about a second; then
        callers poll (see :meth:`wait_for_points`).
        """
        if self._has_force_flush is False:
            return
        r = httpx.get(f"{self.url}/internal/force_flush", timeout=10)
        self._has_force_flush = r.status_code != 404
        if self._has_force_flush:
            r.raise_for_status()

    def export(self, match: str = '{__name__!=""}', *, start: int = 0,
               end: int | None = None) -> list[dict[str, Any]]:
        """Raw series from ``/api/v1/export``: ``{"metric": {...}, "values": [...],
        "timestamps": [...]}`` per series (timestamps in epoch ms). ``start``/``end`` are
        epoch seconds; the default covers all time."""
        self.flush()
        params: dict[str, str | int] = {"match[]": match, "start": start}
        if end is not None:
            params["end"] = end
        r = httpx.post(f"{self.url}/api/v1/export", data=params, timeout=30)
        r.raise_for_status()
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

    def query_series(self, match: str = '{__name__!=""}') -> list[tuple[str, dict[str, str],
                                                                          int, float]]:
        """Every raw point matching ``match`` as ``(metric name, labels, ts_ms, value)``,
        sorted by name, labels and time."""
        points: list[tuple[str, dict[str, str], int, float]] = []
        for series in self.export(match):
            labels = dict(series["metric"])
            name = labels.pop("__name__")
            for ts, value in zip(series["timestamps"], series["values"], strict=True):
                points.append((name, labels, int(ts), float(value)))
        points.sort(key=lambda p: (p[0], sorted(p[1].items()), p[2]))
        return points

    def wait_for_points(self, match: str, count: int, *, timeout: float = 10.0
                        ) -> list[tuple[str, dict[str, str], int, float]]:
        """Poll until at least ``count`` points match (writes are asynchronous inside VM)."""
        deadline = time.monotonic() + timeout
        while True:
            points = self.query_series(match)
            if len(points) >= count or time.monotonic() >= deadline:
                return points
            time.sleep(0.05)


def _poll_http(url: str, ok: set[int], *, timeout: float,
               proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            r = httpx.get(url, timeout=1.0)
            if r.status_code in ok:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s ({last})")


class GatewayProcess(Server):
    """``homecare gateway`` as a real process, configured through ``HOMECARE_*`` variables."""

    name = "gateway"

    def __init__(self, workdir: Path, *, mqtt_url: str, env: dict[str, str] | None = None,
                 port: int | None = None, args: tuple[str, ...] = ()) -> None:
        super().__init__(workdir, port)
        self.args = args
        """After ``homecare gateway`` (e.g. ``--standby``)."""
        self.data_dir = Path((env or {}).get("HOMECARE_DATA_DIR", self.workdir / "data"))
        self.env = {
            "HOMECARE_MQTT_URL": mqtt_url,
            "HOMECARE_DATA_DIR": str(self.data_dir),
            "HOMECARE_API_ADDR": f"{self.host}:{self.port}",
            "HOMECARE_MQTT_CLIENT_ID": f"gw-{self.port}",
            "HOMECARE_LOG_LEVEL": "info",
            **(env or {}),
        }

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        import sys

        return [sys.executable, "-m", "homecare", "gateway", *self.args]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def metrics(self) -> dict[str, float]:
        """The gateway's Prometheus metrics as ``{"name{labels}": value}``."""
        import httpx

        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)

    def wait_connected(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                if self.metric("homecare_mqtt_connected") == 1:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"gateway not connected to the broker\n{self.log_tail()}")


@contextlib.contextmanager
def running_gateway(workdir: Path, mqtt_url: str, env: dict[str, str]
                    ) -> Iterator[GatewayProcess]:
    """A gateway process connected to its broker; stopped afterwards, and it must have exited
    cleanly."""
    process = GatewayProcess(workdir, mqtt_url=mqtt_url, env=env)
    process.start()
    try:
        process.wait_connected()
        yield process
    finally:
        process.stop()
    assert process.returncode == 0, process.log_tail()
