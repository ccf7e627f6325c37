"""Service records: each finished visit settled into one record of the hash-chained service log.

(A module over 400 lines: a record's detail and the settling that gathers it, from the visit's
alerts, judgement, storm summaries and plan, are one rule, read in one place.)

A visit's check-in and check-out are recorded as they happen (:mod:`alerts.servicelog`); the
``service_anomaly`` detector judges the visit a minute after its check-out and raises what it
finds as an alert, with its reasons and evidence (sensed time, recordings, the plan taken).
:class:`Settlement` waits ``settle_ms`` after the check-out is recorded (and after the gateway
started: the detectors judge what they missed first) and until the detector has judged the
visit, at most ``judged_within_ms`` after the check-out was recorded (or after the start: the
gateway derives it from the detector's own delays, :func:`gateway.runtime.judged_within_ms`;
past it the visit settles ``not_judged``), or longer while the detector says it still holds
the visit (``awaiting``: :meth:`ServiceAnomalyDetector.awaiting_judgement
<gateway.detect.service_anomaly.ServiceAnomalyDetector.awaiting_judgement>`, a home whose
infrared runs behind), at most ``awaited_within_ms`` (the detector's own bound and a margin:
:func:`gateway.runtime.awaited_within_ms`), so nothing waits for ever. Visits are taken in the
order of their check-outs, but one waiting holds only itself: those after it that are due
settle meanwhile (the cursor stays before the first visit waiting, and the visits after it
already settled are passed over), so a home whose sensor lags holds no other home's records.
Then it chains the visit's **service record** (``event="service"``, ``source="gateway"``,
:class:`~alerts.servicelog.ServiceEntry`), whose ``detail`` holds:

* ``verdict``: ``flagged`` with the ``reasons`` of the visit's ``service_anomaly`` alerts and
  of the detector's judgement (a finding folded into a site's storm summary raises no alert
  of the visit); else ``unverifiable`` if the detector judged it so, with why in
  ``unverifiable``: ``not_sensed`` (too few infrared samples with a people count),
  ``dropped`` (beyond ``service_open_visits_max`` open visits), ``expired`` (open a day
  without its check-out), or, with no judgement kept, ``not_judged`` (nobody checked it);
  else ``verified`` (a missing check-out cleared by the late one is no reason:
  ``checked_out_late``): only a visit judged with nothing against it is verified; a visit
  billing an item outside the catalogue is ``flagged`` ``unknown_service`` (the codes in
  ``unknown_services``) even when no detector judged it, so those minutes are held;
* the claimed times: ``check_in_at``, ``check_out_at``, ``stayed_minutes``, ``services``,
  ``claimed_minutes``;
* what the sensors saw, as the detector measured it when it judged the visit, verified or
  not (its judgement, :class:`~alerts.servicelog.JudgedVisit`, kept in the service log's file
  until settled, so a restart in between loses nothing): ``sensed_minutes`` (the caregiver
  present: more people than the household's usual; ``None`` with too few infrared samples),
  ``household_people``, ``home_empty_before``, ``infrared_samples``, ``samples_with_caregiver``;
* ``recording_required`` (the catalogue's items that must be recorded), ``recording_coverage``
  (of the visit by the clips, whether or not an item requires it) and the ``recordings``
  linked to the visit (clip, device, times, duration, sha256);
* ``plan``: the planned visit taken, the one the detector gave the visit (its judgement, else
  its alerts); for a visit it never judged, the plan :func:`alerts.plans.plan_for_visit`
  picks (the detector's rule: the visit's own caregiver's plan of the bed nearest the
  check-in, none taken by another visit's record; a substitute's visit takes none);
* ``evidence``: the check-in and check-out records (seq and hash), the alerts (ids: the
  visit's own, and the storm summary of its site a finding of the visit was folded into,
  :mod:`alerts.storms`, whose ``member_reasons`` give the visit's reasons) and
  ``judged_at``, when the detector judged the visit (absent without a judgement: its
  measurements are then the alerts' only). A record of before reads as it did. Alerts of a
  later visit under the same visit id (``visit_id_reused`` in their evidence: the log set that
  visit aside, the detector judged it as its own) are not the chained visit's.

A finding that comes after the visit was settled (a detector that caught up late), or a
judgement written after its record was chained without one (``not_judged``: the detector took
longer than ``judged_within_ms``; :meth:`~alerts.servicelog.ServiceLog.judged_after_settling`),
gives the visit a new revision when its verdict, reasons or ``unverifiable`` change (origin
``...#2``, ``supersedes`` the earlier record's seq), delivered upstream like any record: the
chain keeps both, the latest counts. The cursors (the last check-out settled, the last alert change
read) move in the transaction that chains the records, so each is settled once.

Blocking (SQLite): the gateway calls :meth:`Settlement.settle` from a worker thread.

>>> from alerts.plans import DEFAULT_CATALOGUE, Catalogue
>>> detail = service_detail(check_in=(1, "a" * 64, 0), check_out=(2, "b" * 64, 1_800_000),
...                         services=("bathing",), alerts=[], plan=None,
...                         catalogue=Catalogue.parse(DEFAULT_CATALOGUE))
>>> detail["verdict"], detail["unverifiable"], detail["claimed_minutes"]
('unverifiable', ['not_judged'], 30.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from alerts.errors import StorageError
from alerts.model import Alert, AlertChange, AlertType
from alerts.plans import PLAN_MATCH_MS, Catalogue, PlannedVisit, plan_for_visit
from alerts.servicelog import (
    SERVICE_RECORD,
    JudgedVisit,
    ServiceEntry,
    ServiceLog,
    ServiceRecord,
)
from alerts.storms import SUMMARY, UNREGISTERED_SITES

log = logging.getLogger("homecare.servicerecords")

MINUTE_MS: Final = 60_000
ALERT_LOOKBACK_MS: Final = 24 * 3_600_000
"""A visit's alerts are looked for among those opened from this long before its check-in."""
SETTLE_PER_PASS: Final = 500
"""Visits settled per :meth:`Settlement.settle` (a first pass over a long log goes in steps)."""
SETTLE_EVERY_S: Final = 30.0
"""How often :meth:`Settlement.run` looks for visits due."""
SETTLE_MS: Final = 600_000
"""How long after its check-out was recorded a visit is settled, by default (the setting
``service_record_settle_s``)."""


