"""What each upstream destination receives of one record: its share.

One alert change or service record, many uses: the city platform, the care institution and a
bed's family each get the part that is theirs, decided here when the pump queues it, so the
outbox never holds for a destination more than it may send there. A :class:`Share` has a
level of :data:`Detail`, the alert types it takes and whether it takes service records:

* ``full``: the record as stored (the platform by default; what every destination got before).
* ``no_staff``: no staff key names (who acknowledged, resolved, was assigned, called, checked
  in through the app), no notes or comments; everything else, evidence and handling steps
  (checklist, calls by contact position) included (the institution by default).
* ``family``: a family's own bed only (the pump never offers it another), the alert's state and
  times and its summary, and only the changes a family follows (:data:`FAMILY_ACTIONS`: not
  assignments, comments, checklists, calls or escalations); its visit records with the visit,
  caregiver code, times, services and the record's hash. Nothing else: no key names, notes,
  assignee, handling details, outcome, evidence (which may name another bed or device) or
  resident profile data. An allow-list, so a field added to alerts or records later reaches a
  family only when it is added here. No number of the gateway's logs either: the change log's
  and the service log's sequence numbers count every bed's entries, so a family reading them
  (``seq``, the service log's chain head, ``<source>/alert/<seq>`` keys) would learn how busy
  the other beds are. A family's entry has no ``seq`` and no ``head``, and its key
  (:meth:`Share.key`) is ``<source>/service/<record hash>`` or ``<source>/alert/<digest of
  what it receives>``; it orders its entries by ``at`` (they arrive in order).

>>> from alerts.model import Alert, AlertChange
>>> alert = Alert(id="a1", incident="s1/b1/fall/#1", type="fall", severity="critical",
...               site="s1", bed="b1", opened_at=1, updated_at=2, status="acknowledged",
...               acknowledged_by="anna", acknowledged_at=2, note="on my way")
>>> change = AlertChange(seq=7, at=2, action="acknowledged", actor="anna", note="on my way",
...                      alert=alert)
>>> family = Share(detail="family", alert_types=frozenset({"fall"}))
>>> family.alert_change(change)["alert"]["status"], "anna" in str(family.alert_change(change))
('acknowledged', False)
>>> Share(detail="no_staff").alert_change(change)["alert"].get("acknowledged_by")
>>> Share(detail="family", alert_types=frozenset({"emergency_button"})).alert_change(change)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import msgspec

from alerts import AlertChange
from gateway.config import UPSTREAM_FAMILY_ALERT_TYPES, Settings

Detail = Literal["full", "no_staff", "family"]

_encoder = msgspec.json.Encoder(order="sorted")


class ServiceRecord(Protocol):
    """A record of the service log (:class:`alerts.servicelog.ServiceRecord`)."""

    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...
    def body(self) -> dict[str, Any]: ...

FAMILY_ACTIONS: Final = frozenset({
    "opened", "repeated", "downgraded", "cleared", "acknowledged", "resolved", "auto_resolved"})
"""The alert changes a family receives: the alert opened, called again, called off by the
person, its condition cleared, someone on it, over."""

FAMILY_CHANGE_FIELDS: Final = ("at", "action")
FAMILY_ALERT_FIELDS: Final = ("id", "type", "severity", "site", "bed", "status", "summary",
                              "opened_at", "updated_at", "acknowledged_at", "resolved_at",
                              "cleared_at", "repeats")
FAMILY_RECORD_FIELDS: Final = ("at", "site", "bed", "caregiver", "visit", "event", "method",
                               "services", "hash")

STAFF_CHANGE_FIELDS: Final = ("actor", "note")
"""What ``no_staff`` leaves out of a change: who did it, and the words."""
STAFF_ALERT_FIELDS: Final = ("acknowledged_by", "resolved_by", "assigned_to", "note")
STAFF_RECORD_FIELDS: Final = ("actor",)


@dataclass(frozen=True, slots=True)
class Share:
    """What one destination receives (see the module docstring)."""

    detail: Detail = "full"
    alert_types: frozenset[str] | None = None
    """The alert types whose changes it receives; ``None``: every type."""
    service_records: bool = True

    @property
    def log_wide(self) -> bool:
        """Whether its entries carry the logs' sequence numbers (keys, the chain head): not a
        family's (see the module docstring)."""
        return self.detail != "family"

    def key(self, source: str, kind: Literal["alert", "service"], seq: int, part: Any) -> str:
        """The idempotency key of ``part`` (this destination's share of the entry ``seq`` of
        the ``kind`` log): ``<source>/<kind>/<seq>``; a family's names no log-wide number (a
        service record's hash, else a digest of ``part``, the same on every retry)."""
        if self.log_wide:
            return f"{source}/{kind}/{seq}"
        if kind == "service" and isinstance(part, Mapping) and "hash" in part:
            return f"{source}/service/{part['hash']}"
        digest = hashlib.blake2b(_encoder.encode(part), digest_size=16).hexdigest()
        return f"{source}/{kind}/{digest}"

    def alert_change(self, change: AlertChange) -> Any:
        """``change`` as this destination receives it (a value to encode), or ``None``: not
        its share."""
        if self.alert_types is not None and str(change.alert.type) not in self.alert_types:
            return None
        if self.detail == "full":
            return change
        if self.detail == "family" and change.action not in FAMILY_ACTIONS:
            return None
        whole: dict[str, Any] = msgspec.to_builtins(change)
        alert: dict[str, Any] = whole["alert"]
        if self.detail == "family":
            return {**_only(whole, FAMILY_CHANGE_FIELDS),
                    "alert": _only(alert, FAMILY_ALERT_FIELDS)}
        alert = _without(alert, STAFF_ALERT_FIELDS)
        alert["contact_calls"] = [_without(call, ("by",))
                                  for call in alert.get("contact_calls", ())]
        return {**_without(whole, STAFF_CHANGE_FIELDS), "alert": alert}

    def service_record(self, record: ServiceRecord) -> dict[str, Any] | None:
        """``record`` (with its hash chain) as this destination receives it, or ``None``."""
        if not self.service_records:
            return None
        whole = {**record.body(), "prev_hash": record.prev_hash, "hash": record.hash}
        if self.detail == "family":
            return _only(whole, FAMILY_RECORD_FIELDS)
        if self.detail == "no_staff":
            return _without(whole, STAFF_RECORD_FIELDS)
        return whole


@dataclass(frozen=True, slots=True)
class Shares:
    """The share of each kind of destination."""

    platform: Share = field(default_factory=Share)
    institution: Share = field(default_factory=lambda: Share(detail="no_staff"))
    family: Share = field(default_factory=lambda: Share(
        detail="family", alert_types=frozenset(UPSTREAM_FAMILY_ALERT_TYPES)))

    def __post_init__(self) -> None:
        if self.family.detail != "family":
            raise ValueError("a family's share is always the family's")

    @classmethod
    def from_settings(cls, settings: Settings) -> Shares:
        """The ``upstream_*_detail``, ``_alert_types`` and ``upstream_family_visits``
        settings (``*`` in a list of types: every type)."""
        return cls(
            platform=Share(settings.upstream_platform_detail,
                           _types(settings.upstream_platform_alert_types)),
            institution=Share(settings.upstream_institution_detail,
                              _types(settings.upstream_institution_alert_types)),
            family=Share("family", _types(settings.upstream_family_alert_types),
                         settings.upstream_family_visits))


def _types(names: tuple[str, ...]) -> frozenset[str] | None:
    return None if "*" in names else frozenset(names)


def _only(values: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: values[name] for name in names if name in values}


def _without(values: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if name not in names}
