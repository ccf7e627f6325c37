"""``inactivity``: someone is home, out of their usual sleep, and has not moved for far longer
than usual at this hour.

Per bed, the *still run* is the time since the infrared sensor last saw movement or nobody
was home (or, after a gap in its data, since data resumed: a sensor that was silent says
nothing about stillness), since the person got into or out of bed (movement, whatever the
room's motion says: the stillness in bed does not carry over to the chair after getting up),
or since the person was last seen in bed at an hour of their usual
sleep: a person in bed during their usual sleep is asleep, not inactive (stillness in bed is
the bed sensor's and the vital signs' to judge, not the room's motion). In bed comes from the
fall/vital-sign sensor's ``in_bed``, else (that sensor silent) from the infrared ``bed`` zone.

What is learnt, per bed and local hour of day (the site's zone, DST included), folded into an
exponentially weighted average over days (about a week of memory) at each local midnight:

* the *usual stillness*: the longest still run reached within the hour each day (a run from
  13:00 to 14:30 reached 60 minutes within 13:00 and 90 within 14:00), counting runs ended by
  movement or by getting into or out of bed, never an hour in which nobody was home, and
  never a run that raised this alert unless movement ended it within
  :data:`ALERTED_RUN_FACTOR` times the threshold it was raised at (35 minutes of reading,
  flagged at 31, are this person's; three hours are not). A day longer than the usual weighs
  :data:`USUAL_ALPHA_UP` (a shorter one :data:`USUAL_ALPHA`), so a usual afternoon read is
  learnt in a day or two. A longer run that raised the alert and that the person ended, up to
  ``inactivity_min_minutes`` (:data:`REPEAT_MAX_SHARE`), is a *routine* when one did at the
  same local hour on an earlier day within :data:`REPEAT_DAYS`: that hour's usual becomes at
  least the shorter of the two at once (a doze in the armchair before bed on most evenings is
  flagged once or twice, then learnt; over two hours still, by default, is never learnt);
* the *usual sleep*: the share of the hour spent in bed, weekday and weekend nights apart as
  night_bed_exit keeps them (Friday and Saturday nights, noon to noon: Saturday's lie-in is
  the weekend's, Sunday evening's early bedtime a weekday's; hours with nobody home not
  counted). An hour is usual sleep when that share is at least
  :data:`SLEEP_SHARE`; until it is learnt, the bed's night window (BedSettings
  ``night_start``..``night_end``) stands in.

The condition holds, while the infrared sensor is still reporting and the person is not in
bed at a usual-sleep hour, when the still run reaches the threshold of this hour: the largest
of the thresholds of the hour before, this one and the next (so a nap that starts or ends half
an hour off its usual time is still usual), where an hour's threshold is

* learnt: ``max(inactivity_min_minutes / 4, usual + max(MARGIN_MIN, 0.3 x usual))``: a still
  run at an hour when the person is usually active (usual 10-30 min) is flagged
  :data:`MARGIN_MIN` after it became unusual, so within 30 minutes with the minute's
  evaluation rounds (after 35-55 minutes); in bed, at least ``inactivity_min_minutes / 2``; a
  usual afternoon nap raises the threshold of its hours by itself;
* *resting*: in bed (out of the usual sleep) with the bed sensor reporting a heart or
  breathing rate in the last 10 minutes, the ceiling alone: a nap or a lie-in is judged by
  the bed sensor and the vital-sign rules, not by the room's motion;
* not learnt yet (warm-up: the first day of a new bed, hours at which the person is never
  home): ``max(inactivity_min_minutes, inactivity_factor x prior)``, the prior usual being 20
  minutes by day and 40 at night, which is the threshold used before anything is learnt;
* never above the ceiling ``2 x inactivity_min_minutes`` (4 hours by default), so a long
  stillness out of bed, or in bed at an hour when the person is usually up (motionless in bed
  at noon), is always flagged. The ceiling needs to know where the person is: on a bed
  with no bed sensor and no infrared zone, the learnt usual alone decides.

It is not raised, below the ceiling, for a still run that is another alert's spell: one that
began no later than :data:`FALL_COVER_MS` after a ``fall_detected`` of the bed (the fall's
critical alert, whose urgency rises with the stillness), or out of bed since the person left
it at an hour of their usual sleep, while that sleep lasts (night_bed_exit's to judge, its
limit at most 90 minutes). One incident is one alert; beyond the ceiling, or once the usual
sleep is over, the stillness is judged here as any other.

It clears with the next movement, nobody home, or the person asleep in bed. *Nobody home* is
decided from every sensor (:class:`~gateway.detect._presence.HomeWatch`), not from the
infrared's "nobody" alone, which is also what it says of a person out of its view or lying
still under a sensor that sees presence by movement: the person was last seen at the door and
nothing has shown a sign of life since (the infrared seeing or counting someone, the bed
sensor, a voice or sound above the room's usual level, a button, a fall), or, without the
door, nothing has shown anyone for three hours (a room that merely sounds empty is not
enough: a person motionless out of view sounds the same). Nobody unseen for those hours does
not clear an alert already raised; leaving through the door does.
Warm-up: on the first day every hour
uses the not-learnt threshold (as before this rule: 120 minutes by default), and the night
window stands for sleep; from the second day the hours seen are learnt.

The module is over 400 lines because it folds in two sensors (the room's motion and the bed
sensor's in bed), learns two routines per hour from them, and explains each alert.

For example, someone at home and still from 08:00 to 10:00, on a bed with nothing learnt
yet (a usual 20 minutes in the day, so the default minimum of 120 minutes decides):

>>> import json
>>> from devices import decode
>>> from gateway.detect.inactivity import InactivityDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = InactivityDetector(timezone="UTC")
>>> eight_am = 1_793_606_400_000  # 2026-11-02 08:00 UTC
>>> times = [eight_am + m * 60_000 for m in range(0, 121, 5)]
>>> still = [message("infrared/ir-1/telemetry", ts=t, seq=i, presence=True, motion=0)
...          for i, t in enumerate(times)]
>>> detector.update(still, times)
>>> [finding] = detector.evaluate(times[-1])
>>> print(finding.type, finding.severity, finding.summary)
inactivity high no movement for 120 min (usual here 20 min)
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from alerts.model import AlertType, Finding, Severity
from devices.schemas import FallEvent
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import ZONE_BED, Batch, groups
from gateway.detect._presence import HomeWatch
from gateway.detect._table import NONE

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
_MAX = np.iinfo(np.int64).max

DATA_GAP_MS: Final = 10 * MINUTE_MS
"""Infrared samples further apart than this break the still run (stillness is not known
across the gap), or :data:`GAP_FACTOR` times the sensor's usual spacing if that is longer."""
STALE_MS: Final = 15 * MINUTE_MS
"""No infrared data received for this long (or :data:`GAP_FACTOR` times the sensor's usual
spacing): the condition is not raised (device_offline is)."""
GAP_FACTOR: Final = 2.5
SPACING_MAX_MS: Final = 60 * MINUTE_MS
"""A sensor's usual spacing (moving average of the time between its samples) is learnt from
spacings up to this: a longer pause is an outage, not its rate."""
SPACING_ALPHA: Final = 0.2
USUAL_ALPHA: Final = 0.2
"""Weight of today's value in an hour's usual stillness and usual share in bed (about a week
of memory)."""
USUAL_ALPHA_UP: Final = 0.5
"""... and in an hour's usual stillness when today's is longer: a person who reads for 35
minutes after lunch is taken for one after a day or two, not a week of alerts (a day of
stillness that raised this alert is learnt only within :data:`ALERTED_RUN_FACTOR`)."""
ALERTED_RUN_FACTOR: Final = 1.4
"""A still run that raised this alert is learnt as usual if movement ended it within this
times the threshold it was judged by (reading for 36 minutes, flagged at 31, is this person's
afternoon; three hours motionless is not, and is never learnt)."""
REPEAT_DAYS: Final = 7
"""A still spell that raised this alert and was ended by the person (beyond
:data:`ALERTED_RUN_FACTOR`) is learnt as usual when another one did at the same local hour
within this many days before: a routine (a doze in the armchair before bed on most evenings),
not an incident."""
REPEAT_MAX_SHARE: Final = 1.0
"""... and only up to this times ``inactivity_min_minutes`` (120 minutes by default): a longer
stillness is never a routine, however often it happens."""
FALL_COVER_MS: Final = 10 * MINUTE_MS
"""A still run that began no later than this after a ``fall_detected`` of the bed is the fall's
(its own critical alert, whose urgency rises with the stillness): not raised here below the
ceiling."""
RESTING_FRESH_MS: Final = 10 * 60_000
"""In bed with a heart or breathing rate from the bed sensor this recently is *resting*."""
PRIOR_DAY_MIN: Final = 20.0
PRIOR_NIGHT_MIN: Final = 40.0
"""Usual longest still run (minutes) assumed for an hour not yet observed."""
MARGIN_MIN: Final = 25.0
MARGIN_SHARE: Final = 0.3
"""A learnt hour's threshold is its usual plus ``max(MARGIN_MIN, MARGIN_SHARE x usual)``."""
FLOOR_SHARE: Final = 0.25
IN_BED_FLOOR_SHARE: Final = 0.5
"""... and at least this share of ``inactivity_min_minutes`` (30 minutes by default; in bed
out of the usual sleep, 60: a nap the routine has not learnt is not an emergency)."""
CEILING_FACTOR: Final = 2.0
"""No threshold is above this times ``inactivity_min_minutes`` (where in bed is known)."""
SLEEP_SHARE: Final = 0.3
"""An hour spent in bed at least this often (learnt) is usual sleep."""
VITALS_STALE_MS: Final = 3 * MINUTE_MS
"""The infrared zone stands in for ``in_bed`` when the bed sensor has been silent this long."""
BED_FRESH_MS: Final = 30 * MINUTE_MS
"""In bed, last seen this recently, is still in bed (or, if older, as long as nobody moved)."""
BED_KNOWN_MS: Final = 60 * MINUTE_MS
"""Whereabouts (in bed or not) older than this are unknown: the ceiling is not applied."""