class AlertSource(Protocol):
    """The alert store (:class:`alerts.store.AlertStore`), as far as settling reads it."""

    def changes_since(self, seq: int, limit: int = 1000) -> list[AlertChange]: ...

    def list_alerts(self, *, type: Any = None, site: Any = None, bed: Any = None,
                    since: int | None = None, limit: int = 100) -> tuple[list[Alert], str | None]:
        ...


class Awaiting(Protocol):
    """Whether the detector still holds a visit not judged yet
    (:meth:`gateway.detect.service_anomaly.ServiceAnomalyDetector.awaiting_judgement`)."""

    def __call__(self, site: str, bed: str, caregiver: str, visit: str) -> bool: ...


class PlanSource(Protocol):
    """The plan store (:class:`alerts.planstore.PlanStore`)."""

    def get(self, site: str, plan: str) -> PlannedVisit | None: ...

    def between(self, since_ms: int, until_ms: int) -> list[PlannedVisit]: ...


def _minutes(ms: int) -> float:
    return round(ms / MINUTE_MS, 1)


def _reasons(alerts: Iterable[Alert]) -> tuple[list[str], bool]:
    """The reasons of a visit's alerts (in the order raised, each once) and whether a missing
    check-out was cleared by the late one."""
    reasons: list[str] = []
    late = False
    for alert in alerts:
        raised = [str(r) for r in alert.evidence.get("reasons") or ()]
        if raised == ["no_checkout"] and alert.cleared_at is not None:
            late = True
            continue
        late = late or bool(alert.evidence.get("checked_out_late"))
        reasons.extend(r for r in raised if r not in reasons)
    return reasons, late


NOT_JUDGED: Final = "not_judged"
"""Why a visit with no judgement kept when it is settled is ``unverifiable``."""
UNKNOWN_SERVICE: Final = "unknown_service"
"""The reason of a visit billing an item outside the service catalogue: flagged, so its
minutes are held, whoever judged it (issue #14: such items were billed at
:data:`~alerts.plans.UNKNOWN_SERVICE_MINUTES` each, and verified)."""
MEASURED: Final = ("claimed_minutes", "sensed_minutes", "household_people", "home_empty_before",
                   "infrared_samples", "samples_with_caregiver", "recording_coverage",
                   "recordings")
"""What a record takes from the detector's judgement of the visit (else from its alerts)."""


