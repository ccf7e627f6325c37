"""An ingest step ends once its time is spent, whatever the pacer's estimate (issue #17).

The pacer sizes a step from the cost of the last ones; during the 100,000-id flood the same
number of first sights cost 60 to 440 us each from one step to the next, so steps meant for
5 ms held the event loop (and the emergency calls waiting on it) up to 45 ms. A step now hands
the pipeline ``STEP_SLICE`` messages at a time and stops at the first slice done past its
budget; the rest goes back to the inbox's front, in order."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from devices.registry import Registry
from gateway.config import Settings
from gateway.ingest import Inbox, RawMessage
from gateway.ingest.pacing import LARGEST_STEP, STEP_SLICE
from gateway.runtime import Gateway
from tests.inprocess import until


def _statuses(n: int) -> list[RawMessage]:
    now = int(time.time() * 1000)
    payload = json.dumps({"ts": now, "seq": 1, "state": "online", "battery": 80}).encode()
    return [RawMessage(f"homecare/v1/x-{i:05d}/bed/audio/au-{i:05d}/status", payload, i + 1, 1,
                       now) for i in range(n)]


def test_costly_messages_end_the_step_at_its_budget_and_keep_their_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = Gateway(Settings(data_dir=tmp_path / "data"),
                      registry=Registry.from_mapping({"sites": {}}), serve_http=False)
    messages = _statuses(2 * LARGEST_STEP)
    turns = [0]
    handed: list[tuple[int, list[int]]] = []
    """(loop turn, mids) per call of the pipeline."""
    process = gateway.pipeline.process

    def costly(raws: list[RawMessage]) -> None:
        time.sleep(0.001 * len(raws))  # 1 ms a message: a slice is over a step's budget
        handed.append((turns[0], [raw.mid for raw in raws]))
        process(raws)

    monkeypatch.setattr(gateway.pipeline, "process", costly)

    async def scenario() -> None:
        async def count_turns() -> None:
            while True:
                turns[0] += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(count_turns())
        gateway._feed_open.set()
        gateway.inbox.put_many(messages)
        ingest = asyncio.create_task(gateway._ingest())
        await until(lambda: not len(gateway.inbox) and not gateway.pipeline.pending_messages,
                    "the inbox taken in", 60.0)
        gateway.stop()
        gateway.inbox.interrupt()
        await ingest
        ticker.cancel()

    try:
        asyncio.run(scenario())
    finally:
        for thread in (gateway._emergency_thread, gateway._ingest_thread,
                       gateway._detect_thread, gateway._housekeeping_thread):
            thread.shutdown(wait=True)
        gateway._close_stores()
    per_turn: dict[int, int] = {}
    for turn, mids in handed:
        per_turn[turn] = per_turn.get(turn, 0) + len(mids)
    # The pacer's first step is LARGEST_STEP messages: the old code processed them in one turn.
    assert max(per_turn.values()) <= STEP_SLICE, per_turn
    assert [mid for _, mids in handed for mid in mids] == [m.mid for m in messages]
    assert gateway.pipeline.registered_total == len(messages)


def test_messages_put_back_come_first_in_their_order() -> None:
    async def scenario() -> list[int]:
        inbox = Inbox(1000)
        inbox.put_many(_statuses(10))
        taken = await inbox.get(6)
        inbox.unget(taken[2:])
        return [raw.mid for raw in await inbox.get(100)]

    assert asyncio.run(scenario()) == [3, 4, 5, 6, 7, 8, 9, 10]
