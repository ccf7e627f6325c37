"""A live view of device traffic as a subscriber sees it: messages per second by kind,
devices online, and the latest events. Used by ``homecare demo`` to show that traffic flows.

The counting (:class:`TrafficMonitor`) is separate from the subscription (:func:`watch`), so
it is tested without a broker.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import time
from dataclasses import dataclass

import aiomqtt
import msgspec
from rich.console import Group
from rich.table import Table
from rich.text import Text

from devices import KINDS, SUBSCRIPTION, TopicError, parse_topic
from devices.broker import BrokerUrl

_KINDS = tuple(sorted(KINDS))


@dataclass(frozen=True, slots=True)
class Seen:
    """A notable message: an event or a device going offline."""

    at: float
    bed: str
    kind: str
    what: str


class TrafficMonitor:
    """Counts messages over a sliding window of ``window_s`` seconds."""

    def __init__(self, *, window_s: float = 5.0, keep: int = 10) -> None:
        self.window_s = window_s
        self.total = 0
        self.invalid = 0
        self.last_ts: int | None = None
        self.recent: collections.deque[Seen] = collections.deque(maxlen=keep)
        self._times: dict[str, collections.deque[float]] = {k: collections.deque() for k in _KINDS}
        self._state: dict[str, str] = {}

    def observe(self, topic: str, payload: bytes, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.total += 1
        try:
            address = parse_topic(topic)
        except TopicError:
            self.invalid += 1
            return
        self._times[address.kind.value].append(now)
        try:
            body = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            return
        if not isinstance(body, dict):
            return
        if isinstance(body.get("ts"), int):
            self.last_ts = body["ts"]
        if address.channel == "status":
            state = str(body.get("state"))
            if self._state.get(topic) == "online" and state == "offline":
                self.recent.append(Seen(now, address.bed, address.kind.value, "offline"))
            self._state[topic] = state
        elif address.channel == "event":
            self.recent.append(Seen(now, address.bed, address.kind.value, str(body.get("event"))))

    def rates(self, *, now: float | None = None) -> dict[str, float]:
        """Messages per second by kind over the window."""
        now = time.monotonic() if now is None else now
        out = {}
        for kind, times in self._times.items():
            while times and times[0] < now - self.window_s:
                times.popleft()
            out[kind] = len(times) / self.window_s
        return out

    @property
    def online(self) -> int:
        return sum(1 for state in self._state.values() if state == "online")

    def __rich__(self) -> Group:
        rates = self.rates()
        table = Table(box=None, show_header=True, header_style="bold")
        for kind in _KINDS:
            table.add_column(f"{kind}/s", justify="right")
        table.add_column("total/s", justify="right")
        table.add_row(*(f"{rates[k]:.1f}" for k in _KINDS), f"{sum(rates.values()):.1f}")
        sim = ("-" if self.last_ts is None else
               f"{dt.datetime.fromtimestamp(self.last_ts / 1000, tz=dt.UTC):%Y-%m-%d %H:%M}Z")
        head = Text(f"messages {self.total:,}  devices online {self.online}  "
                    f"device time {sim}", style="bold")
        events = Table(box=None, show_header=False)
        for seen in reversed(self.recent):
            events.add_row(f"{time.monotonic() - seen.at:5.0f}s ago", seen.bed, seen.kind,
                           seen.what)
        return Group(head, table, Text("recent events", style="bold"), events)


async def watch(url: str, monitor: TrafficMonitor, *, ready: asyncio.Event | None = None,
                client_id: str = "homecare-demo-monitor") -> None:
    """Subscribe to every device topic and feed ``monitor`` until cancelled."""
    broker = BrokerUrl.parse(url)
    async with aiomqtt.Client(broker.host, broker.port, identifier=client_id,
                              username=broker.username, password=broker.password,
                              tls_context=broker.ssl_context()) as client:
        await client.subscribe(SUBSCRIPTION, qos=1)
        if ready is not None:
            ready.set()
        async for message in client.messages:
            payload = message.payload
            monitor.observe(message.topic.value,
                            payload if isinstance(payload, bytes) else str(payload).encode())
