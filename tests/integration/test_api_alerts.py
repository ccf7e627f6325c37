"""Alerts end to end: a real button press and a real fall over MQTT (real mosquitto) through the
real gateway process, handled through the API; the event stream delivers every change in
order, and a client that reconnects with Last-Event-ID gets exactly what it missed."""

from __future__ import annotations

import asyncio
import json
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulators.load import publish_all
from tests.servers import GatewayProcess, Mosquitto

pytestmark = pytest.mark.integration

ADMIN_KEY = secrets.token_urlsafe(32)  # a bootstrap key must be a random secret
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def broker_and_gateway(mosquitto: Mosquitto, tmp_path: Any
                       ) -> Iterator[tuple[Mosquitto, GatewayProcess]]:
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url,
                             env={"HOMECARE_API_KEY": ADMIN_KEY})
    gateway.start()
    try:
        gateway.wait_connected()
        yield mosquitto, gateway
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()


def publish(broker: Mosquitto, messages: list[tuple[str, dict[str, Any]]]) -> None:
    encoded = [(topic, json.dumps(body).encode()) for topic, body in messages]

    async def run() -> None:
        async with asyncio.timeout(30):
            await publish_all(broker.url, encoded)

    asyncio.run(run())


def now_ms() -> int:
    return int(time.time() * 1000)


class EventStream:
    """An SSE client on its own thread and event loop: parsed events in a queue, like a
    browser's EventSource; ``close`` cancels the read at once. Unstored events (no ``id:``,
    shown before the change is stored) are kept apart in ``unstored``, each with the number
    of stored events queued before it arrived."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: queue.Queue[tuple[int, str, dict[str, Any]]] = queue.Queue()
        self.unstored: list[tuple[int, str, dict[str, Any]]] = []
        self._stored = 0
        self.comments: list[str] = []
        self.status: int | None = None
        self.connected = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._main(url, headers),), daemon=True)
        self._thread.start()
        if not self.connected.wait(10):
            raise TimeoutError("event stream did not open")

    async def _main(self, url: str, headers: dict[str, str]) -> None:
        self._task = asyncio.current_task()
        fields: dict[str, str] = {}
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as client, \
                    client.stream("GET", url, headers=headers) as response:
                self.status = response.status_code
                if self.status != 200:
                    self.connected.set()
                async for line in response.aiter_lines():
                    if line.startswith(":"):
                        if line == ": live":  # caught up: every change from now on is shown
                            self.connected.set()
                        self.comments.append(line)
                    elif line == "":
                        if "data" in fields and "id" not in fields:
                            self.unstored.append((self._stored, fields["event"],
                                                  json.loads(fields["data"])))
                        elif "data" in fields:
                            self._stored += 1
                            self.events.put((int(fields["id"]), fields["event"],
                                             json.loads(fields["data"])))
                        fields = {}
                    else:
                        name, _, value = line.partition(": ")
                        fields[name] = value
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            self.connected.set()

    def take(self, count: int, *, within: float = 20.0) -> list[tuple[int, str, dict[str, Any]]]:
        deadline = time.monotonic() + within
        taken = []
        while len(taken) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"got {len(taken)} of {count} events: {taken}")
            try:
                taken.append(self.events.get(timeout=remaining))
            except queue.Empty:
                continue
        return taken

    def drain(self) -> list[tuple[int, str, dict[str, Any]]]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
        assert not self._thread.is_alive()
        self._loop.close()


def wait_alerts(gateway: GatewayProcess, count: int, **params: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = httpx.get(f"{gateway.url}/api/v1/alerts", params=params, headers=ADMIN,
                          timeout=10).json()["items"]
        if len(items) >= count:
            return items
        time.sleep(0.05)
    raise TimeoutError(f"{len(items)} of {count} alerts for {params}\n{gateway.log_tail()}")


def all_changes(gateway: GatewayProcess) -> list[tuple[int, str]]:
    """Every change of every alert, from the alerts' histories: (seq, action) in seq order."""
    changes = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(f"{gateway.url}/api/v1/alerts", params=params, headers=ADMIN,
                         timeout=10).json()
        for alert in page["items"]:
            detail = httpx.get(f"{gateway.url}/api/v1/alerts/{alert['id']}", headers=ADMIN,
                               timeout=10).json()
            changes.extend((h["seq"], h["action"]) for h in detail["history"])
        cursor = page["next_cursor"]
        if cursor is None:
            return sorted(changes)


