"""The channels a notification goes out on: a signed webhook, email over SMTP, an MQTT page.

Each channel sends one message (the ``message`` of an outbox entry's envelope,
:func:`alerts.envelope`) and says how it went as an :class:`Outcome`: ``delivered``,
``retry`` (the network, a time-out, a server busy or down: the entry stays at the head of its
queue and is tried again) or ``refused`` (the other side will say the same again: an address
it does not take, a topic the broker does not allow; recorded, not retried).

* :class:`WebhookChannel`: ``POST`` of the JSON (``docs/schemas/notification-webhook.schema.json``)
  with ``Idempotency-Key`` and ``X-Homecare-Signature`` (HMAC-SHA256, as upstream:
  :func:`gateway.upstream.signature`). 2xx delivers; no answer, 408, 425, 429 and 5xx are
  retried; so are 401, 403, 404 and 407 (:data:`MISCONFIGURED_STATUSES`: the bridge's URL,
  secret or proxy is wrong, which an operator fixes; refused for good, a misconfigured SMS
  bridge lost every page sent before the fix, a verifier found), logged as an error; any other
  status (400, 413, 422: this message is refused) is a refusal.
* :class:`EmailChannel`: SMTP with the standard library (``smtplib``) in a thread of the
  channel's own: STARTTLS (required unless switched off) or TLS from the start (``smtps://``),
  then AUTH when a user is set. A ``Message-ID`` made from the notification's key lets a
  mail system drop a retry's duplicate. 5xx answers to the sender, a recipient or the data are
  refusals; 4xx, a lost connection, refused credentials (a configuration to fix: logged) are
  retried.
* :class:`PagingChannel`: one MQTT 5 connection per page (clean start, QoS 1), the page
  published to its topic and the broker's PUBACK awaited: a reason code of 0x80 or more (not
  authorized, topic name invalid...) is a refusal, so a page the broker's ACL drops is never
  counted as delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import smtplib
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import httpx

from devices import mqttwire as wire
from devices.broker import BrokerUrl
from gateway.upstream import signature

log = logging.getLogger("homecare.notify")

RETRY_STATUSES: Final = frozenset({408, 425, 429})
MISCONFIGURED_STATUSES: Final = frozenset({401, 403, 404, 407})
"""Webhook answers that say the destination is set up wrong, not that this message is bad:
retried (until the alert is answered) so the pages go out once the setup is fixed."""
DISCONNECT: Final = b"\xe0\x00"

Result = Literal["delivered", "retry", "refused"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one try went: ``detail`` is the other side's answer or the error, in short."""

    result: Result
    detail: str

    @classmethod
    def delivered(cls, detail: str) -> Outcome:
        return cls("delivered", detail[:300])

    @classmethod
    def retry(cls, detail: str) -> Outcome:
        return cls("retry", detail[:300])

    @classmethod
    def refused(cls, detail: str) -> Outcome:
        return cls("refused", detail[:300])


class Channel(Protocol):
    """Sends one message of one notification (never raises for the other side's trouble)."""

    async def send(self, key: str, message: dict[str, Any]) -> Outcome: ...

    async def close(self) -> None: ...


class WebhookChannel:
    """The signed webhook (see the module docstring)."""

    def __init__(self, url: str, *, secret: bytes, timeout_s: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not secret:
            raise ValueError("the webhook needs a signing secret")
        self.url = url
        self._secret = secret
        self._misconfigured: int | None = None
        """The status it last answered that says it is set up wrong (logged once until it
        answers otherwise)."""
        self._client = httpx.AsyncClient(timeout=timeout_s, transport=transport,
                                         follow_redirects=False)

    async def send(self, key: str, message: dict[str, Any]) -> Outcome:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key,
                   "X-Homecare-Signature": signature(self._secret, body,
                                                     int(time.time() * 1000))}
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome.retry(f"{type(exc).__name__}: {exc}")
        status = response.status_code
        detail = f"HTTP {status}"
        if status not in MISCONFIGURED_STATUSES:
            self._misconfigured = None
        if 200 <= status < 300:
            return Outcome.delivered(detail)
        if status in RETRY_STATUSES or status >= 500:
            return Outcome.retry(detail)
        if status in MISCONFIGURED_STATUSES:
            if self._misconfigured != status:
                self._misconfigured = status
                log.error("notify.webhook_misconfigured status=%s url=%s; check the webhook's URL "
                          "and secret (notify_webhook_url, notify_webhook_secret): pages to it "
                          "are retried until it takes them", status, self.url)
            return Outcome.retry(f"{detail}: check the webhook's URL and secret")
        return Outcome.refused(f"{detail} {response.text[:200]}")

    async def close(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpServer:
    """Where and how email is sent (the ``notify_smtp_*`` settings)."""

    host: str
    port: int
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    sender: str = "homecare-gateway@localhost"
    timeout_s: float = 30.0

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None)


def message_id(key: str, sender: str) -> str:
    """A ``Message-ID`` that is the same on every retry of one notification.

    >>> message_id("gw/notify/A/1/email/anna", "gw@station.invalid")
    '<c838ddb2143c87945af04e8b411ef0b5@station.invalid>'
    """
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


