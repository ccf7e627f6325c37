"""Shared fixtures: real servers on loopback, unique per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Influxd, Mosquitto, VictoriaMetrics


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real mosquitto on a free loopback port with persistence in a temp dir."""
    server = Mosquitto(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[Influxd]:
    """A real InfluxDB 1.x on free loopback ports with its data in a temp dir."""
    server = Influxd(tmp_path / "influxd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A real VictoriaMetrics on a free loopback port; 100-year retention, no query cache."""
    server = VictoriaMetrics(tmp_path / "victoria-metrics")
    server.start()
    try:
        yield server
    finally:
        server.stop()


SLOW_FILES_FIRST = (
    "unit/test_detect_inactivity.py", "integration/test_profiles_quality.py",
    "unit/test_detect_lives.py", "integration/test_console_browser.py",
    "faults/test_ingest_faults.py", "unit/test_detect_abnormal_sound.py",
    "integration/test_service_records_live.py", "faults/test_detector_journal_kill.py",
    "integration/test_api_schemathesis.py",
    "integration/test_service_supervision_live.py",
    "integration/test_service_supervision_eval.py", "integration/test_site_health_live.py",
    "unit/test_detect_snapshot.py", "unit/test_detect_common.py",
    "integration/test_http_hardening.py", "integration/test_replay_quality.py",
    "integration/test_demo.py",
)
"""The longest test files (measured, ``--durations``), handed out first by ``make test``'s
workers (``--dist loadfile --no-loadscope-reorder``): a long file started last kept one worker
busy while the others had nothing left. Only the order changes; a file not listed runs after
these in collection order."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(SLOW_FILES_FIRST)}

    def key(item: pytest.Item) -> int:
        path = item.path.as_posix()
        return next((n for name, n in rank.items() if path.endswith(f"tests/{name}")),
                    len(rank))

    items.sort(key=key)  # stable: each file's tests keep their order
