"""The service plans as the ``service_anomaly`` detector holds them: a window of them in
memory, which visit took which plan, and which plans were reported as never happened.

The plans live in the plan store (:class:`~alerts.planstore.PlanStore`, any
:class:`PlanSource`). :meth:`PlanBook.refresh` asks it for its revision at every evaluation and
reloads the plans around now only when it changed (an import through the API or by ``homecare
plans import``) or an hour has passed (the window moves on): the detector never reads the
whole store, and a store in trouble leaves it with the plans it had.

A visit takes its own caregiver's plan of its bed nearest to its check-in, within
:data:`MATCH_MS` of its window, each plan one visit (:meth:`PlanBook.match`, the rule of
:func:`alerts.plans.plan_for_visit` that the service records follow too): a substitute's
visit takes none, so it is ``unplanned`` and the plan it stood in for ``missed``. A plan is judged
as never happened only if the gateway knew of it before its window ended and was watching
when it began (:meth:`PlanBook.due_missed`): a schedule imported afterwards, or the hours
before a fresh start, say nothing about the visits the gateway did not see.

>>> book = PlanBook()
>>> book.is_planned("s1", "b1")
False
"""

from __future__ import annotations

import logging
from typing import Any, Final, Protocol

import msgspec

from alerts.errors import StorageError
from alerts.plans import PLAN_MATCH_MS, PlannedVisit, plan_for_visit
from gateway.detect._visits import Visit

log = logging.getLogger("homecare.detect.plans")

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
LOOKBACK_MS: Final = 2 * DAY_MS
LOOKAHEAD_MS: Final = DAY_MS
"""Plans whose window overlaps ``[now - LOOKBACK_MS, now + LOOKAHEAD_MS)`` are held."""
PLANNED_SPAN_MS: Final = 7 * DAY_MS
"""A bed with a plan within this of now is planned: its visits are expected to have one."""
RELOAD_MS: Final = HOUR_MS
MATCH_MS: Final = PLAN_MATCH_MS
"""A visit checked in this far from a window is still that plan's (early or late)."""
KEEP_MARKS_MS: Final = 3 * DAY_MS


class PlanSource(Protocol):
    """Where the plans come from (:class:`~alerts.planstore.PlanStore`)."""

    def revision(self) -> int: ...

    def between(self, since_ms: int, until_ms: int) -> list[PlannedVisit]: ...

    def planned_beds(self, since_ms: int, until_ms: int) -> set[tuple[str, str]]: ...


class PlanMark(msgspec.Struct, kw_only=True):
    """What the detector knows of one plan beyond the plan itself."""

    end_ms: int
    known_at: int
    """When the detector first saw the plan."""
    visit: str | None = None
    """The key of the visit that took it."""
    missed: bool = False
    """Reported as never happened."""


def plan_key(site: str, plan: str) -> str:
    return f"{site}/{plan}"


