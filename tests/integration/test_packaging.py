"""What ``pip install homecare-gateway`` brings to a hub: the gateway's runtime and nothing of
the demo, the simulators' MQTT clients or the test tools, which are extras. The gateway is run
with every module outside its runtime dependencies made unimportable
(:mod:`tests.runtime_only`), as on a host with only the runtime installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from simulators.load import publish_all
from tests.runtime_only import blocked_modules, runtime_distributions
from tests.servers import GatewayProcess, Mosquitto

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXTRAS_ONLY = {"amqtt", "paho-mqtt", "aiomqtt", "gmqtt", "pytest", "pytest-asyncio",
               "pytest-timeout", "hypothesis", "ruff", "mypy", "playwright", "schemathesis",
               "import-linter", "py-spy", "orjson"}
"""The demo broker, the MQTT clients of the simulators' tools, tests and benchmarks, the test
and lint tools: never installed with the gateway."""


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(line).name.lower() for line in requirements}


def test_runtime_dependencies_leave_the_demo_and_test_tools_to_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _names(project["dependencies"])
    assert not runtime & EXTRAS_ONLY, f"in the runtime dependencies: {runtime & EXTRAS_ONLY}"
    extras = project["optional-dependencies"]
    assert "amqtt" in _names(extras["demo"])
    test = extras["test"]
    assert {"paho-mqtt", "aiomqtt", "pytest", "playwright"} <= _names(test)
    assert "homecare-gateway[demo]" in test, "the tests run the demo: the test extra has it"
    # What the installed metadata says, as pip reads it.
    installed = runtime_distributions()
    assert not installed & EXTRAS_ONLY, installed & EXTRAS_ONLY


class RuntimeOnlyGateway(GatewayProcess):
    """``homecare gateway`` with only the runtime dependencies importable."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tests.runtime_only", "gateway"]

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "PYTHONPATH": str(ROOT)}


def test_the_gateway_runs_with_only_its_runtime_dependencies(mosquitto: Mosquitto,
                                                             tmp_path: Path) -> None:
    assert {"amqtt", "paho", "aiomqtt", "pytest"} <= blocked_modules(), "the check blocks them"
    gateway = RuntimeOnlyGateway(tmp_path / "gateway", mqtt_url=mosquitto.url)
    gateway.start()
    try:
        gateway.wait_connected()
        now = time.time_ns() // 1_000_000
        topic = "homecare/v1/site-01/bed-0001/button/btn-0001/event"
        payload = json.dumps({"ts": now, "seq": 1, "event": "press"}).encode()

        import asyncio

        asyncio.run(publish_all(mosquitto.url, [(topic, payload)]))
        # The alert is committed after the message is counted as accepted: waited for, both
        # (a busy machine showed the gauge still at 0 just after the count).
        deadline = time.monotonic() + 30
        open_calls = 'homecare_alerts_open{severity="critical",status="open",' \
                     'type="emergency_button"}'
        while gateway.metric("homecare_messages_accepted_total") < 1 or \
                gateway.metric(open_calls) < 1:
            assert time.monotonic() < deadline, gateway.log_tail()
            time.sleep(0.1)
        assert gateway.metric(open_calls) == 1
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()


def test_the_demo_without_its_extra_says_what_to_install(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMECARE_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "tests.runtime_only", "demo", "--duration",
                             "5", "--data-dir", str(tmp_path / "data")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, out + err
    assert "pip install 'homecare-gateway[demo]'" in err, err
    assert "Traceback" not in err, err


def test_make_run_installs_the_demo_extra_only() -> None:
    """A fresh tester: `make run` installed the test extra too (Playwright, mypy, pytest),
    because the bytecode step it runs depended on the test venv. `make -n -B run` lists every
    command it would run from scratch."""
    done = subprocess.run(["make", "-n", "-B", "run"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    installs = [line for line in done.stdout.splitlines() if "pip install" in line]
    assert installs, done.stdout
    assert all("'.[demo]'" in line for line in installs), installs
