"""Device time: the clock window of storage and the order of a device's state, one rule for
the line encoder, the live state, the metrics and the detectors."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np

import devices.devicetime
from alerts.livestate import LiveState
from devices.devicetime import (
    CLOCK_TRUST_MS,
    ClockWindow,
    announced_offline,
    announced_offline_array,
    sent_ms,
    sent_ms_array,
)
from gateway.ingest.message import RawMessage
from gateway.ingest.pipeline import Pipeline
from gateway.monitoring import Metrics

NOW = 1_796_000_000_000


def test_docstring_examples() -> None:
    assert doctest.testmod(devices.devicetime).failed == 0


def test_the_scalar_and_column_rules_agree() -> None:
    ts = np.array([NOW - 5, NOW + 5, NOW - CLOCK_TRUST_MS - 1, NOW // 1000], np.int64)
    received = np.full(4, NOW, np.int64)
    assert sent_ms_array(ts, received).tolist() == [sent_ms(int(t), NOW) for t in ts] == [
        NOW - 5, NOW, NOW, NOW]
    offline = np.array([NOW, NOW, NOW, NOW - 10, NOW - 10], np.int64)
    heard = np.array([NOW - 1, NOW, NOW, NOW, NOW], np.int64)
    later = np.array([False, False, True, False, True])
    assert announced_offline_array(offline, heard, later).tolist() == [
        announced_offline(int(o), int(h), offline_later=bool(w))
        for o, h, w in zip(offline, heard, later, strict=True)] == [
        True, False, True, False, False], "a tie goes to what arrived later, nothing else"
    assert announced_offline(None, NOW, offline_later=False) is False
    assert announced_offline(NOW, None, offline_later=True) is True


def test_the_pipeline_stores_wrong_clocks_at_receipt_and_reports_them(tmp_path: Path) -> None:
    metrics = Metrics()
    live = LiveState(clock_window=ClockWindow(behind_ms=86_400_000))
    metrics.watch_clocks(live.wrong_clocks)
    pipeline = Pipeline(metrics=metrics, stages=(live,),
                        clock_window=ClockWindow(behind_ms=86_400_000))
    topic = "homecare/v1/s1/b1/audio/{}/telemetry"
    pipeline.process([
        RawMessage(topic.format("au-ms"), f'{{"ts":{NOW - 40},"seq":1,"level_db":40}}'.encode(),
                   1, 1, NOW),
        RawMessage(topic.format("au-s"), f'{{"ts":{NOW // 1000},"seq":1,"level_db":40}}'.encode(),
                   2, 1, NOW),
        RawMessage(topic.format("au-us"), f'{{"ts":{NOW * 1000},"seq":1,"level_db":40}}'.encode(),
                   3, 1, NOW + 1)])
    lines, points, _, _ = pipeline.take()
    assert points == 3
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(NOW - 40), str(NOW), str(NOW + 1)]
    assert "device_ts" not in lines[0]
    assert f"device_ts={NOW * 1000}i" in lines[2]
    text = metrics.render().decode()
    assert "homecare_points_retimed_total 2.0" in text
    assert "homecare_devices_clock_wrong 2.0" in text
    assert ('homecare_device_clock_offset_seconds{bed="b1",device="au-s",site="s1"} '
            f"{(NOW // 1000 - NOW) / 1000}") in text
    assert 'device="au-ms"' not in text
