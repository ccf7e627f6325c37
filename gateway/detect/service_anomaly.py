"""``service_anomaly``: a caregiver visit that the plans, the sensors or the recordings do not
confirm, and a planned visit that never happened.

(A module over 400 lines: the cross-checks judge one visit together, each reason beside the
others, with the visit's bookkeeping; what they share with nothing else lives in ``_visits``
and ``_planbook``.)

**Visits.** A visit opens with a check-in and closes with its check-out, by a badge
(``badge/event``) or by the caregiver app through the API, which the detector reads from the
service log (:meth:`ServiceAnomalyDetector.configure`, ``visit_log``), so both paths are
checked alike; the log also gives back, after a restart, the check-ins and check-outs that came
while the detectors' last snapshot was being overtaken. A visit is keyed by site, bed,
caregiver and visit id (:func:`~gateway.detect._visits.visit_key`), never by the visit id
alone. A check-out that came before its visit's check-in is held (bounded, in the snapshot) and
closes the visit when the check-in comes, if that is not later by device time: events of one
visit may arrive out of order. A check-in under the key of a visit checked out before it (or
given up) is a new visit under a visit id used before: the service log sets it aside as
``visit_id_reused`` (the supervision report lists it, flagged so), and here it is counted in
:attr:`ServiceAnomalyDetector.reused_visits`, logged (``detect.visit_id_reused``), and
followed and judged as a visit of its own, keyed apart by its check-in time
(:attr:`~gateway.detect._visits.Visit.instance`; its episode ``caregiver/visit#time``, its
findings' evidence ``visit_id_reused: true``, so settling leaves them out of the earlier
visit's record; its judgement kept under ``visit#time``,
:func:`~alerts.servicelog.reused_visit_id`: no record settles it, the supervision report
shows its reasons). At most
``open_visits_max`` visits are followed at once (the oldest open one is dropped beyond,
counted in :attr:`ServiceAnomalyDetector.dropped_visits` and logged); an open visit is given up
:data:`OPEN_VISIT_EXPIRY_MS` after its check-in; either leaves a judgement ``unverifiable``
saying ``dropped`` or ``expired``, so its service record never reads as checked; judged
visits are kept :data:`KEEP_MS` (a redelivered check-in opens nothing). Visits, recordings,
plan marks, judgements not written yet and the service-log cursor are in the detector's
snapshot, and the samples a visit checked in after them waits for (Late delivery).

**Judgements.** Every visit judged, flagged or not, leaves what was measured (the times claimed
and stayed, ``sensed_minutes`` with the caregiver present, ``household_people``,
``infrared_samples``, ``samples_with_caregiver``, the ``recordings`` linked to the visit with
clip id, device, times, duration and sha256, ``recording_coverage`` of the visit by them,
``home_empty_before``, and the ``verdict`` with its ``reasons``) as an
:class:`~alerts.servicelog.JudgedVisit`, written at the end of the evaluation that judged it to
the service log's file (:meth:`alerts.ServiceLog.record_judged`, the ``visit_log`` given to
:meth:`configure`), one transaction for the visits of that evaluation and none when there are
none. Settling reads it there into the visit's service record (:mod:`alerts.servicerecords`),
so a verified record shows what the sensors saw too. The verdict is ``flagged`` with reasons,
``verified``, or ``unverifiable`` (``unverifiable: ["not_sensed"]``): no reason, but fewer than
:data:`MIN_SENSED_SAMPLES` infrared samples with a people count during the visit (a sensor
without the optional ``people`` field, or silent), so the sensors can neither confirm the
caregiver nor show that nobody came. It raises no alert (no false alarm on an honest caregiver
whose home has an older sensor); the service record and the report say so. The reasons that
need no sensing (``stay_shorter_than_billed``, ``no_recording``, ``unknown_service``,
``outside_window``, ``unplanned``, ``overlap``) flag such a visit as any other.

A judgement that cannot be written (storage trouble, logged once) waits in memory and in the
snapshot, at most :data:`JUDGED_PENDING_MAX`, and is written with the next one; without a
``visit_log`` (replay) nothing is kept.

**The cross-checks** (evidence ``reasons``, in this order; ``anomaly`` is the first), decided
:data:`SETTLE_MS` after the check-out and once the home's infrared has come up to it (Late
delivery), so that data held up by the home network is in:

* ``nobody_sensed``: the infrared sensor counted people throughout (at least
  :data:`MIN_SENSED_SAMPLES` samples) and never more than the household's usual count (in a
  home seen empty before the check-in: never anyone);
* ``too_short``: the caregiver (more people than the household's usual count) was sensed for
  less than ``short_share`` of the time claimed, and at least :data:`SHORT_MIN_MS` less. The
  time claimed is the stay (check-in to check-out) or the billed items' minutes in the
  catalogue when longer; the sensed time is the stay times the share of samples with the
  caregiver. Without enough samples nothing was sensed: a stay that short against the billed
  items' minutes is ``stay_shorter_than_billed`` instead (the catalogue against the stay, no
  sensed presence; issue #14: it was ``too_short`` with no sensed minutes). A
  caregiver the infrared saw go (sensed, then not for ``checkout_grace``: ``no_checkout``)
  was sensed at most up to their last sample and one sample's time, however few samples came
  up to there: minutes the sensor missed are never the caregiver present (issue #14: seen at
  the check-in minute only, then 11 minutes missed, a visit billing 45 min was not
  ``too_short``);
* ``no_recording``: an item billed (or, without a check-out list, planned) must be recorded
  (catalogue) and the clips of the bed's recorders overlapping the visit cover less than
  ``recording_coverage`` of it. Evidence: every clip linked to the visit with its id,
  device, times, duration and hash;
* ``unknown_service``: an item billed at check-out is not in the service catalogue (its
  minutes are unknown, and whether it must be recorded; issue #14: billed at
  :data:`~alerts.plans.UNKNOWN_SERVICE_MINUTES` each and verified). Evidence
  ``unknown_services``; flagged, so its minutes are held;
* ``outside_window``: it began more than ``window_tolerance`` before its plan's window, or
  ended (or began) more than that after it; ``unplanned``: it took no plan although its bed
  has plans (a bed nobody plans is not judged by plans);
* ``overlap``: the same caregiver was checked in at another home (any bed or site of this
  gateway) for more than :data:`OVERLAP_TOLERANCE_MS` of it; raised on the visit checked in
  later, naming the other. An open visit there ends where the caregiver was last sensed.

Two more are raised while a visit is open or a plan is due:

* ``no_checkout``: the caregiver left (sensed, then not for ``checkout_grace``) or the visit
  has lasted ``visit_max``; a late check-out clears it, or turns it into the reasons it
  has. Only a check-out after the visit's plan window (and the tolerance), or of a visit
  with no plan, is late: the time claimed is then the billed items' alone. One within the
  window claims the stay like any other (who left early and checked out at the usual time);
* ``missed``: a plan's window ended ``missed_grace`` ago and no visit took it (episode
  ``plan:<id>``); a visit taking it later clears it.

**The household.** The caregiver is the one person more than usual. How many people usually are
at home is learnt per bed from the infrared ``people`` count outside visits, with someone home
and moving (a time-weighted average over :data:`HOUSEHOLD_TAU_MS` of the share of samples with
at least two, and at least three, people; over one half counts; a sample stands for at most
:data:`HOUSEHOLD_SAMPLE_MS`, weighed by the samples' own times as placed, so a backlog of hours
delivered in seconds is hours, a bed's first infrared coming as one backlog included; a visit's
samples, by its own times, are left out (one never checked out: up to where the caregiver was
judged gone, not for the day it stays open), and a batch's samples before a visit's are learnt
before that visit's are counted, as live): an elderly couple is two, so the spouse is never
taken for the caregiver. Samples with no motion (asleep, or still) are left out: a couple
asleep, whom the sensor counts as one for ten hours, was learnt as a household of one by
morning, and the first samples after a night with nothing learnt weighed as much as the whole
night. It starts as a household of one (the safe default of a new bed: a couple's second person
counts as a visitor for the first hours) and follows a change within a day. Once
:data:`HOUSEHOLD_EVIDENCE_MS` with someone home and moving were watched, the average is read
against the weight it was learnt with, not against the start of one: read from one, a couple
seen for eight waking hours was still a household of one, and a caregiver who never came on a
gateway's first morning was missed. A visit's samples are counted against the count at its
first sample, kept for the whole visit, and evidence names that count (issue #14: read anew at
the judgement, a couple's new bed crossing its first four hours reported two beside every
sample counted as the caregiver against one). Limits: a spouse in the sensor's view for under
about two thirds of the active day makes the count waver around one half (a visit that never
happened may then be missed), and family present for half of every waking day counts as the
household.

**A home empty before the visit.** When the resident is out and the caregiver works alone
(cleaning, cooking), the sensor counts one, the household's usual: counted as above, an honest
visit was ``nobody_sensed`` (and could be ``too_short``). So when the home was seen empty
before the check-in (every sample counting nobody, none saying someone is present, at least
:data:`EMPTY_MIN_SAMPLES` of them, none more than :data:`EMPTY_GAP_MS` apart nor that far from
the check-in or the person who ended them), for at least :data:`EMPTY_MIN_MS` up to a person
sensed up to :data:`EMPTY_ARRIVAL_MS` (15 min) before the check-in, the caregiver walking in
and starting before the badge or the app is used, or for at least :data:`EMPTY_SHORT_MS` (8
min) up to the check-in or a person sensed up to :data:`EMPTY_NEAR_MS` (5 min) before it, the
caregiver coming soon after the resident left (even when the sensor then counts nobody once or
twice before the check-in; issue #14: a caregiver sensed 8 to 12 min before the check-in, or 10
to 14 min after the resident left, was ``nobody_sensed``), anyone sensed during the visit is
the caregiver (the count expected is 0), until more people than the household's usual are seen
(the household back with the caregiver): from then on the visit is counted as above. Decided at
the visit's first sample; evidence ``home_empty_before``. A visit claimed while the resident is
out and nobody comes keeps the count at 0: still ``nobody_sensed``, as one with the household
at home, or the resident back alone more than :data:`EMPTY_ARRIVAL_MS` before the check-in
(:data:`EMPTY_NEAR_MS` after an outing under :data:`EMPTY_MIN_MS`), or out for less than
:data:`EMPTY_SHORT_MS`. Limits: the resident coming back alone during a claimed visit, or
within those bounds before it, is taken for the caregiver, so such a visit that never happened
is not flagged (nor is a caregiver gone before the resident came back seen gone); a person out
of the sensor's view for :data:`EMPTY_SHORT_MS` (a bathroom), seen again within
:data:`EMPTY_NEAR_MS` of a claimed check-in nobody followed, likewise; a sensor that counts a
still person as nobody, and says nobody is present, can make a home look empty. A check-in
known only after samples of its visit came is decided afresh from the recent samples (Late
delivery).

**Late delivery.** A home network, the gateway or its broker link down for a while: the
devices keep their messages and deliver the backlog afterwards with their device times, each
received (and so placed by the other detectors, beyond
:data:`~devices.devicetime.CLOCK_TRUST_MS`) when it comes. Placed at receipt, a visit's
check-in and check-out landed seconds apart and its samples after both: an honest visit was
``too_short``, one nobody came to was not ``nobody_sensed``. Here a visit's badge and recording
events, the app's check-ins (:func:`placed`) and the home's infrared samples (their device
time, :attr:`~gateway.detect._batch.Infrared.sent`) are placed at their device time when
received up to :data:`LATE_MS` after it (and, as before, up to ``CLOCK_TRUST_MS`` before), so
the visit delivered late is the visit delivered live. A check-out received late is judged
once the home's infrared was delivered up to it (the bed's ``sensed_to``, within
:data:`SENSED_SLACK_MS`), not before (Infrared behind: how long it waits); the caregiver is
judged gone (``no_checkout``) by the infrared as far as it was delivered, not by the clock,
and the visit's samples are counted up to there (those placed before it count whenever they
come). A check-in delivered after its home's samples (the infrared's backlog first, or the
caregiver app synced late) takes its samples from the latest
:data:`~gateway.detect._visits.RECENT_SAMPLES` of all beds
(:class:`~gateway.detect._visits.RecentSamples`), once its check-out is known (or
:data:`CATCH_UP_MS` after the check-in came). Limits: a badge whose clock runs behind by
15 minutes to :data:`LATE_MS`, live, is taken at its word (its visits are placed at its time,
as storage places its data); each device is expected to deliver its backlog in
the order it sent it, before its new messages (an MQTT QoS 1 queue does), and the samples of
a bed with two infrared sensors coming behind the other's add nothing to its household; a
backlog longer than ``visit_max`` may raise ``no_checkout`` before its check-out comes (which
then clears it), and a plan's window may be raised ``missed`` during the outage (cleared when
the visit comes); of the recent samples the snapshot keeps only those of the visits waiting
for them (:func:`~gateway.detect._visits.replay_state`: an open visit is judged alike across a
restart), so a check-in delivered after a restart counts only the samples after it.

**Infrared behind.** The home's infrared may come behind on its own while the badge or the app
is on time: a sensor that batches its samples, a slow home network. Any checked-out visit, on
time or late, waits for its home's infrared to be delivered up to its check-out (as above)
while that infrared keeps coming (a sample received within :data:`FRESH_MS`), at most
:data:`LATE_MS` after the check-out; a home whose infrared does not come is judged at once
after a check-out on time (a sensor silent, or without a people count), or
:data:`CATCH_UP_MS` after a late check-out came. A check-out that came before its home's
infrared showed the caregiver gone is judged, once that infrared shows them gone
``checkout_grace`` before it, as the live visit whose ``no_checkout`` was raised then
(counted up to there; a late check-out claims its items alone), without raising it. So a visit
is judged alike with its infrared on time or up to :data:`LATE_MS` behind (issue #14: a short
visit whose infrared came 1 to 12 minutes behind lost its ``too_short``, one 15 minutes or
more behind was judged before its infrared came, an app visit counted 2 of its 6 samples). A
visit judged after its service record was settled (``service_record_settle_s``) has that
record revised; settling asks :meth:`ServiceAnomalyDetector.awaiting_judgement` and keeps
waiting for a visit the detector still holds (up to :data:`LATE_MS` and a margin), so a home
whose infrared runs behind has each visit settled once, with its judgement. Limits: a sensor
whose messages come more than :data:`FRESH_MS` apart (batches of ten minutes or more) is not
waited for once it is silent that long; a caregiver who came back after ``checkout_grace``
away, delivered in the same batch as the absence, is not seen gone.

For example, a visit checked out after 5 minutes that bills bathing and rehab (30 minutes
each):

>>> import json
>>> from devices import decode
>>> from gateway.detect.service_anomaly import ServiceAnomalyDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = ServiceAnomalyDetector(timezone="UTC")
>>> ten_am = 1_793_613_600_000  # 2026-11-02 10:00 UTC
>>> visit = {"caregiver": "c-1", "visit": "v-1", "method": "nfc"}
>>> badge = [message("badge/bg-1/event", ts=ten_am, seq=1, event="check_in", **visit),
...          message("badge/bg-1/event", ts=ten_am + 300_000, seq=2, event="check_out",
...                  services=["bathing", "rehab"], **visit)]
>>> detector.update(badge, [ten_am, ten_am + 300_000])
>>> [finding] = detector.evaluate(ten_am + 360_000)
>>> print(finding.type, finding.severity, finding.evidence["reasons"])
service_anomaly medium ['stay_shorter_than_billed', 'no_recording']
>>> print(finding.summary)  # doctest: +ELLIPSIS
visit v-1 by c-1: checked out after 5 min; services claim 60 min; no recording of bathing, ...
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

import msgspec
import numpy as np

from alerts import (
    DEFAULT_CATALOGUE,
    Catalogue,
    Finding,
    JudgedVisit,
    PlannedVisit,
    Severity,
    StorageError,
    reused_visit_id,
)
from alerts.model import AlertType
from devices import BadgeEvent, RecordingEvent
from devices.devicetime import CLOCK_TRUST_MS
from gateway.config import Settings
from gateway.detect._base import DetectorBase, rounded
from gateway.detect._batch import Batch
from gateway.detect._planbook import PlanBook, PlanSource
from gateway.detect._table import NONE
from gateway.detect._visits import (
    Clip,
    ClipShelf,
    RecentSamples,
    Visit,
    coverage,
    replay_state,
    restore_replay,
    visit_key,
)

log = logging.getLogger("homecare.detect.service")

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
SHORT_MIN_MS: Final = 15 * MINUTE_MS
SETTLE_MS: Final = 60_000
MIN_SENSED_SAMPLES: Final = 5
"""Infrared samples needed during a visit before what they show is believed."""
FRESH_MS: Final = 10 * MINUTE_MS
"""Infrared data received within this counts as the sensor still reporting (a checked-out visit
waits for it: module docstring, Infrared behind)."""
KEEP_MS: Final = 24 * HOUR_MS
"""Judged visits (and recordings) are forgotten this long after."""
OPEN_VISIT_EXPIRY_MS: Final = 24 * HOUR_MS
OVERLAP_TOLERANCE_MS: Final = 2 * MINUTE_MS
"""Badge clocks of two homes may disagree this much."""
HOUSEHOLD_TAU_MS: Final = 12 * HOUR_MS
"""Time constant of the household's usual people count."""
HOUSEHOLD_SAMPLE_MS: Final = 5 * MINUTE_MS
"""The most time one infrared sample stands for in the household's count."""
HOUSEHOLD_EVIDENCE_MS: Final = 4 * HOUR_MS
"""Time with someone home and moving watched before the household's count is read as the
average of what was watched; until then it is read as it starts, from a household of one (a
new bed's safe default: an afternoon's visit of family alone does not make a household)."""
EMPTY_MIN_MS: Final = 15 * MINUTE_MS
"""How long the infrared must have counted nobody at home, up to the first person sensed (up to
:data:`EMPTY_ARRIVAL_MS` before the check-in) or to the check-in, for the home to be taken as
empty before the visit (the resident out): a person sensed during the visit is then the
caregiver (the count expected is 0), until the household is seen back."""
EMPTY_SHORT_MS: Final = 8 * MINUTE_MS
"""A shorter run of nobody counted, at least this long, also makes the home empty before the
visit when it lasted up to the check-in or was ended by a person sensed at most
:data:`EMPTY_NEAR_MS` before it: the caregiver coming in soon after the resident left (issue
#14: a resident gone 10 to 14 minutes before the caregiver came was ``nobody_sensed``). Under
it, a home that looks empty is a person out of the sensor's view as likely."""
EMPTY_NEAR_MS: Final = 5 * MINUTE_MS
"""How close before the check-in the person ending a run shorter than :data:`EMPTY_MIN_MS` must
be sensed to be the caregiver coming in."""
EMPTY_MIN_SAMPLES: Final = 5
"""Infrared samples, every one counting nobody, needed in that run."""
EMPTY_GAP_MS: Final = 5 * MINUTE_MS
"""The longest gap between those samples, and from the last of them to the check-in (or to
the person who ended them): a sensor silent for longer did not see the home empty."""
EMPTY_ARRIVAL_MS: Final = 15 * MINUTE_MS
"""A person sensed this long before the check-in, after :data:`EMPTY_MIN_MS` of nobody, still
leaves the home empty before it: the caregiver walking in and starting before the badge at
the door or the app is used (issue #14: 5 minutes, and a caregiver sensed 8 to 12 minutes
before the check-in was ``nobody_sensed``)."""
LATE_MS: Final = 12 * HOUR_MS
"""A visit's badge and recording events, and its home's infrared samples, delivered up to this
long after their device time (a home network, the gateway or its broker link down, then the
devices' backlog) are placed at their device time, as when they come on time (module
docstring, Late delivery)."""
CATCH_UP_MS: Final = 5 * MINUTE_MS
"""How long after a late check-out is received the visit waits for its home's infrared to be
delivered up to the check-out before it is judged, when that infrared does not come (well
within the settling's ``service_record_settle_s``, 10 min by default); while it keeps coming,
behind, the visit waits on (module docstring, Infrared behind)."""
SENSED_SLACK_MS: Final = MINUTE_MS
"""A late check-out's home infrared counts as delivered once its latest sample is this close to
the check-out (:data:`CATCH_UP_MS`)."""
JUDGED_PENDING_MAX: Final = 10_000
"""Judgements kept in memory while the service log cannot be written (the oldest dropped)."""
_EVIDENCE_WEIGHT: Final = 1.0 - float(np.exp(-HOUSEHOLD_EVIDENCE_MS / HOUSEHOLD_TAU_MS))
LOG_PAGE: Final = 1000
LOG_INTERVAL_S: Final = 60.0


