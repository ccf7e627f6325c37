"""What one badge may add to the service log: a budget of rows per badge (token buckets).

Every badge check-in or check-out the service log takes is a row for good (chained: the log is
append-only and hash-chained, nothing may delete it) or for months (set aside, when it
contradicts its visit). A caregiver's badge sends two a visit, visits minutes apart, some 30
visits (60 events) on a long day, and an app that was offline sends a day's backlog at once;
a broken or hostile badge, which the broker's ACL lets publish on its site's bed topics, sent
5,000 in 0.6 s (6.1 MB of log). So a badge adds rows from a token bucket
(:class:`BadgeBudget`): ``burst_events`` at once (a day's backlog, with room to spare), then
``events_per_day``. Badges the registry does not list (made-up ids, which the gateway accepts
and flags) each have such a bucket too, and share one more (``unlisted_burst_events``,
``unlisted_events_per_day``), so any number of made-up ids adds no more than that together. In
any 24 hours a badge adds at most ``burst_events + events_per_day`` events to the log, and the
unlisted badges together at most ``unlisted_burst_events + unlisted_events_per_day``; each
visit checked in and out also gets its service record, one row more per two events (revised
when a late finding changes its verdict). A rate of 0 lifts that limit.

What costs is an event that would add a row. The service log asks the budget inside its
append's transaction (:class:`alerts.servicelog.RowBudget`) once it has recognised a
redelivery: the same message (device, ``seq``, device time), recorded or set aside before,
adds no row and costs nothing (the pipeline drops most such duplicates earlier). The charge is
made once that transaction is committed (:meth:`BadgePlan.apply`), so a commit retried after a
failure is decided again and charged once. Time is the events' receipt time, never the clock
of the moment: the same traffic is decided the same way, and tests need no clock.

What the budget did not admit is kept for the stage in front of the service log
(:mod:`gateway.ingest.visitrecords`) to dead-letter (:meth:`BadgeBudget.take_refused`), and each
badge over budget is flagged for its ``sensor_fault`` finding and log lines
(:meth:`BadgeBudget.reports`): due when it goes over, again at most once per
:data:`REPORT_INTERVAL_MS` while more of its events are, and its clear once
:data:`CLEAR_AFTER_MS` have passed (receipt time of the traffic that follows) with none. Flags
of open findings are taken back after a restart (:meth:`BadgeBudget.resume`).

Memory is bounded: a bucket per listed badge (the registry's), at most :data:`MAX_UNLISTED`
unlisted ones (the least recently charged forgotten first: a forgotten id starts again with a
full bucket, and the shared bucket still bounds them all) and at most :data:`MAX_FLAGGED`
badges flagged at once (beyond, only counted).

>>> from alerts import VisitEvent
>>> def badge(i, device="bg-1"):
...     return VisitEvent(origin=f"o-{i}", at=i, site="s", bed="b", caregiver="c",
...                       visit=f"v-{i}", event="check_in", source="badge", device=device)
>>> budget = BadgeBudget(events_per_day=2, burst_events=3, unlisted_events_per_day=0,
...                      unlisted_burst_events=1)
>>> plan = budget.plan(0)
>>> [plan.admit(badge(i)) for i in range(4)] + [plan.admit(badge(9, "bg-2"))]
[True, True, True, False, True]
>>> plan.apply()
>>> budget.plan(DAY_MS // 2).admit(badge(5))  # half a day later: one event more
True
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from alerts import Alert, AlertStatus, AlertType, VisitEvent
from gateway.storage.sourcebudget import Bucket, refilled

REASON: Final = "badge_rate_exceeded"
"""Dead-letter reason (and the finding's fault) of a badge event over its budget."""
DAY_MS: Final = 86_400_000
MAX_UNLISTED: Final = 10_000
"""Buckets of unlisted badges remembered (least recently charged forgotten first)."""
MAX_FLAGGED: Final = 10_000
"""Badges followed at once for findings and logs; beyond, their events are only counted."""
REPORT_INTERVAL_MS: Final = 60_000
"""A badge's finding is updated, and it is logged, at most this often (receipt time)."""
CLEAR_AFTER_MS: Final = 3_600_000
"""A badge's finding clears this long after the last of its events over budget."""
SCAN_INTERVAL_MS: Final = 1_000
"""The flags are looked over at most this often (receipt time) unless some went over since:
not on every batch, however many badges a flood of made-up ids flagged."""

Place = Callable[[str], tuple[str, str] | None]
"""A device id to the site and bed the registry lists it at; None: not listed; :data:`ANYWHERE`:
listed, at the site and bed its events name (a station without a registry)."""
ANYWHERE: Final = ("", "")




@dataclass(slots=True)
class BadgeFlag:
    """A badge with events over budget: what its finding and its log lines say."""

    site: str
    bed: str
    device: str
    listed: bool
    first_ms: int
    last_ms: int | None
    """Receipt time of its last event over budget; None: taken back after a restart (set
    at the first batch after it)."""
    over: int = 0
    reported: int = -1
    """``over`` as of its last finding; -1: no finding yet."""
    reported_ms: int = 0
    unlogged: int = 0
    logged_ms: int | None = None


@dataclass(slots=True)
class BadgePlan:
    """One commit's decisions (:class:`alerts.servicelog.RowPlan`): charged by :meth:`apply`
    only, once the service log's transaction is committed."""

    budget: BadgeBudget
    now_ms: int
    buckets: dict[str, Bucket] = field(default_factory=dict)
    shared: Bucket | None = None
    refused: list[tuple[VisitEvent, tuple[str, str] | None]] = field(default_factory=list)
    """Events not admitted, with the place the registry lists their badge at."""

    def admit(self, event: VisitEvent) -> bool:
        b = self.budget
        if event.source != "badge" or event.device is None:
            return True
        place = b.place(event.device)
        if place is not None:
            ok = self._take(event.device, b.events_per_day, b.burst_events)
        else:
            own = self._bucket(f"{event.site}/{event.device}", b.events_per_day,
                               b.burst_events)
            shared = self._shared()
            ok = ((own is None or own.tokens >= 1)
                  and (shared is None or shared.tokens >= 1))
            if ok:
                for bucket in (own, shared):
                    if bucket is not None:
                        bucket.tokens -= 1
        if not ok:
            self.refused.append((event, place))
        return ok

    def apply(self) -> None:
        self.budget.apply(self)

    def _take(self, key: str, per_day: float, burst: int) -> bool:
        bucket = self._bucket(key, per_day, burst)
        if bucket is None:
            return True
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _bucket(self, key: str, per_day: float, burst: int) -> Bucket | None:
        if not per_day:
            return None
        bucket = self.buckets.get(key)
        if bucket is None:
            known = self.budget.bucket(key)
            bucket = self.buckets[key] = _refilled(known, self.now_ms, per_day, burst)
        return bucket

    def _shared(self) -> Bucket | None:
        b = self.budget
        if not b.unlisted_events_per_day:
            return None
        if self.shared is None:
            self.shared = _refilled(b.shared_bucket(), self.now_ms, b.unlisted_events_per_day,
                                    b.unlisted_burst_events)
        return self.shared


def _refilled(known: Bucket | None, now_ms: int, per_day: float, burst: int) -> Bucket:
    """:func:`~gateway.storage.sourcebudget.refilled` at ``per_day`` tokens a day."""
    return refilled(known, now_ms, per_day / DAY_MS, burst)


@dataclass(frozen=True, slots=True)
class Report:
    """What :meth:`BadgeBudget.reports` has to say of one badge."""

    flag: BadgeFlag
    active: bool
    started_at: int


class BadgeBudget:
    """Token buckets of service-log rows per badge (module docstring). Thread-safe: planned
    and charged in the commit thread, reported on the event loop."""

    def __init__(self, *, events_per_day: float, burst_events: int,
                 unlisted_events_per_day: float, unlisted_burst_events: int,
                 place: Place | None = None, max_unlisted: int = MAX_UNLISTED,
                 max_flagged: int = MAX_FLAGGED) -> None:
        if min(events_per_day, unlisted_events_per_day) < 0 or min(
                burst_events, unlisted_burst_events, max_unlisted, max_flagged) < 1:
            raise ValueError("rates must be >= 0; bursts and bounds >= 1")
        self.events_per_day = float(events_per_day)
        self.burst_events = burst_events
        self.unlisted_events_per_day = float(unlisted_events_per_day)
        self.unlisted_burst_events = unlisted_burst_events
        self.place: Place = place if place is not None else (lambda device: None)
        self.max_unlisted = max_unlisted
        self.max_flagged = max_flagged
        self.over_budget = {"listed": 0, "unlisted": 0}
        """Events not admitted since start, by whether the registry lists their badge."""
        self._listed: dict[str, Bucket] = {}
        self._unlisted: OrderedDict[str, Bucket] = OrderedDict()
        self._shared: Bucket | None = None
        self._flags: dict[str, BadgeFlag] = {}
        self._refused: list[VisitEvent] = []
        self._next_scan_ms: int | None = None
        """When :meth:`reports` looks over the flags next; None: at its next call."""
        self._lock = threading.Lock()

    def plan(self, now_ms: int) -> BadgePlan:
        return BadgePlan(self, now_ms)

    def bucket(self, key: str) -> Bucket | None:
        with self._lock:
            return self._listed.get(key) or self._unlisted.get(key)

    def shared_bucket(self) -> Bucket | None:
        with self._lock:
            return self._shared

    def apply(self, plan: BadgePlan) -> None:
        """Charge what ``plan`` admitted; note what it did not (:meth:`take_refused`,
        :meth:`reports`)."""
        with self._lock:
            for key, bucket in plan.buckets.items():
                if "/" not in key:
                    self._listed[key] = bucket
                    continue
                self._unlisted[key] = bucket
                self._unlisted.move_to_end(key)
            while len(self._unlisted) > self.max_unlisted:
                self._unlisted.popitem(last=False)
            if plan.shared is not None:
                self._shared = plan.shared
            for event, place in plan.refused:
                self._refused.append(event)
                listed = place is not None
                self.over_budget["listed" if listed else "unlisted"] += 1
                self._flag(event, place, plan.now_ms).over += 1
            if plan.refused:
                self._next_scan_ms = None

    def _flag(self, event: VisitEvent, place: tuple[str, str] | None, now_ms: int) -> BadgeFlag:
        assert event.device is not None
        key = event.device if place is not None else f"{event.site}/{event.device}"
        flag = self._flags.get(key)
        if flag is None:
            site, bed = place if place is not None and place != ANYWHERE else (event.site,
                                                                                event.bed)
            flag = BadgeFlag(site=site, bed=bed, device=event.device,
                             listed=place is not None, first_ms=now_ms, last_ms=now_ms)
            if len(self._flags) < self.max_flagged:
                self._flags[key] = flag
        flag.last_ms = now_ms
        return flag

    def take_refused(self) -> list[VisitEvent]:
        """The events not admitted since the last call, in order."""
        with self._lock:
            refused, self._refused = self._refused, []
        return refused

    def reports(self, now_ms: int) -> list[Report]:
        """What is due at ``now_ms`` (receipt time): a badge newly over budget, one whose
        count grew (at most once per :data:`REPORT_INTERVAL_MS`), one clear
        (:data:`CLEAR_AFTER_MS` after its last event over budget)."""
        due: list[Report] = []
        with self._lock:
            scan = self._next_scan_ms
            if not self._flags or (scan is not None
                                   and scan - SCAN_INTERVAL_MS <= now_ms < scan):
                return due
            self._next_scan_ms = now_ms + SCAN_INTERVAL_MS
            for key, flag in list(self._flags.items()):
                if flag.last_ms is None:
                    flag.last_ms = flag.reported_ms = now_ms
                if now_ms - flag.last_ms >= CLEAR_AFTER_MS:
                    del self._flags[key]
                    due.append(Report(flag, False, flag.first_ms))
                elif flag.reported < 0 or (flag.over != flag.reported and
                                           now_ms - flag.reported_ms >= REPORT_INTERVAL_MS):
                    flag.unlogged += flag.over - max(flag.reported, 0)
                    flag.reported, flag.reported_ms = flag.over, now_ms
                    due.append(Report(flag, True, flag.first_ms))
        return due

    def resume(self, alerts: Iterable[Alert]) -> None:
        """Take back the badges whose findings are open (after a restart): their own alerts
        and the members of summaries (:mod:`alerts.storms`) that name :data:`REASON`; each
        clears :data:`CLEAR_AFTER_MS` after the first batch unless it goes over again."""
        for alert in alerts:
            if alert.type is not AlertType.SENSOR_FAULT or alert.status is AlertStatus.RESOLVED:
                continue
            site, bed, _, episode = alert.incident.rpartition("#")[0].split("/", 3)
            members: list[tuple[str, str, str]] = []
            if REASON in _names(alert.evidence.get("reasons")):
                members.append((site, bed, episode))
            reasons = alert.evidence.get("member_reasons")
            for label, named in (reasons.items() if isinstance(reasons, dict) else ()):
                parts = str(label).split("/")
                if REASON in _names(named) and len(parts) == 3:
                    members.append((parts[0], parts[1], parts[2]))
                elif REASON in _names(named) and len(parts) == 2:
                    members.append((site, parts[0], parts[1]))
            with self._lock:
                for member_site, member_bed, device in members:
                    listed = self.place(device) is not None
                    key = device if listed else f"{member_site}/{device}"
                    if len(self._flags) < self.max_flagged and key not in self._flags:
                        self._flags[key] = BadgeFlag(
                            site=member_site, bed=member_bed, device=device, listed=listed,
                            first_ms=alert.opened_at, last_ms=None, reported=0)
                        self._next_scan_ms = None


def _names(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []
