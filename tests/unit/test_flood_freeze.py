"""A flood of new devices is moved out of the collector's reach however the ingest steps are
sized (issue #17). The gateway froze what exists (``gc.freeze``) after a step that registered
``FLOOD_FREEZE_DEVICES`` devices on first sight; steps are sized by time, and a flood's steps
hold ~35 first sights each, so during the 100,000-id flood it never froze: one
middle-generation pass over the new devices' state held the loop 226 ms while presses waited.
Registrations now count across steps since the last freeze."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from pathlib import Path

import pytest

from devices.registry import Registry
from gateway import runtime
from gateway.config import Settings
from gateway.ingest import RawMessage
from gateway.runtime import FLOOD_FREEZE_DEVICES, Gateway
from tests.inprocess import until

STEP = 35
"""Messages per ingest step: what the pacer settles on for first sights (~140 us each)."""



class _FixedPacer:
    size = STEP
    budget_s = 0.005

    def took(self, messages: int, seconds: float) -> None:
        pass


def _unknown_devices(n: int) -> list[RawMessage]:
    now = int(time.time() * 1000)
    payload = json.dumps({"ts": now, "seq": 1, "state": "online", "battery": 80}).encode()
    return [RawMessage(f"homecare/v1/x-{i:05d}/bed/button/bu-{i:05d}/status", payload, i + 1,
                       1, now) for i in range(n)]


def test_a_flood_in_small_steps_is_frozen_every_so_many_new_devices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    devices = 10 * FLOOD_FREEZE_DEVICES
    freezes: list[int] = []
    monkeypatch.setattr(runtime, "StepPacer", _FixedPacer)
    gateway = Gateway(Settings(data_dir=tmp_path / "data"),
                      registry=Registry.from_mapping({"sites": {}}), serve_http=False)
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(
        gateway.pipeline.registered_total))

    async def flood() -> None:
        gateway._feed_open.set()
        gateway.inbox.put_many(_unknown_devices(devices))
        ingest = asyncio.create_task(gateway._ingest())
        await until(lambda: not len(gateway.inbox) and not gateway.pipeline.pending_messages,
                    "the flood taken in", 60.0)
        gateway.stop()
        gateway.inbox.interrupt()
        await ingest

    try:
        asyncio.run(flood())
    finally:
        for thread in (gateway._emergency_thread, gateway._ingest_thread,
                       gateway._detect_thread, gateway._housekeeping_thread):
            thread.shutdown(wait=True)
        gateway._close_stores()
    assert gateway.pipeline.registered_total == devices
    # Once per FLOOD_FREEZE_DEVICES new devices, at the step that reached the count (the old
    # code, counting per step, never froze here).
    assert freezes, "never frozen during the flood"
    gaps = [b - a for a, b in zip([0, *freezes], freezes, strict=False)]
    assert all(FLOOD_FREEZE_DEVICES <= gap < FLOOD_FREEZE_DEVICES + STEP for gap in gaps), gaps
    assert devices - freezes[-1] < FLOOD_FREEZE_DEVICES, freezes