@dataclass(frozen=True, kw_only=True)
class ServiceChecks:
    """The thresholds of the cross-checks (the ``service_*`` settings: :func:`service_checks`)."""

    catalogue: Catalogue = field(default_factory=lambda: Catalogue.parse(DEFAULT_CATALOGUE))
    severity: Severity = Severity.MEDIUM
    short_share: float = 0.5
    checkout_grace_ms: int = 20 * MINUTE_MS
    visit_max_ms: int = 4 * HOUR_MS
    window_tolerance_ms: int = 15 * MINUTE_MS
    missed_grace_ms: int = HOUR_MS
    recording_coverage: float = 0.5
    open_visits_max: int = 20_000

    def __post_init__(self) -> None:
        if not 0 < self.short_share < 1 or not 0 < self.recording_coverage <= 1:
            raise ValueError("short_share must be in (0, 1), recording_coverage in (0, 1]")
        if min(self.checkout_grace_ms, self.visit_max_ms, self.open_visits_max) < 1 or min(
                self.window_tolerance_ms, self.missed_grace_ms) < 0:
            raise ValueError("durations and open_visits_max must be positive")


def service_checks(settings: Settings) -> ServiceChecks:
    """The cross-checks' thresholds from the gateway's ``service_*`` settings."""
    s = settings
    return ServiceChecks(
        catalogue=Catalogue.parse(s.service_catalogue),
        severity=Severity(s.service_anomaly_severity), short_share=s.service_short_share,
        checkout_grace_ms=round(s.service_checkout_grace_s * 1000),
        visit_max_ms=round(s.service_visit_max_s * 1000),
        window_tolerance_ms=round(s.service_window_tolerance_s * 1000),
        missed_grace_ms=round(s.service_missed_grace_s * 1000),
        recording_coverage=s.service_recording_coverage,
        open_visits_max=s.service_open_visits_max)


