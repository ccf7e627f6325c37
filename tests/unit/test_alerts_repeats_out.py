"""A repeat call leaves the gateway like every other change: on the API's event stream with its
own event name, and upstream to the platform with the alert's repeat count."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.api import ChangeHub, event_stream
from alerts.engine import AlertEngine
from alerts.rules import ImmediateRules
from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from devices import Codec, Message
from gateway.upstream import Outbox, Upstream
from tests.upstream_receiver import Receiver

T0 = 1_763_884_800_000
SECRET = b"a-test-secret-of-some-length"


def _press(seq: int, ts: int) -> Message:
    m = Codec().decode("homecare/v1/s1/bed-0001/button/btn-1/event",
                       json.dumps({"ts": ts, "seq": seq, "event": "press"}).encode())
    assert isinstance(m, Message)
    return m


def _called_twice(store: AlertStore) -> str:
    """Press, acknowledge, press again; returns the alert id."""
    engine = AlertEngine(store)
    rules = ImmediateRules()
    [opened] = engine.apply(rules.update([_press(1, T0)], [T0]), T0)
    engine.commit()
    engine.acknowledge(opened.alert.id, actor="anna", note=None, now_ms=T0 + 20_000)
    engine.apply(rules.update([_press(2, T0 + 60_000)], [T0 + 60_000]), T0 + 60_000)
    engine.commit()
    return opened.alert.id


async def test_a_repeat_is_an_event_of_its_own_on_the_stream() -> None:
    store = AlertStore(":memory:")
    _called_twice(store)
    chunks = [c async for c in event_stream(ChangeHub(), store, last_event_id=0, follow=False)]
    events = [block for block in b"".join(chunks).decode().split("\n\n") if "event:" in block]
    assert [e.split("event: ")[1].split("\n")[0] for e in events] == [
        "opened", "acknowledged", "repeated"]
    data = json.loads(events[-1].split("data: ", 1)[1])
    assert (data["alert"]["status"], data["alert"]["repeats"]) == ("open", 1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    r.start()
    yield r
    r.stop()


async def test_a_repeat_goes_upstream_with_its_action_and_count(
        tmp_path: Path, receiver: Receiver) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    _called_twice(store)
    upstream = Upstream(Outbox(tmp_path / "outbox.sqlite3"), url=receiver.url, secret=SECRET,
                        source="gw-1", alert_store=store,
                        service_log=ServiceLog(tmp_path / "servicelog.sqlite3"), timeout_s=2.0)
    stop = asyncio.Event()
    task = asyncio.create_task(upstream.run(stop))
    try:
        assert await asyncio.to_thread(receiver.wait_for, 3, 30.0), receiver.keys()
    finally:
        stop.set()
        await task
    change = receiver.accepted[2].body["change"]
    assert (change["action"], change["alert"]["status"], change["alert"]["repeats"]) == (
        "repeated", "open", 1)
