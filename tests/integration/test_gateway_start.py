"""``homecare gateway`` started the fast way (:mod:`homecare.service`): the usual arguments
skip the command-line library, anything else still gets the full command's checks and help;
the cyclic collector, off while the start imports and builds, is on again once the gateway
runs (else a long-running gateway would never collect a reference cycle)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homecare.service import plain_arguments
from tests.ingest import publish, start_gateway, wait_ingested
from tests.servers import Mosquitto

pytestmark = [pytest.mark.integration]


def test_plain_arguments_are_only_the_usual_ones(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("")
    assert plain_arguments([]) == (None, False)
    assert plain_arguments(["--config", str(config)]) == (config, False)
    assert plain_arguments(["-c", str(config)]) == (config, False)
    assert plain_arguments([f"--config={config}"]) == (config, False)
    assert plain_arguments(["--standby"]) == (None, True)
    assert plain_arguments(["--config", str(config), "--standby"]) == (config, True)
    assert plain_arguments(["--standby", f"--config={config}"]) == (config, True)
    for args in (["--help"], ["--version"], ["--config"], ["--config", str(tmp_path)],
                 ["--config", str(tmp_path / "missing.toml")], ["--config="],
                 ["--config", str(config), "--extra"], ["-c", "--help"], ["serve"],
                 ["--standby", "--standby"], ["--standby", "--help"]):
        assert plain_arguments(args) is None, args


def _homecare(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOMECARE_")}
    return subprocess.run([sys.executable, "-m", "homecare", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_plain_start_refuses_unknown_variables(tmp_path: Path) -> None:
    done = _homecare("gateway", env={"HOMECARE_DATA_DIR": str(tmp_path),
                                     "HOMECARE_MQTT_URLL": "mqtt://127.0.0.1:1"})
    assert done.returncode == 2, done.stderr
    assert "unknown environment variable HOMECARE_MQTT_URLL (did you mean " in done.stderr
    assert "not started" in done.stderr


def test_other_arguments_get_the_full_command(tmp_path: Path) -> None:
    missing = _homecare("gateway", "--config", str(tmp_path / "missing.toml"), env={})
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    shown = _homecare("gateway", "--help", env={})
    assert shown.returncode == 0
    assert "--config" in shown.stdout


def test_the_collector_runs_again_once_the_gateway_runs(mosquitto: Mosquitto,
                                                        tmp_path: Path) -> None:
    # The test servers start the gateway as a deployment does: `python -m homecare gateway`,
    # no option, the plain start. Young passes come every 20,000 new objects while running.
    gateway = start_gateway(tmp_path, mosquitto.url, None)
    try:
        now = int(time.time() * 1000)
        messages = [(f"homecare/v1/site-gc/bed-{n % 20:02d}/vitals/vs-{n % 20:02d}/telemetry",
                     json.dumps({"ts": now + n, "seq": n + 1, "hr": 70, "rr": 14,
                                 "spo2": 97}).encode()) for n in range(3000)]
        publish(mosquitto.url, messages)
        wait_ingested(gateway, len(messages))
        passes = gateway.metric('homecare_gc_pause_seconds_count{generation="0"}')
        assert passes > 0, gateway.log_tail()
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()
