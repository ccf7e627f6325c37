"""The notification channels against real servers on loopback: email over SMTP with STARTTLS
and AUTH (aiosmtpd), the signed webhook (an HTTP receiver), MQTT pages (mosquitto, MQTT 5).
Each says delivered, retry or refused as the other side answers; nothing is counted delivered
that the other side did not take."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from devices.broker import BrokerUrl
from gateway.notify import EmailChannel, PagingChannel, SmtpServer, WebhookChannel, message_id
from tests.servers import Mosquitto
from tests.smtp_server import SmtpReceiver
from tests.upstream_receiver import Receiver

pytestmark = pytest.mark.integration

SECRET = b"webhook-secret-for-tests-0123456789"
MAIL = {"to": "anna@station.invalid", "subject": "[critical] emergency button at site-01/bed-1",
        "text": "An alert needs acknowledgement.\nhttp://127.0.0.1/ack/x.y\n"}


@pytest.fixture
def smtp(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = SmtpReceiver(tmp_path, users={"gateway": "s3cret-pass"},
                          refuse={"nobody@station.invalid"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def server_of(smtp: SmtpReceiver, **overrides: object) -> SmtpServer:
    settings: dict[str, object] = {
        "host": "127.0.0.1", "port": smtp.port, "security": "starttls", "username": "gateway",
        "password": "s3cret-pass", "ca_file": smtp.cert, "sender": "gw@station.invalid",
        "timeout_s": 10.0}
    settings.update(overrides)
    return SmtpServer(**settings)  # type: ignore[arg-type]


async def test_email_goes_over_starttls_with_auth_and_says_what_became_of_it(
        smtp: SmtpReceiver) -> None:
    channel = EmailChannel(server_of(smtp))
    try:
        outcome = await channel.send("gw/notify/A/1/email/anna", MAIL)
        assert outcome.result == "delivered", outcome
        assert smtp.wait_for(1, 10)
        [mail] = smtp.mails
        assert (mail.tls, mail.login, mail.recipients) == (True, "gateway",
                                                           ["anna@station.invalid"])
        assert mail.message["Subject"] == MAIL["subject"]
        assert mail.message["Message-ID"] == message_id("gw/notify/A/1/email/anna",
                                                        "gw@station.invalid")
        assert mail.message["X-Homecare-Notification"] == "gw/notify/A/1/email/anna"
        assert "http://127.0.0.1/ack/x.y" in mail.message.get_content()
        refused = await channel.send("k2", {**MAIL, "to": "nobody@station.invalid"})
        assert refused.result == "refused", refused
        assert "550" in refused.detail
    finally:
        await channel.close()
    wrong = EmailChannel(server_of(smtp, password="wrong"))
    untrusted = EmailChannel(server_of(smtp, ca_file=None))
    try:
        outcome = await wrong.send("k3", MAIL)
        assert (outcome.result, "authentication" in outcome.detail) == ("retry", True)
        outcome = await untrusted.send("k4", MAIL)
        assert outcome.result == "retry", outcome
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.detail
    finally:
        await wrong.close()
        await untrusted.close()
    assert len(smtp.mails) == 1, "nothing else was sent"


async def test_email_is_never_sent_in_clear_to_a_server_without_starttls(tmp_path: Path
                                                                          ) -> None:
    plain = SmtpReceiver(tmp_path, starttls=False)
    plain.start()
    try:
        channel = EmailChannel(server_of(plain, username=None, password=None))
        outcome = await channel.send("k1", MAIL)
        assert outcome.result == "retry"
        assert "STARTTLS" in outcome.detail
        relay = EmailChannel(server_of(plain, username=None, security="none"))
        assert (await relay.send("k2", MAIL)).result == "delivered"
        await channel.close()
        await relay.close()
        assert len(plain.mails) == 1
    finally:
        plain.stop()


async def test_the_webhook_is_signed_keyed_and_retried_or_refused_as_answered() -> None:
    receiver = Receiver(SECRET)
    receiver.start()
    channel = WebhookChannel(receiver.url, secret=SECRET, timeout_s=5)
    try:
        body = {"kind": "notification", "key": "k1", "step": 1}
        outcome = await channel.send("k1", body)
        assert outcome.result == "delivered", outcome
        [delivery] = receiver.accepted
        assert (delivery.key, delivery.signed, delivery.body) == ("k1", True, body)
        receiver.mode = "unavailable"
        assert (await channel.send("k2", body)).result == "retry"
        receiver.mode = "ok"
        receiver.refuse.add("k3")
        refused = await channel.send("k3", body)
        assert (refused.result, refused.detail[:8]) == ("refused", "HTTP 400")
        wrong = WebhookChannel(receiver.url, secret=b"another-secret-0123456789", timeout_s=5)
        # A wrong secret (401): the setup is wrong, not the page; retried until it is fixed
        # (a verifier's misconfigured SMS bridge lost step-1 pages for good).
        misconfigured = await wrong.send("k4", body)
        assert (misconfigured.result, misconfigured.detail[:8]) == ("retry", "HTTP 401")
        await wrong.close()
    finally:
        await channel.close()
        receiver.stop()
    gone = WebhookChannel(receiver.url, secret=SECRET, timeout_s=2)
    assert (await gone.send("k5", {})).result == "retry", "nobody listening"
    await gone.close()


async def test_a_page_reaches_its_subscribers_and_a_page_the_broker_refuses_is_no_delivery(
        tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite homecare/paging/site-01/#\ntopic read homecare/#\n")
    broker = Mosquitto(tmp_path / "mosquitto", extra_config=f"acl_file {acl}\n")
    broker.start()
    try:
        url = BrokerUrl.parse(broker.url)
        channel = PagingChannel(url, client_id="gw-paging")
        async with aiomqtt.Client(url.host, url.port, identifier="wall-display") as display:
            await display.subscribe("homecare/paging/site-01/+", qos=1)
            page = {"topic": "homecare/paging/site-01/pg-1",
                    "payload": {"key": "k1", "step": 1, "pager": "pg-1"}}
            outcome = await channel.send("k1", page)
            assert outcome.result == "delivered", outcome
            async with asyncio.timeout(10):
                message = await anext(aiter(display.messages))
            assert str(message.topic) == "homecare/paging/site-01/pg-1"
            assert json.loads(message.payload) == page["payload"]  # type: ignore[arg-type]
        refused = await channel.send("k2", {"topic": "homecare/paging/site-02/pg-9",
                                            "payload": {}})
        assert refused.result == "refused", refused
        assert "0x87" in refused.detail
    finally:
        broker.stop()
    down = await PagingChannel(BrokerUrl.parse(broker.url), client_id="gw-paging",
                               timeout_s=2).send("k3", {"topic": "t", "payload": {}})
    assert down.result == "retry"
