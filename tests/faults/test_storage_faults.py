"""Storage trouble is never fatal: a store that cannot write holds its batch unacknowledged,
says why on ``/readyz`` and once in the log, and emergency calls still reach the alert store
(and so the dispatchers' stream) meanwhile; once the disk is back, everything held or shed is
stored exactly once.

Faults are injected at the dead-letter store's SQLite boundary (``side_effect=`` the error
SQLite raises on a full disk); the broker, the gateway and its other stores are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest

from alerts.errors import StorageError, StorageFault
from gateway.config import Settings
from gateway.runtime import Gateway
from gateway.storage.deadletters import DeadLetter, DeadLetterStore
from gateway.storage.spool import Spool
from tests.inprocess import API_KEY, invalid, press, publisher, running, until
from tests.servers import GatewayProcess, Mosquitto, free_port, sqlite_rows, wait_for
from tests.slowdb import SlowDatabase

pytestmark = [pytest.mark.integration]

SITE = "site-storage"
DISK_FULL = sqlite3.OperationalError("database or disk is full")


def _gateway(tmp_path: Path, mosquitto: Mosquitto, **settings: object) -> Gateway:
    return Gateway(Settings(mqtt_url=mosquitto.url, data_dir=tmp_path / "data",
                            mqtt_client_id=f"gw-storage-{tmp_path.name}"[:60],
                            api_addr=f"127.0.0.1:{free_port()}", api_key=API_KEY,
                            **settings))  # type: ignore[arg-type]


async def _watch_stream(http: httpx.AsyncClient, bed: str, connected: asyncio.Event,
                        seen: asyncio.Event, after: int) -> None:
    """Read the dispatchers' event stream from the change ``after`` on (so nothing committed
    while it connects is missed: a loaded two-worker run pressed before the stream had read
    its head); set ``seen`` when ``bed``'s alert opens on it."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "text/event-stream",
               "Last-Event-ID": str(after)}
    async with http.stream("GET", "/api/v1/alerts/stream", headers=headers,
                           timeout=httpx.Timeout(10, read=None)) as response:
        assert response.status_code == 200
        connected.set()
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif (line.startswith("data:") and event == "opened"
                  and json.loads(line[5:])["alert"]["bed"] == bed):
                seen.set()


def _emergency_calls(gateway: Gateway, bed: str) -> int:
    alerts, _ = gateway.alert_store.list_alerts(bed=bed, type="emergency_button")
    return len(alerts)


