"""The gateway process and its configuration: an unknown ``HOMECARE_*`` variable stops it at
start, before it creates anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import Mosquitto, running_gateway

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_gateway_does_not_start_with_an_unknown_variable(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.upper().startswith("HOMECARE_")}
    env.update(HOMECARE_DATA_DIR=str(tmp_path / "data"), HOMECARE_MQTT_URL="mqtt://127.0.0.1:9",
               HOMECARE_API_ADDR="127.0.0.1:0", HOMECARE_INFLUX_TOKEN_FIEL="/run/token")
    try:
        done = subprocess.run([sys.executable, "-m", "homecare.cli", "gateway"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the gateway started with HOMECARE_INFLUX_TOKEN_FIEL set") from exc
    assert done.returncode == 2, done.stderr
    assert "HOMECARE_INFLUX_TOKEN_FIEL" in done.stderr
    assert "did you mean HOMECARE_INFLUX_TOKEN_FILE?" in done.stderr
    assert not (tmp_path / "data").exists(), "nothing is created before the check"


def test_a_second_gateway_on_the_same_data_directory_stops_at_once(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A second gateway started by mistake on a running one's data directory got as far as
    restoring alerts and replaying the spool before its port was found taken (a verifier). It
    now stops before opening anything, naming the one that holds the directory."""
    with running_gateway(tmp_path / "first", mosquitto.url, {}) as first:
        env = {key: value for key, value in os.environ.items()
               if not key.upper().startswith("HOMECARE_")}
        env.update(HOMECARE_DATA_DIR=str(first.data_dir), HOMECARE_MQTT_URL=mosquitto.url,
                   HOMECARE_API_ADDR="127.0.0.1:0")
        done = subprocess.run([sys.executable, "-m", "homecare", "gateway"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "another gateway (pid " in done.stderr, done.stderr
        assert "restored" not in done.stderr, done.stderr
        assert first.proc is not None
        assert first.proc.poll() is None, "the first one runs on"
