"""Alert storms and unregistered devices: many findings of one kind become one summary alert.

(A module over 400 lines: routing a finding, the summary's members and bounds, its words and
its restart are one state, read in one place.)

Between the detectors and the alert engine (:class:`AlertStorms`, used by the gateway's
alerting stage), non-emergency findings are folded into *one alert per site and type*, the
summary, instead of one alert each, in two cases:

* **Unregistered.** The finding is about a bed the registry does not list (auto-registered on
  first sight, :meth:`devices.registry.Registry.ensure`), or, for the device types
  (:data:`DEVICE_TYPES`: ``device_offline``, ``low_battery``, ``sensor_fault``), a device it
  does not list. Always summarised: a hundred thousand made-up device ids going silent are one
  alert, not a hundred thousand. Sites that the registry does not list at all (no registered
  bed) share one summary per type, under the site :data:`UNREGISTERED_SITES`, so made-up
  *sites* do not flood the queue either. (Without a registry, or with one that lists no bed,
  nothing is unregistered: only storms are summarised.)
* **Storm.** More than ``threshold`` findings of one type on one registered site open within
  ``window_ms`` (a site losing power on some of its floors, a fleet whose clocks went wrong):
  the ones beyond the threshold go into the site's summary (all of them when they come in one
  batch, as a detector round delivers them), until every one has cleared. The ones opened
  before stay alerts of their own.

**Never aggregated**: ``emergency_button`` and ``fall`` (:data:`NEVER_SUMMARISED`), whoever
sends them, registered or not: they pass through untouched, at the cost of one type
test each, so the emergency path is never slowed or hidden by a storm. Site-level alerts
(:data:`~alerts.model.SITE_TYPES`: a site gone dark, the gateway's own health) are never
folded into a storm: each is one alert for a whole site already. A site the registry lists
keeps its own, and so does the gateway's health (its site ``_gateway`` is no registry's); but
a site-level alert of a site the registry does not list (:data:`SITE_FOLDED`: ``site_offline``)
joins the :data:`UNREGISTERED_SITES` summary of its type, its members the sites: 330 made-up
sites of three made-up beds each going silent are one alert, not 330 high ones (the detectors
watch up to ``unregistered_watched_beds`` made-up beds, so as many as a third of that could
otherwise open).

A summary is a plain alert of the member's type: site, ``bed`` empty (a site-level alert),
episode :data:`EPISODE`, severity the highest of its members, and evidence ``summary: true``
(:data:`SUMMARY`), ``count`` (members now), ``beds_count`` (the distinct beds of the members
named: a bed's twelve flagged visits are twelve members on one bed; the text says both, "12
service anomalies on 1 bed", "at least" when some members are only counted; the device types
count devices, one member each), ``unregistered`` and ``storm`` (how many of each),
``members`` (the first :data:`LISTED` members by arrival, ``bed/device`` or ``bed``;
``site/bed/device`` under :data:`UNREGISTERED_SITES`, and ``site`` for a site-level type, whose
members are sites and name no bed), ``members_omitted``, and
``member_reasons``: for each member whose finding names its ``reasons`` (a
``service_anomaly``: ``bed/caregiver/visit`` -> ``["too_short", ...]``), listed or not among
the first :data:`LISTED`, those reasons (the first :data:`REASONS_LISTED` such members by
arrival, ``member_reasons_omitted`` the rest), so a folded visit keeps why it was flagged and
its service record can name the summary (:mod:`alerts.servicerecords`); ``reason_counts``:
how many members give each reason, over all of them. A member's clear
(``active=False``) takes it out; the summary clears when the last one has (the engine then
resolves it after its grace, as any alert). Its updates are findings like any other, so the
engine stages them at most once per update interval.

Memory is bounded whatever arrives: at most :data:`MEMBERS_KEPT` named members per summary
(beyond, members are only counted, and a clear of a member not named takes one off that
count), :data:`INDIVIDUAL_KEPT` individual conditions remembered (oldest forgotten first), and
``threshold`` opening times per site and type; summaries exist per registered site and type,
plus one per type for :data:`UNREGISTERED_SITES`.

Every named member joining or leaving is also handed to the alert store
(:meth:`AlertStorms.take_member_changes`, written with the changes: ``summary_members``).
After a restart, :meth:`AlertStorms.resume` takes back the open summaries, every member by
name, from those rows (not from the alert's count and names, staged every few seconds and so
possibly older: evidence ``members_stored``; from a store written before that table, the
listed members and those whose reasons they name, the rest by count; a summary whose count
the rows correct is updated at once), and the open individual alerts; the rows of a summary a
person resolved stay until each member clears; :meth:`AlertStorms.held` gives
the detectors every condition they had raised, members included, so that they clear them
(a summary's members beyond the 50 listed used to come back as a count, which the
detectors, raising them again, added to: 120 devices became 190 after a ``kill -9``).

The beds a summary names are indexed (:meth:`AlertStorms.summaries_of`: per site and bed, the
summaries with a member on it; an entry per bed of a named member, so bounded as they are),
kept as members join and clear, so that a bed's page and the bed list show the summaries that
list the bed without reading any summary's members: a device offline in a storm leaves its
bed's own alerts empty, and the bed must not look calm. Members known only by count (beyond
:data:`MEMBERS_KEPT`; after a restart from a store without ``summary_members``, those neither
listed nor with reasons) name no bed, so their beds are not indexed.

>>> from alerts.model import AlertType, Finding, Severity
>>> storms = AlertStorms(Registry.from_mapping({"sites": {"s0": {"beds": {"b1": {}}}}}))
>>> found = [Finding(type=AlertType.DEVICE_OFFLINE, site="s1", bed=f"b{n}", at=1000,
...                  severity=Severity.MEDIUM, episode=f"ir-{n}") for n in range(3)]
>>> [summary] = storms.filter(found, 1000)
>>> summary.site, summary.bed, summary.summary
('_unregistered', '', '3 unregistered devices on unregistered sites: device offline')
>>> summary.evidence["members"]
['s1/b0/ir-0', 's1/b1/ir-1', 's1/b2/ir-2']
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from alerts.model import SITE_TYPES, Alert, AlertStatus, AlertType, Finding, Severity
from alerts.store import MemberChange, MemberGone, MemberRow, split_incident
from devices.registry import Registry

log = logging.getLogger("homecare.alerts")

NEVER_SUMMARISED: Final = frozenset({AlertType.EMERGENCY_BUTTON, AlertType.FALL})
"""Emergencies: always one alert each, never held, never folded."""
SITE_FOLDED: Final = SITE_TYPES - {AlertType.GATEWAY_HEALTH}
"""Site-level types about one site: a listed site's pass through (one alert per site already),
a site the registry does not list joins the :data:`UNREGISTERED_SITES` summary of the type.
Every site-level type but the gateway's own health, whose site is the gateway, no registry's."""
PASSED: Final = NEVER_SUMMARISED | (SITE_TYPES - SITE_FOLDED)
"""Types that always pass through as they are: emergencies and the gateway's health."""
DEVICE_TYPES: Final = frozenset({AlertType.DEVICE_OFFLINE, AlertType.LOW_BATTERY,
                                 AlertType.SENSOR_FAULT})
