"""``night_bed_exit``: out of bed in this person's night for longer than their usual night trips.

**In or out of bed** comes from the fall/vital-sign sensor's ``in_bed``; while that sensor is
silent, from the infrared zone (``bed`` is in bed, any other zone or nobody home is out), but
never from a sample that counts two or more people: then the zone may be another resident's.
Per bed the detector keeps the last moment seen in bed and the first moment seen out after it
(the *exit*). After a gap in both sensors' data, where the person was is forgotten (as if just
seen in bed), except when the person was out of bed and nobody home before it: then they are
still out since they left, so coming back late after days away, or a network outage while
away, is no exit from bed.

**This person's night** is learnt per bed from its own days. A *stretch in bed* runs from the
first moment seen in bed to the last, through out-of-bed spells shorter than
:data:`MERGE_GAP_MS` (night trips); each night (noon to noon, local) its longest stretch, if
it lasted :data:`SLEEP_MIN_MS` to :data:`SLEEP_MAX_MS` and its middle falls between 18:00 and
12:00, gives that night's bedtime and wake time (local wall clock, so DST-correct). The last
:data:`NIGHTS` weekday nights and the last :data:`NIGHTS` weekend nights (Friday and Saturday
nights) are kept apart; the usual bedtime and wake time are their medians, and the spread is
the median distance from them. The night then runs from the usual bedtime less
``max(45, min(120, 30 + 2.5 x spread))`` minutes to the usual wake time less
``max(30, min(90, 15 + 2.5 x spread))`` minutes, and no later than 15 minutes before the 10th
percentile of the learnt wake times (:data:`EARLY_WAKE_PERCENTILE`), within the registry's
window (BedSettings ``night_start``..``night_end``; :data:`REGISTRY_REACH_MIN`). So getting
up at, or a little before, the usual wake time is the morning (an early riser up anywhere
from 04:45 to 05:30 is not a night exit), and the evening before a night owl's usual bedtime
is not night.

**Warm-up**: until :data:`WARMUP_NIGHTS` night of the kind (weekday or weekend) is learnt,
the other kind's are used; until neither has one, the night is the registry's window, as
before learning existed, but for getting up in its last :data:`WARMUP_MORNING_MIN` minutes
after at least 5 hours in bed: that is the morning (an early riser up at 04:45 on their first
days), so a fall in the middle of the first night is found and an early morning is not one.
An away night has no stretch in bed and teaches nothing, nor does a stretch whose start was
not seen (the bed first seen, or seen again after a data gap, with the person already in
bed).

**The return limit** is judged against this person's night trips: the length of each
out-of-bed spell that began in their night, was seen to begin (not made up after a data gap)
and ended back in bed within :data:`CEILING_MIN`, is kept (the last :data:`TRIPS`), unless
it raised this alert and ended more than :data:`ALERTED_TRIP_FACTOR` times the limit it was
judged by: a reported exit is not a usual trip, so five 50-minute exits of a person whose trips
take 10 minutes are all reported, while an insomniac's 40-minute spells over the registry's 30
minutes become their usual (a real exit a little over the limit is learnt too). Two
exceptions learn a reported exit back in bed within the ceiling all the same: in the warm-up
(fewer than :data:`WARMUP_TRIPS` trips known, nothing to judge it by yet), and a *regular
sleepless spell*: such exits on at least :data:`REGULAR_NIGHTS` nights and half the nights in
bed of the last :data:`RECENT_NIGHTS` days (an insomniac up 35-60 minutes on most nights;
the person with five 50-minute exits after a week of 10-minute trips is below half). With at
least :data:`WARMUP_TRIPS` of them the limit is :data:`TRIP_FACTOR` times their
:data:`TRIP_PERCENTILE` th percentile, never below the registry's ``bed_exit_return_min``
(the floor, and the limit during the warm-up) and never above :data:`CEILING_MIN` (unless the
registry's floor is higher), so a fall in the bathroom at night is never missed for long.
A person *up and about* (the infrared sees one person moving at home since the exit, a
movement within :data:`MOVING_MS`, never at the door) is given up to :data:`AWAKE_MIN` in the
first nights (fewer than :data:`WARMUP_TRIPS` trips known and fewer than
:data:`AWAKE_WARMUP_NIGHTS` nights in bed seen: the warm-up's safe default, an insomniac's
first sleepless spells of 20-45 minutes are not news) and when their usual trip reaches the
registry's limit (their nights have sleepless spells: a 45-minute one after a week of 35s is
not news either); a person still for 10 minutes (on the floor), gone from the home or at its
door (wandering, leaving) is judged by the learnt or the registry's limit at once, so a fall
at night is found as before, and so is a person whose trips take 10 minutes, up and about or
not.

The condition holds when the exit happened in this person's night, has lasted the return
limit and a sensor still reports (and the person was seen in bed at least once: a bed first
heard while they were up has no exit from it); it clears when the person is seen in bed
again. Leaving the bed and then the home at night is reported like any other exit. The
evidence gives the night used (learnt or the registry's), the usual bedtime, wake time and
night trips, the limit and why, and what was seen.

The module is over 400 lines because learning the person's night and trips and judging an
exit by them are one rule on one set of per-bed columns (saved and restored together).

For example, a bed sensor that saw the person leave the bed at 02:05 and not come back by
02:35, on a bed with nothing learnt yet (the registry's default night 22:00..06:00 and return
limit 30 minutes decide):

>>> import json
>>> from devices import decode
>>> from gateway.detect.night_bed_exit import NightBedExitDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = NightBedExitDetector(timezone="UTC")
>>> two_am = 1_793_584_800_000  # 2026-11-02 02:00 UTC
>>> minute = 60_000
>>> samples = [{"t": two_am, "in_bed": True}] + [
...     {"t": two_am + m * minute, "in_bed": False} for m in (5, 15, 25, 35)]
>>> now = two_am + 35 * minute
>>> detector.update([message("fall/fs-1/telemetry", ts=now, seq=1, samples=samples)], [now])
>>> [finding] = detector.evaluate(now)
>>> print(finding.type, finding.severity, finding.summary)
night_bed_exit high out of bed since 02:05 (local), 30 min (night 22:00-06:00, limit 30)
"""