async def test_dead_letter_store_full_holds_intake_yet_an_emergency_call_opens_its_alert(
        tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    gateway = _gateway(tmp_path, mosquitto, inbox_max_messages=100)
    n_invalid = 400  # four times the inbox: the socket would pause without shedding
    async with running(gateway), publisher(mosquitto.url) as devices, \
            httpx.AsyncClient(base_url=f"http://{gateway.settings.api_addr}") as http:
        with mock.patch.object(DeadLetterStore, "_insert", side_effect=DISK_FULL) as insert:
            for n in range(50):
                devices.publish_nowait(*invalid(SITE, "bed-bad", n))
            await devices.drain()
            await until(lambda: insert.call_count >= 1, "a batch is held")
            for n in range(50, n_invalid):  # fill the inbox behind the held batch
                devices.publish_nowait(*invalid(SITE, "bed-bad", n))
            await devices.drain()
            await until(lambda: insert.call_count >= 3, "the commit is retried")
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert body["checks"]["deadletters_writable"] is False
            assert body["reasons"]["deadletters_writable"].startswith("disk_full")
            assert "database or disk is full" in body["reasons"]["deadletters_writable"]
            # While the batch is held: an emergency call from another bed opens its alert,
            # which the dispatchers' stream shows.
            listening, streamed = asyncio.Event(), asyncio.Event()
            stream = asyncio.create_task(_watch_stream(http, "bed-call", listening, streamed,
                                                       gateway.alert_store.last_seq()))
            async with asyncio.timeout(30):
                await listening.wait()
            devices.publish_nowait(*press(SITE, "bed-call"))
            await until(lambda: _emergency_calls(gateway, "bed-call") == 1,
                        "the emergency call reaches the alert store while dead letters fail")
            async with asyncio.timeout(30):
                await streamed.wait()
            stream.cancel()
            assert gateway.deadletters.count() == 0, "nothing stored, so nothing acknowledged"
            assert gateway.inbox.shed > 0, "the inbox was full: telemetry was shed"
            metrics = (await http.get("/metrics")).text
            assert 'homecare_storage_ok{store="deadletters"} 0.0' in metrics
        # The disk is back: the held batch, the rest of the inbox and what was shed (sent
        # again by the broker after the recall) are each stored exactly once.
        await until(lambda: gateway.deadletters.count() >= n_invalid,
                    "every invalid message is dead-lettered after the disk is back")
        sentinel = n_invalid
        devices.publish_nowait(*invalid(SITE, "bed-bad", sentinel))
        await until(lambda: gateway.deadletters.count() >= n_invalid + 1, "the sentinel")
        assert gateway.deadletters.count() == n_invalid + 1
        assert _emergency_calls(gateway, "bed-call") == 1
        assert (await http.get("/readyz")).status_code == 200
    unavailable = [r for r in caplog.records if r.getMessage().startswith("storage.unavailable")]
    resumed = [r for r in caplog.records if r.getMessage().startswith("storage.resumed")]
    assert len(unavailable) == 1, "logged once, not once per retry"
    assert len(resumed) == 1
    assert "shed_messages=" in resumed[0].getMessage()


async def test_held_batch_is_acknowledged_only_once_committed(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A gateway stopped while the dead-letter store is failing acknowledges nothing of the
    held batch; the next one (disk back) stores every message once."""
    first = _gateway(tmp_path, mosquitto)
    async with running(first), publisher(mosquitto.url) as devices:
        with mock.patch.object(DeadLetterStore, "_insert", side_effect=DISK_FULL) as insert:
            for n in range(50):
                devices.publish_nowait(*invalid(SITE, "bed-held", n))
            await devices.drain()
            await until(lambda: insert.call_count >= 2, "the commit is retried")
            first.stop()
    second = _gateway(tmp_path, mosquitto)
    async with running(second), publisher(mosquitto.url, "test-devices-2") as devices:
        await until(lambda: second.deadletters.count() >= 50, "the held messages, redelivered")
        devices.publish_nowait(*invalid(SITE, "bed-held", 50))
        await until(lambda: second.deadletters.count() >= 51, "the sentinel")
        assert second.deadletters.count() == 51


async def test_a_dead_letter_store_that_cannot_open_does_not_stop_the_gateway(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The disk full at start (every restart): the gateway runs, says why, takes calls."""
    with mock.patch.object(DeadLetterStore, "_connect", side_effect=DISK_FULL):
        gateway = _gateway(tmp_path, mosquitto)
        async with running(gateway), publisher(mosquitto.url) as devices, \
                httpx.AsyncClient(base_url=f"http://{gateway.settings.api_addr}") as http:
            devices.publish_nowait(*invalid(SITE, "bed-bad", 1))
            devices.publish_nowait(*press(SITE, "bed-start"))
            await until(lambda: _emergency_calls(gateway, "bed-start") == 1,
                        "the emergency call opens its alert")
            ready = (await http.get("/readyz")).json()
            assert ready["reasons"]["deadletters_writable"].startswith("disk_full")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: a file system that really fills up."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    # The close inside the suppress too: a write cut short leaves bytes in the buffer, and
    # closing flushes them onto the full disk (a flaky ENOSPC out of the fixture, 2026-12-03).
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


def test_stores_on_a_really_full_disk_raise_retryable_errors_and_work_again_once_freed(
        small_disk: Path) -> None:
    letters = DeadLetterStore(small_disk / "deadletters.sqlite3")
    spool = Spool(small_disk / "spool", max_bytes=1024 * 1024, segment_bytes=64 * 1024)
    letter = DeadLetter(1, "homecare/v1/s/b/button/d/event", b"x" * 60_000, "bad_json", "")
    filler = _fill(small_disk)
    with pytest.raises(StorageError) as raised:
        _repeat(lambda: letters.add([letter]))
    full = raised.value
    assert isinstance(full, StorageError)
    assert (full.store, full.fault) == ("deadletters", StorageFault("disk_full", True))
    stored = letters.count()
    with pytest.raises(StorageError) as raised:
        _repeat(lambda: spool.append(b"m,t=1 v=1 1\n" * 5000, 5000))
    spooled = raised.value
    assert isinstance(spooled, StorageError)
    assert (spooled.store, spooled.fault) == ("spool", StorageFault("disk_full", True))
    filler.unlink()
    letters.add([letter])
    assert letters.count() == stored + 1
    spool.append(b"m,t=1 v=1 1", 1)
    letters.close()
    spool.close()



def _repeat(write: Callable[[], object], times: int = 100) -> None:
    """Write until the disk is full (and more than full: some space is reserved)."""
    for _ in range(times):
        write()


def test_a_gateway_on_a_full_disk_keeps_running_says_why_and_loses_nothing_once_freed(
        small_disk: Path, mosquitto: Mosquitto) -> None:
    """The field case: the data directory fills up, only invalid messages arrive, the gateway
    is restarted while it stays full. Before: it exited on the dead-letter store's error, and
    again at every start."""
    gateway = GatewayProcess(small_disk.parent / "gw", mqtt_url=mosquitto.url,
                             env={"HOMECARE_DATA_DIR": str(small_disk / "data")})
    gateway.start()
    gateway.wait_connected()
    filler = _fill(small_disk)
    sent = 0

    def publish_invalid(count: int) -> None:
        nonlocal sent
        messages = [invalid(SITE, "bed-full", sent + n) for n in range(count)]
        asyncio.run(_publish(mosquitto.url, messages))
        sent += count

    try:
        publish_invalid(20)
        reasons = wait_for(lambda: _reasons(gateway), "readyz says why")
        assert any("disk_full" in why or "io_error" in why for why in reasons.values()), reasons
        wait_for(lambda: gateway.metric("homecare_storage_errors_total"
                                        '{reason="disk_full",store="deadletters"}') >= 3,
                 "the held batch is retried")
        assert gateway.running, "the gateway keeps running"
        gateway.stop()
        gateway.start()  # restarted while the disk is still full: stays up, not ready
        reasons = wait_for(lambda: _reasons(gateway), "readyz says why after the restart")
        publish_invalid(5)
        assert gateway.running
        log = gateway.log_tail(400)
        assert log.count("storage.unavailable") <= 2, "logged once per outage, not per retry"
    finally:
        filler.unlink()
    gateway.wait_connected(timeout=60)
    wait_for(lambda: len(sqlite_rows(small_disk / "data" / "deadletters.sqlite3",
                                     "SELECT id FROM dead_letters")) >= sent,
             "every invalid message is dead-lettered once the disk is freed")
    publish_invalid(1)
    wait_for(lambda: len(sqlite_rows(small_disk / "data" / "deadletters.sqlite3",
                                     "SELECT id FROM dead_letters")) >= sent, "the sentinel")
    rows = sqlite_rows(small_disk / "data" / "deadletters.sqlite3",
                       "SELECT payload FROM dead_letters")
    assert len(rows) == sent, "each stored once"
    assert wait_for(lambda: httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 200,
                    "ready again")
    gateway.stop()


async def _publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    async with publisher(url, "test-devices-full") as devices:
        for topic, payload in messages:
            devices.publish_nowait(topic, payload)
        await devices.drain()


def _reasons(gateway: GatewayProcess) -> dict[str, str] | None:
    try:
        answer = httpx.get(f"{gateway.url}/readyz", timeout=5)
    except httpx.HTTPError:
        return None
    if answer.status_code != 503:
        return None
    reasons: dict[str, str] = answer.json().get("reasons", {})
    return {name: why for name, why in reasons.items() if name != "mqtt_connected"} or None


def test_a_gateway_whose_stores_cannot_open_waits_not_ready_instead_of_exiting(
        small_disk: Path, mosquitto: Mosquitto) -> None:
    data = small_disk / "data"
    data.mkdir()
    filler = _fill(small_disk)
    gateway = GatewayProcess(small_disk.parent / "gw", mqtt_url=mosquitto.url,
                             env={"HOMECARE_DATA_DIR": str(data)})
    try:
        gateway.start()  # the address answers: alive, not ready, and why
        ready = httpx.get(f"{gateway.url}/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"stores_open": False}
        assert ready.json()["reasons"]["stores_open"]
        assert httpx.get(f"{gateway.url}/healthz", timeout=5).status_code == 200
        assert gateway.running
    finally:
        filler.unlink()
    gateway.wait_connected(timeout=60)
    assert wait_for(lambda: httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 200,
                    "ready once the stores open")
    gateway.stop()
    assert gateway.log_tail(200).count("storage.unavailable_at_start") == 1


async def test_the_database_writer_survives_a_spool_cursor_it_cannot_write(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Before: the writer task ended on the cursor's OSError and took the gateway with it."""
    with SlowDatabase() as db:
        gateway = _gateway(tmp_path, mosquitto, influx_url=db.url, influx_api="v2",
                           influx_token="token")
        no_space = OSError(errno.ENOSPC, "No space left on device")
        async with running(gateway), publisher(mosquitto.url) as devices, \
                httpx.AsyncClient(base_url=f"http://{gateway.settings.api_addr}") as http:
            with mock.patch.object(Spool, "_write_cursor", side_effect=no_space) as cursor:
                devices.publish_nowait(*press(SITE, "bed-cursor"))
                await until(lambda: cursor.call_count >= 1, "the cursor write fails")
                await until(lambda: not gateway.readiness()["spool_writable"], "said at once")
                ready = (await http.get("/readyz")).json()
                assert ready["reasons"]["spool_writable"].startswith("disk_full")
            devices.publish_nowait(*press(SITE, "bed-cursor-2"))
            await until(lambda: gateway.spool.pending_points == 0, "the spool drains")
            await until(lambda: gateway.readiness()["spool_writable"], "ready again")
            assert (await http.get("/readyz")).status_code == 200


async def test_every_store_that_failed_while_a_batch_was_held_is_ready_again_once_it_commits(
        tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    """A fresh tester's disk-full run (issue #16): while one batch was held the detector
    journal failed, then a store after it; once the disk had room only the last store to fail
    was marked recovered, so /readyz said the journal was full (and homecare_storage_ok 0) until
    a restart. Here the journal fails, then the service log (the stage after it), in the same
    held batch, then both write again."""
    from alerts.servicelog import ServiceLogRecorder
    from gateway.detect.journal import DetectorJournal

    caplog.set_level(logging.INFO)
    gateway = _gateway(tmp_path, mosquitto)
    full = {"detector_journal": True, "service_log": True}
    real_write, real_commit = DetectorJournal.write, ServiceLogRecorder.commit

    def journal_write(self: DetectorJournal) -> None:
        if full["detector_journal"]:
            raise StorageError.wrap("detector_journal", "write",
                                    OSError(errno.ENOSPC, "No space left on device"))
        real_write(self)

    def service_log_commit(self: ServiceLogRecorder) -> None:
        if full["service_log"]:
            raise StorageError.wrap("service_log", "write",
                                    OSError(errno.ENOSPC, "No space left on device"))
        real_commit(self)

    async with running(gateway), publisher(mosquitto.url) as devices, \
            httpx.AsyncClient(base_url=f"http://{gateway.settings.api_addr}") as http:
        with mock.patch.object(DetectorJournal, "write", journal_write), \
                mock.patch.object(ServiceLogRecorder, "commit", service_log_commit):
            devices.publish_nowait(*press(SITE, "bed-held"))
            await devices.drain()
            await until(lambda: gateway.storage.failing("detector_journal"),
                        "the journal fails first")
            full["detector_journal"] = False
            await until(lambda: gateway.storage.failing("service_log"),
                        "then the service log, the same batch held")
            full["service_log"] = False
            await until(lambda: not gateway.storage.failing("service_log"),
                        "the batch is committed")
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.json()
        metrics = (await http.get("/metrics")).text
        assert 'homecare_storage_ok{store="detector_journal"} 1.0' in metrics
        assert 'homecare_storage_ok{store="service_log"} 1.0' in metrics
    resumed = {r.getMessage().split()[1] for r in caplog.records
               if r.getMessage().startswith("storage.resumed")}
    assert resumed == {"store=detector_journal", "store=service_log"}


async def _stream_events(http: httpx.AsyncClient, bed: str, events: list[tuple[str | None, dict]],
                         connected: asyncio.Event) -> None:
    """Every event of the stream about ``bed``'s alerts: ``(id, data)``."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "text/event-stream"}
    async with http.stream("GET", "/api/v1/alerts/stream", headers=headers,
                           timeout=httpx.Timeout(10, read=None)) as response:
        assert response.status_code == 200
        event_id: str | None = None
        async for line in response.aiter_lines():
            if line == ": live":  # caught up: every change from now on is shown
                connected.set()
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
                if data.get("alert", {}).get("bed") == bed:
                    events.append((event_id, data))
            elif not line:
                event_id = None


async def test_a_call_on_a_full_disk_reaches_the_dispatchers_before_it_can_be_stored(
        small_disk: Path, tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A fresh tester: with the data directory's disk full, a press was in neither the alert
    list nor the stream until space was freed (the alert store could not commit it, and only
    committed changes were shown). Now the stream shows it at once as unstored (no id, seq
    null), the list carries it first, marked unstored, and once the disk is back it is stored
    and streamed again with its id."""
    gateway = Gateway(Settings(mqtt_url=mosquitto.url, data_dir=small_disk / "data",
                               mqtt_client_id=f"gw-full-{tmp_path.name}"[:60],
                               api_addr=f"127.0.0.1:{free_port()}", api_key=API_KEY))
    events: list[tuple[str | None, dict]] = []
    async with running(gateway), publisher(mosquitto.url) as devices, \
            httpx.AsyncClient(base_url=f"http://{gateway.settings.api_addr}") as http:
        connected = asyncio.Event()
        stream = asyncio.create_task(_stream_events(http, "bed-full-call", events, connected))
        async with asyncio.timeout(30):
            await connected.wait()
        filler = await asyncio.to_thread(_fill, small_disk)
        try:
            devices.publish_nowait(*press(SITE, "bed-full-call"))
            await until(lambda: bool(events), "the call on the stream while the disk is full")
            event_id, data = events[0]
            assert event_id is None, "an unstored event carries no id to resume from"
            assert data["unstored"] is True
            assert data["seq"] is None
            assert data["action"] == "opened"
            assert data["alert"]["type"] == "emergency_button"
            assert _emergency_calls(gateway, "bed-full-call") == 0, "not stored yet"
            listed = (await http.get("/api/v1/alerts", params={"bed": "bed-full-call"},
                                     headers={"Authorization": f"Bearer {API_KEY}"})).json()
            assert [(a["type"], a["unstored"]) for a in listed["items"]] == [
                ("emergency_button", True)]
        finally:
            filler.unlink()
        await until(lambda: _emergency_calls(gateway, "bed-full-call") == 1,
                    "the call stored once the disk is freed")
        await until(lambda: len(events) >= 2, "the stored change streamed with its id")
        stream.cancel()
        event_id, data = events[1]
        assert event_id is not None
        assert data["seq"] == int(event_id)
        assert data.get("unstored", False) is False
        assert data["alert"]["id"] == events[0][1]["alert"]["id"]
        listed = (await http.get("/api/v1/alerts", params={"bed": "bed-full-call"},
                                 headers={"Authorization": f"Bearer {API_KEY}"})).json()
        assert [(a["type"], a["unstored"]) for a in listed["items"]] == [
            ("emergency_button", False)]


def test_a_spool_append_the_disk_takes_only_part_of_fails_whole(small_disk: Path) -> None:
    """A fresh tester's full-disk run lost points and stored some twice: on a nearly full file
    system ``write`` took part of a batch and returned the count without an error, the spool
    counted the whole record, and what was read back for the database was cut short and
    overlapped the next record. Now such an append fails (retried by the gateway) and every
    record read back is the batch appended."""
    spool = Spool(small_disk / "spool", max_bytes=64 * 1024 * 1024, segment_bytes=16 * 1024 * 1024)
    appended = [b"m,t=a v=%d %d" % (i, i) for i in range(3)]
    for body in appended:
        spool.append(body, 1)
    filler = small_disk / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
    os.truncate(filler, filler.stat().st_size - 8192)  # 8 KiB free: a 20 KiB batch fits in part
    big = b"\n".join(b"m,t=b v=%d %d" % (i, i) for i in range(1_500))
    assert len(big) > 16_384
    with pytest.raises(StorageError):
        _repeat(lambda: appended.append(big) if spool.append(big, 1_500) is None else None, 3)
    filler.unlink()
    for body in (big, b"m,t=c v=1 1"):
        spool.append(body, body.count(b"\n") + 1)
        appended.append(body)
    read: list[bytes] = []
    while (batch := spool.read(1)) is not None:
        read.append(batch.body)
        spool.commit(batch)
    assert read == appended, "every record read back whole, none cut, none twice"
    spool.close()