def _keys(bed: I64, t: I64, low: int) -> I64:
    """One sortable key per (bed, time)."""
    keys: I64 = (bed << 41) + (t - low)
    return keys


def _previous(keys: I64, sorted_keys: I64, values: I64, bed: I64, sorted_bed: I64) -> I64:
    """For each key, ``values`` of the last of ``sorted_keys`` strictly before it on the same
    bed (NONE if there is none)."""
    if not len(sorted_keys):
        return np.full(len(keys), NONE, np.int64)
    at = np.searchsorted(sorted_keys, keys, side="left") - 1
    safe = np.maximum(at, 0)
    ok = (at >= 0) & (sorted_bed[safe] == bed)
    found: I64 = np.where(ok, values[safe], NONE)
    return found


def _by_key(bed: I64, t: I64) -> tuple[I64, I64]:
    """``bed``/``t`` ordered by bed and time."""
    order = np.lexsort((t, bed))
    return bed[order], t[order]


def _hour_runs(beds: I64, local: I64) -> I64:
    """Where each bed's local hour begins in ``beds``/``local`` (ordered by bed and time)."""
    if not len(beds):
        return np.zeros(0, np.int64)
    hour = local // HOUR_MS
    step = np.flatnonzero((beds[1:] != beds[:-1]) | (hour[1:] != hour[:-1])) + 1
    runs: I64 = np.concatenate(([0], step))
    return runs