from __future__ import annotations

from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from alerts.model import AlertType, Finding, Severity
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import ZONE_BED, ZONE_CODES, Batch, Infrared, groups
from gateway.detect._table import NONE

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS
NOON_MS: Final = 12 * HOUR_MS
DAY_MIN: Final = 24 * 60
_MAX = np.iinfo(np.int64).max

VITALS_STALE_MS: Final = 3 * MINUTE_MS
"""The infrared zone stands in for ``in_bed`` when the bed sensor has been silent this long."""
DATA_GAP_MS: Final = 15 * MINUTE_MS
"""No sample from either sensor for this long: whereabouts before the gap are forgotten."""
STALE_MS: Final = 15 * MINUTE_MS
"""No data received for this long: the condition is not raised."""

NIGHTS: Final = 12
"""Nights kept per kind (weekday, weekend) for the usual bedtime and wake time."""
WARMUP_NIGHTS: Final = 1
"""Nights of a kind needed before the learnt night replaces the registry's window: one (an
early riser is taken for an early riser from the second morning; a night whose start was not
seen, the first after a new install or a data gap, teaches nothing)."""
WARMUP_MORNING_MIN: Final = 90.0
WARMUP_MORNING_SLEEP_MS: Final = 5 * HOUR_MS
"""Until a night is learnt, out of bed in the last 90 minutes of the registry's night after
at least 5 hours in bed is getting up (an early riser's first mornings), not a night exit."""
SPREAD_NIGHTS: Final = 3
"""Nights of the kind needed to know how much bedtime and wake time vary; with fewer, the
margins are at their widest (an early riser up 40 minutes before their one learnt morning
is still the morning; the middle of the night is still night)."""
MERGE_GAP_MS: Final = 90 * MINUTE_MS
"""Out of bed (or unseen) for less than this, a stretch in bed goes on: a night trip."""
SLEEP_MIN_MS: Final = 3 * HOUR_MS
SLEEP_MAX_MS: Final = 16 * HOUR_MS
"""A night's longest stretch in bed is its sleep when it lasts this long."""
REGISTRY_REACH_MIN: Final = 0.0
"""How far the learnt night may reach beyond the registry's window, either side. None: on
simulated standard lives (up 06:12-07:50), reaching an hour past 06:00 raised a person up half
an hour before their usual time; within the window, learning only ever removes night."""
EARLY_WAKE_PERCENTILE: Final = 10.0
EARLY_WAKE_MARGIN_MIN: Final = 15.0
"""The night also ends this long before the 10th percentile of the learnt wake times: an
early riser up anywhere between 04:45 and 05:30 is up at the morning's usual time."""
SPREAD_FACTOR: Final = 2.5
BED_MARGIN_MIN: Final = (30.0, 45.0, 120.0)
WAKE_MARGIN_MIN: Final = (15.0, 30.0, 90.0)
"""Margins before the usual bedtime and wake time: base + 2.5 x spread, kept within
``[low, high]``."""