def test_button_and_fall_become_alerts_handled_through_the_api_and_streamed_in_order(
        broker_and_gateway: tuple[Mosquitto, GatewayProcess]) -> None:
    broker, gateway = broker_and_gateway
    stream = EventStream(f"{gateway.url}/api/v1/alerts/stream?last_event_id=0", ADMIN)
    assert stream.status == 200
    t = now_ms()
    publish(broker, [
        ("homecare/v1/site-a/bed-0001/button/btn-0001/event",
         {"ts": t, "seq": 1, "event": "press"}),
        ("homecare/v1/site-a/bed-0002/fall/fs-0002/event",
         {"ts": t, "seq": 1, "event": "fall_detected", "confidence": 0.93, "posture": "lying"}),
        ("homecare/v1/site-b/bed-0003/button/btn-0003/event",
         {"ts": t, "seq": 1, "event": "long_press"}),
    ])
    wait_alerts(gateway, 3, status="open", severity="critical")

    # List, filter, paginate.
    falls = wait_alerts(gateway, 1, type="fall")
    assert [(a["site"], a["bed"], a["severity"]) for a in falls] == [
        ("site-a", "bed-0002", "critical")]
    fall = falls[0]
    assert fall["evidence"]["device"] == "fs-0002"
    calls = wait_alerts(gateway, 2, type="emergency_button")
    assert sorted(a["bed"] for a in calls) == ["bed-0001", "bed-0003"]
    site_b = wait_alerts(gateway, 1, site="site-b")
    assert [a["bed"] for a in site_b] == ["bed-0003"]
    ids: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 1, "severity": "critical"}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(f"{gateway.url}/api/v1/alerts", params=params, headers=ADMIN,
                         timeout=10).json()
        ids.extend(a["id"] for a in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(ids) == len(set(ids)) == 3

    # The stream saw the three openings, in sequence order; each critical call was shown
    # first unstored (before the alert store's fsync), then stored with its id.
    opened = stream.take(3)
    assert [e[0] for e in opened] == [1, 2, 3]
    assert {e[1] for e in opened} == {"opened"}
    assert {e[2]["alert"]["bed"] for e in opened} == {"bed-0001", "bed-0002", "bed-0003"}
    early = {data["alert"]["id"]: (before, action, data) for before, action, data in
             stream.unstored}
    for seq, action, data in opened:
        before, early_action, early_data = early[data["alert"]["id"]]
        assert before < seq, "shown before its stored event"
        assert (early_action, early_data["seq"], early_data["unstored"]) == (action, None, True)
        assert early_data["alert"] == data["alert"], "the same change"

    # Acknowledge (optional note), resolve (note required).
    call = next(a for a in calls if a["bed"] == "bed-0001")
    dispatcher = httpx.post(f"{gateway.url}/api/v1/keys", headers=ADMIN,
                            json={"name": "disp-1", "role": "dispatcher"}, timeout=10)
    auth = {"Authorization": f"Bearer {dispatcher.json()['token']}"}
    acked = httpx.post(f"{gateway.url}/api/v1/alerts/{call['id']}/acknowledge",
                       headers=auth, json={"note": "calling the family"}, timeout=10)
    assert acked.status_code == 200
    assert (acked.json()["status"], acked.json()["acknowledged_by"]) == ("acknowledged",
                                                                          "disp-1")
    no_note = httpx.post(f"{gateway.url}/api/v1/alerts/{call['id']}/resolve", headers=auth,
                         json={}, timeout=10)
    assert no_note.status_code == 422
    resolved = httpx.post(f"{gateway.url}/api/v1/alerts/{call['id']}/resolve", headers=auth,
                          json={"note": "pressed by mistake; person fine",
                                "outcome": "false_alarm"}, timeout=10)
    assert resolved.status_code == 200
    detail = httpx.get(f"{gateway.url}/api/v1/alerts/{call['id']}", headers=ADMIN,
                       timeout=10).json()
    assert detail["status"] == "resolved"
    assert detail["note"] == "pressed by mistake; person fine"
    handled = [(h["action"], h["actor"], h["note"]) for h in detail["history"]
               if h["action"] in ("acknowledged", "resolved")]
    assert handled == [("acknowledged", "disp-1", "calling the family"),
                       ("resolved", "disp-1", "pressed by mistake; person fine")]
    assert detail["history"][0]["action"] == "opened"
    assert [h["seq"] for h in detail["history"]] == sorted(h["seq"] for h in detail["history"])

    # The stream delivered those too; it has exactly the changes of the alerts' histories.
    changes = all_changes(gateway)
    last = changes[-1][0]
    seen = opened + stream.take(last - 3)
    assert [(seq, action) for seq, action, _ in seen] == changes
    assert [seq for seq, _, _ in seen] == list(range(1, last + 1)), "no gap, no repeat"
    for seq, action, data in seen:
        assert (data["seq"], data["action"]) == (seq, action)
    stream.close()

    # While disconnected, more happens; the resumed stream gets exactly that, then live.
    httpx.post(f"{gateway.url}/api/v1/alerts/{fall['id']}/acknowledge", headers=auth,
               timeout=10).raise_for_status()
    other = next(a for a in calls if a["bed"] == "bed-0003")
    httpx.post(f"{gateway.url}/api/v1/alerts/{other['id']}/resolve", headers=auth,
               json={"note": "caregiver on site", "outcome": "caregiver_sent"},
               timeout=10).raise_for_status()
    missed = [c for c in all_changes(gateway) if c[0] > last]
    assert [a for _, a in missed][-2:] == ["acknowledged", "resolved"]
    resumed = EventStream(f"{gateway.url}/api/v1/alerts/stream",
                          {**ADMIN, "Last-Event-ID": str(last)})
    got = resumed.take(len(missed))
    assert [(seq, action) for seq, action, _ in got] == missed
    publish(broker, [("homecare/v1/site-a/bed-0004/button/btn-0004/event",
                      {"ts": now_ms(), "seq": 1, "event": "press"})])
    [live] = resumed.take(1)
    assert (live[0], live[1], live[2]["alert"]["bed"]) == (missed[-1][0] + 1, "opened",
                                                            "bed-0004")
    assert resumed.drain() == []
    resumed.close()


def test_open_streams_do_not_hold_up_a_clean_shutdown(
        broker_and_gateway: tuple[Mosquitto, GatewayProcess]) -> None:
    _, gateway = broker_and_gateway
    streams = [EventStream(f"{gateway.url}/api/v1/alerts/stream", ADMIN) for _ in range(3)]
    started = time.monotonic()
    gateway.stop(timeout=20)
    assert time.monotonic() - started < 5, "streams are ended, not waited out"
    assert gateway.returncode == 0
    for stream in streams:
        stream.close()
