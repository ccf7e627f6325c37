"""What one escalation step sends: each recipient on each channel they can be reached on, the
webhook body as its JSON Schema says, a one-time link in every notification, and no resident
profile data anywhere unless the channel is allowed it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import msgspec
import pytest

from alerts.acklinks import AckLinks
from alerts.escalation import Chain, Step
from alerts.model import Alert, AlertStatus, AlertType, Severity
from alerts.notify import NotifyChannels, plan_step
from alerts.residents import Contact, Resident
from alerts.roster import OnDuty, Staff

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas"
                     / "notification-webhook.schema.json").read_text(encoding="utf-8"))
T0 = 1_767_290_400_000

ANNA = Staff(id="anna", name="Anna (synthetic)", role="dispatcher",
             email="anna@station.invalid", phone="+86 138 0000 0001", pager="pg-1")
LI = Staff(id="li", name="Li (synthetic)", role="nurse", email="li@station.invalid")
ON_DUTY = OnDuty("site-01", "night", "2026-01-01", (ANNA,), LI, None)
CHAIN = Chain(name="calls", steps=(
    Step(recipients=("dispatchers_on_duty",), wait_s=60),
    Step(recipients=("duty_nurse", "station_manager", "family_contact"), wait_s=120)))
ALERT = Alert(id="01JALERT", incident="site-01/bed-0007/emergency_button/#1",
              type=AlertType.EMERGENCY_BUTTON, severity=Severity.CRITICAL, site="site-01",
              bed="bed-0007", opened_at=T0, updated_at=T0, status=AlertStatus.OPEN,
              summary="emergency button pressed", escalation_level=1)
RESIDENT = Resident(site="site-01", bed="bed-0007", display_name="Feng Yuying (synthetic)",
                    address="Example Road 77", phone="010-5555-7701",
                    contacts=(Contact(name="Feng Lei (synthetic)", relation="grandson",
                                      phone="+86 138 0555 7702"),),
                    medical_notes="allergic to penicillin (synthetic)",
                    access_notes="key safe behind the meter box (synthetic)")
PROFILE_VALUES = ("Feng Yuying", "Example Road 77", "010-5555-7701", "Feng Lei", "grandson",
                  "0555 7702", "penicillin", "key safe")
ALL = NotifyChannels(webhook=True, email=True, mqtt=True)


def plan(level: int, channels: NotifyChannels = ALL, resident: Resident | None = RESIDENT,
         links: AckLinks | None = None):  # type: ignore[no-untyped-def]
    links = links or AckLinks(":memory:", secret=b"k" * 32)

    def link(key: str, who: str, channel: str) -> tuple[str, int]:
        token = links.mint(key=key, alert_id=ALERT.id, recipient=who, step=level + 1,
                           channel=channel, now_ms=T0)
        return f"http://127.0.0.1:8080/ack/{token}", T0 + links.ttl_ms

    return plan_step(ALERT, seq=41, chain=CHAIN, level=level, sent_for="escalated",
                     on_duty=ON_DUTY, resident=resident, channels=channels, source="gw-1",
                     link=link, zone=None, now_ms=T0)


def test_a_step_tells_each_recipient_on_each_channel_they_can_be_reached_on() -> None:
    first = plan(0)
    assert [(n.destination, n.key) for n in first.notifications] == [
        ("webhook:anna", "gw-1/notify/01JALERT/41/webhook/anna"),
        ("email:anna", "gw-1/notify/01JALERT/41/email/anna"),
        ("mqtt:anna", "gw-1/notify/01JALERT/41/mqtt/anna")]
    assert first.note == ("step 1 of chain calls: dispatchers_on_duty anna (webhook, email, "
                          "mqtt); console")
    second = plan(1)
    assert [n.destination for n in second.notifications] == ["webhook:li", "email:li"]
    assert second.note == (
        "step 2 of chain calls: duty_nurse li (webhook, email); console; not sent: nobody for "
        "station_manager on duty, li mqtt (no pager), family_contact-1 webhook (profile not "
        "allowed on the webhook)")
    assert (plan(3).step, plan(3).repeat) == (2, 2)
    only_console = plan(0, NotifyChannels())
    assert only_console.notifications == ()
    assert only_console.note == "step 1 of chain calls: console"


def test_the_webhook_body_follows_its_json_schema_and_carries_a_one_time_link() -> None:
    validator = jsonschema_rs.validator_for(SCHEMA)
    links = AckLinks(":memory:", secret=b"k" * 32)
    allowed = NotifyChannels(webhook=True, email=True, profile_channels=frozenset({"webhook"}))
    bodies = [json.loads(n.body)["message"] for p in (plan(0, links=links), plan(1, links=links),
                                           plan(1, allowed, links=links))
              for n in p.notifications if n.channel == "webhook"]
    assert len(bodies) == 4
    for body in bodies:
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, (errors, body)
    assert bodies[0]["recipient"] == {"kind": "dispatchers_on_duty", "id": "anna",
                                      "name": "Anna (synthetic)", "role": "dispatcher",
                                      "phone": "+86 138 0000 0001"}
    token = bodies[0]["acknowledge_url"].rsplit("/", 1)[1]
    claim = links.read(token, now_ms=T0 + 1)
    assert not isinstance(claim, str)
    assert (claim.key, claim.recipient, claim.channel, claim.alert_id) == (
        bodies[0]["key"], "anna", "webhook", ALERT.id)
    # The schema refuses what it does not describe (a profile field outside "resident").
    assert not validator.is_valid({**bodies[0], "address": "Example Road 77"})


def test_no_notification_carries_the_profile_unless_its_channel_is_allowed_it() -> None:
    for level in (0, 1):
        for n in plan(level).notifications:
            text = n.body.decode()
            assert [v for v in PROFILE_VALUES if v in text] == [], (n.destination, text)
    allowed = plan(1, NotifyChannels(webhook=True, email=True, mqtt=True,
                               profile_channels=frozenset({"webhook"})))
    by = {n.destination: json.loads(n.body)["message"] for n in allowed.notifications}
    assert by["webhook:li"]["resident"]["display_name"] == "Feng Yuying (synthetic)"
    family = by["webhook:family_contact-1"]
    assert family["recipient"]["phone"] == "+86 138 0555 7702"
    assert [v for v in PROFILE_VALUES if v in json.dumps(by["email:li"])] == []
    email_allowed = plan(1, NotifyChannels(email=True, profile_channels=frozenset({"email"})))
    [email] = email_allowed.notifications
    assert "key safe behind the meter box" in json.loads(email.body)["message"]["text"]


def test_the_profile_goes_to_the_staff_and_to_a_family_only_what_is_named_for_families(
        ) -> None:
    """Issue #13 (a verifier's defect): with notify_profile_channels=webhook the family
    contact's webhook body carried the whole profile, medical and access notes included."""
    validator = jsonschema_rs.validator_for(SCHEMA)
    webhook = NotifyChannels(webhook=True, profile_channels=frozenset({"webhook"}))
    by = {n.destination: json.loads(n.body)["message"] for n in plan(1, webhook).notifications}
    assert set(by) == {"webhook:li", "webhook:family_contact-1"}
    assert by["webhook:li"]["resident"]["medical_notes"] == RESIDENT.medical_notes
    assert by["webhook:li"]["resident"]["access_notes"] == RESIDENT.access_notes
    family = by["webhook:family_contact-1"]
    assert "resident" not in family
    own = ("Feng Lei", "grandson", "0555 7702")  # the family contact's own name and phone
    assert [v for v in PROFILE_VALUES if v in json.dumps(family) and v not in own] == []
    named = NotifyChannels(webhook=True, profile_channels=frozenset({"webhook"}),
                           family_profile_fields=frozenset({"display_name", "access_notes"}))
    [family] = [json.loads(n.body)["message"] for n in plan(1, named).notifications
                if n.recipient == "family_contact-1"]
    assert family["resident"] == {"display_name": RESIDENT.display_name,
                                  "access_notes": RESIDENT.access_notes}
    assert not [e.message for e in validator.iter_errors(family)]
    medical = NotifyChannels(webhook=True, profile_channels=frozenset({"webhook"}),
                             family_profile_fields=frozenset({"medical_notes"}))
    [family] = [json.loads(n.body)["message"] for n in plan(1, medical).notifications
                if n.recipient == "family_contact-1"]
    assert family["resident"] == {"medical_notes": RESIDENT.medical_notes}
    # Named for families, but the webhook not allowed the profile: the family is not told.
    closed = NotifyChannels(webhook=True, family_profile_fields=frozenset({"medical_notes"}))
    assert [n.recipient for n in plan(1, closed).notifications] == ["li"]


