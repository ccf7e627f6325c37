"""What one escalation step sends, to whom, on which channel: the notifications of a step.

An alert that opens takes step 1 of its chain (:mod:`alerts.escalation`); each escalation
takes the next; a new call after an acknowledgement takes step 1 again. :func:`plan_step`
turns one such step into its notifications: each recipient of the step (the roster's people on
duty at the alert's site, :mod:`alerts.roster`, or the resident's first emergency contact) on
each of the step's channels that is configured and that they can be reached on (an email
address, an MQTT pager; the webhook takes everyone, with their phone number if the roster has
one). The console is always told: the alert's change on the stream is its notification. What
cannot be sent is said in the step's note (``nobody on duty``, ``no email``).

Every notification carries the alert's id, type, severity, site, bed, summary and times, the
step, and a one-time acknowledge link (:mod:`alerts.acklinks`). **No resident profile data**
(name, address, phone, contacts, notes) goes into any of them unless its channel is one of
``profile_channels`` (the setting ``notify_profile_channels``, empty by default): only then do
the resident's name, address, phone, medical and access notes travel with it to the staff (the
dispatchers, the nurse, the manager), and only then can the family contact (whose phone number
is profile data) be notified at all (on the webhook). The family contact's notification carries
none of the profile, even on an allowed channel, but the fields listed in
``family_profile_fields`` (the setting ``notify_profile_to_family``, empty by default): the
medical notes go to a family only when that names them.

Each notification is one outbox entry (:class:`Outgoing`): its destination is
``<channel>:<recipient>`` (a queue of its own, so one person's failing mailbox holds up no one
else), its key ``<source>/notify/<alert>/<change seq>/<channel>/<recipient>`` (the same on every
retry: the webhook's ``Idempotency-Key``, the email's ``Message-ID``), its body the alert, step
and recipient it belongs to and the message the channel sends: the webhook's JSON
(``docs/schemas/notification-webhook.schema.json``), an email's address, subject and text, or
an MQTT page's topic and JSON.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from alerts.escalation import Chain
from alerts.model import Alert
from alerts.residents import Resident
from alerts.roster import OnDuty, Staff

log = logging.getLogger("homecare.alerts.oncall")

_NOBODY_REMEMBERED: Final = 10_000
"""Alerts whose 'nobody on duty' warning was logged, remembered up to this many (oldest
forgotten first), so each alert's is logged once and not at every step or repeat."""
_nobody_warned: OrderedDict[tuple[str, str], None] = OrderedDict()
_nobody_lock = threading.Lock()


def _warn_nobody(alert: Alert, recipient: str, step: int) -> None:
    """Log once per alert and recipient that nobody of that role was on duty to tell."""
    with _nobody_lock:
        if (alert.id, recipient) in _nobody_warned:
            return
        _nobody_warned[(alert.id, recipient)] = None
        while len(_nobody_warned) > _NOBODY_REMEMBERED:
            _nobody_warned.popitem(last=False)
    log.warning("oncall.nobody alert=%s site=%s recipient=%s step=%d; nobody on duty for "
                "it: the roster has a gap (GET /api/v1/oncall warnings), the call reaches "
                "the console only", alert.id, alert.site, recipient, step)

WEBHOOK_VERSION: Final = 1
"""``version`` of the webhook payload (docs/schemas/notification-webhook.schema.json)."""
PROFILE_FIELDS: Final = ("display_name", "address", "phone", "medical_notes", "access_notes")
"""What of the resident profile travels on a channel that is allowed it."""
DEFAULT_PAGING_TOPIC: Final = "homecare/paging/{site}/{pager}"

_encoder = msgspec.json.Encoder()

