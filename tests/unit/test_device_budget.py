"""One device cannot take the intake: its payload bytes are budgeted (a burst, then a rate, at
the messages' receipt times), and what it sends beyond is dead-lettered undecoded
(``device_over_budget``), counted and logged a line a minute. Its emergency calls are never
held to it; other devices keep their own budgets. The inbox is bounded by payload bytes as
well as by messages, so 64 KiB batches cannot hold gigabytes in memory before they are
processed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

import pytest

from devices import Message
from gateway.config import Settings
from gateway.ingest.inbox import Inbox
from gateway.ingest.message import RawMessage
from gateway.ingest.pipeline import DEVICE_OVER_BUDGET, Pipeline, device_budget
from gateway.monitoring import Metrics
from gateway.storage.sourcebudget import SourceBudget

T0 = 1_763_884_800_000
VITALS = "homecare/v1/site-01/bed-0007/fall/fs-0007/telemetry"
FALL = "homecare/v1/site-01/bed-0007/fall/fs-0007/event"
NEIGHBOUR = "homecare/v1/site-01/bed-0008/fall/fs-0008/telemetry"


class Recorder:
    name = "alerts"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        self.seen.extend(m.address.topic for m in messages)

    def commit(self) -> None:
        pass


def batch(topic: str, seq: int, at_ms: int, samples: int = 850) -> RawMessage:
    """A valid batch of vital signs, ``samples`` of them (850: about 62 KB)."""
    body = json.dumps({"ts": at_ms, "seq": seq, "samples": [
        {"t": at_ms - (samples - k) * 100, "in_bed": True, "heart_rate": 70.0,
         "breathing_rate": 15.0} for k in range(samples)]}, separators=(",", ":")).encode()
    return RawMessage(topic, body, seq, 1, at_ms)


def event(topic: str, seq: int, at_ms: int, **fields: object) -> RawMessage:
    return RawMessage(topic, json.dumps({"ts": at_ms, "seq": seq, **fields}).encode(), seq, 1,
                      at_ms)


def rejected(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value(
        "homecare_messages_rejected_total", {"reason": DEVICE_OVER_BUDGET}) or 0.0


@pytest.fixture
def parts() -> tuple[Pipeline, Recorder, Metrics]:
    metrics = Metrics()
    rules = Recorder()
    budget = SourceBudget(bytes_per_s=1_000, burst_bytes=200_000)
    return Pipeline(metrics=metrics, stages=(rules,), device_budget=budget), rules, metrics


def test_a_device_past_its_burst_is_dead_lettered_undecoded_and_counted(
        parts: tuple[Pipeline, Recorder, Metrics], caplog: pytest.LogCaptureFixture) -> None:
    pipeline, rules, metrics = parts
    flood = [batch(VITALS, seq, T0 + seq) for seq in range(1, 101)]  # 6 MB in 0.1 s
    with caplog.at_level(logging.WARNING, "homecare.pipeline"):
        pipeline.process(flood)
    taken = rules.seen.count(VITALS)
    assert taken == 3  # 200,000 bytes of burst: three batches of ~62 KB
    batch_taken = pipeline.take()
    assert len(batch_taken.deadletters) == 97
    assert {letter.reason for letter in batch_taken.deadletters} == {DEVICE_OVER_BUDGET}
    assert "site-01/bed-0007/fall/fs-0007 sent more than 1000 bytes/s" in (
        batch_taken.deadletters[0].detail)
    assert batch_taken.points == 3 * 850
    assert rejected(metrics) == 97
    # One line for the whole flood, naming the device, never one per message.
    lines = [r.getMessage() for r in caplog.records if "device_over_budget" in r.getMessage()]
    assert len(lines) == 1
    assert "messages=97" in lines[0]
    assert "fs-0007" in lines[0]


def test_its_calls_pass_and_other_devices_keep_their_own_budget(
        parts: tuple[Pipeline, Recorder, Metrics]) -> None:
    pipeline, rules, metrics = parts
    pipeline.process([batch(VITALS, seq, T0) for seq in range(1, 11)])
    pipeline.process([
        event(FALL, 11, T0, event="fall_detected", confidence=0.97, posture="lying"),
        batch(NEIGHBOUR, 1, T0),
        batch(NEIGHBOUR, 2, T0)])
    assert rules.seen.count(FALL) == 1  # a call is never held to the budget
    assert rules.seen.count(NEIGHBOUR) == 2  # another device: its own full burst
    assert rejected(metrics) == 7


def test_the_budget_refills_at_its_rate_by_receipt_time(
        parts: tuple[Pipeline, Recorder, Metrics]) -> None:
    pipeline, rules, _ = parts
    pipeline.process([batch(VITALS, seq, T0) for seq in range(3, 13)])  # burst spent
    pipeline.process([batch(VITALS, 14, T0 + 30_000)])
    assert rules.seen.count(VITALS) == 3  # 30 s: not yet a batch's worth
    # 62 s later the rate has paid back one batch (1,000 bytes a second), not two.
    pipeline.process([batch(VITALS, 20, T0 + 62_000), batch(VITALS, 21, T0 + 62_000)])
    assert rules.seen.count(VITALS) == 3 + 1


def test_replayed_traffic_is_decided_the_same_way() -> None:
    """Decided by receipt time, not the clock: the same traffic twice, the same verdicts."""
    traffic = [batch(VITALS, seq, T0 + 40 * seq) for seq in range(1, 60)]
    seen = []
    for _ in range(2):
        rules = Recorder()
        pipeline = Pipeline(metrics=Metrics(), stages=(rules,),
                            device_budget=SourceBudget(bytes_per_s=50_000, burst_bytes=150_000))
        pipeline.process(traffic)
        seen.append([letter.topic for letter in pipeline.take().deadletters])
    assert seen[0] == seen[1]
    assert 0 < len(seen[0]) < len(traffic)


def test_settings_give_the_budget_and_zero_switches_it_off() -> None:
    budget = device_budget(Settings())
    assert budget is not None
    assert (budget.bytes_per_s, budget.burst_bytes) == (16 * 1024, 64 * 1024**2)
    assert device_budget(Settings(device_bytes_per_second=0)) is None


def test_the_inbox_is_full_by_bytes_and_has_room_again_at_half() -> None:
    box = Inbox(1_000, max_bytes=200_000)
    rooms: list[bool] = []
    box.on_space = lambda: rooms.append(True)
    messages = [batch(VITALS, seq, T0) for seq in range(1, 5)]  # ~62 KB each
    assert box.put_many(messages[:3]) is True
    assert box.put_many(messages[3:]) is False  # ~250 KB: stop reading
    assert box.full
    assert len(box) == 4
    size = len(messages[0].payload)
    assert box.bytes == sum(len(m.payload) for m in messages)

    async def drain() -> None:
        got = await box.get(1)
        assert box.bytes == 3 * size
        assert not rooms  # still over half
        rest = await box.get(2)
        box.unget(rest[1:])
        assert box.bytes == 2 * size
        assert rooms == [True]  # 1 message of ~62 KB left when taken: room again
        assert got
        assert not box.full

    asyncio.run(drain())


def test_a_topic_no_device_could_have_is_not_remembered(
        parts: tuple[Pipeline, Recorder, Metrics]) -> None:
    """Topics past the contract's length are rejected by the codec, never kept as a budget's
    key: 20,000 of 64 KiB would be 1.3 GB."""
    pipeline, _, _ = parts
    budget = pipeline.device_budget
    assert budget is not None
    long_ids = [event(f"homecare/v1/site-01/{'b' * 1000}{n}/fall/fs/telemetry", n, T0,
                      in_bed=True) for n in range(50)]
    pipeline.process(long_ids)
    assert len(budget) == 0
    assert {letter.reason for letter in pipeline.take().deadletters} == {"bad_topic"}
    longest = "homecare/v1/" + "/".join(["s" * 64, "b" * 64, "badge", "d" * 64, "telemetry"])
    assert len(longest) <= 320  # every topic the contract allows is still charged


def test_a_call_topic_padded_with_junk_is_held_to_the_budget_a_real_call_never(
        parts: tuple[Pipeline, Recorder, Metrics]) -> None:
    """The exemption is for calls, not for their topic: 60 KB ``fall_cleared`` events padded
    with an unknown field (the contract keeps unknown fields) once past the budget are
    dead-lettered, by either session; a real call, about 100 bytes, is still taken."""
    pipeline, rules, metrics = parts
    padded = [event(FALL, seq, T0, event="fall_cleared", junk="x" * 60_000)
              for seq in range(1, 21)]
    copies = [RawMessage(m.topic, m.payload, m.mid, 1, m.received_ms, urgent_session=True)
              for m in padded]
    assert pipeline.process_urgent(copies) == 0  # never taken ahead by the urgent session
    pipeline.process(padded)
    assert rules.seen.count(FALL) == 3  # the burst (200,000 bytes): three of them
    assert rejected(metrics) == 17
    call = event(FALL, 30, T0, event="fall_detected", confidence=0.97, posture="lying")
    assert pipeline.process_urgent([call]) == 1  # past the budget, still a call
    pipeline.process([call])
    assert rules.seen.count(FALL) == 4
    assert rejected(metrics) == 17
