"""MQTT ingest: QoS 1, persistent session, acknowledgement only after durable hand-off.

A lean asyncio subscriber (wire format in :mod:`devices.mqttwire`) chosen by measurement: on
this project's benchmark paho-mqtt drains ~10k msg/s (its network thread and our pipeline fight
over the GIL), gmqtt ~42k msg/s but only ~20k msg/s when made to acknowledge after processing
(one task per message; and on MQTT 3.1.1 it always acknowledges on receipt), aiomqtt
acknowledges on receipt. Here a single ``data_received`` call parses every packet in the chunk,
and acknowledgements for a whole committed batch go out in one write, in receipt order.

Guarantees:

* PUBACK only when the checkpoint says so (:meth:`MqttSource.ack`), after the batch is on disk
  (:mod:`gateway.ingest.checkpoint`).
* Bounded: when the :class:`~gateway.ingest.inbox.Inbox` is full the socket stops being read
  (``pause_reading``), so TCP pushes back to the broker, which keeps the messages. Nothing
  acknowledged is ever dropped (the aiomqtt pitfall).
* The session survives gateway restarts: fixed client id, clean start off and, on MQTT 5, a
  session expiry interval (with expiry 0 the broker would end the session on disconnect).
  Receive Maximum is 65535 so that batched acknowledgement does not starve intake.
* A filter dropped from ``mqtt_topic`` is unsubscribed when the session is found again
  (:mod:`gateway.ingest.subscriptions`): the broker would keep it with the session. A session
  the broker resumes that ``data_dir`` has no record of (the data directory lost, wiped or
  restored from an older backup) is resumed all the same, its queued messages taken, and a
  filter it holds that is not configured is unsubscribed once a message shows it
  (``mqtt.stale_filters``).
* Reconnects with capped exponential backoff and resubscribes; packet ids belong to one
  connection, so acknowledgements for messages of an earlier connection are not sent (the broker
  redelivers those, and the copy is dropped as a duplicate and acknowledged). Every connection
  of every source in the process has its own number (:attr:`RawMessage.connection
  <gateway.ingest.message.RawMessage.connection>`), so an acknowledgement never crosses from
  one session to the other either.

The gateway runs two of these sources: the main session (``mqtt_client_id``, everything of
``mqtt_topic``) and the urgent session (``<mqtt_client_id>-urgent``, only the emergency button
and fall events of the same subscription: :mod:`gateway.ingest.urgentsession`), each with its
own persistent session at the broker, so the broker delivers a press at once on the second
while the first is still working through a backlog.

The module is over 400 lines because both sessions share the connection, its acknowledgement
rules, the clean-up of filters a resumed session holds unknown, and the urgent session's guard
against being handed the main session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from devices import mqttwire as wire
from devices.errors import ProtocolError
from gateway.config import Settings
from gateway.errors import ConnectRefused
from gateway.ingest.inbox import Intake
from gateway.ingest.message import RawMessage
from gateway.ingest.subscriptions import SessionFilters, filters_matching, matcher
from gateway.ingest.urgentsession import is_urgent_topic

log = logging.getLogger("homecare.mqtt")

CONNECT_TIMEOUT_S = 10.0
SESSION_TAKEN_OVER = 0x8E
"""MQTT 5 DISCONNECT reason: another connection took this client id."""
TAKEN_OVER_LIMIT = 2
"""Takeovers after which the urgent session stops (:meth:`MqttSource.shared_with_main`)."""
STALE_PACKET_IDS = 0x4000
"""Packet ids from here on unsubscribe filters shown stale (:meth:`MqttSource.stale`), apart
from those of the subscriptions made at connect."""
STALE_PER_PACKET = 100
"""Filters per UNSUBSCRIBE of :meth:`MqttSource.stale` (a topic shows up to 383)."""
STALE_TOPICS_KEPT = 10_000
"""Topics shown stale remembered per connection, each cleaned up once."""
TAKEN_KEPT_MS = 600_000
"""How far back the urgent session's copies are handed on to be stored when it finds it held
the main session (:meth:`MqttSource.shared_with_main`)."""

READ_BYTES = 16 * 1024
"""Bytes read from the socket at a time (asyncio's default: 256 KiB). Each read is parsed in
one go, on the event loop: during a flood a 256 KiB read is ~2,000 messages, which held the
loop up to 49 ms at a time while the urgent session's socket waited to be read (flood
benchmark, 2026-12-02); 16 KiB (~130 messages, well under a millisecond to parse) lets it in
between, with the 1 ms pipeline steps (:data:`~gateway.ingest.pacing.STEP_BUDGET_S`). The
same bytes are read either way, in more, smaller reads."""

_CONNECTIONS = itertools.count(1)
"""Numbers of connections, unique in the process across every source."""


class _Connection(asyncio.Protocol):
    def __init__(self, source: MqttSource, version: int) -> None:
        self.source = source
        self.reader = wire.PacketReader(version)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[wire.ConnAck] = loop.create_future()
        self.suback: asyncio.Future[list[int]] = loop.create_future()
        self.unsuback: asyncio.Future[list[int]] = loop.create_future()
        self.closed: asyncio.Future[Exception | None] = loop.create_future()
        self.generation = next(_CONNECTIONS)
        """Numbered before any packet arrives: the broker sends what it holds for a resumed
        session right behind the CONNACK, often in the same read, and those messages must carry
        the number their acknowledgement is checked against."""
        self.last_received = time.monotonic()
        self.paused = False
        """Not read: the inbox is full (until it has room, :meth:`resume`)."""
        self.held = False
        """Not read: an emergency call is being written to the streams (:meth:`hold`)."""
        self.unrecorded = False
        """Set before connecting: ``data_dir`` may not know every filter the session holds (no
        record of it, or one that says so)."""
        self.checking = False
        """Each message's topic is checked against the configured filters: the broker resumed
        a session with :attr:`unrecorded` filters (:meth:`MqttSource.stale`)."""
        self.stale_topics: set[str] = set()
        self.unsubscribed: set[str] = set()
        self.stale_ids = itertools.count(STALE_PACKET_IDS)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if hasattr(transport, "max_size"):  # a plain socket's (TLS reads go their own way)
            setattr(transport, "max_size", READ_BYTES)  # noqa: B010 (not in the stubs)

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        try:
            packets = self.reader.feed(data)
        except (ProtocolError, IndexError) as exc:
            log.error("mqtt.protocol_error error=%s; reconnecting", exc)
            self.abort()
            return
        now_ms = int(time.time() * 1000)
        generation = self.generation
        urgent = self.source.urgent
        raws = []
        for packet in packets:
            if isinstance(packet, wire.Publish):
                if urgent and not is_urgent_topic(packet.topic):
                    # Not a call: the broker gave this connection a session with subscriptions
                    # the urgent session never makes, most likely the main one's. Left
                    # unacknowledged, the message goes to the main session when it has its
                    # session back.
                    self.source.shared_with_main(f"topic={packet.topic!r}")
                    break
                if self.checking and isinstance(packet.topic, str):
                    self.source.stale(self, packet.topic)
                raws.append(RawMessage(packet.topic, packet.payload, packet.mid, packet.qos,
                                       now_ms, generation, packet.retain, urgent))
                continue
            kind, _, body = packet
            if kind == wire.CONNACK and not self.connack.done():
                try:
                    connack = wire.parse_connack(body)
                except ProtocolError as exc:
                    self.connack.set_exception(exc)
                else:
                    # Before the messages the broker sends right behind it in this read.
                    self.checking = self.unrecorded and connack.session_present
                    self.connack.set_result(connack)
            elif kind == wire.SUBACK and not self.suback.done():
                try:
                    self.suback.set_result(wire.parse_suback(body, self.reader.version)[1])
                except ProtocolError as exc:
                    self.suback.set_exception(exc)
            elif kind == wire.UNSUBACK and not self.unsuback.done():
                try:
                    packet_id, codes = wire.parse_unsuback(body, self.reader.version)
                except ProtocolError as exc:
                    self.unsuback.set_exception(exc)
                else:
                    if packet_id < STALE_PACKET_IDS:  # not one of MqttSource.stale's
                        self.unsuback.set_result(codes)
            elif kind == wire.DISCONNECT:
                reason = body[0] if body else 0
                log.warning("mqtt.server_disconnect session=%s reason=%#x", self.source.session,
                            reason)
                if reason == SESSION_TAKEN_OVER:
                    self.source.taken_over += 1
                self.abort()
        if urgent and raws:
            self.source.taken.extend(raws)
        if raws and not self.source.inbox.put_many(raws) and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
            self.source.inbox.pauses += 1

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = False
            if not self.held:
                self.transport.resume_reading()

    def hold(self, held: bool) -> None:
        """Stop reading (``True``) or read again (unless the inbox is full): the socket is
        read while neither holds it."""
        if held == self.held or self.transport is None or self.transport.is_closing():
            return
        self.held = held
        if held:
            self.transport.pause_reading()
        elif not self.paused:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.connack, self.suback, self.unsuback):
            if not future.done():
                future.set_exception(ConnectionResetError("connection lost"))
                # Nobody awaits an acknowledgement that was never asked for (the unsuback of a
                # session with nothing to drop): mark it seen, or asyncio logs "Future
                # exception was never retrieved" as an ERROR at every stop.
                future.exception()
        if not self.closed.done():
            self.closed.set_result(exc)


class MqttSource:
    """One MQTT session of the gateway; :meth:`run` owns its connection, reconnecting until
    :meth:`stop`.

    By default the main session: ``mqtt_client_id`` subscribed to ``mqtt_topic``. With
    ``client_id``, ``topics`` and ``urgent=True`` the urgent session: its messages are flagged
    :attr:`RawMessage.urgent_session <gateway.ingest.message.RawMessage.urgent_session>` and
    go where ``inbox`` puts them (:class:`~gateway.ingest.inbox.UrgentFeed`: the urgent lane
    only).
    """

    def __init__(self, settings: Settings, inbox: Intake, *,
                 on_connection_change: Callable[[bool], None] | None = None,
                 client_id: str | None = None, topics: Sequence[str] | None = None,
                 urgent: bool = False) -> None:
        self.settings = settings
        self.inbox = inbox
        self.client_id = client_id or settings.mqtt_client_id
        self.topics = tuple(topics) if topics is not None else settings.mqtt_topic
        if not self.topics:
            raise ValueError("an MQTT session needs at least one topic filter")
        self.filters = SessionFilters(settings.data_dir, self.client_id)
        """What this session may hold at the broker, across restarts."""
        self.wanted = matcher(self.topics)
        """Whether a topic is one of the configured filters'."""
        self.urgent = urgent
        self.session = "urgent" if urgent else "main"
        self.connected = asyncio.Event()
        self.generation = 0
        self.connects = 0
        self._on_change = on_connection_change
        self._endpoint = settings.mqtt
        self._version = wire.V5 if settings.mqtt_protocol == "5" else wire.V311
        self._connection: _Connection | None = None
        self._stopping = asyncio.Event()
        self._ssl = self._tls_context() if self._endpoint.tls else None
        self.taken_over = 0
        """Times another connection took this client id (MQTT 5 reason 0x8E)."""
        self.shared = False
        """The urgent session found itself holding the main one's and stopped for good."""
        self.taken: deque[RawMessage] = deque(maxlen=1000)
        """The urgent session's latest copies, for :attr:`on_shared`."""
        self.on_shared: Callable[[list[RawMessage]], None] | None = None
        """Given the urgent session's copies of the last :data:`TAKEN_KEPT_MS` when it finds
        it held the main session: on that session they were the only copies, some acknowledged
        already, and so must be stored from here."""
        inbox.on_space = self._resume

    def stale(self, connection: _Connection, topic: str) -> None:
        """A message of a resumed session with :attr:`_Connection.unrecorded` filters: one on a
        topic no configured filter matches shows a filter held and forgotten (a configuration
        whose record was lost with the data directory). Every filter that could have matched
        it is unsubscribed (never a configured one: none matches it); the message itself, and
        those the broker already queued on that filter, are taken as before.

        On the urgent session only calls come here: a configured filter of the main session
        that matches a call is matched by one of the urgent session's too, so were the two
        one session at the broker (one client id), nothing of the main session's is dropped.
        """
        if self.wanted(topic) or topic in connection.stale_topics:
            return
        if len(connection.stale_topics) >= STALE_TOPICS_KEPT:
            return
        connection.stale_topics.add(topic)
        configured = set(self.topics)
        drop = [f for f in filters_matching(topic)
                if f not in configured and f not in connection.unsubscribed]
        if not drop:
            return
        connection.unsubscribed.update(drop)
        for start in range(0, len(drop), STALE_PER_PACKET):
            packet_id = STALE_PACKET_IDS + next(connection.stale_ids) % STALE_PACKET_IDS
            connection.write(wire.unsubscribe_packet(
                packet_id, drop[start:start + STALE_PER_PACKET], self._version))
        log.warning("mqtt.stale_filters session=%s client_id=%s topic=%r unsubscribed=%d; the "
                    "broker's session holds a filter not in mqtt_topic, which data_dir does not "
                    "know (a record lost with the data directory): every filter matching this "
                    "topic is unsubscribed, what it queued already is taken", self.session,
                    self.client_id, topic, len(drop))

    def shared_with_main(self, seen: str) -> None:
        """The urgent session was handed a message it never subscribes to (not a call), or its
        client id was taken over again and again (:data:`TAKEN_OVER_LIMIT`): the broker gives
        it a session that is not its own, most likely the main session's under one client id
        (a broker that makes the user name the client id, ``use_username_as_clientid``, with
        no ``mqtt_urgent_username``), else another client connects with its client id. Stop
        it for good, nothing more acknowledged, so the main session keeps its session and gets
        every message back; calls then come through the main session.

        A session resumed that ``data_dir`` has no record of is not such evidence: the data
        directory was lost while the broker kept the session (:meth:`stale`)."""
        if self.shared:
            return
        self.shared = True
        if seen.startswith("topic="):
            evidence = (f"it was handed a message that is not a button or fall event ({seen}), "
                        "which it never subscribes to")
        else:
            evidence = f"another connection took its client id again and again ({seen})"
        log.error("mqtt.urgent_session_shared %s client_id=%s user=%s; %s: the broker gives it "
                  "a session that is not its own, most likely the main session's under one "
                  "client id (a broker that makes the user name the client id, "
                  "use_username_as_clientid, with both sessions under one user: set "
                  "mqtt_urgent_username, deploy/mosquitto/README.md), else another client "
                  "connects as %s (a device or a second gateway with this client id); urgent "
                  "session stopped, emergency calls come through the main session", seen,
                  self.client_id, self.credentials()[0] or "-", evidence, self.client_id)
        self._stopping.set()
        if self._connection is not None:
            self._connection.abort()
        since = int(time.time() * 1000) - TAKEN_KEPT_MS
        taken = [raw for raw in self.taken if raw.received_ms >= since]
        self.taken.clear()
        if taken and self.on_shared is not None:
            self.on_shared(taken)

    def _tls_context(self) -> ssl.SSLContext:
        s = self.settings
        context = ssl.create_default_context(
            cafile=str(s.mqtt_tls_ca_file) if s.mqtt_tls_ca_file else None)
        if s.mqtt_tls_cert_file:
            context.load_cert_chain(str(s.mqtt_tls_cert_file),
                                    str(s.mqtt_tls_key_file) if s.mqtt_tls_key_file else None)
        if s.mqtt_tls_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def credentials(self) -> tuple[str | None, str | None]:
        """The user name and password this session connects with: the main session's
        (``mqtt_username``, ``mqtt_password``, else those in ``mqtt_url``); the urgent session's
        own (``mqtt_urgent_username``, ``mqtt_urgent_password``) where set. A broker that makes
        the user name the client id (Mosquitto's ``use_username_as_clientid``) keeps a session
        per user, so there the two sessions need two users."""
        s = self.settings
        username = s.mqtt_username or self._endpoint.username
        password = s.secret("mqtt_password") or self._endpoint.password
        if self.urgent:
            username = s.mqtt_urgent_username or username
            password = s.secret("mqtt_urgent_password") or password
        return username, password

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, after: asyncio.Event | None = None) -> None:
        """Connect and reconnect until :meth:`stop`, the first time once ``after`` is set."""
        if after is not None:
            waits = [asyncio.ensure_future(e.wait()) for e in (self._stopping, after)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        backoff = 0.5
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._session()
                backoff, failures = 0.5, 0
            except (OSError, TimeoutError, ConnectRefused, ProtocolError) as exc:
                failures += 1
                if failures == 1:
                    log.warning("mqtt.unavailable session=%s host=%s port=%s error=%s; retrying "
                                "with backoff", self.session, self._endpoint.host,
                                self._endpoint.port, exc)
            if self.urgent and self.taken_over >= TAKEN_OVER_LIMIT:
                self.shared_with_main(f"taken_over={self.taken_over}")
            if self._stopping.is_set():
                break
            delay = backoff * (0.5 + random.random())
            backoff = min(backoff * 2, self.settings.mqtt_reconnect_max_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        endpoint = self._endpoint
        recorded = self.filters.held()
        unrecorded = not recorded or self.filters.unknown()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, connection = await loop.create_connection(
                lambda: _Connection(self, self._version), endpoint.host, endpoint.port,
                ssl=self._ssl, server_hostname=endpoint.host if self._ssl else None)
        connection.unrecorded = unrecorded
        try:
            username, password = self.credentials()
            connection.write(wire.connect_packet(
                client_id=self.client_id, version=self._version, keepalive=s.mqtt_keepalive_s,
                clean_start=False, username=username, password=password,
                session_expiry=s.mqtt_session_expiry_s))
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                connack = await connection.connack
            if not connack.ok:
                raise ConnectRefused(connack.code)
            # A session resumed with no record of it here is no proof of the main session
            # handed to the urgent one: the data directory was lost while the broker kept it.
            # Resumed all the same (its queued calls must come), its unknown filters are
            # dropped as they show (stale); under one client id, the urgent session is handed
            # the main session's messages, or taken over (shared_with_main).
            unknown = connack.session_present and connection.unrecorded
            if connack.session_present and not recorded:
                log.warning("mqtt.session_unrecorded session=%s client_id=%s; the broker "
                            "resumed a session data_dir has no record of (%s missing: the "
                            "data directory lost, wiped or restored from an older backup%s): "
                            "its queued messages are taken, and the filters it may hold that "
                            "mqtt_topic has not are unsubscribed as messages show them "
                            "(mqtt.stale_filters)", self.session, self.client_id,
                            self.filters.path.name,
                            "; or the main session's, under one client id, if a message "
                            "that is not a call follows" if self.urgent else "")
            self.generation = connection.generation
            self._connection = connection
            held = recorded if connack.session_present else ()
            dropped = [topic for topic in held if topic not in self.topics]
            self.filters.record([*self.topics, *dropped], unknown=unknown)
            for packet_id, topic in enumerate(self.topics, start=1):
                if packet_id > 1:
                    connection.suback = loop.create_future()
                connection.write(wire.subscribe_packet(packet_id, topic, 1, self._version))
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    granted = await connection.suback
                if not granted or granted[0] >= 0x80:
                    raise ConnectRefused(granted[0] if granted else 0x80)
            if dropped:
                # Subscribed first, then unsubscribed: the filters kept never lapse.
                connection.write(wire.unsubscribe_packet(len(self.topics) + 1, dropped,
                                                         self._version))
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await connection.unsuback
                log.info("mqtt.unsubscribed session=%s filters=%s; no longer in mqtt_topic",
                         self.session, ",".join(dropped))
            self.filters.record(self.topics, unknown=unknown)
            self.connects += 1
            self.connected.set()
            log.info("mqtt.connected session=%s client_id=%s user=%s host=%s port=%s "
                     "protocol=%s session_present=%s", self.session, self.client_id,
                     username or "-", endpoint.host, endpoint.port, s.mqtt_protocol,
                     connack.session_present)
            if self._on_change:
                self._on_change(True)
            await self._keepalive(connection)
        finally:
            was_connected = self.connected.is_set()
            self.connected.clear()
            self._connection = None
            connection.abort()
            if was_connected:
                if not self._stopping.is_set():
                    log.warning("mqtt.disconnected session=%s; reconnecting with backoff",
                                self.session)
                if self._on_change:
                    self._on_change(False)

    async def _keepalive(self, connection: _Connection) -> None:
        interval = self.settings.mqtt_keepalive_s
        while not connection.closed.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval / 2):
                    await asyncio.shield(connection.closed)
            if connection.closed.done():
                break
            silent = time.monotonic() - connection.last_received
            if silent > interval * 1.5 and not connection.paused:
                log.warning("mqtt.keepalive_timeout session=%s silent_s=%.1f", self.session,
                            silent)
                connection.abort()
                break
            connection.write(wire.PINGREQ_PACKET)

    async def stop(self) -> None:
        """Disconnect cleanly; the broker keeps the session and every unacknowledged message."""
        self._stopping.set()
        connection = self._connection
        if connection is not None:
            connection.write(wire.DISCONNECT_PACKET)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    if connection.transport is not None:
                        connection.transport.close()
                    await asyncio.shield(connection.closed)

    def _resume(self) -> None:
        if self._connection is not None:
            self._connection.resume()

    @contextlib.contextmanager
    def reading_held(self) -> Iterator[None]:
        """The socket is not read inside (the broker keeps what comes meanwhile, TCP's window
        pushing back): the gateway holds the main session for the loop turn in which the
        streams write an emergency call, so that turn does not also parse a flood's read."""
        connection = self._connection
        if connection is not None:
            connection.hold(True)
        try:
            yield
        finally:
            if connection is not None:
                connection.hold(False)

    def recall(self) -> None:
        """Reconnect (the session stays) so the broker sends again every message it holds
        unacknowledged, such as those the inbox shed; the copies already handled are dropped
        as duplicates and acknowledged."""
        if self._connection is not None:
            log.info("mqtt.recall session=%s shed=%d; reconnecting so the broker sends them "
                     "again", self.session, self.inbox.shed)
            # A clean close: the acknowledgements written just before still reach the broker.
            self._connection.write(wire.DISCONNECT_PACKET)
            if self._connection.transport is not None:
                self._connection.transport.close()

    # --- acknowledgement ----------------------------------------------------------------------

    def ack(self, messages: Sequence[RawMessage]) -> None:
        """PUBACK each QoS 1 message of the current connection, in receipt order."""
        connection = self._connection
        if connection is None:
            return
        current = connection.generation
        mids = [m.mid for m in messages if m.qos == 1 and m.connection == current]
        if mids:
            connection.write(wire.puback_packets(mids))