def placed(device_ts: int, received: int) -> int:
    """Where a visit's event is placed: its device time from :data:`LATE_MS` before its receipt
    to :data:`~devices.devicetime.CLOCK_TRUST_MS` after it (a clock a little fast), else its
    receipt time (a clock wrong by more, or a backlog older than that)."""
    return device_ts if -LATE_MS <= device_ts - received <= CLOCK_TRUST_MS else received


def _run_on(run: tuple[int, int, int, int], when: int, people: int
            ) -> tuple[int, int, int, int]:
    """A bed's latest run of samples counting nobody (``since``, ``n``, ``last``, ``ended``:
    :meth:`ServiceAnomalyDetector._watch_empty`) after one more sample, in time order."""
    since, n, last, ended = run
    if people == 0:
        if since == NONE or ended != NONE or when - last > EMPTY_GAP_MS:
            if _arrival_unseen(since, n, ended, when):
                return run
            return when, 1, when, int(NONE)
        return since, n + 1, max(last, when), ended
    if since != NONE and ended == NONE:
        return since, n, last, when
    return run


def _arrival_unseen(since: Any, n: Any, ended: Any, when: Any) -> Any:
    """Whether a sample counting nobody at ``when`` is someone who just came into a home empty
    long enough (the run ``since``/``n``, ended at ``ended`` by the first person sensed) and
    whom the sensor missed once: the caregiver walking in, unseen for a moment before the
    check-in, does not start a new run (it would be too short, and the caregiver taken for the
    household). Only while the run could still make the home empty before a check-in (within
    :data:`EMPTY_ARRIVAL_MS` of a run of :data:`EMPTY_MIN_MS`, :data:`EMPTY_NEAR_MS` of a
    shorter one). Scalars or arrays alike."""
    length = ended - since
    window = np.where(length >= EMPTY_MIN_MS, EMPTY_ARRIVAL_MS, EMPTY_NEAR_MS)
    return ((ended != NONE) & (since != NONE) & (n >= EMPTY_MIN_SAMPLES)
            & (length >= EMPTY_SHORT_MS) & (when - ended <= window))


def _empty_before(run: tuple[int, int, int, int], check_in: int) -> bool:
    """Whether a bed's latest run of samples counting nobody, as it stood at a check-in, makes
    the home empty before it (module docstring, A home empty before the visit): on up to the
    check-in, at least :data:`EMPTY_SHORT_MS` long; or ended by a person sensed after at least
    :data:`EMPTY_MIN_MS` and up to :data:`EMPTY_ARRIVAL_MS` before the check-in, or after at
    least :data:`EMPTY_SHORT_MS` and up to :data:`EMPTY_NEAR_MS` before it."""
    since, n, last, ended = run
    if since == NONE or n < EMPTY_MIN_SAMPLES:
        return False
    if ended == NONE:
        return last >= check_in - EMPTY_GAP_MS and check_in - since >= EMPTY_SHORT_MS
    length = ended - since
    return ended - last <= EMPTY_GAP_MS and (
        (length >= EMPTY_MIN_MS and ended >= check_in - EMPTY_ARRIVAL_MS)
        or (length >= EMPTY_SHORT_MS and ended >= check_in - EMPTY_NEAR_MS))


