"""What a dispatcher does with an alert until it is resolved, and what it takes to resolve one.

A telecare receiving centre works an alarm call through a short, fixed routine: call the
resident, call their first contact, send a caregiver... The :class:`ResponsePlan` holds that
routine per alert type (the *response checklist*, configurable, defaults in
:data:`DEFAULT_CHECKLISTS`) and the *outcome codes* an alert may be resolved with
(:data:`DEFAULT_OUTCOMES`: was it a false alarm, handled by phone, did a caregiver go...).

Each thing a dispatcher does is one :class:`Handling`: the change action, its note and how the
alert changes. :meth:`AlertEngine.handle <alerts.engine.AlertEngine.handle>` records it as a
change of the alert (durable, in its history, on the stream, upstream), so the record of what
was done is the alert's own:

* ``assigned`` / ``unassigned``: who is handling it (``assigned_to``);
* ``commented``: a comment, in the dispatcher's words (the change's note);
* ``checklist_checked`` / ``checklist_unchecked``: an item of the alert type's checklist
  (the note is the item);
* ``contact_called``: a call to the resident (contact 0) or one of their emergency contacts
  (1, 2, ... in the profile's order), answered or not (a :class:`~alerts.model.ContactCall`).
  Only the position goes into the alert: names and numbers stay in the resident profile
  (:mod:`alerts.residents`), which never leaves the hub.

Doing what is already done (assigning to the one assigned, checking a checked item) changes
nothing and records nothing. A request that cannot apply to this alert (an item not on its
type's checklist, a contact the profile does not have) raises :class:`HandlingRefused`.

>>> plan = ResponsePlan()
>>> plan.checklist("emergency_button")
('call_resident', 'call_first_contact', 'send_caregiver')
>>> "ambulance_called" in plan.outcomes
True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec

from alerts.errors import HandlingRefused
from alerts.model import Alert, AlertType, CallResult, ContactCall

DEFAULT_OUTCOMES: Final = ("false_alarm", "handled_by_phone", "caregiver_sent", "family_came",
                           "ambulance_called", "other")
"""How an alert may end; one is required to resolve it (the ``alert_outcomes`` setting)."""

DEFAULT_CHECKLISTS: Final[Mapping[str, tuple[str, ...]]] = {
    AlertType.EMERGENCY_BUTTON: ("call_resident", "call_first_contact", "send_caregiver"),
    AlertType.FALL: ("call_resident", "call_first_contact", "send_caregiver",
                     "consider_ambulance"),
    AlertType.INACTIVITY: ("call_resident", "call_first_contact", "send_caregiver"),
    AlertType.NIGHT_BED_EXIT: ("call_resident", "call_first_contact"),
    AlertType.ABNORMAL_SOUND: ("call_resident", "call_first_contact", "send_caregiver"),
    AlertType.VITAL_SIGNS: ("call_resident", "ask_duty_nurse", "call_first_contact"),
    AlertType.DEVICE_OFFLINE: ("call_resident", "arrange_device_check"),
    AlertType.LOW_BATTERY: ("arrange_battery_change",),
    AlertType.SENSOR_FAULT: ("arrange_device_check",),
    AlertType.SERVICE_ANOMALY: ("call_caregiver", "check_visit_record"),
}
"""The response checklist of each alert type (``alert_checklist_<type>`` settings). Items are
short codes the console translates; a station may also write its own items in its own words."""

OUTCOME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
ITEM_PATTERN: Final = r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,78}[^\x00-\x1f\x7f\s])?$"
"""A checklist item: 1 to 80 characters on one line, no blank at either end."""
MAX_ITEMS: Final = 20
COMMENT_MAX: Final = 2000

_OUTCOME = re.compile(OUTCOME_PATTERN)
_ITEM = re.compile(ITEM_PATTERN)

Change = Callable[[Alert], Alert]


@dataclass(frozen=True, slots=True)
class Handling:
    """One thing a dispatcher did: the change's action and note, and how the alert changes
    (``change`` returns the alert itself when there is nothing to change)."""

    action: str
    note: str | None
    change: Change | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponsePlan:
    """The checklists per alert type and the outcome codes; validated at construction."""

    checklists: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_CHECKLISTS))
    outcomes: tuple[str, ...] = DEFAULT_OUTCOMES

    def __post_init__(self) -> None:
        if not self.outcomes:
            raise ValueError("at least one outcome code is needed to resolve alerts")
        for code in self.outcomes:
            if not _OUTCOME.fullmatch(code):
                raise ValueError(f"outcome code {code[:80]!r}: lower-case letters, digits and "
                                 "_, starting with a letter, at most 64")
        if len(set(self.outcomes)) != len(self.outcomes):
            raise ValueError("an outcome code is listed twice")
        for alert_type, items in self.checklists.items():
            if len(items) > MAX_ITEMS:
                raise ValueError(f"the checklist of {alert_type} has more than {MAX_ITEMS} "
                                 "items")
            for item in items:
                if not _ITEM.fullmatch(item):
                    raise ValueError(f"checklist item {item[:80]!r} of {alert_type}: 1 to 80 "
                                     "characters on one line, no blank at either end")
            if len(set(items)) != len(items):
                raise ValueError(f"the checklist of {alert_type} lists an item twice")

    def checklist(self, alert_type: str) -> tuple[str, ...]:
        """The items for ``alert_type`` (empty when it has none)."""
        return tuple(self.checklists.get(alert_type, ()))

    @property
    def items(self) -> tuple[str, ...]:
        """Every item of every checklist, once, sorted."""
        return tuple(sorted({item for items in self.checklists.values() for item in items}))


def assign(to: str | None, *, now_ms: int) -> Handling:
    """Assign the alert to the dispatcher ``to`` (an API key name), or unassign it (None)."""
    if to is None:
        def unassign(alert: Alert) -> Alert:
            if alert.assigned_to is None:
                return alert
            return msgspec.structs.replace(alert, assigned_to=None, assigned_at=None)

        return Handling("unassigned", None, unassign)
    if not to:
        raise ValueError("assign to whom?")

    def assign_to(alert: Alert) -> Alert:
        if alert.assigned_to == to:
            return alert
        return msgspec.structs.replace(alert, assigned_to=to, assigned_at=now_ms)

    return Handling("assigned", to, assign_to)


def comment(text: str) -> Handling:
    """A comment made while handling the alert, as written (blank ends trimmed)."""
    text = text.strip()
    if not text:
        raise ValueError("a comment needs some text")
    if len(text) > COMMENT_MAX:
        raise ValueError(f"a comment has at most {COMMENT_MAX} characters")
    return Handling("commented", text, None)


def check(plan: ResponsePlan, item: str, *, done: bool = True) -> Handling:
    """Check (or uncheck) ``item`` of the alert type's checklist.

    >>> from alerts.model import AlertStatus, Severity
    >>> alert = Alert(id="A", incident="s/b/fall/#1", type=AlertType.FALL,
    ...               severity=Severity.CRITICAL, site="s", bed="b", opened_at=0,
    ...               updated_at=0, status=AlertStatus.OPEN)
    >>> step = check(ResponsePlan(), "call_resident")
    >>> step.action, step.change(alert).checklist
    ('checklist_checked', ('call_resident',))
    >>> check(ResponsePlan(), "arrange_battery_change").change(alert)
    Traceback (most recent call last):
    ...
    alerts.errors.HandlingRefused: 'arrange_battery_change' is not on the checklist of fall alerts
    """

    def tick(alert: Alert) -> Alert:
        if item not in plan.checklist(alert.type):
            raise HandlingRefused("not_on_checklist", f"{item[:80]!r} is not on the checklist "
                                  f"of {alert.type.value} alerts")
        if done == (item in alert.checklist):
            return alert
        checklist = (*alert.checklist, item) if done else tuple(
            i for i in alert.checklist if i != item)
        return msgspec.structs.replace(alert, checklist=checklist)

    return Handling("checklist_checked" if done else "checklist_unchecked", item, tick)


def call(contact: int, result: CallResult, *, contacts: int, has_phone: bool, by: str,
         now_ms: int) -> Handling:
    """A call to the resident (``contact`` 0) or their ``contact``-th emergency contact, and
    whether it was answered. ``contacts``: how many emergency contacts the profile lists;
    ``has_phone``: whether it has the resident's own number."""
    if contact < 0 or contact > contacts:
        raise HandlingRefused("no_such_contact", f"the resident's profile lists {contacts} "
                              f"emergency contacts; there is no contact {contact}")
    if contact == 0 and not has_phone:
        raise HandlingRefused("no_such_contact", "the resident's profile has no phone number "
                              "of their own (contact 0)")
    mark = ContactCall(contact=contact, result=result, at=now_ms, by=by)
    who = "resident" if contact == 0 else f"contact {contact}"
    note = f"{who}: {'answered' if result == 'answered' else 'no answer'}"

    def log(alert: Alert) -> Alert:
        return msgspec.structs.replace(alert, contact_calls=(*alert.contact_calls, mark))

    return Handling("contact_called", note, log)