class EmailChannel:
    """Email over SMTP (see the module docstring)."""

    def __init__(self, server: SmtpServer, *, threads: int = 2) -> None:
        self.server = server
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="notify-smtp")
        self._auth_logged = False

    async def send(self, key: str, message: dict[str, Any]) -> Outcome:
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, self._send, key, message)

    def _send(self, key: str, message: dict[str, Any]) -> Outcome:
        s = self.server
        mail = EmailMessage()
        mail["From"] = s.sender
        mail["To"] = str(message["to"])
        mail["Subject"] = str(message["subject"])
        mail["Date"] = formatdate(localtime=True)
        mail["Message-ID"] = message_id(key, s.sender)
        mail["X-Homecare-Notification"] = key
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(str(message["text"]))
        try:
            smtp: smtplib.SMTP
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s,
                                        context=s.context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            with smtp:
                smtp.ehlo()
                if s.security == "starttls":
                    if not smtp.has_extn("starttls"):
                        return Outcome.retry("the server offers no STARTTLS (required: "
                                             "notify_smtp_security)")
                    smtp.starttls(context=s.context())
                    smtp.ehlo()
                if s.username:
                    smtp.login(s.username, s.password or "")
                smtp.send_message(mail)
                reply = smtp.noop()
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (0, b""))
            return _by_code(code, f"recipient refused: {code} {_text(text)}")
        except smtplib.SMTPAuthenticationError as exc:
            if not self._auth_logged:
                self._auth_logged = True
                log.error("notify.smtp_auth_refused host=%s user=%s code=%s; email is "
                          "retried until notify_smtp_username/_password are right", s.host,
                          s.username, exc.smtp_code)
            return Outcome.retry(f"authentication refused: {exc.smtp_code}")
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            return _by_code(exc.smtp_code, f"{exc.smtp_code} {_text(exc.smtp_error)}")
        except (smtplib.SMTPException, OSError) as exc:
            return Outcome.retry(f"{type(exc).__name__}: {exc}")
        self._auth_logged = False
        return Outcome.delivered(f"accepted by {s.host} ({reply[0]})")

    async def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _by_code(code: int, detail: str) -> Outcome:
    return Outcome.refused(detail) if 500 <= code < 600 else Outcome.retry(detail)


class PagingChannel:
    """MQTT pages (see the module docstring)."""

    def __init__(self, broker: BrokerUrl, *, client_id: str, ca_file: Path | None = None,
                 timeout_s: float = 10.0) -> None:
        self.broker = broker
        self.client_id = client_id
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()
        """One connection at a time: the broker takes over a client id's session."""

    async def send(self, key: str, message: dict[str, Any]) -> Outcome:
        topic = str(message["topic"])
        payload = json.dumps(message["payload"], ensure_ascii=False,
                             separators=(",", ":")).encode()
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self._publish(topic, payload)
            except TimeoutError:
                return Outcome.retry(f"no answer from the broker within {self.timeout_s:g} s")
            except (OSError, ValueError) as exc:
                return Outcome.retry(f"{type(exc).__name__}: {exc}")

    async def _publish(self, topic: str, payload: bytes) -> Outcome:
        b = self.broker
        context = None
        if b.tls:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None)
        reader, writer = await asyncio.open_connection(
            b.host, b.port, ssl=context, server_hostname=b.host if context else None)
        packets = wire.PacketReader(wire.V5)
        try:
            writer.write(wire.connect_packet(
                client_id=self.client_id, version=wire.V5, keepalive=30, clean_start=True,
                username=b.username, password=b.password))
            kind, body = await _next(reader, packets)
            if kind != wire.CONNACK:
                return Outcome.retry(f"unexpected packet {kind} instead of CONNACK")
            connack = wire.parse_connack(body)
            if not connack.ok:
                return Outcome.retry(f"connection refused by the broker: reason {connack.code:#x}")
            # An MQTT 5 PUBLISH is the 3.1.1 layout with a property length after the packet id:
            # an empty one (b"\x00") put in front of the payload.
            writer.write(wire.publish_packet(topic, b"\x00" + payload, qos=1, retain=False,
                                        packet_id=1))
            kind, body = await _next(reader, packets)
            if kind != wire.PUBACK or body[:2] != b"\x00\x01":
                return Outcome.retry(f"unexpected packet {kind} instead of PUBACK")
            reason = body[2] if len(body) > 2 else 0
            writer.write(DISCONNECT)
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if reason >= 0x80:
            return Outcome.refused(f"PUBACK reason {reason:#x} (0x87: not authorized)")
        return Outcome.delivered(f"PUBACK reason {reason:#x} on {topic}")

    async def close(self) -> None:
        return None


async def _next(reader: asyncio.StreamReader, packets: wire.PacketReader) -> tuple[int, bytes]:
    """The next control packet other than a PUBLISH (none are subscribed)."""
    while True:
        data = await reader.read(4096)
        if not data:
            raise OSError("the broker closed the connection")
        for packet in packets.feed(data):
            if isinstance(packet, tuple):
                return packet[0], packet[2]
