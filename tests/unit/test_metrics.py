from __future__ import annotations

import gc

from gateway.monitoring import Metrics


def _count(metrics: Metrics, generation: str) -> float:
    value = metrics.registry.get_sample_value(
        "homecare_gc_pause_seconds_count", {"generation": generation})
    return value or 0.0


def test_collector_passes_are_timed_by_generation() -> None:
    metrics = Metrics()
    callback = metrics.gc_callback()
    gc.callbacks.append(callback)
    try:
        gc.collect(2)
        gc.collect(0)
    finally:
        gc.callbacks.remove(callback)
    assert _count(metrics, "2") >= 1
    assert _count(metrics, "0") >= 1
    assert b"homecare_gc_pause_seconds_bucket" in metrics.render()
