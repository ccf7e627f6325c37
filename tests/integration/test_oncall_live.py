"""A scripted shift (issue #13, acceptance): the real gateway process, mosquitto, an SMTP
server (aiosmtpd, STARTTLS and AUTH) and an HTTP receiver for the notification webhook, all on
loopback, with an on-call file and short waits. A press with no console open: step 1 (the
dispatcher on duty) by email and webhook; not acknowledged: step 2 (the duty nurse, also on an
MQTT page) after its wait; acknowledged through the link of the nurse's email: no step 3 (the
manager); the alert's history and the stream show every step and every delivery; the link
cannot be used twice and its use is audited; no notification carries the resident profile.

The press-to-delivery times are printed, not asserted (a generous 60 s deadline only)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import paho.mqtt.client as paho
import pytest

from simulators.load import publish_all
from tests.servers import GatewayProcess, Mosquitto
from tests.smtp_server import SmtpReceiver
from tests.upstream_receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_KEY = secrets.token_urlsafe(32)
WEBHOOK_SECRET = secrets.token_urlsafe(24)
SITE, BED = "site-01", "bed-0007"
WAIT_S = 4
DEADLINE_S = 60.0
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas"
                     / "notification-webhook.schema.json").read_text(encoding="utf-8"))
ONCALL = f"""
[[staff]]
id = "anna"
name = "Anna (synthetic)"
role = "dispatcher"
email = "anna@station.invalid"
phone = "+86 138 0000 0001"

[[staff]]
id = "li"
name = "Li (synthetic)"
role = "nurse"
email = "li@station.invalid"
phone = "+86 138 0000 0002"
pager = "pager-li"

[[staff]]
id = "wang"
name = "Wang (synthetic)"
role = "manager"
email = "wang@station.invalid"

[[shifts]]
name = "day"
start = "08:00"

[[shifts]]
name = "night"
start = "20:00"

[[duty]]
site = "*"
shift = "day"
dispatchers = ["anna"]
nurse = "li"
manager = "wang"

[[duty]]
site = "*"
shift = "night"
dispatchers = ["anna"]
nurse = "li"
manager = "wang"

[[chains]]
name = "calls"
severities = ["critical"]
types = ["emergency_button", "fall"]

[[chains.steps]]
recipients = ["dispatchers_on_duty"]
channels = ["console", "email", "webhook"]
wait_s = {WAIT_S}

[[chains.steps]]
recipients = ["duty_nurse", "family_contact"]
channels = ["console", "email", "webhook", "mqtt"]
wait_s = {WAIT_S}