LinkMaker = Callable[[str, str, str], tuple[str, int]]
"""``(notification key, recipient, channel) -> (acknowledge URL, expiry epoch ms)``."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One notification, as queued in the outbox: ``body`` is JSON, ``{"alert", "step",
    "repeat", "recipient", "channel", "message"}``, the message being what the channel sends
    (:func:`message`)."""

    destination: str
    key: str
    channel: str
    recipient: str
    body: bytes


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """An outbox entry's body (:class:`Outgoing`)."""

    alert: str
    step: int
    repeat: int
    recipient: str
    channel: str
    message: dict[str, Any]


_envelope = msgspec.json.Decoder(Envelope)


def envelope(body: bytes) -> Envelope:
    """What an outbox entry's body says (raises ``msgspec.ValidationError`` for a body that
    is not one)."""
    return _envelope.decode(body)


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One step of an alert's chain: its notifications and the note for the alert's history."""

    step: int
    repeat: int
    chain: str
    notifications: tuple[Outgoing, ...]
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyChannels:
    """Which channels this gateway can send on, and which may carry profile data."""

    webhook: bool = False
    email: bool = False
    mqtt: bool = False
    paging_topic: str = DEFAULT_PAGING_TOPIC
    profile_channels: frozenset[str] = frozenset()
    family_profile_fields: frozenset[str] = frozenset()
    """Which of :data:`PROFILE_FIELDS` the family contact's notification carries (on a
    channel of ``profile_channels``); empty: none."""

    def configured(self, channel: str) -> bool:
        return channel == "console" or bool(getattr(self, channel, False))


@dataclass(frozen=True, slots=True)
class _Person:
    """A recipient: a member of staff, or the resident's family contact."""

    recipient: str
    """Which recipient of the step (``dispatchers_on_duty``...)."""
    id: str
    staff: Staff | None
    contact: tuple[int, str, str, str] | None = None
    """(position, name, relation, phone) of the family contact."""


def plan_step(alert: Alert, *, seq: int, chain: Chain, level: int, sent_for: str,
              on_duty: OnDuty, resident: Resident | None, channels: NotifyChannels, source: str,
              link: LinkMaker, zone: ZoneInfo | None, now_ms: int) -> StepPlan:
    """The notifications of ``alert``'s step at escalation ``level`` of ``chain``, taken by
    its change ``seq`` (``sent_for``: ``opened``, ``escalated`` or ``repeated``).

    >>> from alerts.escalation import Step
    >>> from alerts.model import AlertStatus, Severity
    >>> alert = Alert(id="A1", incident="s/b/fall/#1", type="fall", severity="critical",
    ...               site="s", bed="b", opened_at=0, updated_at=0, status="open")
    >>> chain = Chain(name="c", steps=(Step(recipients=("dispatchers_on_duty",),
    ...                                     channels=("console", "email", "mqtt")),))
    >>> anna = Staff(id="anna", name="Anna", role="dispatcher", email="anna@x.invalid")
    >>> plan = plan_step(alert, seq=7, chain=chain, level=0, sent_for="opened",
    ...     on_duty=OnDuty("s", "day", "2026-01-01", (anna,), None, None), resident=None,
    ...     channels=NotifyChannels(email=True, mqtt=True), source="gw",
    ...     link=lambda key, who, channel: ("http://127.0.0.1/ack/T", 1), zone=None, now_ms=0)
    >>> [(n.destination, n.key) for n in plan.notifications]
    [('email:anna', 'gw/notify/A1/7/email/anna')]
    >>> plan.note
    'step 1 of chain c: dispatchers_on_duty anna (email); console; not sent: anna mqtt (no pager)'
    """
    number, repeat = chain.step(level)
    step = chain.steps[number - 1]
    people: list[_Person] = []
    unreached: list[str] = []
    for recipient in step.recipients:
        found = _people(recipient, on_duty, resident)
        if not found:
            unreached.append(f"nobody for {recipient}"
                             + (" (no profile contact)" if recipient == "family_contact"
                                else " on duty"))
            if recipient != "family_contact":
                _warn_nobody(alert, recipient, number)
        for person in found:
            if all(p.id != person.id for p in people):
                people.append(person)
    outgoing: list[Outgoing] = []
    sent: dict[str, list[str]] = {}
    for person in people:
        for channel in step.channels:
            if channel == "console" or not channels.configured(channel):
                continue
            if person.staff is None and channel != "webhook":
                continue  # the family contact has a phone only
            why = _unreachable(person, channel, channels)
            if why is not None:
                unreached.append(f"{person.id} {channel} ({why})")
                continue
            key = f"{source}/notify/{alert.id}/{seq}/{channel}/{person.id}"
            # A relative is told, not asked to answer for the station: no acknowledge link (a
            # family's link acknowledged the call and stopped the staff's chain: a verifier).
            url, expires = link(key, person.id, channel) if person.staff is not None \
                else (None, None)
            common = _Common(alert=alert, key=key, source=source, sent_for=sent_for,
                             chain=chain.name, step=number, repeat=repeat, url=url,
                             expires_at=expires, now_ms=now_ms, zone=zone,
                             profile=resident if channel in channels.profile_channels else None,
                             fields=_profile_fields(person, channels))
            body = _encoder.encode(Envelope(
                alert=alert.id, step=number, repeat=repeat, recipient=person.id,
                channel=channel, message=_MESSAGE[channel](common, person, channels)))
            outgoing.append(Outgoing(f"{channel}:{person.id}", key, channel, person.id, body))
            sent.setdefault(f"{person.recipient} {person.id}", []).append(channel)
    parts = [", ".join(f"{who} ({', '.join(how)})" for who, how in sent.items())] \
        if sent else []
    parts.append("console" if "console" in step.channels else "console (always)")
    if unreached:
        parts.append("not sent: " + ", ".join(unreached))
    title = f"step {number}" + (f" (repeat {repeat})" if repeat else "") + \
        f" of chain {chain.name}"
    return StepPlan(number, repeat, chain.name, tuple(outgoing), f"{title}: " + "; ".join(parts))


