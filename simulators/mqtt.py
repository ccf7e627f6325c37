"""A small asyncio MQTT 3.1.1 publisher: many device connections in one event loop.

Why not paho or aiomqtt: the simulator holds a thousand device connections, each with its own
client id and last will, and the load generator pipelines tens of thousands of QoS 1
messages a second. Here a connection is an :class:`asyncio.Protocol` (no task per client,
no thread), QoS 1 packets are written back to back up to a window of unacknowledged ones,
and PUBACKs are matched by packet id. Only what devices need: CONNECT with will and
credentials, PUBLISH QoS 0/1, PINGREQ, DISCONNECT, TLS, reconnect with DUP resend.
"""

from __future__ import annotations

import asyncio
import contextlib

from devices import mqttwire as wire
from devices.broker import BrokerUrl
from devices.errors import ProtocolError
from devices.mqttwire import Will, publish_packet
from simulators.errors import MqttError


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: Publisher) -> None:
        self.owner = owner
        self.reader = wire.PacketReader(wire.V311)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        acked, packet = self.owner._acked, self.owner._packet
        try:
            packets = self.reader.feed(data)
        except ProtocolError:
            if self.transport is not None:
                self.transport.abort()
            return
        for item in packets:
            if isinstance(item, tuple):
                kind, _, body = item
                if kind == wire.PUBACK and len(body) >= 2:
                    acked((body[0] << 8) | body[1])
                else:
                    packet(kind, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self, exc)

    def pause_writing(self) -> None:
        self.owner._writable.clear()

    def resume_writing(self) -> None:
        self.owner._writable.set()


