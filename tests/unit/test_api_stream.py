"""The alert change stream: live changes in order, resumption without gaps or repeats, slow
clients disconnected (never blocking the engine), keep-alives, shutdown."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from unittest import mock

import pytest

from alerts.api import ChangeHub, event_stream
from alerts.engine import AlertEngine
from alerts.errors import StoreUnavailable
from alerts.model import AlertChange, AlertType, Finding, Severity
from alerts.store import AlertStore
from tests.unit.test_api_app import T0, Harness, api

__all__ = ["api"]


def parse(chunk: bytes) -> tuple[int, str, dict[str, object]] | str:
    """An event as (id, event, data), or a comment/retry line as text."""
    text = chunk.decode()
    if not text.startswith("id:"):
        return text.strip()
    fields = dict(line.split(": ", 1) for line in text.strip().split("\n"))
    return int(fields["id"]), fields["event"], json.loads(fields["data"])


async def until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Poll ``condition`` on the event loop until it holds; TimeoutError after ``within``."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)


class Client:
    """Reads one stream in the background, like a browser would."""

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self.stream = stream
        self.items: list[tuple[int, str, dict[str, object]] | str] = []
        self.ended = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for chunk in self.stream:
                self.items.append(parse(chunk))
        finally:
            self.ended.set()

    @property
    def ids(self) -> list[int]:
        return [item[0] for item in self.items if isinstance(item, tuple)]

    async def wait_for(self, count: int, *, within: float = 5.0) -> list[int]:
        await until(lambda: len(self.ids) >= count, within=within)
        return self.ids

    async def close(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
def engine(tmp_path: Path) -> AlertEngine:
    return AlertEngine(AlertStore(tmp_path / "alerts.sqlite3"))


async def raise_alerts(engine: AlertEngine, n: int, start: int = 0) -> None:
    """Open ``n`` alerts, committing in a worker thread as the gateway does."""
    for i in range(start, start + n):
        engine.apply([Finding(type=AlertType.FALL, site="s", bed=f"b-{i}", at=T0 + i,
                              severity=Severity.CRITICAL)], T0 + i)
        await asyncio.to_thread(engine.commit)


async def test_live_changes_arrive_in_order_as_events(engine: AlertEngine) -> None:
    hub = ChangeHub()
    engine.add_listener(hub.publish)
    client = Client(event_stream(hub, engine.store, last_event_id=None))
    # Caught up (the store read): changes committed before this would come from the store,
    # ahead of ": live", as they should.
    await until(lambda: ": live" in client.items)
    await raise_alerts(engine, 5)
    assert await client.wait_for(5) == [1, 2, 3, 4, 5]
    assert client.items[:2] == ["retry: 2000", ": live"]
    seq, event, data = client.items[2]  # type: ignore[misc]
    assert (seq, event, data["action"], data["seq"]) == (1, "opened", "opened", 1)
    assert data["alert"]["bed"] == "b-0"  # type: ignore[index]
    await client.close()
    assert hub.clients == 0


async def test_a_call_shown_before_its_commit_reaches_the_streams_at_once_then_stored(
        engine: AlertEngine) -> None:
    """The urgent lane (on the event loop) shows a critical change before its commit: the
    streams' buffers have it on return, not a loop turn later; the commit (a worker thread)
    then streams it with its id."""
    hub = ChangeHub()
    engine.add_listener(hub.publish, unstored=hub.publish_unstored)
    subscription = hub.subscribe()
    client = Client(event_stream(hub, engine.store, last_event_id=None))
    await until(lambda: ": live" in client.items)  # caught up: shown every change from now
    engine.apply([Finding(type=AlertType.EMERGENCY_BUTTON, site="s", bed="b-call", at=T0,
                          severity=Severity.CRITICAL)], T0)
    assert engine.show_critical() == 1
    assert len(subscription.changes) == 1, "handed over synchronously on the loop"
    await asyncio.to_thread(engine.commit)
    assert await client.wait_for(1) == [1]
    early, stored = [item for item in client.items if item not in ("retry: 2000", ": live")][:2]
    assert isinstance(early, str), "no id: parsed as text"
    assert early.startswith("event: opened")
    assert '"unstored":true' in early
    assert stored[:2] == (1, "opened")  # type: ignore[index]
    hub.unsubscribe(subscription)
    await client.close()


async def test_a_client_that_read_the_first_line_misses_no_call_shown_after_the_live_line(
        engine: AlertEngine) -> None:
    """A stream says ``: live`` once it has caught up with the store: a call shown (unstored)
    and stored right after a client has read that line reaches the client both ways, first
    unstored (CI, 2026-12-02: a client could not tell when its stream had subscribed, and a
    call shown and stored before then came only stored)."""
    hub = ChangeHub()
    engine.add_listener(hub.publish, unstored=hub.publish_unstored)
    stream = event_stream(hub, engine.store, last_event_id=0, heartbeat_s=60)
    assert await anext(stream) == b"retry: 2000\n\n"
    assert await anext(stream) == b": live\n\n"
    engine.apply([Finding(type=AlertType.EMERGENCY_BUTTON, site="s", bed="b-call", at=T0,
                          severity=Severity.CRITICAL)], T0)
    assert engine.show_critical() == 1
    await asyncio.to_thread(engine.commit)
    early, stored = parse(await anext(stream)), parse(await anext(stream))
    assert isinstance(early, str), early
    assert '"unstored":true' in early
    assert stored[:2] == (1, "opened")  # type: ignore[index]
    await stream.aclose()  # type: ignore[attr-defined]
    assert hub.clients == 0


async def test_a_long_replay_during_a_storm_is_not_cut_off_as_too_slow(
        engine: AlertEngine) -> None:
    """Stored changes committed while a stream replays the store are read from the store,
    not buffered: a small buffer does not overflow however many come meanwhile."""
    hub = ChangeHub(queue_size=3)
    engine.add_listener(hub.publish)
    await raise_alerts(engine, 600)  # more than a replay page
    read = engine.store.changes_since
    replayed = threading.Event()

    def slow_read(after: int, limit: int) -> list[AlertChange]:
        if after < 600:
            replayed.wait(10)  # the first pages wait until the storm below has passed
        return read(after, limit)

    with mock.patch.object(engine.store, "changes_since", side_effect=slow_read):
        client = Client(event_stream(hub, engine.store, last_event_id=0))
        await until(lambda: hub.clients > 0)
        await raise_alerts(engine, 100, start=600)
        replayed.set()
        assert await client.wait_for(700, within=30) == list(range(1, 701))
    assert hub.disconnected_slow == 0
    await raise_alerts(engine, 2, start=700)
    assert await client.wait_for(702) == list(range(1, 703))
    await client.close()


async def test_a_stream_opened_while_a_call_waits_to_be_stored_is_shown_it(
        engine: AlertEngine) -> None:
    """A console that (re)connects while the alert store cannot write (a full disk) gets the
    calls shown meanwhile: the hub keeps unstored changes until their stored copy passes and
    hands them to each new stream, once; then the stored change comes with its id."""
    hub = ChangeHub()
    engine.add_listener(hub.publish, unstored=hub.publish_unstored)
    first = Client(event_stream(hub, engine.store, last_event_id=None))
    await until(lambda: hub.clients > 0)
    engine.apply([Finding(type=AlertType.EMERGENCY_BUTTON, site="s", bed="b-call", at=T0,
                          severity=Severity.CRITICAL)], T0)
    with mock.patch.object(engine.store, "write", side_effect=StoreUnavailable("disk full")), \
            pytest.raises(StoreUnavailable):
        await asyncio.to_thread(engine.commit)
    late = Client(event_stream(hub, engine.store, last_event_id=None))
    for client in (first, late):
        await until(lambda c=client: any(isinstance(i, str) and "unstored" in i  # type: ignore[misc]
                                         for i in c.items))
    await asyncio.to_thread(engine.commit)
    for client in (first, late):
        assert await client.wait_for(1) == [1]
        shown = [i for i in client.items if isinstance(i, str) and "unstored" in i]
        assert len(shown) == 1, client.items
        await client.close()
    assert hub._pending == {}, "forgotten once stored"


async def test_resuming_after_an_id_replays_exactly_the_missed_changes_then_goes_live(
        engine: AlertEngine) -> None:
    hub = ChangeHub()
    engine.add_listener(hub.publish)
    await raise_alerts(engine, 6)
    client = Client(event_stream(hub, engine.store, last_event_id=2))
    assert await client.wait_for(4) == [3, 4, 5, 6]
    await raise_alerts(engine, 3, start=6)
    assert await client.wait_for(7) == [3, 4, 5, 6, 7, 8, 9]
    await client.close()


async def test_changes_committed_while_a_client_catches_up_are_neither_lost_nor_repeated(
        engine: AlertEngine) -> None:
    hub = ChangeHub()
    engine.add_listener(hub.publish)
    await raise_alerts(engine, 1200)  # more than two replay pages
    client = Client(event_stream(hub, engine.store, last_event_id=0))
    writer = asyncio.create_task(raise_alerts(engine, 300, start=1200))
    await writer
    assert await client.wait_for(1500, within=30) == list(range(1, 1501))
    await client.close()


async def test_a_client_too_far_behind_is_disconnected_without_blocking_the_engine(
        engine: AlertEngine) -> None:
    hub = ChangeHub(queue_size=3)
    engine.add_listener(hub.publish)
    stream = event_stream(hub, engine.store, last_event_id=None, heartbeat_s=60)
    assert await anext(stream) == b"retry: 2000\n\n"
    assert await anext(stream) == b": live\n\n"
    pending = asyncio.ensure_future(anext(stream))  # waits for a change
    await until(lambda: hub.clients > 0)
    await raise_alerts(engine, 1)
    assert parse(await pending)[0] == 1  # type: ignore[index]
    # The client stops reading; the engine goes on committing regardless.
    async with asyncio.timeout(10):
        await raise_alerts(engine, 5, start=1)
    await until(lambda: hub.disconnected_slow > 0)
    rest = [parse(chunk) async for chunk in stream]
    assert rest == [": disconnected: too far behind; reconnect with Last-Event-ID"]
    assert hub.clients == 0
    resumed = Client(event_stream(hub, engine.store, last_event_id=1))
    assert await resumed.wait_for(5) == [2, 3, 4, 5, 6]
    await resumed.close()


async def test_idle_streams_carry_keep_alive_comments(engine: AlertEngine) -> None:
    hub = ChangeHub()
    client = Client(event_stream(hub, engine.store, last_event_id=None, heartbeat_s=0.02))
    await until(lambda: client.items.count(": keep-alive") >= 3)
    await client.close()


async def test_closing_the_hub_ends_every_stream(engine: AlertEngine) -> None:
    hub = ChangeHub()
    clients = [Client(event_stream(hub, engine.store, last_event_id=None)) for _ in range(3)]
    await until(lambda: hub.clients == 3)
    async with asyncio.timeout(5):
        hub.close()
        for client in clients:
            await client.ended.wait()
    late = Client(event_stream(hub, engine.store, last_event_id=None))
    async with asyncio.timeout(5):
        await late.ended.wait()


async def test_without_follow_the_stream_ends_after_the_backlog(engine: AlertEngine) -> None:
    await raise_alerts(engine, 4)
    hub = ChangeHub()
    chunks = [parse(c) async for c in event_stream(hub, engine.store, last_event_id=1,
                                                   follow=False)]
    assert [c[0] for c in chunks if isinstance(c, tuple)] == [2, 3, 4]


async def test_a_hole_in_the_live_sequence_is_filled_from_the_store(
        engine: AlertEngine) -> None:
    hub = ChangeHub()  # deliberately not an engine listener: changes are handed over by hand
    await raise_alerts(engine, 1)
    client = Client(event_stream(hub, engine.store, last_event_id=None))
    await until(lambda: hub.clients > 0)
    await raise_alerts(engine, 2, start=1)  # seq 2 and 3, in the store only
    hub._dispatch(engine.store.changes_since(2))  # only seq 3 reaches the hub
    assert await client.wait_for(2) == [2, 3]
    await client.close()


async def test_the_stream_route_resumes_from_the_last_event_id_header(api: Harness) -> None:
    for i in range(3):
        api.open_alert(bed=f"bed-{i}")
    response = await api.client.get("/api/v1/alerts/stream", params={"follow": "false"},
                                    headers={**api.auth("viewer"), "Last-Event-ID": "1"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = [parse(block.encode() + b"\n\n") for block in response.text.split("\n\n")
              if block.startswith("id:")]
    assert [e[0] for e in events if isinstance(e, tuple)] == [2, 3]
    by_query = await api.client.get("/api/v1/alerts/stream",
                                    params={"follow": "false", "last_event_id": 2},
                                    headers=api.auth("viewer"))
    assert by_query.text.count("id: ") == 1
    bad = await api.client.get("/api/v1/alerts/stream", params={"follow": "false"},
                               headers={**api.auth("viewer"), "Last-Event-ID": "abc"})
    assert bad.status_code == 200, "a browser's EventSource never reconnects after a 4xx"
    [reset] = [parse(block.encode() + b"\n\n") for block in bad.text.split("\n\n")
               if block.startswith("id:")]
    assert reset[:2] == (3, "reset")  # type: ignore[index]


async def test_a_last_event_id_above_the_newest_change_gets_a_reset_then_every_new_change(
        engine: AlertEngine) -> None:
    # The store was restored from a backup: the client has seen ids the store never made.
    hub = ChangeHub()
    engine.add_listener(hub.publish)
    await raise_alerts(engine, 3)
    client = Client(event_stream(hub, engine.store, last_event_id=40))
    await until(lambda: hub.clients > 0)
    await raise_alerts(engine, 2, start=3)
    assert await client.wait_for(3) == [3, 4, 5]
    seq, event, data = client.items[1]  # type: ignore[misc]
    assert (seq, event) == (3, "reset")
    assert data["reason"] == "ahead_of_store"
    assert data["head"] == 3
    assert [item[1] for item in client.items[2:] if isinstance(item, tuple)] == ["opened"] * 2
    await client.close()


def _restore(backup: Path, path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    backup.replace(path)


async def test_a_last_event_id_lost_in_a_store_restore_gets_a_reset_then_every_new_change(
        tmp_path: Path) -> None:
    # Backup at head 3, changes 4-6 reach the client, the backup is restored: the store
    # numbers new changes from 7, and a client at 5 (a change that is gone) must reload.
    path = tmp_path / "alerts.sqlite3"
    before = AlertEngine(AlertStore(path))
    await raise_alerts(before, 3)
    backup = tmp_path / "backup.sqlite3"
    with sqlite3.connect(path) as source, sqlite3.connect(backup) as copy:
        source.backup(copy)
    await raise_alerts(before, 3, start=3)
    before.store.close()
    _restore(backup, path)

    engine = AlertEngine(AlertStore(path))
    hub = ChangeHub()
    engine.add_listener(hub.publish)
    client = Client(event_stream(hub, engine.store, last_event_id=5))
    at_restored_head = Client(event_stream(hub, engine.store, last_event_id=3))
    await until(lambda: hub.clients == 2)
    await raise_alerts(engine, 2, start=10)
    assert await client.wait_for(3) == [6, 7, 8]
    seq, event, data = client.items[1]  # type: ignore[misc]
    assert (seq, event, data["reason"], data["head"]) == (6, "reset", "store_restored", 6)
    assert await at_restored_head.wait_for(2) == [7, 8], "nothing of its own was lost"
    await client.close()
    await at_restored_head.close()


@pytest.mark.parametrize("last_event_id", ["abc", "-1", "1.5", "٣", "0x10", "9" * 300])
async def test_a_last_event_id_header_that_is_no_change_seq_gets_a_reset(
        api: Harness, last_event_id: str) -> None:
    api.open_alert(bed="bed-1")
    api.open_alert(bed="bed-2")
    response = await api.client.get(
        "/api/v1/alerts/stream", params={"follow": "false"},
        headers={**api.auth("viewer"), "Last-Event-ID": last_event_id.encode()})
    if len(last_event_id) > 256:
        assert response.status_code == 422
        return
    assert response.status_code == 200
    events = [parse(block.encode() + b"\n\n") for block in response.text.split("\n\n")
              if block.startswith("id:")]
    assert len(events) == 1
    seq, event, data = events[0]  # type: ignore[misc]
    assert (seq, event, data["head"]) == (2, "reset", 2)
    expected = "ahead_of_store" if last_event_id.isdigit() and last_event_id.isascii() \
        else "invalid_last_event_id"
    assert data["reason"] == expected


async def test_a_reset_on_an_empty_store_still_tells_the_client_to_reload(
        engine: AlertEngine) -> None:
    hub = ChangeHub()
    chunks = [parse(c) async for c in event_stream(hub, engine.store, last_event_id=7,
                                                   follow=False)]
    assert chunks[0] == "retry: 2000"
    assert chunks[1][:2] == (0, "reset")  # type: ignore[index]
    assert len(chunks) == 2


async def test_the_openapi_document_describes_the_reset_event(api: Harness) -> None:
    document = (await api.client.get("/openapi.json")).json()
    answer = document["paths"]["/api/v1/alerts/stream"]["get"]["responses"]["200"]
    assert "reset" in answer["description"]
    schema = answer["content"]["text/event-stream"]["schema"]
    kinds = schema["properties"]["data"]["contentSchema"]["oneOf"]
    reasons = set(kinds[1]["properties"]["reason"]["enum"])
    assert reasons == {"store_restored", "ahead_of_store", "invalid_last_event_id"}