def plan_out(plan: PlannedVisit | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {"plan": plan.plan, "caregiver": plan.caregiver,
            "window": f"{plan.date} {plan.start}-{plan.end}", "start_at": plan.start_ms,
            "end_at": plan.end_ms, "services": list(plan.services),
            "cancelled": plan.cancelled}


def service_detail(*, check_in: tuple[int, str, int], check_out: tuple[int, str, int],
                   services: Sequence[str], alerts: Sequence[Alert],
                   plan: PlannedVisit | None, catalogue: Catalogue,
                   judged: JudgedVisit | None = None,
                   summaries: Sequence[tuple[Alert, Sequence[str]]] = ()) -> dict[str, Any]:
    """The ``detail`` of a visit's service record (module docstring). ``check_in`` and
    ``check_out``: each record's ``(seq, hash, at)``; ``alerts``: the visit's
    ``service_anomaly`` alerts, oldest first; ``judged``: the detector's judgement of it;
    ``summaries``: the storm summaries a finding of the visit was folded into, each with the
    visit's reasons it lists."""
    reasons, late = _reasons(alerts)
    for _, listed in summaries:
        reasons.extend(str(r) for r in listed if str(r) not in reasons)
    if judged is not None:
        # The detector's own reasons count even when its finding raised no alert of this
        # visit: folded into a site's storm summary (alerts.storms) with the others of a busy
        # hour, it would otherwise settle the visit as verified.
        reasons.extend(r for r in map(str, judged.measured.get("reasons") or ())
                       if r not in reasons)
    unknown = list(dict.fromkeys(c for c in services if c not in catalogue))
    if unknown and UNKNOWN_SERVICE not in reasons:  # a visit no detector judged, too
        reasons.append(UNKNOWN_SERVICE)
    evidence: dict[str, Any] = {}
    for alert in alerts:
        evidence.update(alert.evidence)
    if judged is not None:
        evidence.update((k, judged.measured[k]) for k in MEASURED if k in judged.measured)
    stay_ms = max(0, check_out[2] - check_in[2])
    services_minutes = catalogue.minutes(services)
    claimed = evidence.get("claimed_minutes")
    unverifiable = ([] if reasons else [NOT_JUDGED] if judged is None  # nobody checked it
                    else [str(r) for r in judged.measured.get("unverifiable") or ("not_sensed",)]
                    if judged.measured.get("verdict") == "unverifiable" else [])
    return {
        "verdict": "flagged" if reasons else "unverifiable" if unverifiable else "verified",
        "reasons": reasons,
        "unverifiable": unverifiable,
        "check_in_at": check_in[2], "check_out_at": check_out[2],
        "stayed_minutes": _minutes(stay_ms), "services": list(services),
        "services_minutes": round(services_minutes, 1),
        "claimed_minutes": claimed if claimed is not None else round(
            max(stay_ms / MINUTE_MS, services_minutes), 1),
        "sensed_minutes": evidence.get("sensed_minutes"),
        "household_people": evidence.get("household_people"),
        "home_empty_before": evidence.get("home_empty_before"),
        "infrared_samples": evidence.get("infrared_samples"),
        "samples_with_caregiver": evidence.get("samples_with_caregiver"),
        "recording_required": list(catalogue.recorded(services)),
        "recording_coverage": evidence.get("recording_coverage"),
        "recordings": list(evidence.get("recordings") or ()),
        "checked_out_late": late,
        **({"unknown_services": unknown} if unknown else {}),
        "plan": plan_out(plan),
        "evidence": {"check_in": {"seq": check_in[0], "hash": check_in[1]},
                     "check_out": {"seq": check_out[0], "hash": check_out[1]},
                     "alerts": [alert.id for alert in alerts]
                     + [summary.id for summary, _ in summaries],
                     **({"judged_at": judged.judged_at} if judged is not None else {})},
    }


class Settlement:
    """Settles finished visits into service records (module docstring)."""

    def __init__(self, log: ServiceLog, *, alerts: AlertSource, catalogue: Catalogue,
                 plans: PlanSource | None = None, settle_ms: int = SETTLE_MS,
                 started_ms: int = 0, judged_within_ms: int = 0,
                 awaiting: Awaiting | None = None, awaited_within_ms: int = 0) -> None:
        """``started_ms``: when the gateway started (its detectors judge what they missed
        before anything is settled); ``judged_within_ms``: how long after a check-out is
        recorded (or after the start) the detector may still judge the visit, so that
        settling waits for its judgement (module docstring; 0: never waits); ``awaiting``:
        whether the detector still holds a visit ``(site, bed, caregiver, visit)`` not judged
        yet (called from the worker thread :meth:`settle` runs in: it must be thread-safe and
        cheap), for which settling waits on, up to ``awaited_within_ms`` after the check-out
        was recorded (or after the start)."""
        self.log = log
        self.alerts = alerts
        self.catalogue = catalogue
        self.plans = plans
        self.settle_ms = settle_ms
        self.started_ms = started_ms
        self.judged_within_ms = judged_within_ms
        self.awaiting = awaiting
        self.awaited_within_ms = awaited_within_ms

    async def run(self, stopping: asyncio.Event, *,
                  on_settled: Callable[[], object] = lambda: None,
                  every_s: float = SETTLE_EVERY_S,
                  clock: Callable[[], float] = time.time) -> None:
        """Settle what is due every ``every_s`` in a worker thread until ``stopping``; calls
        ``on_settled`` after records were chained (upstream looks at once). Storage trouble is
        logged once, and once more when it is over; it never ends the task."""
        failing = False
        while not stopping.is_set():
            try:
                settled = await asyncio.to_thread(self.settle, int(clock() * 1000))
            except (StorageError, OSError) as exc:
                if not failing:
                    log.error("servicerecords.failing error=%s; visits are settled when the "
                              "stores can be read and written again", exc)
                failing = True
            except Exception:  # a bug must not end the task (the next round tries again)
                log.exception("servicerecords.failed; retrying")
            else:
                if failing:
                    log.info("servicerecords.resumed")
                    failing = False
                if settled:
                    on_settled()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every_s):
                    await stopping.wait()

    def settle(self, now_ms: int) -> list[ServiceRecord]:
        """Chain the service records of the visits due at ``now_ms`` and the revisions of those
        an alert came for since; returns the new records."""
        log_seq, alert_seq = self.log.settlement_cursor()
        entries: list[ServiceEntry] = []
        # Revisions first: the alert changes are read before the new records read the
        # visits' alerts, so a finding raised meanwhile (the detector's thread) is in a new
        # record or read at the next pass, never taken as read without being in a record.
        judged_late = self.log.judged_after_settling()
        alert_seq = self._revisions(alert_seq, entries, judged_late)
        if now_ms >= self.started_ms + self.settle_ms:
            log_seq = self._due(log_seq, now_ms, entries)
        if not entries and not judged_late and (
                log_seq, alert_seq) == self.log.settlement_cursor():
            return []
        recorded = self.log.append_service(entries, cursor=(log_seq, alert_seq),
                                           judged_taken=judged_late)
        return [record for record, new in recorded if new]

    def _due(self, log_seq: int, now_ms: int, entries: list[ServiceEntry]) -> int:
        """Add to ``entries`` the records of the visits due, in check-out order, up to
        :data:`SETTLE_PER_PASS`; returns the new cursor: the last check-out before the first
        visit still waiting (module docstring). A visit after a waiting one may have been
        settled at an earlier pass: it is passed over."""
        cursor, after, waiting = log_seq, log_seq, False
        while len(entries) < SETTLE_PER_PASS:
            check_outs = self.log.query(after_seq=after, event="check_out",
                                        newest_first=False, limit=SETTLE_PER_PASS)
            for check_out in check_outs:
                if check_out.recorded_at + self.settle_ms > now_ms:
                    return cursor
                after = check_out.seq
                if self._settled(check_out):  # after one that was waiting at an earlier pass
                    if not waiting:
                        cursor = check_out.seq
                    continue
                if self._judging(check_out, now_ms):
                    waiting = True  # the cursor stays before it; the others go on
                    continue
                entry = self._entry(check_out)
                if entry is not None:
                    entries.append(entry)
                if not waiting:
                    cursor = check_out.seq
                if len(entries) >= SETTLE_PER_PASS:
                    return cursor
            if len(check_outs) < SETTLE_PER_PASS:
                break
        return cursor

    def _settled(self, check_out: ServiceRecord) -> bool:
        return bool(self.log.query(
            site=check_out.site, bed=check_out.bed, caregiver=check_out.caregiver,
            visit=check_out.visit, after_seq=check_out.seq, event=SERVICE_RECORD, limit=1))

    def _judging(self, check_out: ServiceRecord, now_ms: int) -> bool:
        """Whether the detector may still judge the visit: it has not, and
        ``judged_within_ms`` has not passed since its check-out was recorded (or since the
        start), or the detector still holds the visit (``awaiting``) and
        ``awaited_within_ms`` has not passed."""
        since = max(check_out.recorded_at, self.started_ms)
        key = (check_out.site, check_out.bed, check_out.caregiver, check_out.visit)
        # Asked before the judgement is read: the detector writes it before it lets go.
        held = (self.awaiting is not None and now_ms < since + self.awaited_within_ms
                and self.awaiting(*key))
        return ((held or now_ms < since + self.judged_within_ms)
                and self.log.judged(*key) is None)

    def _revisions(self, alert_seq: int, entries: list[ServiceEntry],
                   judged_late: Sequence[tuple[str, str, str, str]] = ()) -> int:
        """Add to ``entries`` a new revision of each settled visit whose verdict changed since
        it was settled: by its service_anomaly alerts changed since ``alert_seq``, or by a
        judgement that came after it was settled (``judged_late``); returns the alert changes
        read."""
        touched: dict[tuple[str, str, str, str], None] = dict.fromkeys(judged_late)
        while True:
            changes = self.alerts.changes_since(alert_seq, 1000)
            for change in changes:
                alert = change.alert
                visit, caregiver = alert.evidence.get("visit"), alert.evidence.get("caregiver")
                if (alert.type == AlertType.SERVICE_ANOMALY and isinstance(visit, str)
                        and isinstance(caregiver, str) and not _reused(alert)):
                    touched[(alert.site, alert.bed, caregiver, visit)] = None
                elif alert.type == AlertType.SERVICE_ANOMALY and _is_summary(alert):
                    for label in _member_reasons(alert):
                        if (member := _member(alert.site, label)) is not None:
                            touched[member] = None
                alert_seq = change.seq
            if len(changes) < 1000:
                break
        pending = {(e.site, e.bed, e.caregiver, e.visit) for e in entries}
        for site, bed, caregiver, visit in touched:
            if (site, bed, caregiver, visit) in pending:
                continue
            records = self.log.query(site=site, bed=bed, caregiver=caregiver, visit=visit,
                                     newest_first=True, limit=20)
            latest = next((r for r in records if r.event == SERVICE_RECORD), None)
            check_out = next((r for r in records if r.event == "check_out"), None)
            # A visit settled after one still waiting (past the cursor) is revised alike.
            if latest is None or check_out is None or latest.detail is None:
                continue
            entry = self._entry(check_out, revision=int(latest.detail.get("revision", 1)) + 1)
            if entry is None or (entry.detail["verdict"], entry.detail["reasons"],
                                 entry.detail["unverifiable"]) == (
                    latest.detail["verdict"], latest.detail["reasons"],
                    latest.detail.get("unverifiable", [])):
                continue
            entry.detail["supersedes"] = latest.seq
            entries.append(entry)
        return alert_seq

    def _entry(self, check_out: ServiceRecord, revision: int = 1) -> ServiceEntry | None:
        site, bed, caregiver, visit = (check_out.site, check_out.bed, check_out.caregiver,
                                       check_out.visit)
        check_in = next(iter(self.log.query(site=site, bed=bed, caregiver=caregiver,
                                            visit=visit, event="check_in", limit=1)), None)
        if check_in is None:  # the chain admits no check-out without its check-in
            log.error("servicerecords.no_check_in seq=%d", check_out.seq)
            return None
        found, _ = self.alerts.list_alerts(
            type=AlertType.SERVICE_ANOMALY, site=check_out.site, bed=check_out.bed,
            since=min(check_in.at, check_in.recorded_at) - ALERT_LOOKBACK_MS, limit=1000)
        alerts = sorted((a for a in found if a.evidence.get("visit") == check_out.visit
                         and a.evidence.get("caregiver") == check_out.caregiver
                         and not _reused(a)),
                        key=lambda a: (a.opened_at, a.id))
        judged = self.log.judged(site, bed, caregiver, visit)
        summaries = self._summaries(check_out, since=min(check_in.at, check_in.recorded_at)
                                    - ALERT_LOOKBACK_MS)
        detail = service_detail(
            check_in=(check_in.seq, check_in.hash, check_in.at),
            check_out=(check_out.seq, check_out.hash, check_out.at),
            services=check_out.services or (), alerts=alerts,
            plan=self._plan(check_in, alerts, judged), catalogue=self.catalogue,
            judged=judged, summaries=summaries)
        if revision > 1:
            detail["revision"] = revision
        return ServiceEntry(site=site, bed=bed, caregiver=caregiver, visit=visit,
                            at=check_out.at, method=check_in.method,
                            services=tuple(check_out.services or ()), detail=detail,
                            revision=revision)

    def _summaries(self, check_out: ServiceRecord, *, since: int
                   ) -> list[tuple[Alert, list[str]]]:
        """The storm summaries of the visit's site (or of the unregistered sites) that list
        the visit among their members, each with the visit's reasons they list."""
        found, _ = self.alerts.list_alerts(
            type=AlertType.SERVICE_ANOMALY, site=[check_out.site, UNREGISTERED_SITES], bed="",
            since=since, limit=1000)
        key = (check_out.site, check_out.bed, check_out.caregiver, check_out.visit)
        taken = []
        for alert in sorted(found, key=lambda a: (a.opened_at, a.id)):
            if not _is_summary(alert):
                continue
            listed = _member_reasons(alert)
            reasons = next((r for label, r in listed.items()
                            if _member(alert.site, label) == key), None)
            if reasons is not None:
                taken.append((alert, reasons))
        return taken

    def _plan(self, check_in: ServiceRecord, alerts: Sequence[Alert],
              judged: JudgedVisit | None) -> PlannedVisit | None:
        """The plan the detector gave the visit (its judgement, else its alerts' evidence);
        only when it judged nothing, the plan :func:`~alerts.plans.plan_for_visit` picks, of
        those no other visit's record took: the detector's rule, so both take the same."""
        if self.plans is None:
            return None
        if judged is not None and "plan" in judged.measured:
            taken = judged.measured["plan"]
            return self.plans.get(check_in.site, taken) if isinstance(taken, str) else None
        taken = next((a.evidence["plan"] for a in reversed(alerts)
                      if isinstance(a.evidence.get("plan"), str)), None)
        if taken is not None:
            return self.plans.get(check_in.site, taken)
        if any("plan" in a.evidence for a in alerts):  # the detector gave it none
            return None
        others = {(r.detail["plan"] or {}).get("plan") for r in self.log.query(
            site=check_in.site, bed=check_in.bed, since=check_in.at - 2 * PLAN_MATCH_MS,
            until=check_in.at + 2 * PLAN_MATCH_MS, event=SERVICE_RECORD, limit=1000)
            if r.detail is not None and isinstance(r.detail.get("plan"), dict)
            and (r.caregiver, r.visit) != (check_in.caregiver, check_in.visit)}
        return plan_for_visit(self.plans.between(check_in.at - PLAN_MATCH_MS,
                                                 check_in.at + PLAN_MATCH_MS),
                              site=check_in.site, bed=check_in.bed,
                              caregiver=check_in.caregiver, check_in=check_in.at,
                              taken=lambda plan: plan.plan in others)