def _thinned(beds: I64, t: I64, in_bed: npt.NDArray[np.float32]) -> tuple[I64, I64, Bool]:
    """The bed sensor's known ``in_bed`` samples, keeping of each bed's minute the last one in
    and the last one out (a sensor sampling every few seconds says no more, and the share of
    an hour in bed is then counted in minutes, whatever the sensor's rate)."""
    known = ~np.isnan(in_bed)
    beds, t, is_in = beds[known], t[known], in_bed[known] == 1
    if len(beds) < 2:
        return beds, t, is_in
    minute = t // MINUTE_MS
    keep = np.ones(len(beds), np.bool_)
    keep[:-1] = ((beds[1:] != beds[:-1]) | (minute[1:] != minute[:-1])
                 | (is_in[1:] != is_in[:-1]))
    return beds[keep], t[keep], is_in[keep]


def _weekend(local: I64) -> I64:
    """1 where local time ``local`` belongs to a weekend night (Friday and Saturday nights,
    noon to noon, as night_bed_exit learns them: Saturday morning's lie-in and Saturday
    evening's late bedtime are the weekend's, Sunday evening's early one a weekday's), else 0."""
    night = (local - DAY_MS // 2) // DAY_MS
    kind: I64 = np.isin((night + 3) % 7, (4, 5)).astype(np.int64)
    return kind


def _latest(column: I64, beds: I64, t: I64) -> None:
    """``column[bed] = max(column[bed], latest t)`` for ``beds`` ordered by bed and time."""
    if len(beds):
        rows, _, last, _ = groups(beds)
        column[rows] = np.maximum(column[rows], t[last])


class InactivityDetector(DetectorBase):
    name = "inactivity"
    alert_type = AlertType.INACTIVITY
    severity = Severity.HIGH

    def _declare(self) -> None:
        b = self.beds
        b.column("still_since", np.int64, NONE)
        b.column("spacing_ms", np.float64, 0.0)
        """Usual time between the bed's infrared samples (0 until learnt)."""
        b.column("last_t", np.int64, NONE)
        b.column("last_received", np.int64, NONE)
        b.column("usual_min", np.float32, np.nan, (24,))
        b.column("day_max_min", np.float32, 0.0, (24,))
        """Longest still run reached within each local hour (ended by movement), today."""
        b.column("day", np.int64, NONE)
        """Local day (epoch days) that the ``day_*`` columns belong to."""
        b.column("active", np.bool_, False)
        b.column("active_since", np.int64, NONE)
        b.column("bed_share", np.float32, np.nan, (2, 24))
        """Usual share of each local hour spent in bed, [weekday, weekend] (NaN: not learnt)."""
        b.column("day_in_bed", np.float32, 0.0, (24,))
        b.column("day_bed_seen", np.float32, 0.0, (24,))
        """Today's observations of in bed, and of in or out of bed, per local hour."""
        b.column("day_away", np.bool_, False, (24,))
        """Local hours of today in which nobody was home at some point (not learnt from)."""
        b.column("last_vitals_t", np.int64, NONE)
        b.column("in_bed", np.bool_, False)
        b.column("in_bed_t", np.int64, NONE)
        """The latest in or out of bed, and when (NONE: never known)."""
        b.column("clock_t", np.int64, NONE)
        """Latest sample time of either sensor (for the day change)."""
        b.column("rates_t", np.int64, NONE)
        """Latest in-bed sample of the bed sensor with a heart or breathing rate."""
        b.column("active_threshold", np.float32, np.nan)
        """The threshold (minutes) the running alert was raised at."""
        b.column("day_alerted_min", np.float32, 0.0, (24,))
        """Like ``day_max_min``, of the still runs that raised this alert and were not learnt."""
        b.column("alerted_min", np.float32, np.nan, (24,))
        b.column("alerted_day", np.int64, NONE, (24,))
        """The latest earlier day's ``day_alerted_min`` per hour, and that local day."""
        b.column("fall_t", np.int64, NONE)
        """The latest ``fall_detected`` of the bed."""
        b.column("night_exit_t", np.int64, NONE)
        """Out of bed since this exit at an hour of the usual sleep (NONE: back in bed, or the
        latest exit was not at such an hour)."""
        self.home = HomeWatch(b)

    # --- folding a batch in ---------------------------------------------------------------

    def _local(self, beds: I64, t: I64) -> I64:
        """Local wall-clock ms; one offset per bed when no bed's offset changes in the batch."""
        if not len(t):
            return np.zeros(0, np.int64)
        low, high = int(t.min()), int(t.max())
        fleet = self.fleet
        if high - low < 6 * HOUR_MS:
            first = fleet.local_ms_now(low) - low
            last = fleet.local_ms_now(high) - high
            if np.array_equal(first, last):
                local: I64 = t + first[beds]
                return local
        return fleet.local_ms(beds, t)

    def _sleep_hour(self, beds: I64, local: I64, runs: I64 | None = None) -> Bool:
        """Whether local time ``local[i]`` is in the usual sleep of bed ``beds[i]``; ``runs``
        (the starts of each bed's local hours, see :func:`_hour_runs`) saves the look-ups."""
        if runs is None:
            runs = np.arange(len(beds))
        lengths = np.diff(np.append(runs, len(beds)))
        r_bed, r_local = beds[runs], local[runs]
        hour = (r_local // HOUR_MS) % 24
        weekend = _weekend(r_local)
        share = self.beds["bed_share"]
        value = share[r_bed, weekend, hour]
        value = np.repeat(np.where(np.isnan(value), share[r_bed, 1 - weekend, hour], value),
                          lengths)
        fleet = self.fleet
        n = fleet.n_beds
        if (fleet.night_start_min[:n] % 60).any() or (fleet.night_end_min[:n] % 60).any():
            night = fleet.is_night(beds, ((local % DAY_MS) / MINUTE_MS).astype(np.float64))
        else:  # nights of whole hours: one look-up per bed and hour
            minutes = ((r_local % DAY_MS) / MINUTE_MS).astype(np.float64)
            night = np.repeat(fleet.is_night(r_bed, minutes), lengths)
        sleep: Bool = np.where(np.isnan(value), night, value >= SLEEP_SHARE)
        return sleep

    def _update(self, batch: Batch) -> None:
        ir, vi = batch.infrared, batch.vitals
        b = self.beds
        self.home.update(batch)
        known = ~(np.isnan(ir.presence) & np.isnan(ir.motion))
        bed, t = ir.bed[known], ir.t[known]
        presence, motion = ir.presence[known], ir.motion[known]
        zone = ir.zone[known]
        # In or out of bed: the bed sensor, else (silent) the infrared zone. Two streams, each
        # ordered by bed and time, as a round's samples are.
        v_bed, v_t, v_in = _thinned(vi.bed, vi.t, vi.in_bed)
        _latest(b["last_vitals_t"], v_bed, v_t)
        rates = (vi.in_bed == 1) & (~np.isnan(vi.heart) | ~np.isnan(vi.breathing))
        _latest(b["rates_t"], vi.bed[rates], vi.t[rates])
        i_obs = ((zone != 0) & (presence != 0)
                 & (b["last_vitals_t"][bed] < t - VITALS_STALE_MS))
        streams = [(v_bed, v_t, v_in),
                   (bed[i_obs], t[i_obs], zone[i_obs] == ZONE_BED)]
        if not len(bed) and not len(v_bed):
            return
        asleep: list[tuple[I64, I64]] = []
        hours: list[tuple[I64, I64]] = []
        for o_bed, o_t, o_in in streams:
            o_local = self._local(o_bed, o_t)
            runs = _hour_runs(o_bed, o_local)
            hours.append((runs, (o_local[runs] // HOUR_MS) % 24))
            sleeping = o_in & self._sleep_hour(o_bed, o_local, runs) if len(o_bed) else o_in
            asleep.append((o_bed[sleeping], o_t[sleeping]))

        c_bed, c_t = self._bed_changes(streams)
        for record in batch.events:
            if isinstance(record.event, FallEvent) and record.event.event == "fall_detected":
                b["fall_t"][record.bed] = max(int(b["fall_t"][record.bed]), record.t)

        still_since, last_t = b["still_since"], b["last_t"]
        before = still_since.copy() if len(bed) or len(c_bed) else still_since
        first = np.concatenate(([True], bed[1:] != bed[:-1]))
        previous = np.where(first, last_t[bed], np.concatenate(([NONE], t[:-1])))
        gap = t - previous > np.maximum(DATA_GAP_MS, GAP_FACTOR * b["spacing_ms"][bed])
        self._learn_spacing(bed, t - previous, previous != NONE)
        # Nobody home, from the whole evidence (not the infrared's "nobody" alone: a person
        # out of its view is still). Two hours unseen and unheard do not end a still run that
        # raised this alert; leaving through the door does.
        away_since = self.home.away_since(bed, t, unseen=~b["active"][bed])
        absent = (away_since != NONE) & (t >= away_since)
        moved = (motion > 0) & (presence != 0)
        reset = moved | absent | gap
        ended = moved & ~gap
        _latest(still_since, bed[reset], t[reset])
        # Getting into or out of bed is movement, whatever the room's motion says: the
        # stillness in bed does not carry over to the chair, nor the chair's into bed.
        _latest(still_since, c_bed, c_t)
        for a_bed, a_t in asleep:
            _latest(still_since, a_bed, a_t)
        _latest(last_t, bed, t)
        np.maximum.at(b["last_received"], bed, ir.received[known])
        self._whereabouts(streams)
        touched = np.zeros(b.capacity, np.bool_)
        for o_bed, o_t, _ in [(bed, t, None), *streams]:
            _latest(b["clock_t"], o_bed, o_t)
            touched[o_bed] = True
        self._new_day(np.flatnonzero(touched))
        # Today's observations, by local hour.
        for (o_bed, o_t, o_in), (runs, hour) in zip(streams, hours, strict=True):
            if len(o_bed):
                rows = o_bed[runs]
                in_so_far = np.concatenate(([0], np.cumsum(o_in, dtype=np.int64)))
                bounds = np.append(runs, len(o_bed))
                seen = np.diff(bounds).astype(np.float32)
                inside = np.diff(in_so_far[bounds]).astype(np.float32)
                if int(o_t.max()) - int(o_t.min()) < 23 * HOUR_MS:  # each (bed, hour) once
                    b["day_bed_seen"][rows, hour] += seen
                    b["day_in_bed"][rows, hour] += inside
                else:
                    np.add.at(b["day_bed_seen"], (rows, hour), seen)
                    np.add.at(b["day_in_bed"], (rows, hour), inside)
        if absent.any():
            away_local = self._local(bed[absent], t[absent])
            b["day_away"][bed[absent], (away_local // HOUR_MS) % 24] = True
        if ended.any() or len(c_bed):
            r_bed, r_t = _by_key(np.concatenate((bed[reset], c_bed)),
                                 np.concatenate((t[reset], c_t)))
            e_bed, e_t = _by_key(np.concatenate((bed[ended], c_bed)),
                                 np.concatenate((t[ended], c_t)))
            self._ended_runs(r_bed, r_t, e_bed, e_t, asleep, before)

    def _bed_changes(self, streams: list[tuple[I64, I64, Bool]]) -> tuple[I64, I64]:
        """Where each bed's person got into or out of bed in this round (against the latest
        whereabouts before it), ordered by bed and time; keeps ``night_exit_t``: out of bed
        since an exit at an hour of the usual sleep (cleared by a return to bed)."""
        b = self.beds
        beds_out: list[I64] = []
        times_out: list[I64] = []
        into: list[Bool] = []
        for o_bed, o_t, o_in in streams:
            if not len(o_bed):
                continue
            first = np.concatenate(([True], o_bed[1:] != o_bed[:-1]))
            known_t = b["in_bed_t"][o_bed]
            was_known = (known_t != NONE) & (known_t <= o_t)
            prior = np.where(was_known, b["in_bed"][o_bed], o_in)
            previous = np.where(first, prior, np.concatenate(([False], o_in[:-1])))
            change = previous != o_in
            beds_out.append(o_bed[change])
            times_out.append(o_t[change])
            into.append(o_in[change])
        if not beds_out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        c_bed, c_t = np.concatenate(beds_out), np.concatenate(times_out)
        c_in = np.concatenate(into)
        order = np.lexsort((c_t, c_bed))
        c_bed, c_t, c_in = c_bed[order], c_t[order], c_in[order]
        if len(c_bed):
            rows, _, last, _ = groups(c_bed)
            at_night = self._sleep_hour(c_bed[last], self._local(c_bed[last], c_t[last]))
            exit_t = np.where(~c_in[last] & at_night, c_t[last], NONE)
            b["night_exit_t"][rows] = exit_t
        return c_bed, c_t

    def _whereabouts(self, streams: list[tuple[I64, I64, Bool]]) -> None:
        """Keep each bed's latest in or out of bed (each stream ordered by bed and time)."""
        b = self.beds
        for beds, t, in_bed in streams:
            if not len(beds):
                continue
            rows, _, last, _ = groups(beds)
            newer = t[last] >= b["in_bed_t"][rows]
            b["in_bed_t"][rows[newer]] = t[last][newer]
            b["in_bed"][rows[newer]] = in_bed[last][newer]

    def _ended_runs(self, r_bed: I64, r_t: I64, e_bed: I64, e_t: I64,
                    asleep: list[tuple[I64, I64]], before: I64) -> None:
        """Learn the still runs that movement (or getting into or out of bed) ended in this
        batch, ``e_bed``/``e_t``: each from the latest reset before it, ``r_bed``/``r_t``
        (movement, absence, data resumed, in or out of bed, asleep in bed, or the run carried
        in); both ordered by bed and time."""
        if not len(e_bed):
            return
        low = min([int(r_t.min()), int(e_t.min())]
                  + [int(a_t.min()) for _, a_t in asleep if len(a_t)])
        r_keys = _keys(r_bed, r_t, low)
        e_keys = _keys(e_bed, e_t, low)
        start = np.maximum(before[e_bed], _previous(e_keys, r_keys, r_t, e_bed, r_bed))
        for a_bed, a_t in asleep:
            if len(a_t):
                start = np.maximum(start, _previous(e_keys, _keys(a_bed, a_t, low), a_t,
                                                    e_bed, a_bed))
        b = self.beds
        alerted = b["active"][e_bed] & (start == b["active_since"][e_bed])
        # A run that raised this alert is not usual, unless it ended a little after the
        # threshold it was judged by (the usual was too short: the person's own stillness).
        within = (e_t - start) <= (ALERTED_RUN_FACTOR * MINUTE_MS) * b["active_threshold"][e_bed]
        use = (start != NONE) & (start < e_t) & (~alerted | within)
        if use.any():
            self._learn(e_bed[use], start[use], e_t[use])
        # One that did not is kept aside: learnt only if it recurs at the same hour (see
        # _new_day), and never if longer than a routine can be.
        minimum = self.fleet.setting("inactivity_min_minutes")[e_bed]
        aside = ((start != NONE) & (start < e_t) & alerted & ~within
                 & (e_t - start <= REPEAT_MAX_SHARE * minimum * MINUTE_MS))
        if aside.any():
            self._routine(e_bed[aside], start[aside], e_t[aside])
            self._learn(e_bed[aside], start[aside], e_t[aside], "day_alerted_min")

    def _learn_spacing(self, bed: I64, step: I64, known: Bool) -> None:
        """Fold this round's mean spacing of each bed's samples into its usual spacing, so a
        sensor that reports every 20 or 30 minutes is not one long series of data gaps."""
        use = known & (step > 0) & (step <= SPACING_MAX_MS)
        if not use.any():
            return
        size = self.beds.capacity
        count = np.bincount(bed[use], minlength=size)
        total = np.bincount(bed[use], step[use].astype(np.float64), minlength=size)
        rows = np.flatnonzero(count)
        mean = total[rows] / count[rows]
        spacing = self.beds["spacing_ms"]
        old = spacing[rows]
        spacing[rows] = np.where(old > 0, (1 - SPACING_ALPHA) * old + SPACING_ALPHA * mean, mean)

    def _new_day(self, beds: I64) -> None:
        """At a bed's local day change, fold the day's per-hour values into the usual ones,
        leaving out hours in which nobody was home."""
        if not len(beds):
            return
        b = self.beds
        day = self._local(beds, b["clock_t"][beds]) // DAY_MS
        old_day = b["day"][beds]
        turned = (day != old_day) & (old_day != NONE)
        changed = beds[turned]
        if len(changed):
            home = ~b["day_away"][changed]
            seen = b["day_max_min"][changed]
            usual = b["usual_min"][changed]
            alpha = np.where(seen > usual, USUAL_ALPHA_UP, USUAL_ALPHA)
            folded = np.where(np.isnan(usual), seen, (1 - alpha) * usual + alpha * seen)
            b["usual_min"][changed] = np.where((seen > 0) & home, folded, usual)
            # Today's spells that raised the alert, kept for the days to come (_routine).
            spell = b["day_alerted_min"][changed]
            last_spell, last_day = b["alerted_min"][changed], b["alerted_day"][changed]
            this_day = old_day[turned][:, None]
            kept = (spell > 0) & home
            b["alerted_min"][changed] = np.where(kept, spell, last_spell)
            b["alerted_day"][changed] = np.where(kept, this_day, last_day)
            # Each hour's kind is its night's: the morning the night before's.
            hours = np.arange(24)
            rows = changed[:, None]
            weekend = _weekend(b["day"][rows] * DAY_MS + hours * HOUR_MS)
            observed = b["day_bed_seen"][changed]
            today = b["day_in_bed"][changed] / np.maximum(observed, 1.0)
            share = b["bed_share"][rows, weekend, hours]
            mixed = np.where(np.isnan(share), today,
                             (1 - USUAL_ALPHA) * share + USUAL_ALPHA * today)
            b["bed_share"][rows, weekend, hours] = np.where((observed > 0) & home, mixed, share)
            for name in ("day_max_min", "day_in_bed", "day_bed_seen", "day_alerted_min"):
                b[name][changed] = 0.0
            b["day_away"][changed] = False
        b["day"][beds] = day

    def _reached(self, beds: I64, start: I64, end: I64
                 ) -> list[tuple[I64, I64, npt.NDArray[np.float32]]]:
        """For each ended still run, the length (minutes) it reached within every local hour
        it covered: (beds, hours, minutes) per hour step."""
        first_local = self._local(beds, start)
        first = first_local // HOUR_MS
        spanned = np.clip(self._local(beds, end) // HOUR_MS - first, 0, 23)
        steps = []
        for k in range(int(spanned.max()) + 1):
            inside = k <= spanned
            hour_end = (first[inside] + k + 1) * HOUR_MS - first_local[inside] + start[inside]
            reached = (np.minimum(end[inside], hour_end) - start[inside]) / MINUTE_MS
            hours = ((first[inside] + k) % 24).astype(np.int64)
            steps.append((beds[inside], hours, reached.astype(np.float32)))
        return steps

    def _learn(self, beds: I64, start: I64, end: I64, column: str = "day_max_min") -> None:
        """Fold ended still runs into today's ``column`` (see :meth:`_reached`)."""
        day_max = self.beds[column]
        for rows, hours, value in self._reached(beds, start, end):
            longer = value > day_max[rows, hours]  # most runs are not: few to fold in
            np.maximum.at(day_max, (rows[longer], hours[longer]), value[longer])

    def _routine(self, beds: I64, start: I64, end: I64) -> None:
        """Spells that raised this alert and that the person ended: where one did at the same
        local hour on an earlier day within :data:`REPEAT_DAYS`, it is this person's routine,
        usual at that hour from now on (the shorter of the two)."""
        b = self.beds
        usual, last, last_day = b["usual_min"], b["alerted_min"], b["alerted_day"]
        for rows, hours, value in self._reached(beds, start, end):
            seen = last_day[rows, hours]
            recent = (seen != NONE) & (b["day"][rows] - seen <= REPEAT_DAYS)
            recent &= ~np.isnan(last[rows, hours])
            if recent.any():
                rows, hours = rows[recent], hours[recent]
                routine = np.minimum(value[recent], last[rows, hours])
                np.fmax.at(usual, (rows, hours), routine)

    # --- evaluating -----------------------------------------------------------------------

    def _evaluate(self, now_ms: int) -> list[Finding]:
        n = self.fleet.n_beds
        if not n:
            return []
        b = self.beds
        since = b["still_since"][:n]
        active = b["active"][:n]
        active_since = b["active_since"][:n]
        minimum = self.fleet.setting("inactivity_min_minutes")[:n]
        fresh = b["last_received"][:n] >= now_ms - np.maximum(
            STALE_MS, GAP_FACTOR * b["spacing_ms"][:n])
        candidate = np.flatnonzero((since != NONE) & fresh & ~active
                                   & (now_ms - since >= FLOOR_SHARE * minimum * MINUTE_MS))
        desired = active & (since == active_since)
        judged: dict[str, Any] = {}
        if len(candidate):
            judged = self._judge(candidate, since[candidate], now_ms)
            desired[candidate] = judged["raise"]
        on, off = transitions(active, desired)
        findings: list[Finding] = []
        where = {int(i): k for k, i in enumerate(candidate.tolist())}
        for i in on.tolist():
            active_since[i] = since[i]
            b["active_threshold"][i] = judged["threshold"][where[i]]
            findings.append(self._raised(i, now_ms, int(since[i]), judged, where[i]))
        for i in off.tolist():
            gone = self.home.away_since(np.array([i]), np.array([now_ms]))[0] != NONE
            findings.append(self._finding(
                i, at=now_ms, active=False, started_at=int(active_since[i]),
                summary="nobody home" if gone else "movement seen again",
                evidence={"still_minutes": rounded((int(since[i]) - int(active_since[i]))
                                                   / MINUTE_MS)}))
            active_since[i] = NONE
        return findings

    def _judge(self, beds: I64, since: I64, now_ms: int) -> dict[str, Any]:
        """For still beds: this hour's usual, whereabouts, threshold, and whether to raise."""
        b = self.beds
        local = self.fleet.local_ms_now(now_ms)[beds]
        hour = (local // HOUR_MS) % 24
        minimum = self.fleet.setting("inactivity_min_minutes")[beds]
        factor = self.fleet.setting("inactivity_factor")[beds]
        learned = b["usual_min"]
        threshold = np.zeros(len(beds))
        usual = np.zeros(len(beds))
        for shift in (-1, 0, 1):
            of_day = (hour + shift) % 24
            value = learned[beds, of_day].astype(np.float64)
            night = self.fleet.is_night(beds, (of_day * 60 + 30).astype(np.float64))
            prior = np.where(night, PRIOR_NIGHT_MIN, PRIOR_DAY_MIN)
            unknown = np.isnan(value)
            value = np.where(unknown, prior, value)
            limit = np.where(unknown, np.maximum(minimum, factor * prior),
                             np.maximum(FLOOR_SHARE * minimum,
                                        value + np.maximum(MARGIN_MIN, MARGIN_SHARE * value)))
            usual = np.maximum(usual, value)
            threshold = np.maximum(threshold, limit)
        this_hour = learned[beds, hour].astype(np.float64)
        in_bed_t = b["in_bed_t"][beds]
        known = (in_bed_t != NONE) & (in_bed_t >= now_ms - BED_KNOWN_MS)
        in_bed = b["in_bed"][beds] & (in_bed_t != NONE)
        sleep = self._sleep_hour(beds, local)
        asleep = in_bed & sleep & ((in_bed_t >= now_ms - BED_FRESH_MS) | (since <= in_bed_t))
        ceiling = CEILING_FACTOR * minimum
        # Lying still in bed out of the usual sleep (a nap the routine does not know yet) is
        # given the in-bed floor; still in the room, the lower floor.
        threshold = np.where(in_bed & known, np.maximum(threshold, IN_BED_FLOOR_SHARE * minimum),
                             threshold)
        # In bed with the bed sensor reporting a heart or breathing rate is resting (a nap, a
        # lie-in), whatever the room's motion: the vital-sign rules judge it; only the
        # ceiling applies (motionless in bed for hours at noon is still flagged).
        rates_t = b["rates_t"][beds]
        resting = in_bed & known & (rates_t != NONE) & (rates_t >= now_ms - RESTING_FRESH_MS)
        threshold = np.where(resting, ceiling, threshold)
        threshold = np.where(known, np.minimum(threshold, ceiling), threshold)
        still = (now_ms - since) / MINUTE_MS
        share = b["bed_share"][beds, _weekend(local), hour].astype(np.float64)
        # Another alert's spell below the ceiling: still since a fall (the fall alert, whose
        # urgency rises with the stillness), or out of bed since leaving it in the usual sleep
        # and still in it (night_bed_exit's to judge).
        fall_t = b["fall_t"][beds]
        after_fall = (fall_t != NONE) & (since <= fall_t + FALL_COVER_MS)
        night_exit = (b["night_exit_t"][beds] != NONE) & ~in_bed & sleep
        covered = (after_fall | night_exit) & (still < ceiling)
        return {"raise": ~asleep & ~covered & (still >= threshold), "threshold": threshold,
                "usual": usual, "this_hour": this_hour, "hour": hour, "known": known,
                "in_bed": in_bed & known, "sleep": sleep, "ceiling": ceiling, "share": share,
                "resting": resting,
                "still": still}

    def _raised(self, i: int, now_ms: int, since: int, judged: dict[str, Any],
                k: int) -> Finding:
        still = float(judged["still"][k])
        usual = float(judged["usual"][k])
        in_bed = bool(judged["in_bed"][k]) if judged["known"][k] else None
        this_hour = float(judged["this_hour"][k])
        share = float(judged["share"][k])
        where = " in bed" if in_bed else ""
        return self._finding(
            i, at=now_ms, active=True, started_at=since,
            summary=f"no movement{where} for {still:.0f} min (usual here {usual:.0f} min)",
            evidence={
                "still_minutes": rounded(still),
                "threshold_minutes": rounded(judged["threshold"][k]),
                "usual_minutes": rounded(usual),
                "last_movement_ms": since,
                "local_hour": int(judged["hour"][k]),
                "usual_this_hour_minutes": None if np.isnan(this_hour) else rounded(this_hour),
                "in_bed": in_bed,
                "usual_sleep_hour": bool(judged["sleep"][k]),
                "resting_in_bed": bool(judged["resting"][k]),
                "usual_share_in_bed": None if np.isnan(share) else rounded(share, 2),
                "ceiling_minutes": rounded(judged["ceiling"][k]),
            })
