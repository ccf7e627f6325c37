"""While an emergency call is on its way to the stream, the ingest task starts no new step
(issue #17), for at most ``URGENT_FIRST_MAX_S``.

During the 100,000-id flood the ingest task's steps (a few ms each of first sights) ran between
each hop of a press's way: while its alert commit ran on its thread (competing with it for the
interpreter), between the commit and the stream's dispatch, and before the stream's write."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import msgspec
import pytest

from devices.registry import Registry
from gateway import runtime
from gateway.config import Settings
from gateway.ingest import RawMessage
from gateway.runtime import Gateway
from tests.inprocess import until

HOLD_S = 0.3
"""How long the test's alert commit waits before it writes (a slow disk)."""



class _FixedPacer:
    size = 35
    budget_s = 0.005

    def took(self, messages: int, seconds: float) -> None:
        pass


def _flood(n: int) -> list[RawMessage]:
    now = int(time.time() * 1000)
    payload = json.dumps({"ts": now, "seq": 1, "state": "online", "battery": 80}).encode()
    return [RawMessage(f"homecare/v1/x-{i:05d}/bed/audio/au-{i:05d}/status", payload, i + 1, 1,
                       now) for i in range(n)]


def _press() -> RawMessage:
    now = int(time.time() * 1000)
    payload = json.dumps({"ts": now, "seq": 1, "event": "press"}).encode()
    return RawMessage("homecare/v1/s/b-1/button/btn-1/event", payload, 1, 1, now,
                      urgent_session=True)


def _steps_during_a_slow_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                ) -> tuple[int, int, int]:
    """Devices the ingest task registered (before, after) the urgent commit's hold, and the
    alerts the commit wrote."""
    monkeypatch.setattr(runtime, "StepPacer", _FixedPacer)
    registry = Registry.from_mapping({"sites": {"s": {"beds": {"b-1": {"devices": {
        "btn-1": {"kind": "button"}}}}}}})
    gateway = Gateway(Settings(data_dir=tmp_path / "data"), registry=registry,
                      serve_http=False)
    seen: list[int] = []
    commit = gateway.alerting.commit

    def slow_commit() -> None:
        if threading.current_thread().name.startswith("emergency") and not seen:
            seen.append(gateway.pipeline.registered_total)
            time.sleep(HOLD_S)
            seen.append(gateway.pipeline.registered_total)
        commit()

    monkeypatch.setattr(gateway.alerting, "commit", slow_commit)

    async def scenario() -> None:
        gateway._feed_open.set()
        gateway.inbox.put_many(_flood(50_000))
        ingest = asyncio.create_task(gateway._ingest())
        await until(lambda: gateway.pipeline.registered_total >= 500, "500 registered", 60.0)
        # What the urgent lane does when the urgent session hands it a press (taken here at
        # once, so the ingest task does not take it first, which it may: then it handles the
        # call itself before its next step).
        gateway.inbox.put_urgent([_press()])
        await gateway._handle_urgent()
        assert len(seen) == 2, "the call was not committed on the emergency thread"
        gateway.stop()
        gateway.inbox.interrupt()
        await ingest

    try:
        asyncio.run(scenario())
    finally:
        for thread in (gateway._emergency_thread, gateway._ingest_thread,
                       gateway._detect_thread, gateway._housekeeping_thread):
            thread.shutdown(wait=True)
        gateway._close_stores()
    return seen[0], seen[1], gateway.alerts.last_seq


def test_no_ingest_step_runs_while_a_call_is_committed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "URGENT_FIRST_MAX_S", 10 * HOLD_S)
    before, after, last_seq = _steps_during_a_slow_commit(tmp_path, monkeypatch)
    assert last_seq >= 1, "the press opened no alert"
    assert after == before, f"{after - before} devices registered while the call was committed"


def test_intake_goes_on_when_the_commit_takes_longer_than_the_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "URGENT_FIRST_MAX_S", HOLD_S / 10)
    before, after, last_seq = _steps_during_a_slow_commit(tmp_path, monkeypatch)
    assert last_seq >= 1, "the press opened no alert"
    assert after > before, "intake stood still behind a slow alert commit"


def _gateway_with_a_button(tmp_path: Path) -> Gateway:
    registry = Registry.from_mapping({"sites": {"s": {"beds": {"b-1": {"devices": {
        "btn-1": {"kind": "button"}}}}}}})
    return Gateway(Settings(data_dir=tmp_path / "data"), registry=registry, serve_http=False)


def _stop(gateway: Gateway) -> None:
    for thread in (gateway._emergency_thread, gateway._ingest_thread,
                   gateway._detect_thread, gateway._housekeeping_thread):
        thread.shutdown(wait=True)
    gateway._close_stores()


@pytest.mark.parametrize("session", ["urgent", "main"])
def test_a_call_is_on_the_streams_when_the_read_that_brought_it_returns(
        tmp_path: Path, session: str) -> None:
    """The read that puts a call in the urgent lane takes it to the rules and the streams
    itself: not a loop turn later, when the lane's task wakes behind whatever else that turn
    runs (during the flood, an ingest step and a read of the main session). The lane's task
    then commits it, and the stored copy follows."""
    gateway = _gateway_with_a_button(tmp_path)
    shown: list[str] = []
    stored: list[str] = []
    gateway.alerts.add_listener(lambda changes: stored.extend(c.action for c in changes),
                                unstored=lambda changes: shown.extend(c.action for c in changes))

    async def scenario() -> None:
        gateway.inbox.on_urgent = gateway._urgent_read
        lane = asyncio.create_task(gateway._urgent_lane())
        call = _press()
        if session == "main":
            gateway.inbox.put_many([msgspec.structs.replace(call, urgent_session=False)])
        else:
            gateway.inbox.put_urgent([call])
        assert shown == ["opened"], "not shown in the read"
        assert not gateway._urgent_idle.is_set(), "the ingest task would step before the commit"
        await until(lambda: stored == ["opened"], "the stored copy", 10.0)
        await until(gateway._urgent_idle.is_set, "idle again", 10.0)
        assert gateway.alerts.last_seq == 1
        lane.cancel()

    try:
        asyncio.run(scenario())
    finally:
        _stop(gateway)


def test_a_call_whose_rules_fail_in_the_read_is_left_to_the_urgent_lane(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Handling a call in the read must never lose it: should the rules raise there, the call
    goes back to the lane, whose task handles it as it always did."""
    gateway = _gateway_with_a_button(tmp_path)
    process = gateway.pipeline.process_urgent
    fail = [True]

    def once_failing(raws: list[RawMessage]) -> int:
        if fail.pop() if fail else False:
            raise RuntimeError("a bug in a rule")
        return process(raws)

    monkeypatch.setattr(gateway.pipeline, "process_urgent", once_failing)

    async def scenario() -> None:
        gateway.inbox.on_urgent = gateway._urgent_read
        gateway.inbox.put_urgent([_press()])
        assert [r.topic for r in gateway.inbox.urgent] == [_press().topic]
        assert gateway._urgent_idle.is_set()
        await gateway._handle_urgent()
        assert gateway.alerts.last_seq == 1
        assert gateway._urgent_idle.is_set()

    try:
        asyncio.run(scenario())
    finally:
        _stop(gateway)