@pytest.mark.parametrize("channel", ["email", "mqtt"])
def test_email_and_pages_name_the_alert_the_step_and_the_link(channel: str) -> None:
    [n] = [n for n in plan(0).notifications if n.channel == channel]
    body = json.loads(n.body)["message"]
    if channel == "email":
        assert body["to"] == "anna@station.invalid"
        assert body["subject"] == ("[critical] emergency button at site-01/bed-0007: step 1, "
                                   "please acknowledge")
        assert "/ack/" in body["text"]
        assert "emergency button pressed" in body["text"]
    else:
        assert body["topic"] == "homecare/paging/site-01/pg-1"
        assert (body["payload"]["step"], body["payload"]["pager"]) == (1, "pg-1")
        assert "/ack/" in body["payload"]["acknowledge_url"]


def test_nobody_on_duty_for_a_step_is_logged_once_per_alert(
        caplog: pytest.LogCaptureFixture) -> None:
    """Issue #13: a step that found nobody on duty was only a note in the history ('not sent:
    nobody for dispatchers_on_duty on duty'); the gateway's log said nothing."""
    alert = msgspec.structs.replace(ALERT, id="01JNOBODY")
    nobody = OnDuty("site-01", "night", "2026-01-01", (), None, None)
    caplog.set_level("WARNING", logger="homecare.alerts.oncall")
    for level in (0, 0, 1):  # step 1, its repeat, step 2
        planned = plan_step(alert, seq=50 + level, chain=CHAIN, level=level,
                            sent_for="escalated", on_duty=nobody, resident=None,
                            channels=ALL, source="gw-1",
                            link=lambda key, who, channel: ("http://127.0.0.1/ack/T", 1),
                            zone=None, now_ms=T0)
        assert "nobody for" in planned.note
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(";")[0] for line in lines] == [
        "oncall.nobody alert=01JNOBODY site=site-01 recipient=dispatchers_on_duty step=1",
        "oncall.nobody alert=01JNOBODY site=site-01 recipient=duty_nurse step=2",
        "oncall.nobody alert=01JNOBODY site=site-01 recipient=station_manager step=2"], lines


def test_a_family_contact_is_told_and_given_no_acknowledge_link() -> None:
    """Issue #13 (a verifier's defect): a family contact's link acknowledged the emergency call
    and stopped the staff's chain. A relative is told, not asked to answer for the station:
    their notification carries no link, and it still follows the webhook's schema."""
    allowed = plan(1, NotifyChannels(webhook=True, email=True, mqtt=True,
                               profile_channels=frozenset({"webhook"})))
    by = {n.destination: json.loads(n.body)["message"] for n in allowed.notifications}
    family = by["webhook:family_contact-1"]
    assert (family["acknowledge_url"], family["acknowledge_expires_at"]) == (None, None)
    assert by["webhook:li"]["acknowledge_url"].startswith("http")
    assert jsonschema_rs.validator_for(SCHEMA).is_valid(family)