def _people(recipient: str, on_duty: OnDuty, resident: Resident | None) -> list[_Person]:
    staff: Iterable[Staff | None]
    if recipient == "dispatchers_on_duty":
        staff = on_duty.dispatchers
    elif recipient == "duty_nurse":
        staff = (on_duty.nurse,)
    elif recipient == "station_manager":
        staff = (on_duty.manager,)
    else:
        if resident is None or not resident.contacts:
            return []
        first = resident.contacts[0]
        return [_Person(recipient, "family_contact-1", None,
                        (1, first.name, first.relation, first.phone))]
    return [_Person(recipient, s.id, s) for s in staff if s is not None]


def _profile_fields(person: _Person, channels: NotifyChannels) -> tuple[str, ...]:
    """What of the profile ``person`` may be sent: all of it to the staff, to the family
    contact only the fields the station named for families (none by default)."""
    if person.staff is not None:
        return PROFILE_FIELDS
    return tuple(name for name in PROFILE_FIELDS if name in channels.family_profile_fields)


def _unreachable(person: _Person, channel: str, channels: NotifyChannels) -> str | None:
    if person.staff is None:  # the family contact: their phone is profile data
        return None if channel in channels.profile_channels else \
            "profile not allowed on the webhook"
    if channel == "email" and not person.staff.email:
        return "no email"
    if channel == "mqtt" and not person.staff.pager:
        return "no pager"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Common:
    alert: Alert
    key: str
    source: str
    sent_for: str
    chain: str
    step: int
    repeat: int
    url: str | None
    """The acknowledge link; None for the family contact."""
    expires_at: int | None
    now_ms: int
    zone: ZoneInfo | None
    profile: Resident | None
    """The resident profile, when this channel is allowed it; else None."""
    fields: tuple[str, ...] = PROFILE_FIELDS
    """What of the profile this recipient may be sent (:func:`_profile_fields`)."""

    def alert_fields(self) -> dict[str, Any]:
        a = self.alert
        return {"id": a.id, "type": str(a.type), "severity": str(a.severity),
                "status": str(a.status), "site": a.site, "bed": a.bed,
                "opened_at": a.opened_at, "summary": a.summary,
                "escalation_level": a.escalation_level}

    def profile_fields(self) -> dict[str, str] | None:
        if self.profile is None or not self.fields:
            return None
        return {name: getattr(self.profile, name) for name in self.fields}

    def local(self, ms: int) -> str:
        when = dt.datetime.fromtimestamp(ms / 1000, tz=self.zone) if self.zone is not None \
            else dt.datetime.fromtimestamp(ms / 1000).astimezone()
        return when.strftime("%Y-%m-%d %H:%M:%S %Z")