[[chains.steps]]
recipients = ["station_manager"]
channels = ["console", "email", "webhook"]
wait_s = 30
"""
PROFILE = {
    "display_name": "Qiao Wanrong (synthetic)", "address": "Sample Lane 19\nFlat 3",
    "phone": "010-5555-9901", "medical_notes": "warfarin since 2019 (synthetic)",
    "access_notes": "code 4711 at the side gate (synthetic)",
    "contacts": [{"name": "Qiao Ming (synthetic)", "relation": "nephew",
                  "phone": "+86 139 0555 9902"}]}
PROFILE_VALUES = ("Qiao Wanrong", "Sample Lane 19", "5555-9901", "55559901", "warfarin",
                  "4711", "Qiao Ming", "nephew", "0555 9902", "05559902")
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def no_profile(text: str) -> list[str]:
    return [value for value in PROFILE_VALUES if value in text]


class Pages:
    """A wall display: every MQTT page of the site (paho, in its own thread)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.pages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="wall-display",
                                  protocol=paho.MQTTv5)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(f"homecare/paging/{SITE}/+", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._message
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert subscribed.wait(10), "the wall display did not subscribe"

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.pages.append((message.topic, json.loads(message.payload)))

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[SmtpReceiver, Receiver]]:
    smtp = SmtpReceiver(tmp_path, users={"gateway": "mail-pass-for-tests"})
    webhook = Receiver(WEBHOOK_SECRET.encode())
    smtp.start()
    webhook.start()
    try:
        yield smtp, webhook
    finally:
        smtp.stop()
        webhook.stop()


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path, servers: tuple[SmtpReceiver, Receiver]
            ) -> Iterator[GatewayProcess]:
    smtp, webhook = servers
    oncall = tmp_path / "oncall.toml"
    oncall.write_text(ONCALL, encoding="utf-8")
    registry = tmp_path / "registry.toml"
    registry.write_text(f'[sites.{SITE}]\ntimezone = "Asia/Shanghai"\n'
                        f"[sites.{SITE}.beds.{BED}]\n", encoding="utf-8")
    process = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env={
        "HOMECARE_API_KEY": ADMIN_KEY, "HOMECARE_REGISTRY_FILE": str(registry),
        "HOMECARE_ONCALL_FILE": str(oncall),
        "HOMECARE_NOTIFY_WEBHOOK_URL": webhook.url,
        "HOMECARE_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "HOMECARE_NOTIFY_SMTP_HOST": "127.0.0.1", "HOMECARE_NOTIFY_SMTP_PORT": str(smtp.port),
        "HOMECARE_NOTIFY_SMTP_USERNAME": "gateway",
        "HOMECARE_NOTIFY_SMTP_PASSWORD": "mail-pass-for-tests",
        "HOMECARE_NOTIFY_SMTP_CA_FILE": str(smtp.cert),
        "HOMECARE_NOTIFY_EMAIL_FROM": "gateway@station.invalid",
        "HOMECARE_NOTIFY_MQTT_URL": mosquitto.url,
        "HOMECARE_LOG_LEVEL": "debug"})
    process.start()
    try:
        process.wait_connected()
        yield process
    finally:
        process.stop()
    assert process.returncode == 0, process.log_tail()


def wait_until(what: str, predicate: Any, gateway: GatewayProcess) -> float:
    """Poll ``predicate`` until true (within :data:`DEADLINE_S`); returns when (monotonic)."""
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {DEADLINE_S} s\n" + \
            gateway.log_tail(60)
        time.sleep(0.01)
    return time.monotonic()


def mails_to(smtp: SmtpReceiver, address: str) -> list[Any]:
    return [m for m in list(smtp.mails) if address in m.recipients]


def hooks_for(webhook: Receiver, staff: str) -> list[dict[str, Any]]:
    return [d.body for d in list(webhook.accepted) if d.body["recipient"]["id"] == staff]


