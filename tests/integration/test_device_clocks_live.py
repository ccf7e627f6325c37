"""Field case F4 (``../shared/field-cases``), live: timestamps in the wrong unit.

Four devices of one bed send one message each through mosquitto to a real gateway writing to
a real database: ``ts`` in milliseconds (as the contract says), in seconds, in microseconds,
and a vitals batch whose sample ``t`` are in seconds. Before: VictoriaMetrics (default 1-month
retention) silently ignored the seconds and microseconds points while the gateway counted them
as written; InfluxDB stored the seconds in 1970 and refused the microseconds; no metric showed
the clocks and the clock rule raised nothing at once. Now every point is findable at receipt
time with its device time in ``device_ts``, the three wrong clocks are visible per device (the
metrics and the bed API), and each is one ``sensor_fault`` episode.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ingest import publish, start_gateway, wait_ingested
from tests.servers import (
    GatewayProcess,
    Influxd,
    Mosquitto,
    VictoriaMetrics,
    sqlite_rows,
    wait_for,
)

pytestmark = [pytest.mark.integration]

KEY = secrets.token_urlsafe(32)  # a bootstrap key must be a random secret
SITE, BED = "site-f4", "bed-f4"
WRONG = ("au-s", "au-us", "fs-t")


class DefaultRetentionVictoriaMetrics(VictoriaMetrics):
    """VictoriaMetrics as installed: 1-month retention (it ignores older points with a 204)."""

    def command(self) -> list[str]:
        return [arg for arg in super().command() if not arg.startswith("-retentionPeriod")]


@pytest.fixture
def vm_default(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = DefaultRetentionVictoriaMetrics(tmp_path / "victoria-metrics")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _messages(now: int) -> list[tuple[str, bytes]]:
    def topic(kind: str, device: str) -> str:
        return f"homecare/v1/{SITE}/{BED}/{kind}/{device}/telemetry"

    samples = [{"t": now // 1000 - 20 + 10 * i, "in_bed": True, "heart_rate": 66 + i}
               for i in range(3)]
    bodies = [(topic("audio", "au-ms"), {"ts": now, "seq": 1, "level_db": 41.5}),
              (topic("audio", "au-s"), {"ts": now // 1000, "seq": 1, "level_db": 42.5}),
              (topic("audio", "au-us"), {"ts": now * 1000, "seq": 1, "level_db": 43.5}),
              (topic("fall", "fs-t"), {"ts": now, "seq": 1, "samples": samples})]
    return [(t, json.dumps(body).encode()) for t, body in bodies]


def _points(store: Influxd | VictoriaMetrics) -> dict[tuple[str, str], list[tuple[int, Any]]]:
    """``(device, field) -> [(time ms, value)]`` of the bed's audio and vitals points."""
    out: dict[tuple[str, str], list[tuple[int, Any]]] = {}
    if isinstance(store, VictoriaMetrics):
        for name, labels, t, value in store.query_series(f'{{bed="{BED}"}}'):
            field = name.split("_", 1)[1] if name.startswith("audio_") else name[len("vitals_"):]
            out.setdefault((labels["device"], field), []).append((t, value))
        return out
    for measurement in ("audio", "vitals"):
        for row in store.query("homecare", f"SELECT * FROM {measurement} WHERE bed = '{BED}'"):
            for field, value in row.items():
                if field not in {"time", "_measurement", "bed", "device", "site"} \
                        and value is not None:
                    out.setdefault((row["device"], field), []).append((row["time"], value))
    return {key: sorted(values) for key, values in out.items()}


def _sensor_faults(gateway: GatewayProcess) -> list[dict[str, Any]]:
    rows = sqlite_rows(gateway.data_dir / "alerts.sqlite3", "SELECT alert FROM alerts")
    return [a for a in (json.loads(r[0]) for r in rows) if a["type"] == "sensor_fault"]


@pytest.mark.parametrize("store_fixture", ["vm_default", "influxd"])
def test_field_case_f4_timestamps_in_the_wrong_unit_are_stored_at_receipt_and_flagged(
        store_fixture: str, mosquitto: Mosquitto, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    store = request.getfixturevalue(store_fixture)
    gateway = start_gateway(tmp_path, mosquitto.url, store, HOMECARE_API_KEY=KEY,
                            HOMECARE_DETECTOR_EVALUATE_INTERVAL_S="5",
                            HOMECARE_CLOCK_WINDOW_S=str(7 * 86_400))
    try:
        before = time.time_ns() // 1_000_000
        messages = _messages(before)
        publish(mosquitto.url, messages)
        wait_ingested(gateway, len(messages), timeout=30)
        after = time.time_ns() // 1_000_000
        points = wait_for(lambda: (p := _points(store)) and len(p.get(("fs-t", "heart_rate"),
                                                                       [])) == 3 and p,
                          "the bed's points in the database", timeout=30)

        # As sent: the clock that counts milliseconds.
        assert points[("au-ms", "level_db")] == [(before, 41.5)]
        assert ("au-ms", "device_ts") not in points
        # At receipt time, the device time kept.
        for device, device_ts, level in (("au-s", before // 1000, 42.5),
                                         ("au-us", before * 1000, 43.5)):
            [(t, value)] = points[(device, "level_db")]
            assert before <= t <= after + 1, device
            assert value == level
            assert points[(device, "device_ts")] == [(t, device_ts)]
        # The batch: three samples, distinct and in order, each with its own device time.
        heart = points[("fs-t", "heart_rate")]
        assert [v for _, v in heart] == [66, 67, 68]
        times = [t for t, _ in heart]
        assert times == sorted(set(times))
        assert before - 10 <= times[0]
        assert times[-1] <= after + 1
        assert [v for _, v in points[("fs-t", "device_ts")]] == [
            before // 1000 - 20 + 10 * i for i in range(3)]
        if isinstance(store, VictoriaMetrics):
            ignored = [line for line in httpx.get(f"{store.url}/metrics", timeout=5).text
                       .splitlines() if line.startswith("vm_rows_ignored_total")]
            assert all(line.endswith(" 0") for line in ignored), ignored

        m = gateway.metrics()
        assert m["homecare_points_retimed_total"] == 5
        assert m["homecare_devices_clock_wrong"] == 3
        offsets = {key for key in m if key.startswith("homecare_device_clock_offset_seconds{")}
        assert {key.split('device="')[1].split('"')[0] for key in offsets} == set(WRONG)

        bed = httpx.get(f"{gateway.url}/api/v1/beds/{SITE}/{BED}", timeout=10,
                        headers={"Authorization": f"Bearer {KEY}"}).json()
        clocks = {d["device"]: (d["clock_wrong"], d["clock_offset_s"]) for d in bed["devices"]}
        assert {d for d, (wrong, _) in clocks.items() if wrong} == set(WRONG)
        assert abs(clocks["au-ms"][1]) < 5
        assert clocks["au-us"][1] > 1e12

        faults = wait_for(lambda: len(f := _sensor_faults(gateway)) >= 3 and f,
                          "a sensor_fault per wrong clock", timeout=150)
        assert sorted(a["evidence"]["device"] for a in faults) == sorted(WRONG)
        assert {a["evidence"]["device"]: a["evidence"]["clock_unit"] for a in faults} == {
            "au-s": "s", "au-us": "us", "fs-t": "s"}
        assert all(a["evidence"]["faults"] == ["clock_skew"] for a in faults)
    finally:
        gateway.stop()
    assert gateway.returncode == 0