def _recipient(person: _Person) -> dict[str, Any]:
    if person.staff is None:
        assert person.contact is not None
        position, name, relation, phone = person.contact
        return {"kind": person.recipient, "id": person.id, "contact": position, "name": name,
                "relation": relation, "phone": phone}
    s = person.staff
    out: dict[str, Any] = {"kind": person.recipient, "id": s.id, "name": s.name,
                           "role": s.role}
    if s.phone:
        out["phone"] = s.phone
    return out


def _webhook(c: _Common, person: _Person, channels: NotifyChannels) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "notification", "version": WEBHOOK_VERSION, "key": c.key, "source": c.source,
        "sent_for": c.sent_for, "chain": c.chain, "step": c.step, "repeat": c.repeat,
        "recipient": _recipient(person), "alert": c.alert_fields(),
        "acknowledge_url": c.url, "acknowledge_expires_at": c.expires_at,
        "created_at": c.now_ms}
    if (profile := c.profile_fields()) is not None:
        body["resident"] = profile
    return body


def _email(c: _Common, person: _Person, channels: NotifyChannels) -> dict[str, Any]:
    assert person.staff is not None
    assert c.url is not None  # staff always have a link
    assert c.expires_at is not None
    a = c.alert
    kind = str(a.type).replace("_", " ")
    where = f"{a.site}/{a.bed}" if a.bed else a.site
    subject = f"[{a.severity}] {kind} at {where}: step {c.step}, please acknowledge"
    lines = [f"{person.staff.name},", "",
             f"An alert needs acknowledgement: {a.severity} {kind} at {where}.",
             f"Summary: {a.summary or '-'}", f"Opened: {c.local(a.opened_at)}",
             f"Step {c.step} of chain {c.chain}"
             + (f" (repeat {c.repeat})" if c.repeat else "") + f", sent for: {c.sent_for}.",
             "", "Acknowledge (this link works once, until "
             f"{c.local(c.expires_at)}):", c.url]
    if (profile := c.profile_fields()) is not None:
        lines += ["", "Resident:", *(f"  {name.replace('_', ' ')}: {value}"
                                     for name, value in profile.items() if value)]
    lines += ["", f"Alert {a.id} ({c.source}). Notification {c.key}."]
    return {"to": person.staff.email, "subject": subject, "text": "\n".join(lines) + "\n"}


def _page(c: _Common, person: _Person, channels: NotifyChannels) -> dict[str, Any]:
    assert person.staff is not None
    topic = channels.paging_topic.format(site=c.alert.site, pager=person.staff.pager)
    payload: dict[str, Any] = {
        "key": c.key, "alert": c.alert_fields(), "step": c.step, "repeat": c.repeat,
        "chain": c.chain, "sent_for": c.sent_for, "pager": person.staff.pager,
        "recipient": person.staff.id, "acknowledge_url": c.url,
        "acknowledge_expires_at": c.expires_at, "created_at": c.now_ms}
    if (profile := c.profile_fields()) is not None:
        payload["resident"] = profile
    return {"topic": topic, "payload": payload}


_MESSAGE: Final[dict[str, Callable[[_Common, _Person, NotifyChannels], dict[str, Any]]]] = {
    "webhook": _webhook, "email": _email, "mqtt": _page}
