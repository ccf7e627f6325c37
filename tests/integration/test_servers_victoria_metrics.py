"""The ``victoria_metrics`` fixture is a real VictoriaMetrics that takes InfluxDB writes.

The gateway writes with ``influxdb-client`` (v2 API) or line protocol (v1 ``/write``); both
must land as raw points we can read back, old simulated timestamps included.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from tests.servers import VictoriaMetrics

OLD_MS = 1_600_000_000_000  # 2020: far outside VictoriaMetrics' default one-month retention


def test_v2_write_api_points_are_exported(victoria_metrics: VictoriaMetrics) -> None:
    with InfluxDBClient(url=victoria_metrics.url, token="unused", org="homecare") as client:
        write_api = client.write_api(write_options=SYNCHRONOUS)
        write_api.write(
            bucket="telemetry",
            record=[
                Point("vitals").tag("site", "site-01").tag("bed", "bed-0007")
                .field("heart_rate", 68.0).field("breathing_rate", 15.5)
                .time(OLD_MS, WritePrecision.MS),
                Point("vitals").tag("site", "site-01").tag("bed", "bed-0007")
                .field("heart_rate", 71.0).time(OLD_MS + 1000, WritePrecision.MS),
            ],
        )
    points = victoria_metrics.wait_for_points('{__name__=~"vitals_.*"}', 3)
    assert [(name, ts, value) for name, _, ts, value in points] == [
        ("vitals_breathing_rate", OLD_MS, 15.5),
        ("vitals_heart_rate", OLD_MS, 68.0),
        ("vitals_heart_rate", OLD_MS + 1000, 71.0),
    ]
    labels = points[0][1]
    assert labels["site"] == "site-01"
    assert labels["bed"] == "bed-0007"


def test_v1_write_line_protocol_is_exported(victoria_metrics: VictoriaMetrics) -> None:
    r = httpx.post(
        f"{victoria_metrics.url}/write",
        params={"db": "homecare", "precision": "ms"},
        content=(b"audio,site=s,bed=b level_db=40.5,voice=true " + str(OLD_MS).encode()
                 + b"\naudio,site=s,bed=b level_db=42 " + str(OLD_MS + 500).encode() + b"\n"),
        timeout=10,
    )
    assert r.status_code == 204, r.text
    points = victoria_metrics.wait_for_points('{__name__=~"audio_.*"}', 3)
    assert [(name, ts, value) for name, _, ts, value in points] == [
        ("audio_level_db", OLD_MS, 40.5),
        ("audio_level_db", OLD_MS + 500, 42.0),
        ("audio_voice", OLD_MS, 1.0),
    ]
    assert points[0][1]["db"] == "homecare"


def test_victoria_metrics_keeps_exact_duplicates_without_dedup(
    victoria_metrics: VictoriaMetrics,
) -> None:
    line = f"motion,bed=b v=3 {OLD_MS}\n".encode()
    for _ in range(2):
        r = httpx.post(f"{victoria_metrics.url}/write", params={"precision": "ms"},
                       content=line, timeout=10)
        assert r.status_code == 204
    points = victoria_metrics.wait_for_points("motion_v", 2)
    assert [(ts, value) for _, _, ts, value in points] == [(OLD_MS, 3.0), (OLD_MS, 3.0)]


def test_victoria_metrics_with_dedup_keeps_one_point_per_timestamp(tmp_path: Path) -> None:
    server = VictoriaMetrics(tmp_path / "vm-dedup", dedup_interval="1ms")
    server.start()
    try:
        line = f"motion,bed=b v=3 {OLD_MS}\n".encode()
        for _ in range(2):
            r = httpx.post(f"{server.url}/write", params={"precision": "ms"}, content=line,
                           timeout=10)
            assert r.status_code == 204
        assert [p[2:] for p in server.wait_for_points("motion_v", 1)] == [(OLD_MS, 3.0)]
    finally:
        server.stop()


def test_victoria_metrics_points_survive_restart(victoria_metrics: VictoriaMetrics) -> None:
    r = httpx.post(f"{victoria_metrics.url}/write", params={"precision": "ms"},
                   content=f"button,bed=b press=1 {OLD_MS}\n".encode(), timeout=10)
    assert r.status_code == 204
    assert len(victoria_metrics.wait_for_points("button_press", 1)) == 1
    victoria_metrics.restart()
    assert [p[2:] for p in victoria_metrics.query_series("button_press")] == [(OLD_MS, 1.0)]