def _reused(alert: Alert) -> bool:  # a later visit's under the id (the log set it aside)
    return alert.evidence.get("visit_id_reused") is True


def _is_summary(alert: Alert) -> bool:
    return alert.bed == "" and alert.evidence.get(SUMMARY) is True


def _member_reasons(summary: Alert) -> dict[str, list[str]]:
    """A storm summary's listed members with their reasons (``bed/caregiver/visit``, or
    ``site/bed/caregiver/visit`` on the unregistered sites' summary)."""
    listed = summary.evidence.get("member_reasons")
    if not isinstance(listed, dict):
        return {}
    return {str(label): [str(r) for r in reasons] for label, reasons in listed.items()
            if isinstance(reasons, list)}


def _member(summary_site: str, label: str) -> tuple[str, str, str, str] | None:
    """``(site, bed, caregiver, visit)`` of a member label of a summary of ``summary_site``
    (ids of sites and beds hold no ``/``, nor caregiver ids: :func:`devices.person_id_problem`;
    a visit id may not either)."""
    if summary_site == UNREGISTERED_SITES:
        parts = label.split("/", 3)
        return (parts[0], parts[1], parts[2], parts[3]) if len(parts) == 4 else None
    parts = label.split("/", 2)
    return (summary_site, parts[0], parts[1], parts[2]) if len(parts) == 3 else None