"""Types about one device (its id is the finding's episode): a device the registry does not
list makes them unregistered even on a registered bed."""
UNREGISTERED_SITES: Final = "_unregistered"
"""The site of the summaries of sites the registry does not list."""
EPISODE: Final = "summary"
SUMMARY: Final = "summary"
"""Evidence key, true on a summary alert."""
MEMBERS_STORED: Final = "members_stored"
"""Evidence key, true on a summary whose members the alert store holds by name (every member
joining and leaving written with the changes): after a restart they, not the evidence's count
and names (up to a few seconds older), are its members."""
STORM_THRESHOLD: Final = 10
"""Alerts of one type on one site that may open, within :data:`STORM_WINDOW_MS`, one by one."""
STORM_WINDOW_MS: Final = 5 * 60_000
LISTED: Final = 50
"""Members named in a summary's evidence (the first to arrive); the rest are counted."""
REASONS_LISTED: Final = 1_000
"""Members whose reasons a summary's evidence names (the first to arrive of those with
reasons, listed or not among :data:`LISTED`): a service record of a visit folded into a storm
of a whole site's visits finds its reasons there. Bounded because every update of the summary
is stored whole in the alert's history (about 60 bytes a member); ``reason_counts`` counts
every member's reasons."""
MEMBERS_KEPT: Final = 10_000
"""Members of one summary remembered by name (to take them out when they clear)."""
INDIVIDUAL_KEPT: Final = 100_000
"""Individual conditions remembered (so that their updates go to their own alerts)."""

