"""Real servers for tests: started on free loopback ports with temp config and data dirs.

Each server is a small class with ``start``/``stop``/``kill``/``restart``; readiness is polled
with a deadline, never slept for. Fixtures in ``conftest.py`` own their lifetime.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


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
        self.log_path = self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, *, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.workdir, start_new_session=True)
        log.close()
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
    """Eclipse Mosquitto with persistence on, as the deployment config has it."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, *, extra_config: str = "",
                 config_file: Path | None = None) -> None:
        super().__init__(workdir, port)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.extra_config = extra_config
        self.config_file = config_file

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def write_config(self) -> Path:
        path = self.workdir / "mosquitto.conf"
        path.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "user root\n"
            "persistence true\n"
            f"persistence_location {self.data_dir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            "max_packet_size 1048576\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"{self.extra_config}\n"
        )
        return path

    def command(self) -> list[str]:
        binary = require_binary("mosquitto", "/usr/sbin/mosquitto")
        config = self.config_file or self.write_config()
        return [binary, "-c", str(config)]