class PlanBook:
    """The plans around now, with their marks; ``source`` None: no plans at all."""

    def __init__(self, source: PlanSource | None = None) -> None:
        self.source = source
        self.plans: dict[str, PlannedVisit] = {}
        self.by_bed: dict[tuple[str, str], list[PlannedVisit]] = {}
        self.planned: set[tuple[str, str]] = set()
        self.marks: dict[str, PlanMark] = {}
        self.revision: int | None = None
        self.loaded_at: int | None = None
        self._failing = False

    def refresh(self, now_ms: int) -> None:
        """Reload the plans around ``now_ms`` if the store changed or an hour passed."""
        if self.source is None:
            return
        try:
            revision = self.source.revision()
            if (revision == self.revision and self.loaded_at is not None
                    and now_ms < self.loaded_at + RELOAD_MS):
                return
            plans = self.source.between(now_ms - LOOKBACK_MS, now_ms + LOOKAHEAD_MS)
            planned = self.source.planned_beds(now_ms - PLANNED_SPAN_MS,
                                               now_ms + PLANNED_SPAN_MS)
        except StorageError as exc:
            if not self._failing:
                self._failing = True
                log.error("detect.plans_unavailable error=%s; visits are checked against the "
                          "plans already loaded", exc)
            return
        if self._failing:
            self._failing = False
            log.info("detect.plans_available plans=%d", len(plans))
        self.plans = {plan_key(p.site, p.plan): p for p in plans}
        self.by_bed = {}
        for plan in plans:
            self.by_bed.setdefault((plan.site, plan.bed), []).append(plan)
            mark = self.marks.get(plan_key(plan.site, plan.plan))
            if mark is None:
                self.marks[plan_key(plan.site, plan.plan)] = PlanMark(end_ms=plan.end_ms,
                                                                      known_at=now_ms)
            else:
                mark.end_ms = plan.end_ms
        self.planned = planned
        self.revision, self.loaded_at = revision, now_ms

    def is_planned(self, site: str, bed: str) -> bool:
        """Whether the bed's visits are expected to follow a plan."""
        return (site, bed) in self.planned

    def plan_of(self, visit: Visit) -> PlannedVisit | None:
        """The plan ``visit`` took, if it is still there, its bed's and its caregiver's (a
        visit of a snapshot from before 2026-12-01 may hold a colleague's)."""
        if visit.plan is None:
            return None
        plan = self.plans.get(plan_key(visit.site, visit.plan))
        return plan if plan is not None and (plan.bed, plan.caregiver) == (
            visit.bed_id, visit.caregiver) else None

    def match(self, visit: Visit) -> tuple[PlannedVisit | None, bool]:
        """Give ``visit`` the plan :func:`~alerts.plans.plan_for_visit` picks (its own
        caregiver's on its bed nearest to its check-in within :data:`MATCH_MS`, not taken by
        another visit); returns the plan and whether it had been reported as never happened."""

        if visit.plan is not None:  # a plan it no longer takes (moved, or a colleague's)
            held = self.marks.get(plan_key(visit.site, visit.plan))
            if held is not None and held.visit == visit.key:
                held.visit = None
            visit.plan = None

        def taken(plan: PlannedVisit) -> bool:
            mark = self.marks.get(plan_key(plan.site, plan.plan))
            return mark is not None and mark.visit not in (None, visit.key)

        plan = plan_for_visit(self.by_bed.get((visit.site, visit.bed_id), ()),
                              site=visit.site, bed=visit.bed_id, caregiver=visit.caregiver,
                              check_in=visit.check_in, taken=taken)
        if plan is None:
            return None, False
        key = plan_key(plan.site, plan.plan)
        mark = self.marks.setdefault(key, PlanMark(end_ms=plan.end_ms, known_at=visit.check_in))
        mark.visit = visit.key
        visit.plan = plan.plan
        was_missed, mark.missed = mark.missed, False
        return plan, was_missed

    def due_missed(self, now_ms: int, grace_ms: int, watching_since: int
                   ) -> list[PlannedVisit]:
        """Plans whose window ended ``grace_ms`` ago with no visit, known before they ended,
        whose start the gateway watched; each is returned once (marked missed)."""
        due = []
        for key, plan in self.plans.items():
            mark = self.marks.get(key)
            if (plan.cancelled or mark is None or mark.visit is not None or mark.missed
                    or plan.end_ms + grace_ms > now_ms or mark.known_at > plan.end_ms
                    or plan.start_ms < watching_since):
                continue
            mark.missed = True
            due.append(plan)
        return due

    def forget_before(self, t: int) -> None:
        """Drop the marks of plans that ended before ``t``."""
        for key in [k for k, m in self.marks.items() if m.end_ms < t]:
            del self.marks[key]

    def dump(self) -> dict[str, Any]:
        return {"marks": msgspec.to_builtins(self.marks)}

    def load(self, saved: dict[str, Any]) -> None:
        self.marks.update(msgspec.convert(saved.get("marks", {}), dict[str, PlanMark]))