TRIPS: Final = 20
"""Night trips kept per bed."""
WARMUP_TRIPS: Final = 5
TRIP_MIN_MS: Final = 2 * MINUTE_MS
"""Shorter out-of-bed spells are not trips (a sensor flicker, sitting up)."""
TRIP_PERCENTILE: Final = 90.0
TRIP_FACTOR: Final = 1.2
ALERTED_TRIP_FACTOR: Final = 1.4
"""An exit that raised the alert is learnt as a night trip only if it ended within this times
the limit it was judged by."""
RECENT_NIGHTS: Final = 14
REGULAR_NIGHTS: Final = 3
REGULAR_SHARE: Final = 0.5
"""A reported exit back in bed within the ceiling is a regular sleepless spell, learnt as a
night trip, when such spells happened on at least 3 nights and half the nights in bed of the
last 14 days."""
CEILING_MIN: Final = 90.0
"""Out of bed at night this long is always raised (unless the registry's floor is higher)."""
AWAKE_MIN: Final = 60.0
MOVING_MS: Final = 10 * MINUTE_MS
AWAKE_WARMUP_NIGHTS: Final = 3
"""A person *up and about* (the infrared sees one person moving at home since the exit, the
last movement within 10 minutes, and not at the door) is given up to an hour in the first
nights (fewer than :data:`WARMUP_TRIPS` trips known and fewer than 3 nights in bed seen: the
warm-up's safe default, an insomniac's first sleepless spells of 20-45 minutes are not news)
and when their usual trip (the percentile) reaches the registry's limit (their nights have
sleepless spells: 45 minutes after a week of 35-minute spells). Still for 10 minutes (on the
floor), gone from the home or at its door (wandering, leaving), the learnt or the registry's
limit applies at once; so it does for a person whose trips are short, up and about or not."""
DOOR: Final = ZONE_CODES["door"]
_WEEKEND: Final = (4, 5)
"""Friday and Saturday nights (Monday is 0; day 0 of the epoch was a Thursday)."""


class Night(NamedTuple):
    """How exits were judged against each bed's night (arrays, one value per exit)."""

    night: Bool
    learnt: Bool
    weekend: Bool
    nights: I64
    start_min: F64
    """Night window in minutes after local noon (NaN when the registry's is used)."""
    end_min: F64
    bedtime_min: F64
    wake_min: F64


class Limit(NamedTuple):
    limit_min: F64
    usual_min: F64
    """The percentile of the bed's night trips (NaN before :data:`WARMUP_TRIPS`)."""
    trips: I64
    awake: Bool
    """Up and about, in the warm-up or with sleepless spells (:data:`AWAKE_MIN` applied)."""
    warm_up: Bool
    """Fewer than :data:`WARMUP_TRIPS` night trips known."""


def _clock(minutes: float) -> str:
    """Minutes after some noon as local ``HH:MM``."""
    wall = int(np.floor(minutes + 12 * 60)) % DAY_MIN
    return f"{wall // 60:02d}:{wall % 60:02d}"


def _margin(spread: F64, bounds: tuple[float, float, float]) -> F64:
    base, low, high = bounds
    return np.clip(base + SPREAD_FACTOR * spread, low, high)