def history(gateway: GatewayProcess, alert_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{gateway.url}/api/v1/alerts/{alert_id}", headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json()["history"])


def test_a_scripted_shift_pages_step_by_step_until_acknowledged_through_the_link(
        gateway: GatewayProcess, mosquitto: Mosquitto,
        servers: tuple[SmtpReceiver, Receiver]) -> None:
    smtp, webhook = servers
    put = httpx.put(f"{gateway.url}/api/v1/residents/{SITE}/{BED}", headers=ADMIN,
                    json=PROFILE, timeout=10)
    assert put.status_code == 200, put.text
    pages = Pages(mosquitto.url)
    try:
        # --- the press, with no console open (no stream client) ---------------------------
        topic = f"homecare/v1/{SITE}/{BED}/button/btn-0007/event"
        body = json.dumps({"ts": int(time.time() * 1000), "seq": 1, "event": "press"})
        pressed = time.monotonic()
        asyncio.run(publish_all(mosquitto.url, [(topic, body.encode())]))
        emailed = wait_until("step 1 email", lambda: mails_to(smtp, "anna@station.invalid"),
                             gateway)
        hooked = wait_until("step 1 webhook", lambda: hooks_for(webhook, "anna"), gateway)
        alert_id = hooks_for(webhook, "anna")[0]["alert"]["id"]
        print(f"\npress -> step 1 email {1000 * (emailed - pressed):.0f} ms, webhook "
              f"{1000 * (hooked - pressed):.0f} ms (published to received by the servers)")
        assert not mails_to(smtp, "li@station.invalid"), "step 2 waits for its wait"

        # --- not acknowledged: step 2 after its wait ----------------------------------------
        nursed = wait_until("step 2 email", lambda: mails_to(smtp, "li@station.invalid"),
                            gateway)
        wait_until("step 2 webhook and page",
                   lambda: hooks_for(webhook, "li") and pages.pages, gateway)
        print(f"step 2 email {nursed - emailed:.1f} s after step 1 (wait {WAIT_S} s)")
        [li_mail] = mails_to(smtp, "li@station.invalid")
        assert li_mail.tls
        assert li_mail.login == "gateway"
        assert "step 2" in li_mail.message["Subject"]
        link = re.search(r"http://\S+/ack/[A-Za-z0-9_.-]+", li_mail.message.get_content())
        assert link is not None, li_mail.message.get_content()

        # --- acknowledged through the link: a page first, the button then --------------------
        shown = httpx.get(link[0], timeout=10)
        assert shown.status_code == 200, shown.text
        assert '<form method="post">' in shown.text
        assert "form-action 'self'" in shown.headers["content-security-policy"]
        assert history(gateway, alert_id)[-1]["action"] != "acknowledged", "GET changes nothing"
        done = httpx.post(link[0], timeout=10)
        assert done.status_code == 200, done.text
        assert "acknowledged by oncall:li" in done.text
        acknowledged = time.monotonic()
        alert = httpx.get(f"{gateway.url}/api/v1/alerts/{alert_id}", headers=ADMIN,
                          timeout=10).json()
        assert (alert["status"], alert["acknowledged_by"]) == ("acknowledged", "oncall:li")
        assert alert["next_escalation_at"] is None

        # --- the link works once -------------------------------------------------------------
        again = httpx.post(link[0], timeout=10, headers={"Accept": "application/json"})
        assert again.status_code == 410, again.text
        assert again.json()["used_by"] == "oncall:li"
        assert httpx.get(link[0], timeout=10).status_code == 410
        assert httpx.post(link[0][:-3] + "abc", timeout=10).status_code == 404
        audit = httpx.get(f"{gateway.url}/api/v1/audit", headers=ADMIN, timeout=10).json()
        uses = [(e["actor"], e["action"], e["status"]) for e in reversed(audit["items"])
                if e["action"] == "ACK_LINK"]
        assert uses == [("oncall:li", "ACK_LINK", 200), ("oncall:li", "ACK_LINK", 410),
                        ("oncall:unknown", "ACK_LINK", 404)]  # the altered link: audited

        # --- no step 3: past the time it would have been taken, nothing for the manager ------
        quiet_until = acknowledged + WAIT_S + 3
        while time.monotonic() < quiet_until:
            assert not mails_to(smtp, "wang@station.invalid"), "step 3 after acknowledgement"
            time.sleep(0.1)
        assert not hooks_for(webhook, "wang")

        # --- the history shows every step, every delivery, the acknowledgement ---------------
        entries = history(gateway, alert_id)
        actions = [e["action"] for e in entries]
        notified = [e["note"] for e in entries if e["action"] == "notified"]
        assert len(notified) == 2, notified
        assert notified[0].startswith("step 1 of chain calls: dispatchers_on_duty anna "
                                      "(email, webhook); console")
        assert notified[1].startswith("step 2 of chain calls: duty_nurse li (email, webhook, "
                                      "mqtt); console")
        assert "family_contact-1 webhook (profile not allowed on the webhook)" in notified[1]
        delivered = sorted(e["note"].split(":")[0] for e in entries
                           if e["action"] == "notification_delivered")
        assert delivered == ["step 1 email to anna", "step 1 webhook to anna",
                             "step 2 email to li", "step 2 mqtt to li",
                             "step 2 webhook to li"]
        assert actions[0] == "opened"
        assert actions.index("escalated") > actions.index("notified")
        assert actions[-1] == "acknowledged" or "acknowledged" in actions
        opened_at = entries[0]["at"]
        escalated_at = next(e["at"] for e in entries if e["action"] == "escalated")
        assert escalated_at - opened_at >= WAIT_S * 1000, "never before its wait"
        ack = next(e for e in entries if e["action"] == "acknowledged")
        assert (ack["actor"], ack["note"]) == (
            "oncall:li", "through the acknowledge link of step 2 (email)")
        assert "notification_failed" not in actions

        # --- ... and so does the stream, read from the start ---------------------------------
        streamed: list[str] = []
        with httpx.stream("GET", f"{gateway.url}/api/v1/alerts/stream",
                          params={"last_event_id": "0"}, headers=ADMIN, timeout=10) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    change = json.loads(line[5:])
                    if change["alert"]["id"] == alert_id:
                        streamed.append(change["action"])
                        if change["action"] == "acknowledged":
                            break
        assert streamed.count("notified") == 2
        assert streamed.count("notification_delivered") >= 4

        # --- what went out: the webhook's schema, its signature, no profile anywhere ---------
        validator = jsonschema_rs.validator_for(SCHEMA)
        for delivery in webhook.accepted:
            assert delivery.signed
            assert delivery.key == delivery.body["key"]
            assert not list(validator.iter_errors(delivery.body)), delivery.body
            assert no_profile(json.dumps(delivery.body, ensure_ascii=False)) == []
        for mail in smtp.mails:
            text = mail.message["Subject"] + mail.message.get_content()
            assert no_profile(text) == [], text
        [(page_topic, page)] = pages.pages
        assert page_topic == f"homecare/paging/{SITE}/pager-li"
        assert page["step"] == 2
        assert no_profile(json.dumps(page, ensure_ascii=False)) == []
        assert no_profile(gateway.log_tail(10_000)) == []
    finally:
        pages.stop()


def test_steps_due_during_a_restart_are_each_notified_in_order_on_catch_up(
        gateway: GatewayProcess, mosquitto: Mosquitto,
        servers: tuple[SmtpReceiver, Receiver]) -> None:
    """Issue #13: press, SIGTERM the gateway after step 1, start it again when steps 2 and 3
    are both due: the nurse (step 2) is told, then the manager (step 3), each step in the
    alert's history with its own notifications (they were merged: the nurse got nothing)."""
    smtp, webhook = servers
    topic = f"homecare/v1/{SITE}/{BED}/button/btn-0007/event"
    body = json.dumps({"ts": int(time.time() * 1000), "seq": 1, "event": "press"})
    pressed = time.monotonic()
    asyncio.run(publish_all(mosquitto.url, [(topic, body.encode())]))
    wait_until("step 1 webhook", lambda: hooks_for(webhook, "anna"), gateway)
    alert_id = hooks_for(webhook, "anna")[0]["alert"]["id"]
    gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()
    assert not hooks_for(webhook, "li"), "stopped before step 2 was due"
    # Down until steps 2 (at WAIT_S) and 3 (at 2 * WAIT_S) are both due.
    time.sleep(max(0.0, pressed + 2 * WAIT_S + 1 - time.monotonic()))
    gateway.start()
    gateway.wait_connected()
    wait_until("step 3 webhook", lambda: hooks_for(webhook, "wang"), gateway)
    wait_until("step 2 webhook", lambda: hooks_for(webhook, "li"), gateway)
    assert [h["step"] for h in hooks_for(webhook, "li")] == [2]
    assert [h["step"] for h in hooks_for(webhook, "wang")] == [3]
    wait_until("step 2 email", lambda: mails_to(smtp, "li@station.invalid"), gateway)
    entries = history(gateway, alert_id)
    escalated = [(e["escalation_level"], e["note"]) for e in entries
                 if e["action"] == "escalated"]
    assert escalated == [(1, "2 escalation steps were due: step 2, 1 of 2 at once"),
                         (2, "2 escalation steps were due: step 3, 2 of 2 at once")]
    notified = [e["note"] for e in entries if e["action"] == "notified"]
    assert [n.split(":")[0] for n in notified] == ["step 1 of chain calls",
                                                   "step 2 of chain calls",
                                                   "step 3 of chain calls"]
    assert "duty_nurse li" in notified[1]
    assert "station_manager wang" in notified[2]
