"""``homecare gateway --standby``: a second gateway on the same data directory waits, imported
and configured, opening nothing, and takes over the moment the serving one is killed (SIGKILL),
without losing or duplicating a point; stopped while it waits, it exits cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.load import pregenerate
from tests.ingest import (
    describe_difference,
    drain_a_frozen_backlog,
    publish,
    start_gateway,
    wait_ingested,
    wait_stored,
)
from tests.oracle import expected_points
from tests.servers import GatewayProcess, Influxd, Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _standby(first: GatewayProcess, workdir: Path) -> GatewayProcess:
    """A standby for ``first``: same data directory, broker, client id and API port; its own
    log (``workdir``)."""
    standby = GatewayProcess(workdir, mqtt_url=first.env["HOMECARE_MQTT_URL"], env=first.env,
                             port=first.port, args=("--standby",))
    standby.launch()
    wait_for(lambda: "gateway.standby " in _log(standby), "the standby waiting", timeout=60)
    return standby


def _log(gateway: GatewayProcess) -> str:
    return gateway.log_path.read_text(errors="replace") if gateway.log_path.exists() else ""


def test_the_standby_takes_over_a_killed_gateway_and_loses_nothing(
        influxd: Influxd, mosquitto: Mosquitto, tmp_path: Path) -> None:
    traffic = pregenerate(beds=100, n_messages=20_000, seed=29)
    first = start_gateway(tmp_path, mosquitto.url, influxd)
    standby = _standby(first, tmp_path / "standby")
    try:
        publish(mosquitto.url, traffic[:4_000])
        wait_ingested(first, 4_000)
        log = _log(standby)
        assert "gateway.starting" not in log, "a standby opens nothing while the other serves"
        assert standby.proc is not None
        assert standby.proc.poll() is None, log
        drain_a_frozen_backlog(first, mosquitto.url, traffic[4_000:], 4_000)
        first.kill()
        wait_for(lambda: "gateway.taking_over" in _log(standby), "the standby taking over",
                 timeout=30)
        standby.wait_connected(timeout=30)
        wait_ingested(standby, 1)
        expected = expected_points(traffic)
        stored = wait_stored(influxd, expected, timeout=60)
        assert stored == expected, describe_difference(expected, stored)
    finally:
        first.stop()
        standby.stop()
    assert standby.returncode == 0, standby.log_tail()


def test_a_standby_stopped_while_it_waits_exits_cleanly(mosquitto: Mosquitto,
                                                        tmp_path: Path) -> None:
    first = start_gateway(tmp_path, mosquitto.url, None)
    try:
        standby = _standby(first, tmp_path / "standby")
        standby.stop()
        assert standby.returncode == 0, standby.log_tail()
        assert "gateway.standby_stopped signal=SIGTERM" in _log(standby)
        assert first.proc is not None
        assert first.proc.poll() is None, "the first serves on"
        assert first.metric("homecare_mqtt_connected") == 1
    finally:
        first.stop()


def test_the_standby_takes_over_with_the_settings_as_they_are_then(mosquitto: Mosquitto,
                                                                  tmp_path: Path) -> None:
    """A standby may wait for days: settings edited meanwhile are the ones it runs with."""
    config = tmp_path / "gateway.toml"
    config.write_text('log_format = "text"\n')
    first = start_gateway(tmp_path, mosquitto.url, None)
    standby = GatewayProcess(tmp_path / "standby", mqtt_url=mosquitto.url, env=first.env,
                             port=first.port, args=("--config", str(config), "--standby"))
    try:
        standby.launch()
        wait_for(lambda: "gateway.standby " in _log(standby), "the standby waiting", timeout=60)
        config.write_text('log_format = "json"\n')
        first.kill()
        standby.wait_connected(timeout=30)
        after = _log(standby).partition("gateway.taking_over ")[2].splitlines()[1:]
        assert after, _log(standby)
        assert all(line.startswith("{") for line in after if line.strip()), after[:5]
    finally:
        first.stop()
        standby.stop()