class NightBedExitDetector(DetectorBase):
    name = "night_bed_exit"
    alert_type = AlertType.NIGHT_BED_EXIT
    severity = Severity.HIGH

    def _declare(self) -> None:
        b = self.beds
        b.column("last_in", np.int64, NONE)
        b.column("out_since", np.int64, NONE)
        b.column("last_vitals_t", np.int64, NONE)
        b.column("last_t", np.int64, NONE)
        b.column("last_received", np.int64, NONE)
        b.column("active", np.bool_, False)
        b.column("active_since", np.int64, NONE)
        b.column("out_by_infrared", np.bool_, False)
        """The exit was seen by the infrared zone (else by the bed sensor)."""
        b.column("seen_in", np.int64, NONE)
        """Last moment seen in bed (``last_in`` also moves after a data gap)."""
        b.column("empty_since", np.int64, NONE)
        b.column("moved_t", np.int64, NONE)
        """Latest infrared sample that saw one person home moving (:data:`MOVING_MS`)..."""
        b.column("door_t", np.int64, NONE)
        """... and at the door."""
        """Since when the infrared sensor has seen nobody home (NONE: someone, or unknown)."""
        b.column("judged_since", np.int64, NONE)
        """An exit already judged to be outside the night (not judged again)."""
        b.column("stretch_start", np.int64, NONE)
        b.column("night_of", np.int64, NONE)
        """Local noon-to-noon day of the latest stretch in bed, and its longest stretch."""
        b.column("best_start", np.int64, NONE)
        b.column("stretch_cut", np.bool_, False)
        b.column("best_cut", np.bool_, False)
        """The stretch (the night's longest) began when the bed was first seen or after a data
        gap: the person may have been in bed long before, so its bedtime is not learnt."""
        b.column("best_end", np.int64, NONE)
        b.column("bedtimes", np.float32, np.nan, (2, NIGHTS))
        b.column("wakes", np.float32, np.nan, (2, NIGHTS))
        """Learnt nights, minutes after local noon, weekday [0] and weekend [1], ring."""
        b.column("night_next", np.int32, 0, (2,))
        b.column("trips", np.float32, np.nan, (TRIPS,))
        """Learnt night trips, minutes, ring."""
        b.column("trip_next", np.int32, 0)
        b.column("recent_nights", np.int64, NONE, (RECENT_NIGHTS,))
        b.column("recent_long", np.bool_, False, (RECENT_NIGHTS,))
        b.column("recent_next", np.int32, 0)
        """The last nights in bed (local noon-to-noon days), ring, and whether each had a
        reported exit back in bed within the ceiling."""
        b.column("long_night", np.int64, NONE)
        """The night of the latest reported exit back in bed within the ceiling."""

    # --- update -------------------------------------------------------------------------------

    def _update(self, batch: Batch) -> None:
        b = self.beds
        vi, ir = batch.vitals, batch.infrared
        v_known = ~np.isnan(vi.in_bed)
        v_bed, v_t = vi.bed[v_known], vi.t[v_known]
        v_in = vi.in_bed[v_known] == 1
        vitals_t = b["last_vitals_t"]
        np.maximum.at(vitals_t, v_bed, v_t)
        i_known = ((ir.zone != 0) | (ir.presence == 0)) & ~(ir.people >= 2)
        i_use = i_known & (vitals_t[ir.bed] < ir.t - VITALS_STALE_MS)
        i_bed, i_t = ir.bed[i_use], ir.t[i_use]
        i_in = ir.zone[i_use] == ZONE_BED
        bed = np.concatenate([v_bed, i_bed])
        if not len(bed):
            self._fold_home(ir)
            return
        t = np.concatenate([v_t, i_t])
        is_in = np.concatenate([v_in, i_in])
        by_infrared = np.arange(len(bed)) >= len(v_bed)
        received = np.concatenate([vi.received[v_known], ir.received[i_use]])
        if len(i_bed):  # else vitals alone: a round's samples are ordered by bed and time
            order = np.lexsort((t, bed))
            bed, t, is_in, by_infrared = bed[order], t[order], is_in[order], by_infrared[order]
        last_t, last_in, out_since = b["last_t"], b["last_in"], b["out_since"]
        beds = groups(bed)[0]
        old_since, old_last_in = out_since[beds], last_in[beds]
        was_out = (old_since != NONE) & (old_since > old_last_in)
        observed = b["seen_in"][beds] >= old_last_in
        first = np.concatenate(([True], bed[1:] != bed[:-1]))
        previous = np.where(first, last_t[bed], np.concatenate(([NONE], t[:-1])))
        gap = t - previous > DATA_GAP_MS
        # Before the gap: out of bed and nobody home. Then the home stays empty (no exit).
        bed_was_out = np.zeros(self.fleet.n_beds, np.bool_)
        bed_was_out[beds[was_out]] = True
        out_before = np.where(first, bed_was_out[bed], ~np.concatenate(([True], is_in[:-1])))
        away = out_before & (b["empty_since"][bed] != NONE)
        forget = gap & ~is_in & ~away
        np.maximum.at(last_in, bed[is_in], t[is_in])
        # After a gap nothing is known before it: as if seen in bed just before.
        np.maximum.at(last_in, bed[forget], t[forget] - 1)
        first_out = np.full(len(last_in), _MAX, np.int64)
        out = ~is_in & (t > last_in[bed])
        np.minimum.at(first_out, bed[out], 2 * t[out] + by_infrared[out])
        since = out_since[beds]
        since = np.where((since != NONE) & (since <= last_in[beds]), NONE, since)
        new = first_out[beds]
        new_t = np.where(new == _MAX, _MAX, new // 2)
        starts = (new != _MAX) & ((since == NONE) | (new_t < since))
        since = np.where(starts, new_t, since)
        out_since[beds] = since
        b["out_by_infrared"][beds[starts]] = (new[starts] % 2) == 1
        np.maximum.at(last_t, bed, t)
        np.maximum.at(b["last_received"], bed, received)
        self._learn_trips(beds, old_since, was_out & observed, bed[is_in], t[is_in])
        self._learn_stretches(bed[is_in], t[is_in], gap[is_in])
        np.maximum.at(b["seen_in"], bed[is_in], t[is_in])
        self._fold_home(ir)

    def _fold_home(self, ir: Infrared) -> None:
        """``empty_since``: the start of the infrared sensor's latest run of "nobody home";
        ``moved_t``: the latest sample that saw one person (not two: the other's moves) move."""
        one = (ir.presence == 1) & ~(ir.people >= 2)
        moving = one & (ir.motion > 0)
        if moving.any():
            np.maximum.at(self.beds["moved_t"], ir.bed[moving], ir.t[moving])
        door = one & (ir.zone == DOOR)
        if door.any():
            np.maximum.at(self.beds["door_t"], ir.bed[door], ir.t[door])
        nobody = (ir.presence == 0) | (ir.people == 0)
        known = nobody | (ir.presence == 1)
        if not known.any():
            return
        bed, t, empty = ir.bed[known], ir.t[known], nobody[known]
        beds, starts, ends, _ = groups(bed)
        last_somebody = np.full(self.fleet.n_beds, -1, np.int64)
        position = np.arange(len(bed))
        np.maximum.at(last_somebody, bed[~empty], position[~empty])
        somebody_at = last_somebody[beds]
        empty_since = self.beds["empty_since"]
        before = empty_since[beds]
        after_somebody = t[np.minimum(somebody_at + 1, len(t) - 1)]
        empty_since[beds] = np.where(
            ~empty[ends], NONE,
            np.where(somebody_at >= starts, after_somebody,
                     np.where(before != NONE, before, t[starts])))

    def _learn_trips(self, beds: I64, old_since: I64, learnable: Bool, in_bed: I64,
                     in_t: I64) -> None:
        """Night trips that ended in this batch: seen to begin, back in bed in time."""
        if not learnable.any() or not len(in_bed):
            return
        back = np.full(self.fleet.n_beds, _MAX, np.int64)
        since_of = np.full(self.fleet.n_beds, _MAX, np.int64)
        since_of[beds[learnable]] = old_since[learnable]
        after = in_t > since_of[in_bed]
        np.minimum.at(back, in_bed[after], in_t[after])
        trip_ms = back[beds] - old_since
        b = self.beds
        # An exit that raised this alert is not a usual trip (as inactivity leaves out its
        # own episodes) unless it ended a little over the limit it was judged by: an
        # insomniac's 40-minute spells over the registry's 30 minutes are their night.
        unusual = b["active"][beds] & (b["active_since"][beds] == old_since)
        # Until this person's trips are known (the warm-up), every trip back in bed within the
        # ceiling is theirs: an insomniac's 35-60 minute spells from the first nights, over
        # the registry's 30 minutes, are their usual, not a series of alerts.
        unusual &= (~np.isnan(b["trips"][beds])).sum(axis=1) >= WARMUP_TRIPS
        if unusual.any():
            at = np.flatnonzero(unusual)
            limit_ms = self._limits(beds[at]).limit_min * MINUTE_MS
            unusual[at] = trip_ms[at] > ALERTED_TRIP_FACTOR * limit_ms
            unusual[at] &= ~self._regular(beds[at], old_since[at], trip_ms[at])
        ended = (learnable & (back[beds] != _MAX) & (trip_ms >= TRIP_MIN_MS)
                 & (trip_ms < CEILING_MIN * MINUTE_MS) & ~unusual
                 & (b["empty_since"][beds] == NONE))
        if not ended.any():
            return
        which = beds[ended]
        at_night = self._judge(which, old_since[ended]).night
        trips, trip_next = self.beds["trips"], self.beds["trip_next"]
        for i, minutes in zip(which[at_night].tolist(),
                              (trip_ms[ended][at_night] / MINUTE_MS).tolist(), strict=True):
            trips[i, trip_next[i]] = minutes
            trip_next[i] = (trip_next[i] + 1) % TRIPS

    def _regular(self, beds: I64, since: I64, trip_ms: I64) -> Bool:
        """Whether each reported exit, back in bed within the ceiling, is one of this person's
        regular sleepless spells: such spells (counting this one) on at least
        :data:`REGULAR_NIGHTS` nights and at least :data:`REGULAR_SHARE` of the nights seen in
        the last :data:`RECENT_NIGHTS` days. Then it is learnt as a night trip (an insomniac
        up 35-60 minutes on most nights); a person whose trips take 10 minutes, out for 50 on
        a few nights, is reported each time."""
        b = self.beds
        night = (self.fleet.local_ms(beds, since) - NOON_MS) // DAY_MS
        back = trip_ms < CEILING_MIN * MINUTE_MS
        regular = np.zeros(len(beds), np.bool_)
        for k, (i, n) in enumerate(zip(beds.tolist(), night.tolist(), strict=True)):
            if not back[k]:
                continue
            nights, long = b["recent_nights"][i], b["recent_long"][i]
            recent = (nights != NONE) & (nights > n - RECENT_NIGHTS) & (nights != n)
            spells = int((recent & long).sum()) + 1
            seen = int(recent.sum()) + 1
            regular[k] = spells >= REGULAR_NIGHTS and spells >= REGULAR_SHARE * seen
            b["long_night"][i] = n
        return regular

    def _learn_stretches(self, bed: I64, t: I64, unseen_before: Bool) -> None:
        """Stretches in bed, each night's longest, and the nights learnt from them;
        ``unseen_before``: nothing was seen just before the sample (first sight, data gap)."""
        if not len(bed):
            return
        b = self.beds
        first = np.concatenate(([True], bed[1:] != bed[:-1]))
        previous = np.where(first, b["seen_in"][bed], np.concatenate(([NONE], t[:-1])))
        breaks = np.flatnonzero((previous == NONE) | (t - previous >= MERGE_GAP_MS))
        if not len(breaks):
            return
        days = (self.fleet.local_ms(bed[breaks], t[breaks]) - NOON_MS) // DAY_MS
        start, night_of = b["stretch_start"], b["night_of"]
        best_start, best_end = b["best_start"], b["best_end"]
        fresh = (previous[breaks] == NONE) & (night_of[bed[breaks]] == NONE)  # first sight
        start[bed[breaks[fresh]]], night_of[bed[breaks[fresh]]] = t[breaks[fresh]], days[fresh]
        cut, best_cut = b["stretch_cut"], b["best_cut"]
        cut[bed[breaks[fresh]]] = unseen_before[breaks[fresh]]
        for k, day in zip(breaks[~fresh].tolist(), days[~fresh].tolist(), strict=True):
            i, began, ended = int(bed[k]), int(start[bed[k]]), int(previous[k])
            if began != NONE and ended != NONE and ended > began and (
                    best_start[i] == NONE or ended - began > best_end[i] - best_start[i]):
                best_start[i], best_end[i], best_cut[i] = began, ended, cut[i]
            if night_of[i] == NONE or day > night_of[i]:
                if night_of[i] != NONE:
                    self._learn_night(i)
                night_of[i], best_start[i], best_end[i] = day, NONE, NONE
            start[i], cut[i] = t[k], unseen_before[k]

    def _learn_night(self, i: int) -> None:
        b = self.beds
        began, ended = int(b["best_start"][i]), int(b["best_end"][i])
        if began != NONE:  # a night in bed (not away): kept for the regular spells
            slot = int(b["recent_next"][i])
            b["recent_nights"][i, slot] = b["night_of"][i]
            b["recent_long"][i, slot] = b["long_night"][i] == b["night_of"][i]
            b["recent_next"][i] = (slot + 1) % RECENT_NIGHTS
        if began == NONE or not SLEEP_MIN_MS <= ended - began <= SLEEP_MAX_MS \
                or b["best_cut"][i]:
            return
        local = self.fleet.local_ms(np.array([i, i]), np.array([began, ended]))
        noon = (int(local[0]) - NOON_MS) // DAY_MS * DAY_MS + NOON_MS
        bedtime, wake = (int(local[0]) - noon) / MINUTE_MS, (int(local[1]) - noon) / MINUTE_MS
        if not 6 * 60 <= (bedtime + wake) / 2 < DAY_MIN:
            return  # its middle is not between 18:00 and 12:00: not a night's sleep
        kind = int((int(b["night_of"][i]) + 3) % 7 in _WEEKEND)
        slot = int(b["night_next"][i, kind])
        b["bedtimes"][i, kind, slot] = bedtime
        b["wakes"][i, kind, slot] = wake
        b["night_next"][i, kind] = (slot + 1) % NIGHTS

    # --- judging ------------------------------------------------------------------------------

    def _judge(self, beds: I64, since: I64) -> Night:
        """Whether each exit ``since[k]`` at bed ``beds[k]`` was in that person's night."""
        fleet, b = self.fleet, self.beds
        local = fleet.local_ms(beds, since)
        day = (local - NOON_MS) // DAY_MS
        minute = ((local - NOON_MS) % DAY_MS) / MINUTE_MS
        weekend = np.isin((day + 3) % 7, _WEEKEND)
        kind = weekend.astype(np.int64)
        counts = (~np.isnan(b["wakes"][beds])).sum(axis=2)
        rows = np.arange(len(beds))
        own = counts[rows, kind] >= WARMUP_NIGHTS
        learnt = own | (counts[rows, 1 - kind] >= WARMUP_NIGHTS)
        kind = np.where(own | ~learnt, kind, 1 - kind)
        nan = np.full(len(beds), np.nan)
        start, end, bedtime, wake = nan.copy(), nan.copy(), nan.copy(), nan.copy()
        wall = (local % DAY_MS) / MINUTE_MS
        night = fleet.is_night(beds, wall)
        if not learnt.all():
            # Warm-up: up after hours in bed, near the end of the registry's night, is the
            # morning (an early riser's first mornings), not an exit.
            at = np.flatnonzero(~learnt)
            began = b["stretch_start"][beds[at]]
            to_end = (fleet.night_end_min[beds[at]] - wall[at]) % DAY_MIN
            morning = ((to_end <= WARMUP_MORNING_MIN) & (began != NONE)
                       & (since[at] - began >= WARMUP_MORNING_SLEEP_MS))
            night[at] &= ~morning
        if learnt.any():
            at = np.flatnonzero(learnt)
            bedtimes = b["bedtimes"][beds[at], kind[at]].astype(np.float64)
            wakes = b["wakes"][beds[at], kind[at]].astype(np.float64)
            bedtime[at] = np.nanmedian(bedtimes, axis=1)
            wake[at] = np.nanmedian(wakes, axis=1)
            bed_spread = np.nanmedian(np.abs(bedtimes - bedtime[at, None]), axis=1)
            wake_spread = np.nanmedian(np.abs(wakes - wake[at, None]), axis=1)
            # From one or two nights the spread is not known yet: the widest margins.
            unsure = counts[rows, kind][at] < SPREAD_NIGHTS
            bed_spread[unsure] = wake_spread[unsure] = np.inf
            first = bedtime[at] - _margin(bed_spread, BED_MARGIN_MIN)
            early = np.nanpercentile(wakes, EARLY_WAKE_PERCENTILE, axis=1)
            last = np.minimum(wake[at] - _margin(wake_spread, WAKE_MARGIN_MIN),
                              early - EARLY_WAKE_MARGIN_MIN)
            registry_start = (fleet.night_start_min[beds[at]] - 12 * 60) % DAY_MIN
            registry_end = (fleet.night_end_min[beds[at]] - 12 * 60) % DAY_MIN
            bounded = registry_start < registry_end
            start[at] = np.where(bounded, np.maximum(first, registry_start - REGISTRY_REACH_MIN),
                                 first)
            end[at] = np.where(bounded, np.minimum(last, registry_end + REGISTRY_REACH_MIN), last)
            night[at] = (minute[at] >= start[at]) & (minute[at] < end[at])
        return Night(night, learnt, weekend, counts[rows, kind], start, end, bedtime, wake)

    def _limits(self, beds: I64, now_ms: int | None = None) -> Limit:
        """Each bed's return limit, in minutes, from its night trips (see the module doc);
        with ``now_ms``, up to :data:`AWAKE_MIN` for a person up and about at home then, in
        the warm-up or with sleepless spells known."""
        b = self.beds
        floor = self.fleet.setting("bed_exit_return_min")[beds]
        trips = b["trips"][beds].astype(np.float64)
        count = (~np.isnan(trips)).sum(axis=1)
        usual = np.full(len(beds), np.nan)
        enough = count >= WARMUP_TRIPS
        if enough.any():
            usual[enough] = np.nanpercentile(trips[enough], TRIP_PERCENTILE, axis=1)
        learnt = np.where(enough, usual * TRIP_FACTOR, floor)
        awake = np.zeros(len(beds), np.bool_)
        if now_ms is not None:
            moved, since = b["moved_t"][beds], b["out_since"][beds]
            first_nights = ~enough & ((b["recent_nights"][beds] != NONE).sum(axis=1)
                                      < AWAKE_WARMUP_NIGHTS)
            spells = enough & (usual >= floor)
            awake = ((first_nights | spells) & (moved != NONE) & (moved >= now_ms - MOVING_MS)
                     & (moved > since) & ~(b["door_t"][beds] > since)
                     & (b["empty_since"][beds] == NONE) & (learnt < AWAKE_MIN))
        learnt = np.minimum(np.where(awake, AWAKE_MIN, learnt), CEILING_MIN)
        return Limit(np.maximum(floor, learnt), usual, count, awake, ~enough)

    # --- evaluate -----------------------------------------------------------------------------

    def _evaluate(self, now_ms: int) -> list[Finding]:
        n = self.fleet.n_beds
        if not n:
            return []
        b = self.beds
        since = b["out_since"][:n]
        active = b["active"][:n]
        active_since = b["active_since"][:n]
        judged = b["judged_since"][:n]
        floor_ms = self.fleet.setting("bed_exit_return_min") * MINUTE_MS
        fresh = b["last_received"][:n] >= now_ms - STALE_MS
        desired = active & (since == active_since)
        # A bed where the person was never seen in bed (first heard while they were up) has
        # no exit from it.
        candidate = np.flatnonzero((since != NONE) & ~active & fresh & (since != judged)
                                   & (b["seen_in"][:n] != NONE)
                                   & (now_ms - since >= floor_ms))
        if len(candidate):
            night = self._judge(candidate, since[candidate]).night
            judged[candidate[~night]] = since[candidate[~night]]
            candidate = candidate[night]
            limit_ms = self._limits(candidate, now_ms).limit_min * MINUTE_MS
            desired[candidate] = now_ms - since[candidate] >= limit_ms
        on, off = transitions(active, desired)
        findings: list[Finding] = []
        for i in on.tolist():
            active_since[i] = since[i]
            findings.append(self._raised(i, now_ms))
        for i in off.tolist():
            back = int(b["last_in"][i])
            findings.append(self._finding(
                i, at=now_ms, active=False, started_at=int(active_since[i]),
                summary="back in bed",
                evidence={"out_minutes": rounded((back - int(active_since[i])) / MINUTE_MS)}))
            active_since[i] = NONE
        return findings

    def _raised(self, i: int, now_ms: int) -> Finding:
        b = self.beds
        left_ms = int(b["out_since"][i])
        beds, since = np.array([i]), np.array([left_ms], np.int64)
        out = (now_ms - left_ms) / MINUTE_MS
        left = _clock(float(self.fleet.local_minutes(beds, since)[0]) - 12 * 60)
        night = self._judge(beds, since)
        limit = self._limits(beds, now_ms)
        limit_min, usual = float(limit.limit_min[0]), float(limit.usual_min[0])
        floor = float(self.fleet.setting("bed_exit_return_min")[i])
        if bool(night.learnt[0]):
            window = f"{_clock(night.start_min[0])}-{_clock(night.end_min[0])}"
        else:
            start = float(self.fleet.night_start_min[i]) - 12 * 60
            window = f"{_clock(start)}-{_clock(float(self.fleet.night_end_min[i]) - 12 * 60)}"
        learnt = bool(night.learnt[0])
        rule = ("registry" if limit_min == floor
                else "warm-up, up and about" if bool(limit.awake[0] & limit.warm_up[0])
                else "sleepless spells, up and about" if bool(limit.awake[0])
                else "ceiling" if limit_min == CEILING_MIN else "usual night trips")
        return self._finding(
            i, at=now_ms, active=True, started_at=left_ms,
            summary=f"out of bed since {left} (local), {out:.0f} min "
                    f"(night {window}, limit {limit_min:.0f})",
            evidence={
                "out_minutes": rounded(out), "left_bed_ms": left_ms, "left_bed_local": left,
                "return_limit_minutes": rounded(limit_min),
                "return_limit_rule": rule,
                "usual_night_trip_minutes": None if np.isnan(usual) else rounded(usual),
                "night_trips_learnt": int(limit.trips[0]),
                "night_local": window,
                "night_rule": "learnt" if learnt else "registry",
                "night_type": "weekend" if bool(night.weekend[0]) else "weekday",
                "nights_learnt": int(night.nights[0]),
                "usual_bedtime_local": _clock(night.bedtime_min[0]) if learnt else None,
                "usual_wake_local": _clock(night.wake_min[0]) if learnt else None,
                "seen_by": "infrared zone" if bool(b["out_by_infrared"][i]) else "bed sensor",
                "home_empty": bool(b["empty_since"][i] != NONE),
            })