class VisitRecord(Protocol):
    """What the detector reads of a service-log record (:class:`alerts.ServiceLog`)."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> int: ...
    @property
    def recorded_at(self) -> int: ...
    @property
    def site(self) -> str: ...
    @property
    def bed(self) -> str: ...
    @property
    def caregiver(self) -> str: ...
    @property
    def visit(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def method(self) -> str | None: ...
    @property
    def services(self) -> tuple[str, ...] | None: ...
    @property
    def source(self) -> str: ...


class VisitLog(Protocol):
    """The service log, read by cursor (:meth:`alerts.ServiceLog.query`)."""

    def query(self, *, since: int | None = None, after_seq: int | None = None,
              newest_first: bool = True, limit: int = 100) -> Sequence[VisitRecord]: ...

    def head(self) -> tuple[int, str]: ...


@runtime_checkable
class JudgementSink(Protocol):
    """Where judgements are kept (:meth:`alerts.ServiceLog.record_judged`)."""

    def record_judged(self, visits: Sequence[JudgedVisit]) -> None: ...


class ServiceAnomalyDetector(DetectorBase):
    name = "service_anomaly"
    alert_type = AlertType.SERVICE_ANOMALY
    severity = Severity.MEDIUM

    def _declare(self) -> None:
        b = self.beds
        b.column("two_or_more", np.float64, 0.0)
        b.column("three_or_more", np.float64, 0.0)
        """Time-weighted share of samples outside visits with at least 2 (3) people."""
        b.column("learnt", np.float64, 0.0)
        """The weight those shares were learnt with (the same average of ones), which they
        are read against once it is :data:`HOUSEHOLD_EVIDENCE_MS`'s: they start at none, and
        read alone they kept a couple a household of one for its first eight to ten waking
        hours watched (a fresh verifier's couple, a gateway's first morning)."""
        b.column("household_at", np.int64, NONE)
        """Time (as placed: device time for a late backlog) of the latest sample the household
        was learnt from."""
        b.column("empty_since", np.int64, NONE)
        """The latest run of samples counting nobody at home: the first one's time (NONE:
        none), how many (``empty_n``), the last one's (``empty_last``), and the time of the
        sample with people that ended it (``empty_ended``; NONE while it goes on)."""
        b.column("empty_n", np.int64, 0)
        b.column("empty_last", np.int64, NONE)
        b.column("empty_ended", np.int64, NONE)
        b.column("last_received", np.int64, NONE)
        b.column("sensed_to", np.int64, NONE)
        """The latest infrared sample with a people count, by its time as placed here (device
        time for a late backlog): how far the home's infrared has been delivered."""
        self.checks = ServiceChecks()
        self.book = PlanBook()
        self.clips = ClipShelf()
        self.recent = RecentSamples(preallocate=True)
        self._replay: dict[str, tuple[Visit, int]] = {}
        """Visits checked in after their home's infrared was delivered past the check-in,
        with when the check-in came: their samples are taken from :attr:`recent` once the
        check-out is known, or :data:`CATCH_UP_MS` after (:meth:`_replay_recent`)."""
        self._log: VisitLog | None = None
        self._log_cursor: int | None = None
        self._log_failing = False
        self._active: dict[str, Visit] = {}
        """Visits not judged yet, by key, in check-in order of arrival."""
        self._done: dict[str, Visit] = {}
        """Judged visits, in the order they were judged."""
        self._by_caregiver: dict[str, set[str]] = {}
        self._held_outs: dict[str, tuple[int, int, list[str]]] = {}
        """Check-outs that came before their visit's check-in, by visit key: time, device
        time and items (bounded: :meth:`_hold_check_out`)."""
        self._watching_since: int | None = None
        self._now: int | None = None
        self._pending: list[Finding] = []
        self._sink: JudgementSink | None = None
        self._judged: list[JudgedVisit] = []
        """Judgements not written yet (:meth:`_write_judged`)."""
        self._sink_failing = False
        self.dropped_visits = 0
        self._dropped_logged_at = 0.0
        self.reused_visits = 0
        """Check-ins of a new visit under the key of one checked out or given up before."""
        self._reuse: dict[str, str] = {}
        """The key of the latest visit under a reused visit id, by the id's own key."""
        self._reused_logged_at = 0.0
        self._awaiting: frozenset[tuple[str, str, str, str]] = frozenset()
        """What :meth:`awaiting_judgement` answers from: replaced whole (never changed in
        place) after each evaluation and restore, so another thread reads it as it is."""

    def configure(self, *, checks: ServiceChecks | None = None, plans: PlanSource | None = None,
                  visit_log: VisitLog | None = None) -> None:
        """The station's thresholds, its plan store and its service log (the app path); the
        gateway calls it once, before restoring the snapshot."""
        if checks is not None:
            self.checks = checks
        if plans is not None:
            self.book.source = plans
        if visit_log is not None:
            self._log = visit_log
            self._sink = visit_log if isinstance(visit_log, JudgementSink) else None

    def open_visits(self) -> list[Visit]:
        """The visits not judged yet."""
        return list(self._active.values())

    def awaiting_judgement(self, site: str, bed: str, caregiver: str, visit: str) -> bool:
        """Whether the detector holds the visit and has not written its judgement yet: open,
        checked out and about to be judged, waiting for its home's infrared
        (:meth:`_delivered`, at most :data:`LATE_MS` after its check-out), or judged but its
        judgement not written to the service log yet. For
        :class:`~alerts.servicerecords.Settlement`, which keeps waiting for such a visit
        rather than settle it ``not_judged``. Thread-safe and cheap: a set lookup on what the
        last evaluation (or the snapshot restored) left; a judgement is written before the
        visit leaves the set, so a caller who asks this first and then reads the judgement
        never misses both. A visit under a reused id (kept apart, never settled) is not
        answered for."""
        return (site, bed, caregiver, visit) in self._awaiting

    def _publish_awaiting(self) -> None:
        self._awaiting = frozenset(
            (v.site, v.bed_id, v.caregiver, v.visit) for v in self._active.values()
            if v.instance is None) | frozenset(
            (j.site, j.bed, j.caregiver, j.visit) for j in self._judged)

    # --- state --------------------------------------------------------------------------------

    def _extra_state(self) -> Any:
        return {"active": msgspec.to_builtins(list(self._active.values())),
                "done": msgspec.to_builtins(list(self._done.values())),
                "clips": msgspec.to_builtins(self.clips.dump()),
                "book": self.book.dump(), "log_cursor": self._log_cursor,
                "watching_since": self._watching_since, "dropped": self.dropped_visits,
                "reused": self.reused_visits,
                "held_outs": [[k, *held] for k, held in self._held_outs.items()],
                "judged": msgspec.to_builtins(self._judged),
                "replay": replay_state(self._replay, self.recent)}

    def _restore_extra(self, extra: Any, bed_map: Any) -> None:
        if isinstance(extra, list):
            extra = {"active": self._unkeyed(extra, bed_map), "bed_mapped": True}
        if not isinstance(extra, dict):
            return
        mapped = bool(extra.get("bed_mapped"))
        for name, into in (("active", self._active), ("done", self._done)):
            for visit in msgspec.convert(extra.get(name, []), list[Visit]):
                if visit.bed >= 0 and not mapped:
                    visit.bed = bed_map[visit.bed]
                into[visit.key] = visit
                self._by_caregiver.setdefault(visit.caregiver, set()).add(visit.key)
                if visit.instance is not None:
                    base = visit_key(visit.site, visit.bed_id, visit.caregiver, visit.visit)
                    latest = self._active.get(self._reuse.get(base, "")) or self._done.get(
                        self._reuse.get(base, ""))
                    if latest is None or (latest.instance or 0) < visit.instance:
                        self._reuse[base] = visit.key
        self.clips.load(msgspec.convert(extra.get("clips", []), list[tuple[int, list[Clip]]]),
                        bed_map)
        self.book.load(extra.get("book", {}))
        self._log_cursor = extra.get("log_cursor")
        self._watching_since = extra.get("watching_since")
        self.dropped_visits = int(extra.get("dropped", 0))
        self.reused_visits = int(extra.get("reused", 0))
        self._held_outs = {str(k): (int(t), int(ts), list(items))
                           for k, t, ts, items in extra.get("held_outs", [])}
        self._judged = msgspec.convert(extra.get("judged", []), list[JudgedVisit])
        self._replay = restore_replay(extra.get("replay"), self._active, self.recent, bed_map)
        b = self.beds
        # A snapshot of before the weight was kept: what it learnt is read as it was.
        b["learnt"][(b["learnt"] == 0.0) & (b["household_at"] != NONE)] = 1.0
        self._publish_awaiting()

    # --- taking in ----------------------------------------------------------------------------

    def evaluate(self, now_ms: int) -> list[Finding]:
        self._now = int(now_ms)
        evaluated = self._next_evaluation
        findings = super().evaluate(now_ms)
        if self._judged:
            self._write_judged()
        if self._next_evaluation != evaluated:  # after the judgements are written
            self._publish_awaiting()
        return findings

    def _write_judged(self) -> None:
        """Write the judgements waiting (module docstring, Judgements)."""
        if self._sink is None:
            self._judged.clear()
            return
        try:
            self._sink.record_judged(self._judged)
        except StorageError as exc:
            if not self._sink_failing:
                self._sink_failing = True
                log.error("detect.judgements_unwritten visits=%d error=%s; written when the "
                          "service log can be written again", len(self._judged), exc)
            del self._judged[:-JUDGED_PENDING_MAX]
            return
        if self._sink_failing:
            self._sink_failing = False
            log.info("detect.judgements_written visits=%d", len(self._judged))
        self._judged.clear()

    def _catch_up(self) -> None:
        self._read_log()
        super()._catch_up()

    def _read_log(self) -> None:
        """Check-ins and check-outs recorded in the service log since the cursor (the app's,
        and after a restart the badges' too; those seen already change nothing)."""
        if self._log is None or self._now is None:
            return
        try:
            if self._log_cursor is None:
                first = self._log.query(since=self._now - self.checks.visit_max_ms,
                                        newest_first=False, limit=1)
                self._log_cursor = (first[0].seq - 1) if first else self._log.head()[0]
            while True:
                records = self._log.query(after_seq=self._log_cursor, newest_first=False,
                                          limit=LOG_PAGE)
                for r in records:
                    self._visit_event(r.site, r.bed, None, r.caregiver, r.visit, r.event,
                                      placed(r.at, r.recorded_at), r.services, r.method,
                                      r.source, r.at, r.recorded_at)
                    self._log_cursor = r.seq
                if len(records) < LOG_PAGE:
                    break
            self._replay_recent(self._now)
        except StorageError as exc:
            if not self._log_failing:
                self._log_failing = True
                log.error("detect.service_log_unreadable error=%s; app check-ins wait until it "
                          "can be read", exc)
            return
        self._log_failing = False

    def _update(self, batch: Batch) -> None:
        keys = self.fleet.bed_keys
        for record in batch.events:
            event = record.event
            if isinstance(event, BadgeEvent):
                site, bed_id = keys[record.bed]
                self._visit_event(site, bed_id, record.bed, event.caregiver, event.visit,
                                  event.event, placed(event.ts, record.received),
                                  event.services, event.method, "badge", event.ts,
                                  record.received)
            elif isinstance(event, RecordingEvent):
                device = self.fleet.device_keys[record.device][2]
                at = placed(event.ts, record.received)
                if event.event == "recording_started":
                    self.clips.started(record.bed, device, event.clip, at)
                else:
                    self.clips.stopped(record.bed, device, event.clip, at,
                                       event.duration_s, event.sha256)
        if self._replay:
            self._replay_recent(None)
        ir = batch.infrared
        known = ~np.isnan(ir.people)
        if not known.any():
            return
        bed, people, received, t, sent = (ir.bed[known], ir.people[known], ir.received[known],
                                          ir.t[known], ir.sent[known])
        # A late backlog's samples at their device time, as the visit's badge events.
        t = np.where((sent < t) & (sent >= received - LATE_MS), sent, t)
        np.maximum.at(self.beds["last_received"], bed, received)
        np.maximum.at(self.beds["sensed_to"], bed, t)
        # For the home's emptiness, a sample counting nobody that says someone is present (a
        # person the sensor sees but does not count) counts one.
        seen = np.where((people == 0) & (ir.presence[known] == 1), 1.0, people)
        # The household learnt from samples with someone home and moving outside every visit;
        # those placed before a visit's first sample in this batch first, so that a backlog's
        # hours before a visit count for it and its hours after do not, as live.
        learn = (ir.motion[known] != 0) & (people >= 1)  # motion NaN (not reported) included
        visits = [v for v in (*self._active.values(), *self._done.values())
                  if v.bed >= 0] if learn.any() else []
        first = np.full(len(self.beds["two_or_more"]), np.iinfo(np.int64).max, np.int64)
        if visits:
            inside = self._in_visit(bed, t, visits)
            np.minimum.at(first, bed[inside], t[inside])
            learn &= ~inside
        before = learn & (t < first[bed])
        self._learn_household(bed[before], people[before], t[before])
        self._sense(bed, people, t, seen)
        after = learn & ~before
        self._learn_household(bed[after], people[after], t[after])
        self._watch_empty(bed, seen, t)
        self.recent.add(bed, t, people, seen)

    def _visit_event(self, site: str, bed_id: str, bed: int | None, caregiver: str, visit: str,
                     event: str, t: int, services: Iterable[str] | None, method: str | None,
                     source: str, device_ts: int, received: int) -> None:
        """``t``: when it happened as placed here (:func:`placed`); ``device_ts``: what the
        device said (orders one visit's events); ``received``: when it came."""
        base = visit_key(site, bed_id, caregiver, visit)
        key = self._reuse.get(base, base)  # the latest visit under this key
        found = self._active.get(key) or self._done.get(key)
        if event == "check_in":
            instance = None
            if found is not None:
                if not (t > found.check_out if found.check_out is not None
                        else t >= found.check_in + OPEN_VISIT_EXPIRY_MS):
                    return  # the same check-in again (redelivered, or read back from the log)
                self._reused(found, t)
                instance = t
            if bed is None:
                bed = (self.fleet.bed_index(site, bed_id)
                       if self.fleet.numbering.has_bed(site, bed_id) else -1)
            opened = Visit(site=site, bed_id=bed_id, bed=bed, caregiver=caregiver, visit=visit,
                           source=source, method=method, check_in=t, instance=instance)
            if instance is not None:
                key = self._reuse[base] = opened.key
            held = self._held_outs.pop(key, None)
            if held is not None and 0 <= held[1] - device_ts < OPEN_VISIT_EXPIRY_MS:
                # Its check-out came first. By the device's own interval (a clock off by hours
                # cancels out), from a check-in time not trusted (received late) too.
                opened.check_in = min(t, held[0] - (held[1] - device_ts))
                opened.check_out, opened.services = held[0], held[2]
                opened.out_received = received
            self._active[key] = opened
            self._by_caregiver.setdefault(caregiver, set()).add(key)
            sensed_to = self.beds["sensed_to"]
            if 0 <= bed < len(sensed_to) and int(sensed_to[bed]) >= opened.check_in:
                self._replay[key] = (opened, received)  # its samples came before it
            _, was_missed = self.book.match(opened)
            if was_missed:
                self._pending.append(self._missed_cleared(opened))
            self._bound(t)
        elif found is None:
            self._hold_check_out(key, t, device_ts, services)
        elif found.check_out is None and found.decided_at is None:
            found.check_out = max(t, found.check_in)
            found.services = list(services or ())
            found.out_received = received

    def _hold_check_out(self, key: str, t: int, device_ts: int,
                        services: Iterable[str] | None) -> None:
        """A check-out before its visit's check-in (a batch, a redelivery, two sessions may
        reorder a visit's events): held until the check-in comes, which it then closes if it
        is at or after it by the device's time (less than :data:`OPEN_VISIT_EXPIRY_MS`); at
        most ``open_visits_max`` held (the oldest dropped first), each for
        :data:`OPEN_VISIT_EXPIRY_MS`. Before, it was dropped and the honest visit ended as a
        missing check-out."""
        if key not in self._held_outs:
            self._held_outs[key] = (t, device_ts, list(services or ()))
        while len(self._held_outs) > self.checks.open_visits_max:
            del self._held_outs[next(iter(self._held_outs))]

    def _reused(self, earlier: Visit, t: int) -> None:
        """A check-in under the key of a visit checked out (or given up) before it: a new
        visit under the same visit id, which the service log sets aside as ``visit_id_reused``
        (:func:`alerts.servicelog.refusal`); counted and logged, and followed and judged here
        as a visit of its own (keyed apart by its check-in time, :attr:`Visit.instance`)."""
        self.reused_visits += 1
        clock = time.monotonic()
        if clock - self._reused_logged_at >= LOG_INTERVAL_S:
            self._reused_logged_at = clock
            log.warning("detect.visit_id_reused site=%s bed=%s caregiver=%s visit=%s "
                        "check_in_ms=%d earlier_check_in_ms=%d total=%d; a new visit under a "
                        "visit id used before is set aside (GET /api/v1/service-logs/refused), "
                        "judged here as its own",
                        earlier.site, earlier.bed_id, earlier.caregiver, earlier.visit, t,
                        earlier.check_in, self.reused_visits)

    def _bound(self, t: int) -> None:
        excess = len(self._active) - self.checks.open_visits_max
        if excess <= 0:
            return
        for key in list(self._active)[:excess]:
            self._give_up(self._active[key], t, "dropped")
        self.dropped_visits += excess
        clock = time.monotonic()
        if clock - self._dropped_logged_at >= LOG_INTERVAL_S:
            self._dropped_logged_at = clock
            log.warning("detect.visits_dropped total=%d open_visits_max=%d; the oldest open "
                        "visits are no longer followed", self.dropped_visits,
                        self.checks.open_visits_max)

    def _replay_recent(self, now_ms: int | None) -> None:
        """Count, from :attr:`recent`, the samples of the visits checked in after their home's
        infrared had been delivered past the check-in (a late backlog, badge after infrared;
        an app synced late): those checked out, and at ``now_ms`` those waiting
        :data:`CATCH_UP_MS`."""
        due = []
        for key, (visit, got) in list(self._replay.items()):
            if visit.decided_at is not None or visit.bed < 0:
                del self._replay[key]
            elif visit.check_out is not None or (now_ms is not None
                                                 and now_ms >= got + CATCH_UP_MS):
                del self._replay[key]
                due.append(visit)
        if not due:
            return
        bed, t, people, seen = self.recent.of([v.bed for v in due])
        for visit in due:
            self._decide_empty(visit, bed, seen, t, afresh=True)
        self._sense(bed, people, t, seen, only=due)

    def _sense(self, bed: np.ndarray, people: np.ndarray, t: np.ndarray,
               seen: np.ndarray, only: list[Visit] | None = None) -> None:
        """Count each open visit's samples (``only``: these visits'), and those with the
        caregiver (vectorised: pairs of a sample and an open visit of its bed, kept when the
        sample falls in the visit); ``seen``: the people count for the home's emptiness
        (:meth:`_watch_empty`)."""
        # Once the caregiver is judged gone (no check-out), later company at the home (family,
        # a neighbour) is not theirs: samples are counted up to ``sensed_until`` only, those
        # placed before it counted whenever they come (a sensor behind). A visit waiting for
        # its replay counts nothing yet.
        watched = [v for v in (self._active.values() if only is None else only)
                   if v.bed >= 0 and (not v.no_checkout or v.sensed_until is not None)
                   and (only is not None or v.key not in self._replay)]
        if not watched or not len(bed):
            return
        never = np.iinfo(np.int64).max
        v_bed = np.fromiter((v.bed for v in watched), np.int64, len(watched))
        v_in = np.fromiter((v.check_in for v in watched), np.int64, len(watched))
        v_out = np.fromiter((min(never if v.check_out is None else v.check_out,
                                 never if v.sensed_until is None else v.sensed_until)
                             for v in watched), np.int64, len(watched))
        order = np.argsort(v_bed, kind="stable")
        sorted_beds = v_bed[order]
        low = np.searchsorted(sorted_beds, bed, "left")
        count = np.searchsorted(sorted_beds, bed, "right") - low
        if not count.any():
            return
        sample = np.repeat(np.arange(len(bed)), count)
        offset = np.arange(len(sample)) - np.repeat(np.cumsum(count) - count, count)
        visit = order[np.repeat(low, count) + offset]
        when = t[sample]
        during = (when >= v_in[visit]) & (when < v_out[visit])
        if not during.any():
            return
        sample, visit, when = sample[during], visit[during], when[during]
        for i in np.unique(visit).tolist():
            if watched[i].empty_before is None:
                self._decide_empty(watched[i], bed, seen, t)
            if watched[i].household is None:
                watched[i].household = self._household_of(watched[i])
        counted = people[sample]
        usual = np.fromiter((v.household or 1 for v in watched), np.int64, len(watched))
        extra = counted > usual[visit]
        empty = np.fromiter((v.empty_before is True for v in watched), np.bool_, len(watched))
        if empty.any():
            # A home empty before the visit: anyone is the caregiver until the household is
            # seen back (more people than usual), as before from then on.
            back = np.fromiter((never if v.back_at is None else v.back_at for v in watched),
                               np.int64, len(watched))
            back_seen = extra & empty[visit]
            np.minimum.at(back, visit[back_seen], when[back_seen])
            extra |= empty[visit] & (counted >= 1) & (when < back[visit])
            for i in np.flatnonzero(empty & (back != never)):
                watched[i].back_at = int(back[i])
        samples = np.bincount(visit, minlength=len(watched))
        extras = np.bincount(visit[extra], minlength=len(watched))
        last = np.full(len(watched), NONE, np.int64)
        np.maximum.at(last, visit[extra], when[extra])
        for i in np.flatnonzero(samples):
            found = watched[i]
            found.samples += int(samples[i])
            if extras[i]:
                found.extra += int(extras[i])
                found.extra_last = max(int(last[i]), found.extra_last or int(last[i]))

    def _decide_empty(self, visit: Visit, bed: np.ndarray, people: np.ndarray,
                      t: np.ndarray, *, afresh: bool = False) -> None:
        """Whether the home was seen empty right up to the visit's check-in (module
        docstring, The household): decided at the visit's first sample, from the bed's latest
        run of samples counting nobody as it stood before this batch and the batch's samples
        before the check-in."""
        b = self.beds
        run = ((int(NONE), 0, int(NONE), int(NONE)) if afresh else  # from the samples alone
               (int(b["empty_since"][visit.bed]), int(b["empty_n"][visit.bed]),
                int(b["empty_last"][visit.bed]), int(b["empty_ended"][visit.bed])))
        before = (bed == visit.bed) & (t < visit.check_in)
        for when, count in sorted(zip(t[before].tolist(), people[before].tolist(),
                                      strict=True)):
            run = _run_on(run, when, count)
        visit.empty_before = _empty_before(run, visit.check_in)

    def _watch_empty(self, bed: np.ndarray, people: np.ndarray, t: np.ndarray) -> None:
        """Follow each bed's latest run of samples counting nobody (vectorised, a batch at a
        time: its samples counting nobody before its first with people extend the run or
        start one, that first one ends it, and those after its last one start the next;
        those between are left out)."""
        if not len(bed):
            return
        b = self.beds
        n = len(b["empty_since"])
        never = np.iinfo(np.int64).max
        nobody = people == 0
        first_seen = np.full(n, never, np.int64)
        np.minimum.at(first_seen, bed[~nobody], t[~nobody])
        last_seen = np.full(n, NONE, np.int64)
        np.maximum.at(last_seen, bed[~nobody], t[~nobody])
        early = nobody & (t < first_seen[bed])
        late = nobody & (t > last_seen[bed]) & (last_seen[bed] != NONE)
        since, count, last, ended = (b["empty_since"], b["empty_n"], b["empty_last"],
                                     b["empty_ended"])
        if early.any():
            e_bed = bed[early]
            beds = np.unique(e_bed)
            lo, hi = _span(e_bed, t[early], n)
            added = np.bincount(e_bed, minlength=n)
            beds = beds[~_arrival_unseen(since[beds], count[beds], ended[beds], lo[beds])]
            going = ((since[beds] != NONE) & (ended[beds] == NONE)
                     & (lo[beds] - last[beds] <= EMPTY_GAP_MS))
            fresh = beds[~going]
            since[fresh], count[fresh], ended[fresh] = lo[fresh], 0, NONE
            count[beds] += added[beds]
            last[beds] = np.where(going, np.maximum(last[beds], hi[beds]), hi[beds])
        seen = np.flatnonzero(first_seen != never)
        ending = seen[(since[seen] != NONE) & (ended[seen] == NONE)]
        ended[ending] = first_seen[ending]
        if late.any():
            l_bed = bed[late]
            beds = np.unique(l_bed)
            lo, hi = _span(l_bed, t[late], n)
            beds = beds[~_arrival_unseen(since[beds], count[beds], ended[beds], lo[beds])]
            since[beds], last[beds], ended[beds] = lo[beds], hi[beds], NONE
            count[beds] = np.bincount(l_bed, minlength=n)[beds]

    def household(self, bed: np.ndarray) -> np.ndarray:
        """How many people usually are at home, per bed (1 until learnt otherwise)."""
        b = self.beds
        learnt = b["learnt"][bed]
        learnt = np.where(learnt >= _EVIDENCE_WEIGHT, learnt, 1.0)
        usual: np.ndarray = (1 + (b["two_or_more"][bed] > 0.5 * learnt).astype(np.int64)
                             + (b["three_or_more"][bed] > 0.5 * learnt).astype(np.int64))
        return usual

    def _household_of(self, visit: Visit) -> int:
        return int(self.household(np.array([visit.bed]))[0]) if visit.bed >= 0 else 1

    def _learn_household(self, bed: np.ndarray, people: np.ndarray, t: np.ndarray) -> None:
        """Fold samples with someone home, outside every visit (by its own times, open or
        judged: a backlog brings a visit's samples after its check-out), into the household's
        count, by their time as placed (``t``: a late backlog's device time): the samples
        stand for the time they span as sent, not as received (a backlog of hours delivered
        in seconds is hours of the household, not seconds)."""
        if not len(bed):
            return
        b = self.beds
        n = len(b["two_or_more"])
        count = np.bincount(bed, minlength=n)
        beds = np.flatnonzero(count)
        latest = np.full(n, NONE, dtype=np.int64)
        np.maximum.at(latest, bed, t)
        earliest = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(earliest, bed, t)
        since = b["household_at"][beds]
        # The time the samples stand for, not the gap since the last ones: after a night
        # with nobody learnt, the morning's first sample must not outweigh the day before. A
        # bed's first samples stand for the time between them (its first infrared delivered
        # as one backlog of hours is hours: it weighed nothing, and a couple whose caregiver
        # never came was verified); the very first sample alone stands for none.
        first = since == NONE
        span = np.where(first, latest[beds] - earliest[beds],
                        np.maximum(latest[beds] - np.where(first, 0, since), 0))
        span = np.minimum(span, (count[beds] - first) * HOUSEHOLD_SAMPLE_MS)
        weight = 1.0 - np.exp(-span / HOUSEHOLD_TAU_MS)
        for column, least in (("two_or_more", 2), ("three_or_more", 3)):
            share = np.bincount(bed[people >= least], minlength=n)[beds] / count[beds]
            b[column][beds] += weight * (share - b[column][beds])
        b["learnt"][beds] += weight * (1.0 - b["learnt"][beds])
        b["household_at"][beds] = np.maximum(since, latest[beds])

    @staticmethod
    def _in_visit(bed: np.ndarray, t: np.ndarray, visits: Sequence[Visit]) -> np.ndarray:
        """Per sample, whether it falls in one of ``visits`` of its bed: from the check-in to
        the check-out; without one, to where the caregiver was judged gone, or where the visit
        was given up, else on (an open one)."""
        never = np.iinfo(np.int64).max
        v_bed = np.fromiter((v.bed for v in visits), np.int64, len(visits))
        order = np.argsort(v_bed, kind="stable")
        v_bed = v_bed[order]
        v_in = np.fromiter((v.check_in for v in visits), np.int64, len(visits))[order]
        v_out = np.fromiter((next((end for end in (v.check_out, v.sensed_until, v.decided_at)
                                   if end is not None), never) for v in visits),
                            np.int64, len(visits))[order]
        low = np.searchsorted(v_bed, bed, "left")
        count = np.searchsorted(v_bed, bed, "right") - low
        inside = np.zeros(len(bed), np.bool_)
        if not count.any():
            return inside
        sample = np.repeat(np.arange(len(bed)), count)
        pair = np.repeat(low, count) + np.arange(len(sample)) - np.repeat(
            np.cumsum(count) - count, count)
        when = t[sample]
        hit = (when >= v_in[pair]) & (when < v_out[pair])
        inside[sample[hit]] = True
        return inside

    def _unkeyed(self, saved: list[Any], bed_map: Any) -> list[dict[str, Any]]:
        """The open visits of a snapshot written before visits were keyed by site, bed,
        caregiver and visit id (a list of visits by visit id, with the fleet's bed number), as
        visits of today, so that an upgrade forgets none. Their sensed counts were kept per
        bed then: they start at none (too few samples to claim that nobody came)."""
        out = []
        for old in saved:
            if not isinstance(old, dict) or old.get("decided_at") is not None:
                continue
            try:
                bed = bed_map[int(old["bed"])]
                site, bed_id = self.fleet.bed_keys[bed]
                out.append({"site": site, "bed_id": bed_id, "bed": bed,
                            "caregiver": str(old["caregiver"]), "visit": str(old["visit"]),
                            "source": "badge", "method": None,
                            "check_in": int(old["check_in"]), "check_out": old.get("check_out"),
                            "services": list(old.get("services") or ()),
                            "no_checkout": old.get("anomaly") == "no_checkout"})
            except (KeyError, IndexError, TypeError, ValueError):
                continue  # not a visit this version can read: left out, as before
        return out

    # --- judging ------------------------------------------------------------------------------

    def _evaluate(self, now_ms: int) -> list[Finding]:
        if self._watching_since is None:
            self._watching_since = now_ms
        self.book.refresh(now_ms)
        findings, self._pending = self._pending, []
        if self._replay:
            self._replay_recent(now_ms)
        fresh_since = now_ms - FRESH_MS
        for visit in list(self._active.values()):
            if visit.bed < 0 and self.fleet.numbering.has_bed(visit.site, visit.bed_id):
                visit.bed = self.fleet.bed_index(visit.site, visit.bed_id)
            if visit.check_out is not None:
                if not visit.no_checkout and visit.sensed_until is None:
                    self._gone_before_check_out(visit)
                if now_ms >= visit.check_out + SETTLE_MS and self._delivered(visit, now_ms):
                    if visit.plan is None or self.book.plan_of(visit) is None:
                        self.book.match(visit)
                    findings.extend(self._judge(visit, now_ms))
                    self._retire(visit, now_ms)
                continue
            if now_ms >= visit.check_in + OPEN_VISIT_EXPIRY_MS:
                self._give_up(visit, now_ms, "expired")
                continue
            if visit.no_checkout:
                continue
            fresh = visit.bed >= 0 and int(self.beds["last_received"][visit.bed]) >= fresh_since
            last = visit.extra_last
            # Gone once the infrared, as far as it has been delivered (a late backlog: not as
            # far as now), saw the home without the caregiver for the grace.
            left = (last is not None and fresh and int(self.beds["sensed_to"][visit.bed])
                    >= last + self.checks.checkout_grace_ms)
            if left or now_ms >= visit.check_in + self.checks.visit_max_ms:
                visit.no_checkout = True
                # Counted up to where the caregiver was judged gone: the infrared as far as it
                # was delivered (so a sensor behind counts what a live one would), or now.
                visit.sensed_until = (int(self.beds["sensed_to"][visit.bed]) + 1 if left
                                      else now_ms)
                minutes = (now_ms - visit.check_in) / MINUTE_MS
                evidence: dict[str, Any] = {"minutes_since_check_in": rounded(minutes)}
                if left:
                    evidence["caregiver_last_sensed_ms"] = last
                findings.append(self._visit_finding(
                    visit, now_ms, active=True, reasons=["no_checkout"],
                    phrases=[f"no check-out {minutes:.0f} min after check-in"],
                    evidence=evidence))
        findings.extend(self._missed(now_ms))
        self._forget(now_ms)
        return findings

    def _judge(self, visit: Visit, now_ms: int) -> list[Finding]:
        """The reasons of a checked-out visit, as one finding (or the clearing of its missing
        check-out when it has none)."""
        assert visit.check_out is not None
        checks = self.checks
        stay_ms = visit.check_out - visit.check_in
        # The count its samples were counted against (the bed's at its first sample), not
        # the bed's now: a new bed's may have been read anew since.
        household = (visit.household if visit.household is not None
                     else self._household_of(visit))
        services = visit.services
        services_ms = checks.catalogue.minutes(services) * MINUTE_MS
        last = visit.extra_last
        # The infrared saw the caregiver, then the home without them for the grace: it saw
        # them go, however few samples it delivered up to there (a sensor missing samples).
        seen_gone = (last is not None and visit.sensed_until is not None
                     and visit.sensed_until > last + checks.checkout_grace_ms
                     and visit.samples > visit.extra)
        sensed = visit.samples >= MIN_SENSED_SAMPLES or seen_gone
        plan = self.book.plan_of(visit)
        reasons: list[str] = []
        phrases: list[str] = []
        evidence: dict[str, Any] = {
            "stayed_minutes": rounded(stay_ms / MINUTE_MS), "services": services,
            "services_minutes": rounded(services_ms / MINUTE_MS),
            "household_people": household, "infrared_samples": visit.samples,
            "samples_with_caregiver": visit.extra,
            "home_empty_before": bool(visit.empty_before)}
        if sensed and visit.extra == 0:
            reasons.append("nobody_sensed")
            phrases.append("checked in and out, but nobody was sensed in the home, empty "
                           "before the check-in" if visit.empty_before else
                           f"checked in and out, but nobody beyond the household "
                           f"({household}) was sensed")
        else:
            claimed_ms = (services_ms if self._checked_out_late(visit, plan)
                          else max(stay_ms, services_ms))
            watched_ms = (visit.sensed_until or visit.check_out) - visit.check_in
            sensed_ms = (min(stay_ms, watched_ms) * visit.extra / visit.samples if sensed
                         else stay_ms)
            if seen_gone:
                # Samples the sensor missed after the caregiver was last sensed are not their
                # presence: at most up to the last sample with them, and one sample's time.
                assert last is not None
                sensed_ms = min(sensed_ms, last - visit.check_in
                                + min(stay_ms, watched_ms) / visit.samples)
            evidence["claimed_minutes"] = rounded(claimed_ms / MINUTE_MS)
            evidence["sensed_minutes"] = rounded(sensed_ms / MINUTE_MS) if sensed else None
            if (sensed_ms < checks.short_share * claimed_ms
                    and claimed_ms - sensed_ms >= SHORT_MIN_MS):
                # Without sensing only the stay is set against the items billed: that is no
                # short presence sensed, so it says so (issue #14).
                reasons.append("too_short" if sensed else "stay_shorter_than_billed")
                phrases.append(
                    f"caregiver sensed {sensed_ms / MINUTE_MS:.0f} of the "
                    f"{claimed_ms / MINUTE_MS:.0f} min claimed" if sensed else
                    f"checked out after {stay_ms / MINUTE_MS:.0f} min; services claim "
                    f"{services_ms / MINUTE_MS:.0f} min")
        covered = self._recordings(visit, plan.services if plan and not services else services,
                                   reasons, phrases, evidence)
        unknown = list(dict.fromkeys(c for c in services if c not in checks.catalogue))
        if unknown:
            reasons.append("unknown_service")
            evidence["unknown_services"] = unknown
            phrases.append(f"billed {', '.join(unknown)}, not in the service catalogue")
        if plan is not None:
            self._window(visit, plan, reasons, phrases, evidence)
        elif self.book.is_planned(visit.site, visit.bed_id):
            reasons.append("unplanned")
            phrases.append("no plan for this visit")
        self._overlap(visit, now_ms, reasons, phrases, evidence)
        self._keep_judged(visit, now_ms, reasons, evidence, covered)
        if not reasons:
            if visit.no_checkout:
                return [self._visit_finding(visit, now_ms, active=False, reasons=[],
                                            phrases=["checked out late"], evidence={})]
            return []
        if self._gone(visit):
            evidence["checked_out_late"] = True
        return [self._visit_finding(visit, now_ms, active=True, reasons=reasons,
                                    phrases=phrases, evidence=evidence)]

    def _delivered(self, visit: Visit, now_ms: int) -> bool:
        """Whether a checked-out visit's infrared is in: once its home's infrared was
        delivered up to :data:`SENSED_SLACK_MS` before the check-out (a sensor reporting
        every minute). Until then it waits while that infrared keeps coming (a sample received
        within :data:`FRESH_MS`: a sensor behind, batching or on a slow network, whatever the
        check-out's own delay), at most :data:`LATE_MS` after the check-out; a home whose
        infrared does not come is judged at once for a check-out received on time (as ever:
        a sensor silent, or without a people count), :data:`CATCH_UP_MS` after its receipt for
        a late one (received more than :data:`SETTLE_MS` after it: its home's backlog may
        follow it)."""
        assert visit.check_out is not None
        if visit.bed >= 0 and (int(self.beds["sensed_to"][visit.bed])
                               >= visit.check_out - SENSED_SLACK_MS):
            return True
        if now_ms >= visit.check_out + LATE_MS:
            return True
        if visit.bed >= 0 and int(self.beds["last_received"][visit.bed]) >= now_ms - FRESH_MS:
            return False  # the home's infrared comes, behind the check-out: wait for it
        got = visit.out_received
        return got is None or got - visit.check_out <= SETTLE_MS or now_ms >= got + CATCH_UP_MS

    def _gone_before_check_out(self, visit: Visit) -> None:
        """A check-out that came before its home's infrared showed the caregiver gone (a
        sensor behind): once that infrared shows them gone ``checkout_grace`` before the
        check-out, the visit is counted as a live one whose missing check-out was raised then
        (up to there, and its check-out late: :meth:`_checked_out_late`), without raising it
        (the check-out is in). Live, the missing check-out was raised first; without this, the
        same visit delivered behind claimed its whole stay."""
        last = visit.extra_last
        if last is None or visit.bed < 0 or visit.check_out is None:
            return
        gone = last + self.checks.checkout_grace_ms
        sensed_to = int(self.beds["sensed_to"][visit.bed])
        if gone < visit.check_out and sensed_to >= gone:
            visit.sensed_until = min(sensed_to + 1, visit.check_out)

    @staticmethod
    def _gone(visit: Visit) -> bool:
        """Whether the caregiver was judged gone before the check-out (the missing check-out
        raised, or seen so once the infrared behind came: :meth:`_gone_before_check_out`)."""
        return visit.no_checkout or visit.sensed_until is not None

    def _checked_out_late(self, visit: Visit, plan: PlannedVisit | None) -> bool:
        """Whether the check-out came late, so that the stay up to it is no claim (a caregiver
        who forgot to check out): after the missing check-out was raised and, for a visit with
        a plan, after its window (and the tolerance) was over. A check-out within its window
        claims the stay like any other, even once the caregiver was judged gone: who left
        early and checked out at the usual time claims the whole stay."""
        if not self._gone(visit):
            return False
        if plan is None or visit.check_out is None:
            return True
        return visit.check_out > plan.end_ms + self.checks.window_tolerance_ms

    def _keep_judged(self, visit: Visit, now_ms: int, reasons: list[str],
                     evidence: dict[str, Any], covered: float) -> None:
        """What was measured of a judged visit, for its service record (module docstring)."""
        stay_ms = max(0, (visit.check_out or visit.check_in) - visit.check_in)
        measured: dict[str, Any] = {k: evidence[k] for k in (
            "stayed_minutes", "services", "services_minutes", "claimed_minutes",
            "sensed_minutes", "household_people", "home_empty_before", "infrared_samples",
            "samples_with_caregiver", "recordings", "recording_required",
            "recording_coverage", "unknown_services") if k in evidence}
        if "claimed_minutes" not in measured:  # nobody sensed: the claim is the stay's
            measured["claimed_minutes"] = rounded(max(
                stay_ms / MINUTE_MS, evidence["services_minutes"]))
            measured["sensed_minutes"] = 0.0
        measured["recording_coverage"] = rounded(covered, 2)
        verdict = "flagged" if reasons else "verified"
        if not reasons and visit.samples < MIN_SENSED_SAMPLES:
            verdict = "unverifiable"
            measured["unverifiable"] = ["not_sensed"]
        self._judged.append(JudgedVisit(  # a reused id's: kept apart, for the report only
            site=visit.site, bed=visit.bed_id, caregiver=visit.caregiver,
            visit=visit.visit if visit.instance is None
            else reused_visit_id(visit.visit, visit.instance), judged_at=now_ms, measured={
                "verdict": verdict, "reasons": list(reasons),
                "check_in_ms": visit.check_in, "check_out_ms": visit.check_out,
                "source": visit.source, "method": visit.method, "plan": visit.plan,
                **measured}))

    def _give_up(self, visit: Visit, now_ms: int, why: str) -> None:
        """Stop following a visit that was never judged (``expired``: open
        :data:`OPEN_VISIT_EXPIRY_MS`; ``dropped``: beyond ``open_visits_max``), leaving a
        judgement that says so (verdict ``unverifiable``), so that its service record, if its
        check-out comes, does not read as checked."""
        if visit.instance is not None:
            self._retire(visit, now_ms)
            return
        self._judged.append(JudgedVisit(
            site=visit.site, bed=visit.bed_id, caregiver=visit.caregiver, visit=visit.visit,
            judged_at=now_ms, measured={
                "verdict": "unverifiable", "reasons": [], "unverifiable": [why],
                "check_in_ms": visit.check_in, "check_out_ms": visit.check_out,
                "source": visit.source, "method": visit.method, "plan": visit.plan}))
        self._retire(visit, now_ms)

    def _recordings(self, visit: Visit, codes: Iterable[str], reasons: list[str],
                    phrases: list[str], evidence: dict[str, Any]) -> float:
        """Checks the recordings; returns the share of the visit they cover."""
        assert visit.check_out is not None
        end = visit.check_out
        if self._gone(visit) and visit.extra_last is not None:
            end = min(end, max(visit.extra_last, visit.check_in + 1))
        clips = self.clips.linked(visit.bed, visit.check_in, end) if visit.bed >= 0 else []
        evidence["recordings"] = [clip.evidence() for clip in clips]
        covered = coverage(clips, visit.check_in, end)
        required = self.checks.catalogue.recorded(codes)
        if not required:
            return covered
        evidence["recording_required"] = list(required)
        evidence["recording_coverage"] = rounded(covered, 2)
        if covered < self.checks.recording_coverage:
            reasons.append("no_recording")
            phrases.append(f"no recording of {', '.join(required)} ({covered:.0%} of the "
                           "visit)")
        return covered

    def _window(self, visit: Visit, plan: PlannedVisit, reasons: list[str], phrases: list[str],
                evidence: dict[str, Any]) -> None:
        assert visit.check_out is not None
        tolerance = self.checks.window_tolerance_ms
        evidence["planned_caregiver"] = plan.caregiver
        evidence["window"] = f"{plan.date} {plan.start}-{plan.end}"
        early = plan.start_ms - visit.check_in
        late = max(visit.check_out, visit.check_in) - plan.end_ms
        window = f"{plan.start}-{plan.end}"
        if early > tolerance:
            evidence["early_minutes"] = rounded(early / MINUTE_MS)
            phrases.append(f"began {early / MINUTE_MS:.0f} min before its planned window "
                           f"{window}")
        elif late > tolerance:
            evidence["late_minutes"] = rounded(late / MINUTE_MS)
            phrases.append(f"ended {late / MINUTE_MS:.0f} min after its planned window "
                           f"{window}")
        else:
            return
        reasons.append("outside_window")

    def _overlap(self, visit: Visit, now_ms: int, reasons: list[str], phrases: list[str],
                 evidence: dict[str, Any]) -> None:
        assert visit.check_out is not None
        mine = (visit.check_in, visit.key)
        for key in self._by_caregiver.get(visit.caregiver, ()):
            other = self._active.get(key) or self._done.get(key)
            if (other is None or other is visit or (other.site, other.bed_id)
                    == (visit.site, visit.bed_id) or (other.check_in, other.key) >= mine):
                continue
            end = other.check_out if other.check_out is not None else self._open_end(other,
                                                                                    now_ms)
            overlap = min(visit.check_out, end) - max(visit.check_in, other.check_in)
            if overlap > OVERLAP_TOLERANCE_MS:
                reasons.append("overlap")
                evidence["other_visit"] = {"site": other.site, "bed": other.bed_id,
                                           "visit": other.visit,
                                           "check_in_ms": other.check_in,
                                           "check_out_ms": other.check_out}
                evidence["overlap_minutes"] = rounded(overlap / MINUTE_MS)
                phrases.append(f"the caregiver was checked in at {other.site}/{other.bed_id} "
                               f"at the same time ({overlap / MINUTE_MS:.0f} min)")
                return

    @staticmethod
    def _open_end(visit: Visit, now_ms: int) -> int:
        """Where an open visit ends as the sensors see it: the caregiver last sensed, its
        check-in when the sensor never saw them, else now."""
        if visit.extra_last is not None:
            return visit.extra_last
        if visit.samples >= MIN_SENSED_SAMPLES:
            return visit.check_in
        return now_ms

    def _missed(self, now_ms: int) -> list[Finding]:
        assert self._watching_since is not None
        found = []
        for plan in self.book.due_missed(now_ms, self.checks.missed_grace_ms,
                                         self._watching_since):
            window = f"{plan.date} {plan.start}-{plan.end}"
            found.append(Finding(
                type=self.alert_type, site=plan.site, bed=plan.bed, at=now_ms,
                severity=self.checks.severity, episode=f"plan:{plan.plan}", active=True,
                started_at=plan.start_ms,
                summary=f"planned visit {plan.plan} ({window}, caregiver {plan.caregiver}) "
                        "never happened",
                evidence={"anomaly": "missed", "reasons": ["missed"], "plan": plan.plan,
                          "caregiver": plan.caregiver, "window": window,
                          "window_start_ms": plan.start_ms, "window_end_ms": plan.end_ms,
                          "services": list(plan.services)}))
        return found

    def _missed_cleared(self, visit: Visit) -> Finding:
        assert visit.plan is not None
        return Finding(type=self.alert_type, site=visit.site, bed=visit.bed_id,
                       at=visit.check_in, severity=self.checks.severity,
                       episode=f"plan:{visit.plan}", active=False,
                       summary=f"visit {visit.visit} came after all",
                       evidence={"visit": visit.visit, "check_in_ms": visit.check_in})

    def _visit_finding(self, visit: Visit, now_ms: int, *, active: bool, reasons: list[str],
                       phrases: list[str], evidence: dict[str, Any]) -> Finding:
        summary = "; ".join(phrases)
        if reasons:
            summary = f"visit {visit.visit} by {visit.caregiver}: {summary}"
        base: dict[str, Any] = {
            "visit": visit.visit, "caregiver": visit.caregiver, "check_in_ms": visit.check_in,
            "check_out_ms": visit.check_out, "source": visit.source, "method": visit.method,
            "plan": visit.plan}
        if visit.instance is not None:
            # Its visit id names an earlier visit too: settling that one leaves this out.
            base["visit_id_reused"] = True
        if reasons:
            base["anomaly"] = reasons[0]
            base["reasons"] = reasons
        return Finding(type=self.alert_type, site=visit.site, bed=visit.bed_id, at=now_ms,
                       severity=self.checks.severity, episode=visit.episode, active=active,
                       started_at=visit.check_in, summary=summary, evidence={**base, **evidence})

    # --- forgetting ---------------------------------------------------------------------------

    def _retire(self, visit: Visit, now_ms: int) -> None:
        key = visit.key
        self._active.pop(key, None)
        visit.decided_at = now_ms
        self._done[key] = visit

    def _forget(self, now_ms: int) -> None:
        horizon = now_ms - KEEP_MS
        limit = 4 * self.checks.open_visits_max
        while self._done:
            key, visit = next(iter(self._done.items()))
            if (visit.decided_at or 0) >= horizon and len(self._done) <= limit:
                break
            del self._done[key]
            if visit.instance is not None:
                base = visit_key(visit.site, visit.bed_id, visit.caregiver, visit.visit)
                if self._reuse.get(base) == key:
                    del self._reuse[base]
            keys = self._by_caregiver.get(visit.caregiver)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_caregiver[visit.caregiver]
        self.clips.forget_before(horizon)
        for key in [k for k, (t, _, _) in self._held_outs.items()
                    if t < now_ms - OPEN_VISIT_EXPIRY_MS]:
            del self._held_outs[key]
        self.book.forget_before(now_ms - 3 * KEEP_MS)


def _span(bed: np.ndarray, t: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per bed (of ``n``), the earliest and the latest of the times ``t`` (``bed`` each
    one's): the int64 maximum and :data:`NONE` where a bed has none."""
    lo = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(lo, bed, t)
    hi = np.full(n, NONE, np.int64)
    np.maximum.at(hi, bed, t)
    return lo, hi
