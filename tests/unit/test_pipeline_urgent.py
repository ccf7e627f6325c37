"""The urgent lane: emergency calls and falls reach the alert rules ahead of queued telemetry,
and are still stored, deduplicated, dead-lettered and acknowledged exactly once, in turn."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from devices import Message
from devices.topics import is_urgent
from gateway.ingest.checkpoint import commit
from gateway.ingest.inbox import Inbox
from gateway.ingest.message import RawMessage
from gateway.ingest.pipeline import Batch, Pipeline
from gateway.monitoring import Metrics
from gateway.storage.deadletters import DeadLetterStore
from gateway.storage.spool import Spool

T0 = 1_763_884_800_000
PRESS = "homecare/v1/site-01/bed-0001/button/btn-1/event"
FALL = "homecare/v1/site-01/bed-0002/fall/fs-2/event"
IR = "homecare/v1/site-01/bed-0001/infrared/ir-1/telemetry"


class Recorder:
    """A stage that remembers what it was handed, batch by batch."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.batches: list[list[tuple[str, int]]] = []

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        self.batches.append([(m.address.topic, m.payload.seq)
                             for m in messages])

    def commit(self) -> None:
        pass

    @property
    def seen(self) -> list[tuple[str, int]]:
        return [item for batch in self.batches for item in batch]


def raw(topic: str, payload: dict[str, object] | bytes, mid: int) -> RawMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return RawMessage(topic, body, mid, 1, T0 + mid)


def telemetry(seq: int) -> dict[str, object]:
    return {"ts": T0 + seq, "seq": seq, "presence": True, "motion": 1, "people": 1,
            "zone": "room"}


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Pipeline, Recorder, Recorder, Spool, DeadLetterStore]:
    alerts, others = Recorder("alerts"), Recorder("livestate")
    spool = Spool(tmp_path / "spool")
    deadletters = DeadLetterStore(tmp_path / "dl.sqlite3")
    pipeline = Pipeline(metrics=Metrics(), stages=(alerts, others), urgent_stages=(alerts,))
    return pipeline, alerts, others, spool, deadletters


def test_urgent_topics_are_button_and_fall_events_only() -> None:
    assert is_urgent(PRESS)
    assert is_urgent(FALL)
    assert not is_urgent(IR)
    assert not is_urgent("homecare/v1/site-01/bed-0001/button/btn-1/status")
    assert not is_urgent("homecare/v1/site-01/bed-0001/badge/b-1/event")
    assert not is_urgent(b"homecare/v1/\xff/button/x/event")
    # Matched on the kind segment, not anywhere in the topic.
    assert not is_urgent("homecare/v1/button/fall/infrared/ir-1/event")
    assert not is_urgent("homecare/v1/site-01/bed-0001/badge/button/event")
    assert is_urgent("homecare/v1/fall/button/fall/fs-1/event")


async def test_inbox_keeps_receipt_order_and_copies_urgent_messages_to_their_lane() -> None:
    inbox = Inbox(100)
    batch = [raw(IR, telemetry(1), 1), raw(PRESS, {"ts": T0, "seq": 1, "event": "press"}, 2),
             raw(IR, telemetry(2), 3)]
    inbox.put_many(batch)
    assert inbox.urgent_ready.is_set()
    assert inbox.take_urgent() == [batch[1]]
    assert not inbox.urgent_ready.is_set()
    assert await inbox.get(10) == batch


def test_urgent_message_goes_to_the_alert_stage_first_and_once(parts: tuple) -> None:
    pipeline, alerts, others, spool, deadletters = parts
    queued = [raw(IR, telemetry(i), i) for i in range(1, 5)]
    press = raw(PRESS, {"ts": T0, "seq": 9, "event": "press"}, 5)
    assert pipeline.process_urgent([press]) == 1
    assert alerts.seen == [(PRESS, 9)]
    assert others.seen == []

    pipeline.process([*queued, press])
    assert alerts.seen == [(PRESS, 9)] + [(IR, i) for i in range(1, 5)]
    assert others.seen == [(IR, i) for i in range(1, 5)] + [(PRESS, 9)]
    lines, points, rejected, raws = pipeline.take()
    assert points == 5
    assert sum(line.startswith("button_event,") for line in lines) == 1
    assert raws == [*queued, press]  # acknowledged in receipt order, each once
    assert rejected == []
    commit(Batch(lines, points, rejected, []), spool=spool, deadletters=deadletters,
           stages=pipeline.stages)
    assert spool.pending_points == 5


def test_a_duplicate_press_seen_early_is_dropped_in_turn(parts: tuple) -> None:
    pipeline, alerts, others, _, _ = parts
    first = raw(PRESS, {"ts": T0, "seq": 9, "event": "press"}, 1)
    pipeline.process([first])
    again = raw(PRESS, {"ts": T0, "seq": 9, "event": "press"}, 2)  # QoS 1 redelivery
    assert pipeline.process_urgent([again]) == 0
    pipeline.process([again])
    assert alerts.seen == [(PRESS, 9)]
    assert others.seen == [(PRESS, 9)]
    _, points, _, raws = pipeline.take()
    assert points == 1
    assert raws == [first, again]  # the duplicate is still acknowledged


def test_a_malformed_urgent_message_is_dead_lettered_once(parts: tuple) -> None:
    pipeline, alerts, _, spool, deadletters = parts
    bad = raw(PRESS, b'{"ts": "yesterday", "seq": 1, "event": "press"}', 1)
    assert pipeline.process_urgent([bad]) == 0
    pipeline.process([bad])
    lines, points, rejected, _ = pipeline.take()
    commit(Batch(lines, points, rejected, []), spool=spool, deadletters=deadletters,
           stages=pipeline.stages)
    assert alerts.seen == []
    assert deadletters.count() == 1


def test_urgent_stages_must_be_pipeline_stages(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="urgent_stages"):
        Pipeline(metrics=Metrics(), stages=(), urgent_stages=(Recorder("alerts"),))


def test_inbox_wakes_the_urgent_lane_without_the_ingest_loop() -> None:
    async def scenario() -> list[RawMessage]:
        inbox = Inbox(100)
        press = raw(PRESS, {"ts": T0, "seq": 1, "event": "press"}, 1)
        waiter = asyncio.create_task(inbox.urgent_ready.wait())
        inbox.put_many([press])
        async with asyncio.timeout(1):
            await waiter
        return inbox.take_urgent()

    assert len(asyncio.run(scenario())) == 1