class Publisher:
    """One client connection. QoS 1 messages stay in flight until their PUBACK arrives and
    are resent (DUP) after a reconnect; :meth:`drain` waits until none is left.

    As an async context manager it connects on entry and disconnects cleanly on exit.
    """

    def __init__(self, url: BrokerUrl, *, client_id: str, will: Will | None = None,
                 keepalive: int = 60, clean_session: bool = True, max_inflight: int = 1000,
                 reconnect: bool = True, connect_timeout_s: float = 10.0,
                 drain_timeout_s: float = 10.0) -> None:
        if not 1 <= max_inflight <= 65_000:
            raise ValueError("max_inflight must be between 1 and 65000")
        self.url = url
        self.client_id = client_id
        self.will = will
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.max_inflight = max_inflight
        self.reconnect = reconnect
        self.connect_timeout_s = connect_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.published = 0
        self.acknowledged = 0
        self._inflight: dict[int, bytes] = {}
        self._next_id = 0
        self._protocol: _Protocol | None = None
        self._connack: asyncio.Future[int] | None = None
        self._window = asyncio.Event()
        self._window.set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._writable = asyncio.Event()
        self._writable.set()
        self._connected = asyncio.Event()
        self._closing = False
        self._ping: asyncio.TimerHandle | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._cork: list[bytes] | None = None
        self.error: BaseException | None = None

    async def __aenter__(self) -> Publisher:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def connect(self) -> None:
        """Connect and wait for CONNACK (at most ``connect_timeout_s``); resends what was in
        flight when an earlier connection broke."""
        loop = asyncio.get_running_loop()
        self._cork = None  # held QoS 1 packets are still in flight and resent below
        async with asyncio.timeout(self.connect_timeout_s):
            _, protocol = await loop.create_connection(
                lambda: _Protocol(self), self.url.host, self.url.port,
                ssl=self.url.ssl_context())
            self._protocol = protocol
            self._connack = loop.create_future()
            self._write(wire.connect_packet(
                client_id=self.client_id, version=wire.V311, keepalive=self.keepalive,
                clean_start=self.clean_session, will=self.will, username=self.url.username,
                password=self.url.password))
            code = await self._connack
        if code:
            self.abort()
            raise MqttError(f"broker refused {self.client_id}: "
                            f"{wire.CONNACK_REFUSALS.get(code, f'code {code}')}")
        for packet in list(self._inflight.values()):  # in send order
            self._write(bytes([packet[0] | 0x08]) + packet[1:])  # resend with DUP
        self._connected.set()
        self._schedule_ping()

    def set_will(self, will: Will | None) -> None:
        """The will for the next connection (a device composes it when it connects)."""
        self.will = will

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1,
                      retain: bool = False) -> None:
        """Send without waiting for the PUBACK; waits only while the in-flight window or the
        socket buffer is full. While disconnected, QoS 1 messages wait for the reconnect."""
        if len(self._inflight) >= self.max_inflight or not self._writable.is_set():
            self.uncork()  # what is held must go out before acknowledgements can come back
            while len(self._inflight) >= self.max_inflight:
                self._window.clear()
                await self._window.wait()
            if not self._writable.is_set():
                await self._writable.wait()
        self.publish_nowait(topic, payload, qos=qos, retain=retain)

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1,
                       retain: bool = False) -> None:
        """Like :meth:`publish` but ignores the window (the caller paces)."""
        self.published += 1
        if qos == 0:
            if self.connected:
                self._write(publish_packet(topic.encode(), payload, qos=0, retain=retain))
            return
        packet_id = self._allocate()
        packet = publish_packet(topic.encode(), payload, qos=1, retain=retain,
                                packet_id=packet_id)
        self._inflight[packet_id] = packet
        self._empty.clear()
        if self.connected:
            self._write(packet)

    def write_many(self, packets: list[bytes], ids: list[int]) -> None:
        """Pipelined QoS 1 publishing for the load generator: ``packets`` were built with
        :func:`publish_packet` using ``ids`` from :meth:`allocate_ids`."""
        self._inflight.update(zip(ids, packets, strict=True))
        self.published += len(packets)
        self._empty.clear()
        self._write(b"".join(packets))

    def publish_raw(self, packets: list[bytes]) -> None:
        """Pipelined QoS 0 publishing: ``packets`` built with :func:`publish_packet`."""
        self.published += len(packets)
        self._write(b"".join(packets))

    def allocate_ids(self, count: int) -> list[int]:
        return [self._allocate() for _ in range(count)]

    async def wait_window(self, room: int = 1) -> None:
        """Until ``room`` more messages fit in the in-flight window and the socket accepts."""
        while len(self._inflight) + room > self.max_inflight:
            self._window.clear()
            await self._window.wait()
        if not self._writable.is_set():
            await self._writable.wait()

    async def drain(self) -> None:
        """Until every QoS 1 message sent so far is acknowledged."""
        await self._empty.wait()

    async def disconnect(self) -> None:
        """Clean shutdown: wait (at most ``drain_timeout_s``) for acknowledgements, then
        DISCONNECT, so the broker discards the will."""
        self.uncork()  # held packets cannot be acknowledged: a corked goodbye waited out
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.drain_timeout_s):
                await self.drain()
        self._closing = True
        self.uncork()
        if self._protocol and self._protocol.transport and self.connected:
            self._write(wire.DISCONNECT_PACKET)
            self._protocol.transport.close()
        self._stop()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT, as a crashed device would: the broker
        publishes the will."""
        self._closing = True
        if self._protocol and self._protocol.transport:
            self._protocol.transport.abort()
        self._stop()

    def reopen(self) -> None:
        """Allow :meth:`connect` again after :meth:`abort` (a device coming back)."""
        self._closing = False

    # --- internals ------------------------------------------------------------------------------

    def _allocate(self) -> int:
        for _ in range(65_535):
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self._inflight:
                return self._next_id
        raise MqttError("no free packet id: 65535 messages in flight")

    def _write(self, data: bytes) -> None:
        if self._cork is not None:
            self._cork.append(data)
        elif self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.write(data)

    def cork(self) -> None:
        """Hold writes until :meth:`uncork`: one socket write for many small packets."""
        if self._cork is None:
            self._cork = []

    def uncork(self) -> None:
        held, self._cork = self._cork, None
        if held:
            self._write(b"".join(held))

    def _acked(self, packet_id: int) -> None:
        if self._inflight.pop(packet_id, None) is not None:
            self.acknowledged += 1
            if len(self._inflight) < self.max_inflight:
                self._window.set()
            if not self._inflight:
                self._empty.set()

    def _packet(self, kind: int, body: bytes) -> None:
        if kind == wire.CONNACK and self._connack is not None and not self._connack.done():
            try:
                code = wire.parse_connack(body).code
            except ProtocolError:
                code = 255
            self._connack.set_result(code)

    def _schedule_ping(self) -> None:
        if self.keepalive > 0:
            loop = asyncio.get_running_loop()
            self._ping = loop.call_later(self.keepalive * 0.7, self._send_ping)

    def _send_ping(self) -> None:
        if self.connected:
            self._write(wire.PINGREQ_PACKET)
            self._schedule_ping()

    def _stop(self) -> None:
        self._connected.clear()
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is not self._protocol:
            return
        self._stop()
        self._writable.set()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(MqttError(f"connection lost before CONNACK: {exc}"))
        if not self._closing and self.reconnect and self._reconnecting is None:
            self._reconnecting = asyncio.get_running_loop().create_task(
                self._reconnect(), name=f"mqtt-reconnect[{self.client_id}]")

    async def _reconnect(self) -> None:
        delay = 0.2
        try:
            while not self._closing:
                await asyncio.sleep(delay)
                try:
                    await self.connect()
                    return
                except (OSError, MqttError, TimeoutError) as exc:
                    self.error = exc
                    delay = min(delay * 2, 5.0)
        finally:
            self._reconnecting = None

    async def close(self) -> None:
        """Stop reconnect attempts (after :meth:`disconnect` or :meth:`abort`)."""
        self._closing = True
        task = self._reconnecting
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