_Member = tuple[str, str, str]
"""(site, bed, episode)"""
_Key = tuple[str, AlertType]
"""(site of the summary, type)"""


def summary_incident(site: str, type: AlertType) -> str:
    """The incident key (``site/bed/type/episode``, :func:`~alerts.store.split_incident`) of
    the summary of ``site`` (the site of the summary: :data:`UNREGISTERED_SITES` for sites the
    registry does not list) and ``type``."""
    return f"{site}//{type.value}/{EPISODE}"


@dataclass(slots=True)
class _Summary:
    site: str
    type: AlertType
    severity: Severity
    started_at: int
    members: dict[_Member, bool] = field(default_factory=dict)
    """Member -> unregistered, in order of arrival."""
    anonymous: int = 0
    """Members known only by count (beyond :data:`MEMBERS_KEPT`, or restored unlisted)."""
    unregistered: int = 0
    """Named members that are unregistered (the others are in a storm)."""
    reasons: dict[_Member, tuple[str, ...]] = field(default_factory=dict)
    """The ``reasons`` of named members whose findings give them."""
    held: dict[_Member, tuple[int | None, str]] = field(default_factory=dict)
    """Per named member, when its condition started and its device kind (``""``: not a
    device): what a restarted detector is told it raised (:meth:`AlertStorms.held_members`)."""

    @property
    def count(self) -> int:
        return len(self.members) + self.anonymous

    @property
    def storming(self) -> bool:
        return len(self.members) > self.unregistered


