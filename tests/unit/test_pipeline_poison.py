"""No message stops intake: whatever one message does to the pipeline, it becomes one dead letter
with its reason and raw bytes, is acknowledged with its batch, and every other message of the
batch goes its whole way (spool, every stage, the urgent lane). Retained events are stored
state, never a new call."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import Codec, Message, Rejected
from gateway.ingest.checkpoint import commit
from gateway.ingest.inbox import Inbox
from gateway.ingest.message import RawMessage
from gateway.ingest.pipeline import INTERNAL_ERROR, Pipeline
from gateway.monitoring import Metrics
from gateway.storage.deadletters import DeadLetterStore
from gateway.storage.spool import Spool
from tests.unit.test_devices_codec import corrupted_payloads, messages

T0 = 1_763_884_800_000
F1 = Path(__file__).parents[1] / "data" / "field-cases" / "F1-non-utf8.jsonl"
"""Field case F1 (``../shared/field-cases``): three poison messages, then a press."""
PRESS = "homecare/v1/site-01/bed-0001/button/btn-1/event"
PRESS_2 = "homecare/v1/site-01/bed-0002/button/btn-2/event"
STATUS = "homecare/v1/site-01/bed-0001/button/btn-1/status"
IR = "homecare/v1/site-01/bed-0001/infrared/ir-1/telemetry"


class Recorder:
    """A stage that remembers what it took; it raises for messages ``refuse`` picks, a whole
    batch at a time as a buggy stage does."""

    def __init__(self, name: str, refuse: Any = None) -> None:
        self.name = name
        self.refuse = refuse
        self.seen: list[tuple[str, int]] = []
        self.calls = 0

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        self.calls += 1
        for m in messages:
            if self.refuse is not None and self.refuse(m):
                raise KeyError(f"no rule for seq {m.payload.seq}")
            if (m.address.topic, m.payload.seq) not in self.seen:
                self.seen.append((m.address.topic, m.payload.seq))

    def commit(self) -> None:
        pass


def raw(topic: str, payload: dict[str, object] | bytes, mid: int, *,
        retain: bool = False) -> RawMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return RawMessage(topic, body, mid, 1, T0 + mid, 0, retain)


def press(seq: int, topic: str = PRESS) -> dict[str, object]:
    return {"ts": T0 + seq, "seq": seq, "event": "press"}


def telemetry(seq: int) -> dict[str, object]:
    return {"ts": T0 + seq, "seq": seq, "presence": True, "motion": 1, "people": 1,
            "zone": "room"}


class Parts(msgspec.Struct):
    pipeline: Pipeline
    alerts: Recorder
    others: Recorder
    deadletters: DeadLetterStore
    metrics: Metrics
    spool: Spool

    def commit(self) -> list[RawMessage]:
        """Commit the batch; the raw messages the gateway would acknowledge."""
        batch = self.pipeline.take()
        commit(batch, spool=self.spool, deadletters=self.deadletters,
               stages=self.pipeline.stages)
        return batch.raws

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def make_parts(tmp_path: Path, *, alerts: Recorder | None = None,
               others: Recorder | None = None) -> Parts:
    alerts = alerts or Recorder("alerts")
    others = others or Recorder("livestate")
    metrics = Metrics()
    deadletters = DeadLetterStore(tmp_path / "dl.sqlite3")
    pipeline = Pipeline(metrics=metrics, stages=(alerts, others), urgent_stages=(alerts,))
    return Parts(pipeline, alerts, others, deadletters, metrics, Spool(tmp_path / "spool"))


def f1_messages() -> list[RawMessage]:
    out = []
    for mid, line in enumerate(F1.read_text().splitlines(), start=1):
        record = json.loads(line)
        payload = (base64.b64decode(record["payload_b64"]) if "payload_b64" in record
                   else record["payload"].encode())
        out.append(RawMessage(record["topic"], payload, mid, 1, record["t"]))
    return out


# --- poison messages ---------------------------------------------------------------------------


def test_field_case_f1_gives_three_dead_letters_and_the_press_goes_through(
        tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    batch = f1_messages()
    parts.pipeline.process_urgent([r for r in batch if "/button/" in str(r.topic)])
    parts.pipeline.process(batch)
    assert parts.commit() == batch, "every message acknowledged, the poison ones too"
    letters = parts.deadletters.recent()
    assert sorted(d.reason for d in letters) == ["invalid_utf8"] * 3
    assert {d.payload for d in letters} == {r.payload for r in batch[:3]}
    assert parts.alerts.seen == [("homecare/v1/site-f1/bed-f10b/button/btn-f10/event", 1)]


def test_a_message_whose_decoding_raises_is_one_dead_letter_and_the_batch_goes_on(
        tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    poison = b'{"ts":1,"seq":666,"event":"press"}'

    class PoisonedCodec(Codec):
        __slots__ = ()

        def decode(self, topic: str | bytes,
                   payload: bytes | bytearray | memoryview) -> Message | Rejected:
            if payload == poison:
                raise RecursionError("a bug this input meets")
            return super().decode(topic, payload)

    parts.pipeline.codec = PoisonedCodec()
    batch = [raw(IR, telemetry(1), 1), raw(PRESS, poison, 2), raw(PRESS_2, press(3), 3),
             raw(IR, telemetry(4), 4)]
    assert parts.pipeline.process_urgent([batch[1], batch[2]]) == 1
    parts.pipeline.process(batch)
    assert parts.commit() == batch
    (letter,) = parts.deadletters.recent()
    assert (letter.reason, letter.payload, letter.topic) == (INTERNAL_ERROR, poison, PRESS)
    assert letter.detail.startswith("admit: RecursionError: a bug this input meets (at ")
    assert "test_pipeline_poison.py" in letter.detail, "where it was raised"
    assert parts.alerts.seen == [(PRESS_2, 3), (IR, 1), (IR, 4)]
    assert parts.others.seen == [(IR, 1), (PRESS_2, 3), (IR, 4)]
    assert parts.metric("homecare_pipeline_internal_errors_total", step="admit") == 1
    assert parts.metric("homecare_messages_rejected_total", reason=INTERNAL_ERROR) == 1
    assert parts.metric("homecare_messages_accepted_total") == 3


def test_a_stage_that_raises_on_one_message_still_gets_every_other_one(tmp_path: Path) -> None:
    others = Recorder("livestate", refuse=lambda m: m.payload.seq == 3)
    parts = make_parts(tmp_path, others=others)
    batch = [raw(IR, telemetry(seq), seq) for seq in range(1, 7)]
    parts.pipeline.process(batch)
    assert parts.commit() == batch
    assert others.seen == [(IR, seq) for seq in (1, 2, 4, 5, 6)]
    assert parts.alerts.seen == [(IR, seq) for seq in range(1, 7)], "other stages unaffected"
    (letter,) = parts.deadletters.recent()
    assert letter.reason == INTERNAL_ERROR
    assert letter.detail.startswith("stage:livestate: KeyError")
    assert letter.payload == batch[2].payload
    assert parts.metric("homecare_pipeline_internal_errors_total", step="stage:livestate") == 1
    assert parts.pipeline.pending_points == 0
    assert parts.spool.pending_points == 6, "stored all the same"


def test_an_urgent_stage_that_raises_on_one_call_still_takes_the_other_call(
        tmp_path: Path) -> None:
    alerts = Recorder("alerts", refuse=lambda m: m.payload.seq == 1)
    parts = make_parts(tmp_path, alerts=alerts)
    batch = [raw(PRESS, press(1), 1), raw(PRESS_2, press(2), 2)]
    assert parts.pipeline.process_urgent(batch) == 2
    assert alerts.seen == [(PRESS_2, 2)]
    parts.pipeline.process(batch)
    assert parts.commit() == batch
    assert alerts.seen == [(PRESS_2, 2)], "not handed again in turn"
    assert parts.others.seen == [(PRESS, 1), (PRESS_2, 2)]
    assert [d.reason for d in parts.deadletters.recent()] == [INTERNAL_ERROR], "once"


def test_a_formatting_error_leaves_no_half_written_points(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    real = parts.pipeline.encoder

    class BrokenEncoder:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def lines(self, message: Message, out: list[str], *args: Any) -> int:
            if message.payload.seq == 2:
                out.append("infrared,half=written")
                raise ValueError("cannot format")
            return real.lines(message, out, *args)

    parts.pipeline.encoder = BrokenEncoder()  # type: ignore[assignment]
    batch = [raw(IR, telemetry(seq), seq) for seq in range(1, 4)]
    parts.pipeline.process(batch)
    lines_out, points, rejected, raws = parts.pipeline.take()
    assert raws == batch
    assert points == len(lines_out) == 2
    assert not any("half=written" in line for line in lines_out)
    assert [(d.reason, d.detail.split(" (at")[0]) for d in rejected] == [
        (INTERNAL_ERROR, "format: ValueError: cannot format")]
    assert parts.alerts.seen == [(IR, 1), (IR, 3)]


def test_internal_errors_are_logged_once_per_interval(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    parts = make_parts(tmp_path, others=Recorder("livestate", refuse=lambda m: True))
    for seq in range(1, 201):
        parts.pipeline.process([raw(IR, telemetry(seq), seq)])
    assert parts.metric("homecare_pipeline_internal_errors_total", step="stage:livestate") == 200
    logged = [r for r in caplog.records if "pipeline.internal_error" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is not None, "the first one with its traceback"


# --- retained events ---------------------------------------------------------------------------


def test_a_retained_press_is_stored_and_acknowledged_but_never_a_call(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    retained = raw(PRESS, press(7), 1, retain=True)
    status = raw(STATUS, {"ts": T0, "seq": 8, "state": "online"}, 2, retain=True)
    live = raw(PRESS_2, press(9), 3)
    inbox = Inbox(10)
    inbox.put_many([retained, status, live])
    assert inbox.take_urgent() == [live], "a retained press never takes the urgent lane"
    assert parts.pipeline.process_urgent([retained, live]) == 1
    parts.pipeline.process([retained, status, live])
    assert parts.alerts.seen == [(PRESS_2, 9), (STATUS, 8)]
    assert parts.others.seen == [(STATUS, 8), (PRESS_2, 9)], "retained status goes on as now"
    lines, points, _, raws = parts.pipeline.take()
    assert raws == [retained, status, live]
    assert points == 3
    assert sum(line.startswith("button_event,") for line in lines) == 2, "stored as state"
    assert parts.metric("homecare_retained_events_total") == 1
    assert parts.deadletters.count() == 0


# --- property: the pipeline never raises --------------------------------------------------------

FUZZ = settings(deadline=None, max_examples=80, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])


@st.composite
def traffic(draw: st.DrawFn) -> list[tuple[str | bytes, bytes, bool]]:
    valid = messages().map(lambda m: (m.address.topic, Codec().encode_payload(m.payload)))
    anything = st.tuples(st.sampled_from([PRESS, IR, STATUS, b"homecare/\xff"]),
                         st.binary(max_size=200))
    items = draw(st.lists(st.tuples(valid | corrupted_payloads() | anything, st.booleans()),
                          min_size=1, max_size=40))
    return [(topic, payload, retain) for (topic, payload), retain in items]


@FUZZ
@given(items=traffic(), flaky=st.booleans())
def test_the_pipeline_never_raises_and_accounts_for_every_message(
        tmp_path_factory: pytest.TempPathFactory, items: list[tuple[str | bytes, bytes, bool]],
        flaky: bool) -> None:
    refuse = (lambda m: m.payload.seq % 3 == 0) if flaky else None
    parts = make_parts(tmp_path_factory.mktemp("fuzz"), others=Recorder("livestate", refuse))
    batch = [RawMessage(t, p, mid, 1, T0 + mid, 0, retain)
             for mid, (t, p, retain) in enumerate(items, start=1)]
    parts.pipeline.process_urgent(batch[::2])
    parts.pipeline.process(batch)
    assert parts.commit() == batch
    received = parts.metric("homecare_messages_received_total")
    accepted = parts.metric("homecare_messages_accepted_total")
    duplicates = parts.metric("homecare_messages_duplicate_total")
    letters = parts.deadletters.recent(1000)
    by_stage = sum(d.reason == INTERNAL_ERROR and d.detail.startswith("stage:") for d in letters)
    assert received == len(batch)
    assert accepted + duplicates + len(letters) - by_stage == received
    assert all(d.reason and d.detail for d in letters)
    assert not any(d.reason in {"undecodable"} or d.detail.startswith("admit:")
                   for d in letters), "the codec itself never failed"
    if not flaky:
        assert by_stage == 0