class AlertStorms:
    """Folds unregistered and storming findings into summaries; see the module docstring."""

    def __init__(self, registry: Registry | None = None, *,
                 threshold: int = STORM_THRESHOLD, window_ms: int = STORM_WINDOW_MS,
                 listed: int = LISTED) -> None:
        """``registry``: who is registered (None, or one that lists no bed: everyone is, and
        only storms are summarised). Its registered sites are taken now: auto-registration
        never adds one."""
        if threshold < 1 or window_ms < 0 or listed < 1:
            raise ValueError("threshold and listed must be positive, window_ms not negative")
        self._sites = frozenset(bed.site for bed in registry.beds()
                                if not bed.auto_registered) if registry is not None else None
        self.registry = registry if self._sites else None
        self.threshold = threshold
        self.window_ms = window_ms
        self.listed = listed
        self._summaries: dict[_Key, _Summary] = {}
        self._individual: dict[tuple[AlertType, _Member], None] = {}
        self._openings: dict[_Key, deque[int]] = {}
        self._beds: dict[tuple[str, str], dict[_Key, int]] = {}
        """Per (site, bed), the summaries with named members on it, and how many (a bed's
        devices, or its flagged visits, are members one each)."""
        self.summarised: dict[str, int] = {"unregistered": 0, "storm": 0}
        """Findings folded into summaries so far, by reason (for metrics)."""
        self._member_changes: list[MemberChange] = []
        """Named members joined and gone since :meth:`take_member_changes`."""
        self._resolved_rows: dict[tuple[AlertType, _Member], MemberRow] = {}
        """The members of summaries a person resolved while they were members, their rows
        left in the alert store: taken back by :meth:`resume` for :meth:`held`, their rows
        taken out when they clear."""
        self._resumed: dict[_Key, tuple[int, _Summary]] = {}
        """Per summary taken back by :meth:`resume`, the count its alert said, and it."""

    @property
    def summaries(self) -> int:
        """Summary alerts with members now."""
        return len(self._summaries)

    def summaries_of(self, site: str, bed: str) -> list[str]:
        """The incident keys (:func:`summary_incident`) of the summaries that name a member on
        ``site``/``bed`` now (a device of the bed, or one of its conditions), in order of their
        first such member; none for a bed without. Costs the bed's summaries, not their
        members. Event loop only, as :meth:`filter`."""
        held = self._beds.get((site, bed))
        return [summary_incident(*key) for key in held] if held else []

    def member_since(self, alert_type: AlertType, site: str, bed: str, episode: str
                     ) -> int | None:
        """When the condition of a named member (``episode`` on ``site``/``bed``, of
        ``alert_type``) of a summary started (its finding's ``started_at``: for
        ``device_offline``, the device's last sign of life), None if it is no such member.
        Costs the bed's summaries. Event loop only, as :meth:`filter`."""
        for key in self._beds.get((site, bed), ()):
            summary = self._summaries.get(key)
            if key[1] is alert_type and summary is not None:
                held = summary.held.get((site, bed, episode))
                if held is not None:
                    return held[0]
        return None

    def filter(self, findings: Sequence[Finding], now_ms: int) -> list[Finding]:
        """``findings`` with the unregistered and storming ones replaced by one finding per
        summary they changed (after the others, in order). Event loop only."""
        if all(f.type in PASSED for f in findings):
            return list(findings)
        incoming = self._new_openings(findings)
        passed: list[Finding] = []
        changed: dict[_Key, _Summary] = {}
        for f in findings:
            if self._passes(f):
                passed.append(f)
                continue
            summary = self._route(f, now_ms, incoming)
            if summary is None:
                passed.append(f)
            elif summary is not _UNCHANGED:
                changed[(summary.site, summary.type)] = summary
        return passed + [self._finding(s, now_ms) for s in changed.values()]

    def take_member_changes(self) -> list[MemberChange]:
        """The named members joined and gone since the last call, in order, for the alert
        store (:meth:`~alerts.engine.AlertEngine.stage_members`, written with the changes
        they go with). Event loop only."""
        changes, self._member_changes = self._member_changes, []
        return changes

    def held(self, alerts: Sequence[Alert]) -> list[Finding]:
        """The conditions raised and not cleared, as the ``active`` findings that raised them
        (for the detectors after a restart: :meth:`~gateway.detect.alerting.AlertingStage.
        resume_detectors`): of ``alerts`` (the open ones, and those resolved since the
        detectors' snapshot: a person may resolve an alert whose condition holds, and a
        detector that forgot raising it would raise it anew), those not cleared, emergencies
        and summaries aside; every named member of every summary; and the members of the
        summaries a person resolved while they were members."""
        held = [_held(alert) for alert in alerts
                if alert.cleared_at is None
                and alert.type not in PASSED and alert.evidence.get(SUMMARY) is not True]
        for (alert_type, (site, bed, episode)), row in self._resolved_rows.items():
            at = row.started_at if row.started_at is not None else 0
            held.append(Finding(
                type=alert_type, site=site, bed=bed, at=at,
                # Not LOW: that is a device offline's note of a replacement under way, raised
                # again to its kind's severity when the window ends.
                severity=Severity.MEDIUM, episode=episode, active=True, started_at=at,
                evidence={"kind": row.kind} if row.kind else {}))
        for summary in self._summaries.values():
            for member in summary.members:
                site, bed, episode = member
                started, kind = summary.held.get(member, (None, ""))
                at = started if started is not None else summary.started_at
                held.append(Finding(
                    type=summary.type, site=site, bed=bed, at=at, severity=summary.severity,
                    episode=episode, active=True, started_at=at,
                    evidence={"kind": kind} if kind else {}))
        return held

    def resumed_corrections(self, now_ms: int) -> list[Finding]:
        """The summaries taken back whose count differs from what their alert said (members
        gone in the last moments before a stop, their summary's update not yet written), as
        updates; each once."""
        corrected = [self._finding(summary, now_ms)
                     for count, summary in self._resumed.values() if summary.count != count]
        self._resumed.clear()
        return corrected

    def resume(self, alerts: Sequence[Alert],
               members: Mapping[str, Sequence[MemberRow]] | None = None) -> None:
        """Take back the open summaries and individual alerts (after a restart); ``members``:
        the alert store's :meth:`~alerts.store.AlertStore.summary_members` (every member by
        name, and only they: the alert's count and names may be a few seconds older; for a
        summary written before the table, those the evidence names and the rest by count). The
        members of summaries no longer open (a person resolved them) are kept for
        :meth:`held`, and their rows until each clears (a second ``kill -9`` must find them
        too)."""
        listed = members is not None  # the caller holds the store's rows (empty or not)
        members = members or {}
        taken: set[str] = set()
        for alert in alerts:
            if alert.status is AlertStatus.RESOLVED or alert.type in PASSED:
                continue
            key, _ = split_incident(alert.incident)
            site, bed, _, episode = key.split("/", 3)
            if alert.type in SITE_FOLDED and not self._unregistered_member(
                    alert.type, (site, bed, episode)):
                continue  # a listed site's own: its findings pass through
            if not (alert.evidence.get(SUMMARY) is True and bed == "" and episode == EPISODE):
                self._remember((alert.type, (site, bed, episode)))
                continue
            summary = _Summary(site=site, type=alert.type, severity=alert.severity,
                               started_at=alert.opened_at)
            rows = members.get(key, ())
            taken.add(key)
            kept = alert.evidence.get("member_reasons")
            kept = kept if isinstance(kept, dict) else {}
            stored = listed and (bool(rows) or alert.evidence.get(MEMBERS_STORED) is True)
            labels = {} if stored else dict.fromkeys(map(str, alert.evidence.get("members", [])))
            if not stored:
                labels.update(dict.fromkeys(map(str, kept)))  # those beyond the listed too
            for label in labels:
                member = self._parse(site, str(label))
                if member is not None and member not in summary.members:
                    reasons = kept.get(str(label))
                    self._add(summary, member, self._unregistered_member(alert.type, member),
                              tuple(map(str, reasons)) if isinstance(reasons, list) else (),
                              record=False)
            for row in rows:
                member = self._parse(site, row.member)
                if member is not None and member not in summary.members:
                    reasons = kept.get(row.member)
                    self._add(summary, member, row.unregistered,
                              tuple(map(str, reasons)) if isinstance(reasons, list) else (),
                              started_at=row.started_at, kind=row.kind, record=False)
                elif member is not None:
                    summary.held[member] = (row.started_at, row.kind)
            count = alert.evidence.get("count")
            if isinstance(count, int):
                # Every member is named in ``members`` (up to MEMBERS_KEPT): counting the rest
                # again would count twice those the detectors raise again.
                counted = MEMBERS_KEPT if stored else len(summary.members)
                summary.anonymous = max(0, count - max(counted, len(summary.members)))
                self._resumed[(site, alert.type)] = (count, summary)
            if summary.count:
                self._summaries[(site, alert.type)] = summary
        gone = [key for key in members if key not in taken]
        for key in gone:
            site, _, type_name, _ = key.split("/", 3)
            try:
                alert_type = AlertType(type_name)
            except ValueError:
                continue
            for row in members[key]:
                member = self._parse(site, row.member)
                if member is not None:
                    self._resolved_rows[(alert_type, member)] = row

    # --- routing ----------------------------------------------------------------------------

    def _new_openings(self, findings: Sequence[Finding]) -> dict[_Key, int]:
        """Per site and type, the registered conditions that would open an alert now."""
        incoming: dict[_Key, int] = {}
        for f in findings:
            if not f.active or self._passes(f):
                continue
            member = (f.site, f.bed, f.episode)
            if (f.type, member) in self._individual or self._unregistered(f):
                continue
            key = (f.site, f.type)
            summary = self._summaries.get(key)
            if summary is None or member not in summary.members:
                incoming[key] = incoming.get(key, 0) + 1
        return incoming

    def _route(self, f: Finding, now: int, incoming: dict[_Key, int]) -> _Summary | None:
        """The summary ``f`` changed (:data:`_UNCHANGED`: one it belongs to, unchanged), or
        None: ``f`` goes to the engine as it is."""
        member = (f.site, f.bed, f.episode)
        unregistered = self._unregistered(f)
        key = (self._site_of(f.site) if unregistered else f.site, f.type)
        summary = self._summaries.get(key)
        if not f.active:
            if self._resolved_rows and (row := self._resolved_rows.pop((f.type, member), None)):
                self._member_changes.append(MemberGone(row.incident_key, row.member))
            if summary is not None and member in summary.members:
                self._remove(summary, member)
                return self._after_removal(key, summary)
            if (summary is not None and summary.anonymous
                    and (f.type, member) not in self._individual):
                summary.anonymous -= 1
                return self._after_removal(key, summary)
            self._individual.pop((f.type, member), None)
            return None
        if summary is not None and member in summary.members:
            changed = _reasons(f) not in ((), summary.reasons.get(member))
            if changed:
                summary.reasons[member] = _reasons(f)
            if f.severity.rank < summary.severity.rank:
                summary.severity = f.severity
                return summary
            return summary if changed else _UNCHANGED
        if (f.type, member) in self._individual:
            # An update of its own alert: registered, or opened before it would be folded (a
            # made-up site's ``site_offline`` from before a restart), which then clears too.
            return None
        if not unregistered:
            storming = self._storming(key, summary, now, incoming)
            incoming[key] = incoming.get(key, 1) - 1  # decided: an opening, or a member
            if not storming:
                self._remember((f.type, member))
                self._openings.setdefault(key, deque(maxlen=self.threshold)).append(now)
                return None
        if summary is None:
            summary = self._summaries[key] = _Summary(
                site=key[0], type=f.type, severity=f.severity,
                started_at=f.started_at if f.started_at is not None else f.at)
            log.warning("alerts.summary_opened site=%s type=%s reason=%s; one alert for the "
                        "site and type, its members listed in the evidence", key[0],
                        f.type.value, "unregistered" if unregistered else "storm")
        elif not unregistered and not summary.storming:
            log.warning("alerts.storm site=%s type=%s threshold=%d window_s=%d; further "
                        "alerts of this type join the site's summary", key[0], f.type.value,
                        self.threshold, self.window_ms // 1000)
        if f.severity.rank < summary.severity.rank:
            summary.severity = f.severity
        kind = f.evidence.get("kind") if f.type in DEVICE_TYPES and f.evidence else None
        self._add(summary, member, unregistered, _reasons(f),
                  started_at=f.started_at if f.started_at is not None else f.at,
                  kind=kind if isinstance(kind, str) else "")
        self.summarised["unregistered" if unregistered else "storm"] += 1
        return summary

    def _storming(self, key: _Key, summary: _Summary | None, now: int,
                  incoming: dict[_Key, int]) -> bool:
        if summary is not None and summary.storming:
            return True
        opened = self._openings.get(key)
        recent = sum(1 for at in opened if now - at <= self.window_ms) if opened else 0
        return recent + incoming.get(key, 0) > self.threshold

    def _after_removal(self, key: _Key, summary: _Summary) -> _Summary:
        if not summary.count:
            del self._summaries[key]
            if opened := self._openings.get(key):
                opened.clear()  # the storm is over: count afresh
        return summary

    # --- registry -----------------------------------------------------------------------------

    def _passes(self, f: Finding) -> bool:
        """Whether ``f`` goes to the engine untouched: an emergency, the gateway's health, or
        a site-level finding of a listed site."""
        return f.type in PASSED or (f.type in SITE_FOLDED and not self._unregistered(f))

    def _unregistered(self, f: Finding) -> bool:
        return self._unregistered_member(f.type, (f.site, f.bed, f.episode))

    def _unregistered_member(self, alert_type: AlertType, member: _Member) -> bool:
        if self.registry is None:
            return False
        site, bed_id, episode = member
        if alert_type in SITE_TYPES:  # about the site (bed empty): unlisted if the site is
            return self._site_of(site) == UNREGISTERED_SITES
        bed = self.registry.bed(site, bed_id)
        if bed is None or bed.auto_registered:
            return True
        if alert_type in DEVICE_TYPES and episode:
            device = bed.devices.get(episode)
            return device is None or device.auto_registered
        return False

    def _site_of(self, site: str) -> str:
        """The site of an unregistered member's summary."""
        return site if self._sites is None or site in self._sites else UNREGISTERED_SITES

    # --- members ------------------------------------------------------------------------------

    def _add(self, summary: _Summary, member: _Member, unregistered: bool,
             reasons: tuple[str, ...] = (), *, started_at: int | None = None, kind: str = "",
             record: bool = True) -> None:
        """``record``: a member joining now (not one taken back), for the alert store."""
        if len(summary.members) >= MEMBERS_KEPT:
            summary.anonymous += 1
            return
        summary.members[member] = unregistered
        summary.unregistered += unregistered
        summary.held[member] = (started_at, kind)
        if record:
            self._member_changes.append(MemberRow(
                summary_incident(summary.site, summary.type), self._label(summary.site, member),
                unregistered, started_at, kind))
        if reasons:
            summary.reasons[member] = reasons
        site, bed, _ = member
        if bed:  # a site-level member (a made-up site) names no bed
            held = self._beds.setdefault((site, bed), {})
            key = (summary.site, summary.type)
            held[key] = held.get(key, 0) + 1

    def _remove(self, summary: _Summary, member: _Member) -> None:
        summary.unregistered -= summary.members.pop(member)
        summary.reasons.pop(member, None)
        summary.held.pop(member, None)
        self._member_changes.append(MemberGone(summary_incident(summary.site, summary.type),
                                               self._label(summary.site, member)))
        site, bed, _ = member
        held = self._beds.get((site, bed))
        key = (summary.site, summary.type)
        if held is not None and key in held:
            held[key] -= 1
            if not held[key]:
                del held[key]
                if not held:
                    del self._beds[(site, bed)]

    def _remember(self, item: tuple[AlertType, _Member]) -> None:
        if len(self._individual) >= INDIVIDUAL_KEPT:
            del self._individual[next(iter(self._individual))]
        self._individual[item] = None

    def _label(self, summary_site: str, member: _Member) -> str:
        site, bed, episode = member
        parts = (bed, episode) if summary_site != UNREGISTERED_SITES else (site, bed, episode)
        return "/".join(p for p in parts if p)

    def _parse(self, summary_site: str, label: str) -> _Member | None:
        """The member a label names; the episode is the rest after the site and bed (which
        hold no ``/``): a service anomaly's ``caregiver/visit`` too. Under
        :data:`UNREGISTERED_SITES`, a label of one part is a site (a site-level member)."""
        if summary_site == UNREGISTERED_SITES:
            parts = label.split("/", 2)
            if len(parts) == 1:
                return (parts[0], "", "") if parts[0] else None
            if len(parts) not in (2, 3):
                return None
            return parts[0], parts[1], parts[2] if len(parts) == 3 else ""
        parts = label.split("/", 1)
        return summary_site, parts[0], parts[1] if len(parts) == 2 else ""

    def _finding(self, summary: _Summary, now: int) -> Finding:
        count = summary.count
        named = [m for m, _ in zip(summary.members, range(self.listed), strict=False)]
        listed = [self._label(summary.site, m) for m in named]
        with_reasons = [m for m, _ in zip(summary.reasons, range(REASONS_LISTED),
                                          strict=False)]
        reason_counts: dict[str, int] = {}
        for reasons in summary.reasons.values():
            for reason in reasons:
                reason_counts[reason] = reason_counts.get(reason, 0) + 1
        unregistered = summary.unregistered
        storm = len(summary.members) - unregistered
        beds = len({(site, bed) for site, bed, _ in summary.members if bed})
        what = summary.type.value.replace("_", " ")
        where = ("unregistered sites" if summary.site == UNREGISTERED_SITES
                 else f"site {summary.site}")
        if summary.type in SITE_TYPES:  # a member is a site, only ever unregistered
            on = noun = "site" if count == 1 else "sites"
        elif summary.type in DEVICE_TYPES:  # a member is a device (its id is the episode)
            on = noun = "device" if count == 1 else "devices"
        else:  # a member is a bed's condition (a visit, an episode): "12 ... on 1 bed"
            name = what if summary.type is AlertType.SERVICE_ANOMALY else f"{what} alert"
            noun = name if count == 1 else _PLURAL.get(summary.type, f"{name}s")
            least = "at least " if summary.anonymous else ""  # the beds of those counted only
            on = f"{noun} on {least}{beds} {'bed' if beds == 1 and not least else 'beds'}"
        if not count:
            text = f"{what} on {where}: every member cleared"
        elif summary.type in SITE_TYPES:  # "site offline on 330 unregistered sites"
            text = f"{what} on {count} unregistered {noun}"
        elif storm == 0:
            text = (f"{count} unregistered {noun} on {where}: {what}" if noun == on
                    else f"{count} unregistered {on} on {where}")
        elif unregistered == 0:
            text = (f"Alert storm on {where}: {what} on {count} {noun}" if noun == on
                    else f"Alert storm on {where}: {count} {on}")
        else:
            text = f"{what} on {where}: {count} {on} ({unregistered} unregistered)"
        return Finding(
            type=summary.type, site=summary.site, bed="", at=now, severity=summary.severity,
            episode=EPISODE, active=count > 0, started_at=summary.started_at, summary=text,
            evidence={SUMMARY: True, MEMBERS_STORED: True, "count": count, "beds_count": beds,
                      "unregistered": unregistered, "storm": storm, "members": listed,
                      "members_omitted": count - len(listed),
                      "member_reasons": {self._label(summary.site, m):
                                         list(summary.reasons[m]) for m in with_reasons},
                      "member_reasons_omitted": len(summary.reasons) - len(with_reasons),
                      "reason_counts": reason_counts,
                      "storm_threshold": self.threshold,
                      "storm_window_s": self.window_ms // 1000})


_PLURAL: Final = {AlertType.SERVICE_ANOMALY: "service anomalies"}


def _held(alert: Alert) -> Finding:
    """The condition an open alert stands for, as the ``active`` finding that raised it."""
    key, _ = split_incident(alert.incident)
    episode = key.split("/", 3)[3] if key.count("/") >= 3 else ""
    started = alert.evidence.get("started_at")
    return Finding(type=alert.type, site=alert.site, bed=alert.bed, at=alert.updated_at,
                   severity=alert.severity, episode=episode, active=True,
                   started_at=started if isinstance(started, int) else alert.opened_at,
                   summary=alert.summary, evidence=alert.evidence)


def _reasons(f: Finding) -> tuple[str, ...]:
    """The reasons a finding's evidence names (a ``service_anomaly``'s), or none."""
    reasons = f.evidence.get("reasons") if f.evidence else None
    return tuple(map(str, reasons)) if isinstance(reasons, list | tuple) else ()


_UNCHANGED: Final = _Summary(site="", type=AlertType.DEVICE_OFFLINE, severity=Severity.LOW,
                             started_at=0)
"""Returned by routing for a finding that belongs to a summary and changes nothing in it."""
