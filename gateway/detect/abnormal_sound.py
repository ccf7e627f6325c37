"""``abnormal_sound``: sound far above what this room usually hears, sustained, with voice.

Three references, all this person's own:

* the *quiet room*: the median of the room's 10-minute mean levels over the last day
  (:class:`~gateway.detect._ring.SlotBaseline`; loud slots, and slots with nobody home, are left
  out: an empty home is quieter than a lived-in one). Until a few slots exist, the quieter
  quartile of the recent samples stands in (at most :data:`COLD_REFERENCE_DB`);
* the *hour profile*: the loudest 10-minute mean of each local hour (the site's zone) on each
  of the last :data:`DAYS` days, not learnt while nobody is home. What is usual at this hour is
  the :data:`USUAL_RANK`-th loudest of the values of the hour before, this one and the next
  (the evening TV heard on most days), fewer while fewer days are known (warm-up: on the first
  day the TV an hour ago is what is usual now; on the very first evening nothing is);
* what the room reaches on *most days* at any hour (a TV watched at any time), by a smaller
  margin (:data:`DAY_MARGIN_DB`).

**Warm-up**: while an hour is not learnt (the hour profile holds fewer than
:data:`LEARNT_VALUES` values for it and the hours either side: the first four days of a bed,
or of an hour it was not heard at), a safe default stands in for what is usual then, a TV or
radio at an ordinary listening level (:data:`DEFAULT_USUAL_DB`, under what was learnt when that
is louder), instead of a profile learnt from a few days or from silence: the first TV evenings
of a new install, a hard-of-hearing resident's loud TV before it is usual, are not distress;
a call for help louder than an ordinary TV still is. The evidence says so (``hour_learnt``,
``warm_up_usual_db``).

A sample is loud when it is at least ``sound_db_above_baseline`` (BedSettings) above the
quiet room and :data:`USUAL_MARGIN_DB` above what is usual at this hour; the condition holds
when, over the last :data:`SUSTAIN_MS`, most samples are loud and most of those that report
voice activity have voice, and nobody has company (the infrared counts
:data:`COMPANY_PEOPLE` or more: visitors talking, a child shouting). The condition is judged
at the time of every sample the detector keeps (one per :data:`SPACING_MS`), however the
recorder batches them: three minutes of distress in the middle of a message of 300 one-second
samples are found as they are when the samples come one a message, and the alert is at the
sample time where the condition became true (``sustained_at`` in the evidence; ``level_db``
is the loud samples' mean level then). Physically impossible
levels (below 0 or above 140 dB) are a sensor fault, not a sound, and are ignored here. The
evidence says what was usual for this person, the two parts apart: the loudest this room
usually is at this hour (``usual_at_this_hour_db``, from the hour profile) and what it reaches
on most days at any hour (``usual_any_hour_db``: the evening TV, at 15:00 too). The clearing
gives the level then under its own key (``cleared_level_db``), since the alert's evidence keeps
the level that raised it.

The limit, stated: a distress call no louder than the person's own usual TV (a hard-of-hearing
resident's 76 dB) cannot be told from it by level and voice activity alone; such a room's
sound alerts begin a few dB above its usual loudest. And a call for help loud for less than
three quarters of :data:`SUSTAIN_MS` (2 min 15 s), a single shout of a minute, is not
sustained distress, however the recorder sends it.

The module is over 400 lines because its three references are learnt and judged on one set
of per-bed columns (saved and restored together), judged at every sample time of a batch, and
each alert explains all of them.

For example, three minutes of 85 dB with voice in a room never heard before (the cold
reference is then 40 dB, the default margin 25 dB, and no hour is learnt: an ordinary TV
stands in for what is usual, so loud means 72 dB or more):

>>> import json
>>> from devices import decode
>>> from gateway.detect.abnormal_sound import AbnormalSoundDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = AbnormalSoundDetector(timezone="UTC")
>>> start = 1_793_628_000_000  # 2026-11-02 14:00 UTC
>>> samples = [{"t": start + s * 30_000, "level_db": 85.0, "voice": True} for s in range(7)]
>>> now = start + 180_000
>>> detector.update([message("audio/au-1/telemetry", ts=now, seq=1, samples=samples)], [now])
>>> [finding] = detector.evaluate(now)
>>> print(finding.type, finding.severity, finding.summary.split("; ")[0])
abnormal_sound high sound 45 dB above the room's baseline, with voice
>>> finding.evidence["hour_learnt"], finding.evidence["warm_up_usual_db"]
(False, 66.0)
"""

from __future__ import annotations

from dataclasses import fields
from typing import Final, TypeVar

import numpy as np

from alerts.model import AlertType, Finding, Severity
from gateway.detect._base import DetectorBase, rounded
from gateway.detect._batch import Audio, Batch, Infrared, groups
from gateway.detect._ring import SampleRing, SlotBaseline, count_true, row_quantile
from gateway.detect._table import NONE

S = TypeVar("S", Infrared, Audio)
MINUTE_MS: Final = 60_000
LEVEL, VOICE = 0, 1

SUSTAIN_MS: Final = 3 * MINUTE_MS
"""Window over which loudness must be sustained."""
MIN_SAMPLES: Final = 2
LONGEST_MS: Final = 15 * MINUTE_MS
"""A recorder that reports rarely is judged on its last :data:`MIN_SAMPLES` samples, over at
most this long."""
WIDTH: Final = 32
SPACING_MS: Final = 6_000
"""At most one sample per this much time is kept: 30 in :data:`SUSTAIN_MS`, within
:data:`WIDTH`."""
LOUD_SHARE_ON: Final = 0.75
LOUD_SHARE_OFF: Final = 0.25
"""Share of loud samples in the window to raise / to clear (hysteresis)."""
VOICE_SHARE: Final = 0.5
"""Share of voice samples needed (when the recorder reports voice activity at all)."""
MIN_SLOTS: Final = 3
"""Baseline slots (10 min each) needed before the long-term baseline is used."""
COLD_REFERENCE_DB: Final = 40.0
"""Until then the quieter quartile of the recent samples is the reference, but never above
a quiet room's level: a room that is loud from the first sample on must still count as loud."""
PLAUSIBLE_DB: Final = (0.0, 140.0)
STALE_MS: Final = 30 * MINUTE_MS
"""An active condition with no audio data for this long clears (nothing is observed)."""
PIECE_MS: Final = 10 * MINUTE_MS
"""A round whose samples span more than this (a backlog) is folded in pieces of this much
sample time, each judged with what the ones before taught (the quiet room, the hour
profile)."""
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS
SLOT_MS: Final = 10 * MINUTE_MS
"""The usual level of an hour is learnt from the means of its 10-minute slots."""
USUAL_MARGIN_DB: Final = 6.0
"""Loud also means this far above the loudest this person's room usually is at this hour."""
DAYS: Final = 7
"""The hour profile remembers the loudest 10-minute mean of each local hour on each of the
last this many days."""
USUAL_RANK: Final = 4
"""The usual loudest of an hour is the this-th loudest of those days' values for the hour
before, this one and the next: a level heard on at least this many of them (the TV most
evenings) is usual, one heard once or twice (an incident, a party) is not. With fewer values
(the first days) nothing is usual yet and the quiet-room rule alone applies."""
DAY_RANK: Final = 4
"""A level reached on at least this many of the last days (half of them while fewer are
known) is usual at any hour..."""
DAY_MARGIN_DB: Final = 3.0
"""... and loud means this far above it."""
COMPANY_PEOPLE: Final = 3
COMPANY_MS: Final = 10 * MINUTE_MS
"""With company (the infrared counted this many people or more within this long: family
visiting, a couple with a guest), loud talk and a child's shout are the company's; a new
condition is not raised (they can call for help themselves, and the button is there)."""
WARM_UP_SHARE: Final = 4
"""With fewer than ``4 x USUAL_RANK`` values (the first days), the rank is one in this many
values, at least the loudest: today's TV an hour ago makes the TV now usual from day one."""
AWAY_MS: Final = 30 * MINUTE_MS
"""An infrared sensor that has seen nobody for this long means nobody is home: the room's
sound is not learnt then (an empty home is quieter than a lived-in one)."""
DEFAULT_USUAL_DB: Final = 66.0
"""The safe default for an hour not learnt yet: a TV or radio at an ordinary listening level,
up to this, is taken as what the room may usually hear (loud means :data:`USUAL_MARGIN_DB`
over it, 72 dB, as well as over the quiet room). A new install's first TV evenings, a
hard-of-hearing resident's loud TV before it is usual, are not distress; a call for help
above an ordinary TV still is."""
LEARNT_VALUES: Final = 3 * USUAL_RANK
"""An hour is learnt when the hour profile holds this many values for it and the hours either
side (the three hours on :data:`USUAL_RANK` days): until then the default stands in
(:data:`DEFAULT_USUAL_DB`), under what was learnt when that is louder."""


class AbnormalSoundDetector(DetectorBase):
    name = "abnormal_sound"
    alert_type = AlertType.ABNORMAL_SOUND
    severity = Severity.HIGH

    def _declare(self) -> None:
        b = self.beds
        self.ring = SampleRing(b, "recent", metrics=2, width=WIDTH, spacing_ms=SPACING_MS)
        self.baseline = SlotBaseline(b, "baseline", metrics=1)
        b.column("loud", np.bool_, False)
        b.column("loud_since", np.int64, NONE)
        b.column("last_received", np.int64, NONE)
        b.column("active", np.bool_, False)
        b.column("active_since", np.int64, NONE)
        # The hour profile: the loudest 10-minute mean of each local hour, remembered.
        b.column("hour_high", np.float32, np.nan, (DAYS, 24))
        b.column("day", np.int64, NONE)
        b.column("usual_hour", np.float32, np.nan, (24,))
        b.column("most_days", np.float32, np.nan)
        b.column("usual_values", np.int16, 0, (24,))
        """How many values each hour's usual is drawn from (:data:`LEARNT_VALUES`)."""
        """Worked out from ``hour_high`` when a slot closes (:meth:`_refresh_usual`)."""
        b.column("slot", np.int64, NONE)
        b.column("slot_sum", np.float64, 0.0)
        b.column("slot_n", np.int64, 0)
        b.column("slot_skip", np.bool_, False)
        b.column("home_t", np.int64, NONE)
        """Latest infrared sample that saw someone (NONE: no presence data for this bed)."""
        b.column("empty_t", np.int64, NONE)
        """Latest infrared sample that saw nobody."""
        b.column("company_t", np.int64, NONE)
        """Latest infrared sample that counted :data:`COMPANY_PEOPLE` or more."""
        b.column("raised_at", np.int64, NONE)
        """The sample time where the condition last became true (:meth:`_judge`)..."""
        b.column("raised_new", np.bool_, False)
        """... not yet reported (:meth:`_evaluate`), and what was heard and expected then:"""
        b.column("raised_level", np.float32, np.nan)
        b.column("raised_baseline", np.float32, np.nan)
        b.column("raised_hour_db", np.float32, np.nan)
        b.column("raised_any_db", np.float32, np.nan)
        b.column("raised_default", np.bool_, False)
        """The default (:data:`DEFAULT_USUAL_DB`) decided what was usual (the hour was not
        learnt, and what was learnt was quieter)..."""
        b.column("raised_learnt", np.bool_, False)
        """... and whether the hour was learnt then (:data:`LEARNT_VALUES`)."""
        b.column("cleared_at", np.int64, NONE)
        """The sample time where it last cleared, and the level then."""
        b.column("cleared_level", np.float32, np.nan)

    def _away(self, beds: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Whether nobody is home at ``t`` (per bed): the infrared saw nobody and nobody for
        :data:`AWAY_MS`. Without infrared data, someone is taken to be home."""
        home, empty = self.beds["home_t"][beds], self.beds["empty_t"][beds]
        away: np.ndarray = (empty != NONE) & (empty >= home) & (home < t - AWAY_MS)
        return away

    def _usual(self, beds: np.ndarray, local: np.ndarray) -> np.ndarray:
        """The loudest this room usually is at local time ``local`` (per bed), from the hour
        profile (:data:`USUAL_RANK`); NaN while not enough is known. Looked up in what
        :meth:`_refresh_usual` worked out when a slot last closed."""
        b = self.beds
        hour = (local // HOUR_MS) % 24
        usual: np.ndarray = np.fmax(b["usual_hour"][beds, hour],
                                    b["most_days"][beds] - (USUAL_MARGIN_DB - DAY_MARGIN_DB))
        warm_up = b["usual_values"][beds, hour] < LEARNT_VALUES
        usual[warm_up] = np.fmax(usual[warm_up], DEFAULT_USUAL_DB)
        return usual

    def _refresh_usual(self, beds: np.ndarray, hour: np.ndarray | None = None) -> None:
        """Usual loudest per hour for ``beds`` (distinct), from the hour profile: every hour,
        or (``hour`` given, one per bed: the slot that closed) the three hours it bears on."""
        if not len(beds):
            return
        b = self.beds
        days = b["hour_high"].take(beds, axis=0)  # (beds, days, 24)
        if hour is None:
            parts = [(np.arange(len(beds)), 0, 24)]
        else:  # beds of one zone close the same hour: usually one part
            first = (hour - 1) % 24
            parts = [(np.flatnonzero(first == f), f, 3) for f in np.unique(first).tolist()]
        for at, f, count in parts:
            # For each target hour, the hour before, it and the next, on every day.
            hours = np.arange(f - 1, f + count + 1) % 24
            around = (days if len(parts) == 1 else days[at]).take(hours, axis=2)
            finite = ~np.isnan(around)
            per_hour = finite[:, 0].astype(np.int64)
            for day in range(1, DAYS):  # (short axes are slow to reduce along)
                per_hour += finite[:, day]
            values = per_hour[:, :-2] + per_hour[:, 1:-1] + per_hour[:, 2:]  # (beds, count)
            loud = np.where(finite, around, -np.inf)
            ordered = np.sort(np.stack([loud[:, :, k:k + 3].reshape(len(at), -1)
                                        for k in range(count)], axis=1), axis=2)
            rank = np.clip(values // WARM_UP_SHARE, 1, USUAL_RANK)
            usual = np.take_along_axis(ordered, (DAYS * 3 - rank)[:, :, None], axis=2)[:, :, 0]
            usual[~np.isfinite(usual)] = np.nan
            b["usual_hour"][beds[at][:, None], hours[1:-1]] = usual
            b["usual_values"][beds[at][:, None], hours[1:-1]] = values
        # A sound this room reaches on most days, at whatever hour (a TV watched at any
        # time, family over on most afternoons), is usual too, by a smaller margin.
        daily = days[:, :, 0]  # the loudest of each day, NaN: a day not heard
        for hour_of_day in range(1, 24):
            daily = np.fmax(daily, days[:, :, hour_of_day])
        n_days = (~np.isnan(daily)).sum(axis=1)
        day_rank = np.clip((n_days + 1) // 2, 1, DAY_RANK)
        # The day_rank-th loudest day (NaN sorts last; all NaN: NaN).
        b["most_days"][beds] = np.sort(daily, axis=1)[np.arange(len(beds)), n_days - day_rank]

    def _learn(self, bed: np.ndarray, local: np.ndarray, level: np.ndarray,
               skip: np.ndarray) -> None:
        """Fold samples (ordered by bed and time) into the 10-minute slots of the hour
        profile; a slot closes when a later slot's sample arrives."""
        b = self.beds
        slot = local // SLOT_MS
        open_slot = b["slot"][bed]
        if (slot == open_slot).all():  # most rounds: every bed goes on with its open slot
            heads, starts, _, lengths = groups(bed)
            b["slot_sum"][heads] += np.add.reduceat(level.astype(np.float64), starts)
            b["slot_n"][heads] += lengths
            b["slot_skip"][heads] |= np.logical_or.reduceat(skip, starts)
            return
        late = slot < open_slot  # delivered after its slot closed: not learnt
        if late.any():
            bed, slot, level, skip = bed[~late], slot[~late], level[~late], skip[~late]
            if not len(bed):
                return
        cut = np.flatnonzero((bed[1:] != bed[:-1]) | (slot[1:] != slot[:-1])) + 1
        starts = np.concatenate(([0], cut))
        run_bed, run_slot = bed[starts], slot[starts]
        sums = np.add.reduceat(level.astype(np.float64), starts)
        counts = np.diff(np.append(starts, len(bed)))
        skips = np.logical_or.reduceat(skip, starts)
        first = np.concatenate(([True], run_bed[1:] != run_bed[:-1]))
        last = np.append(first[1:], True)
        # A bed's first run continues its open slot, or closes it.
        head = run_bed[first]
        same = b["slot"][head] == run_slot[first]
        close = head[~same & (b["slot_n"][head] > 0)]
        self._close(close, b["slot"][close], b["slot_sum"][close] / b["slot_n"][close],
                    b["slot_skip"][close])
        cont = head[same]
        sums[np.flatnonzero(first)[same]] += b["slot_sum"][cont]
        counts[np.flatnonzero(first)[same]] += b["slot_n"][cont]
        skips[np.flatnonzero(first)[same]] |= b["slot_skip"][cont]
        done = ~last
        self._close(run_bed[done], run_slot[done], sums[done] / counts[done], skips[done])
        tail = run_bed[last]
        b["slot"][tail] = run_slot[last]
        b["slot_sum"][tail] = sums[last]
        b["slot_n"][tail] = counts[last]
        b["slot_skip"][tail] = skips[last]

    def _close(self, beds: np.ndarray, slot: np.ndarray, mean: np.ndarray,
               skip: np.ndarray) -> None:
        """Closed slots into the hour profile (a bed may close several, in order)."""
        b = self.beds
        keep = ~skip & np.isfinite(mean)
        beds, slot, mean = beds[keep], slot[keep], mean[keep]
        whole_day: list[np.ndarray] = []
        while len(beds):  # a bed closes one slot per round, or a few after a gap
            _, first = np.unique(beds, return_index=True)
            i, s, m = beds[first], slot[first], mean[first]
            day = s * SLOT_MS // DAY_MS
            row = day % DAYS
            new_day = day != b["day"][i]
            b["hour_high"][i[new_day], row[new_day]] = np.nan  # that row held a week ago
            b["day"][i[new_day]] = day[new_day]
            hour = s * SLOT_MS // HOUR_MS % 24
            before = b["hour_high"][i, row, hour]
            after = np.fmax(before, m)
            b["hour_high"][i, row, hour] = after
            whole_day.append(i[new_day])
            # What is usual follows from the hour profile alone: unchanged where it is.
            changed = ~new_day & ~(before == after)
            self._refresh_usual(i[changed], hour[changed])
            rest = np.ones(len(beds), np.bool_)
            rest[first] = False
            beds, slot, mean = beds[rest], slot[rest], mean[rest]
        if whole_day:
            self._refresh_usual(np.unique(np.concatenate(whole_day)))

    def _reference(self, beds: np.ndarray) -> np.ndarray:
        _, median, _, valid = self.baseline.quantiles(beds, 0)
        reference = np.where(valid >= MIN_SLOTS, median, np.nan).astype(np.float64)
        cold = np.flatnonzero(np.isnan(reference))
        if len(cold):  # (a room heard for the first time: the cold reference itself)
            _, values = self.ring.window(beds[cold])
            reference[cold] = np.fmin(row_quantile(values[:, LEVEL], 0.25), COLD_REFERENCE_DB)
        return reference

    def _floor(self, beds: np.ndarray, local: np.ndarray, reference: np.ndarray,
               above: np.ndarray) -> np.ndarray:
        """The level a sample of bed ``beds[i]`` at local time ``local[i]`` must reach to be
        loud: over the quiet room by the bed's margin, and over what is usual at that hour (the
        TV of a hard-of-hearing person is not news). NaN (nothing is loud) without a
        reference."""
        floor: np.ndarray = np.fmax(reference + above,
                                    self._usual(beds, local) + USUAL_MARGIN_DB)
        floor[np.isnan(reference)] = np.nan
        return floor

    def _update(self, batch: Batch) -> None:
        ir, au = batch.infrared, batch.audio
        if not len(au.t) or int(au.t.max()) - int(au.t.min()) <= PIECE_MS:
            self._fold(ir, au)
            return
        # A backlog (hours of samples in one round, after an outage): judged a piece of
        # sample time after the other, each with what the pieces before taught.
        ir_piece, au_piece = ir.t // PIECE_MS, au.t // PIECE_MS
        ir_order = np.argsort(ir_piece, kind="stable")  # (bed and time order kept)
        au_order = np.argsort(au_piece, kind="stable")
        ir_piece, au_piece = ir_piece[ir_order], au_piece[au_order]
        for piece in np.union1d(ir_piece, au_piece).tolist():
            self._fold(
                _select(ir, ir_order[np.searchsorted(ir_piece, piece):
                                     np.searchsorted(ir_piece, piece, side="right")]),
                _select(au, au_order[np.searchsorted(au_piece, piece):
                                     np.searchsorted(au_piece, piece, side="right")]))

    def _fold(self, ir: Infrared, au: Audio) -> None:
        b = self.beds
        if len(ir.bed):
            _latest(b["home_t"], ir.bed[ir.presence == 1], ir.t[ir.presence == 1])
            _latest(b["empty_t"], ir.bed[ir.presence == 0], ir.t[ir.presence == 0])
            company = ir.people >= COMPANY_PEOPLE
            _latest(b["company_t"], ir.bed[company], ir.t[company])
        level = au.level
        ok = (level >= PLAUSIBLE_DB[0]) & (level <= PLAUSIBLE_DB[1])
        if not ok.any():
            return
        bed, t, level, voice = au.bed[ok], au.t[ok], level[ok], au.voice[ok]
        beds, starts, _, lengths = groups(bed)  # a round's samples are ordered by bed
        above = self.fleet.settings["sound_db_above_baseline"][beds]
        reference = self._reference(beds)  # the quiet room as known before this round
        loud_sample = level >= np.repeat(reference + above, lengths)  # NaN reference: not loud
        away = self._away(bed, t)
        local = self.fleet.local_ms(bed, t)
        # Judged at every sample time first, on the ring as it was before this round (views:
        # read before the push).
        self._judge(beds, starts, lengths, bed, t, level, voice, local, reference, above)
        self.ring.push(bed, t, np.stack([level, voice], axis=1))
        # Nobody home: not the room's sound (neither the quiet baseline nor the hour profile).
        self.baseline.add(bed, t, level[:, None], (loud_sample | away)[:, None])
        self._learn(bed, local, level, away)
        last = b["last_received"]
        last[beds] = np.maximum(last[beds], np.maximum.reduceat(au.received[ok], starts))

    def _judge(self, beds: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
               bed: np.ndarray, t: np.ndarray, level: np.ndarray, voice: np.ndarray,
               local: np.ndarray, reference: np.ndarray, above: np.ndarray) -> None:
        """The condition at the time of every sample of this round the ring keeps (one per
        :data:`SPACING_MS`), in time order per bed, so that a loud spell inside a batch of
        samples (a recorder sending 300 one-second samples every 5 minutes) is judged as it
        is when the samples come one by one: each sample time's window is the samples of the
        :data:`SUSTAIN_MS` before it (the ring's, then this round's), counted with cumulative
        sums; the times where the condition became true and where it cleared are kept, with
        what was heard and expected then (the alert's evidence). ``beds``/``starts``/
        ``lengths``: the round's runs of ``bed``; ``reference`` and ``above`` per run."""
        b = self.beds
        ring_t, ring_v = self.ring.window(beds)
        newest_before = self.ring.kth_newest(beds, 1)  # (NONE: nothing yet)
        # This round's samples the ring keeps: the first of each SPACING_MS (as the ring does).
        slot = t // SPACING_MS
        keep = np.concatenate(([True], slot[1:] != slot[:-1]))
        keep[starts] = newest_before // SPACING_MS != slot[starts]
        run_start = np.zeros(len(t), np.int64)
        run_start[starts[1:]] = 1
        run = np.cumsum(run_start)  # each sample's run
        if keep.all():  # (one sample per bed and round, or sparser)
            kt, k_local, k_level, k_voice, k_bed = t, local, level, voice, bed
        else:
            kept = np.flatnonzero(keep)
            run = run[kept]
            kt, k_local, k_level, k_voice = t[kept], local[kept], level[kept], voice[kept]
            k_bed = bed[kept]
        k_floor = self._floor(k_bed, k_local, reference[run], above[run])
        k_loud = k_level >= k_floor
        # Judged: the kept samples newer than the ring's newest (a late one is counted in the
        # windows after it, not judged on its own).
        points = np.flatnonzero(kt > newest_before[run])
        if not len(points):
            return
        p_run, p_t = run[points], kt[points]
        # Each point's window, as SampleRing.recent has it: the last SUSTAIN_MS or, for a
        # recorder that reports rarely, its last MIN_SAMPLES (2) samples within LONGEST_MS.
        first_kept = np.concatenate(([True], run[1:] != run[:-1]))
        previous = np.where(first_kept[points], NONE, kt[points - 1])
        previous = np.maximum(previous, newest_before[p_run])
        cutoff = np.minimum(p_t - SUSTAIN_MS, np.maximum(previous - 1, p_t - LONGEST_MS))
        low = int(kt.min()) - LONGEST_MS
        span = int(kt.max()) - low + 1
        if len(beds) * span < 1 << 62:  # one sorted key: (run, time)
            key = run * span + (kt - low)
            lo = np.searchsorted(key, p_run * span + (cutoff - low), side="right")
        else:  # times ages apart (a clock gone astray): run by run
            lo = np.array([s + int(np.searchsorted(kt[s:e], c, side="right")) for s, e, c in zip(
                np.searchsorted(run, p_run, side="left").tolist(),
                np.searchsorted(run, p_run, side="right").tolist(), cutoff.tolist(),
                strict=True)], dtype=np.int64)
        hi = points + 1
        loud_sum, voiced_sum, calling_sum = (
            np.concatenate(([0], np.cumsum(flag, dtype=np.int64)))
            for flag in (k_loud, ~np.isnan(k_voice), k_voice == 1))
        n = hi - lo
        n_loud = loud_sum[hi] - loud_sum[lo]
        n_voiced = voiced_sum[hi] - voiced_sum[lo]
        n_calling = calling_sum[hi] - calling_sum[lo]
        # The ring's part of each window (its samples are older than this round's points).
        heads, firsts, lasts, counts = groups(p_run)
        whole = len(heads) == len(beds)
        r_t = ring_t if whole else ring_t[heads]
        r_level = ring_v[:, LEVEL] if whole else ring_v[heads, LEVEL]
        r_voice = ring_v[:, VOICE] if whole else ring_v[heads, VOICE]
        hb = beds[heads]
        # A ring sample is loud against its own hour's usual: the first point's hour or, for a
        # window reaching back over the full hour, the hour before.
        first_local = k_local[points[firsts]]
        hour_start = p_t[firsts] - first_local % HOUR_MS
        f_now = k_floor[points[firsts]]
        r_loud = r_level >= f_now.astype(np.float32)[:, None]
        spans = np.flatnonzero(hour_start > cutoff[firsts])
        if len(spans):
            f_before = self._floor(hb[spans], first_local[spans] - HOUR_MS,
                                   reference[heads][spans], above[heads][spans])
            r_loud[spans] = r_level[spans] >= np.where(
                r_t[spans] >= hour_start[spans, None], f_now[spans, None], f_before[:, None])
        r_voiced = ~np.isnan(r_voice)
        r_calling = r_voice == 1
        row = np.repeat(np.arange(len(heads)), counts)
        one_each = len(points) == len(heads)
        recent = (r_t if one_each else r_t[row]) > cutoff[:, None]
        n += count_true(recent)
        n_loud += count_true(recent & (r_loud if one_each else r_loud[row]))
        n_voiced += count_true(recent & (r_voiced if one_each else r_voiced[row]))
        n_calling += count_true(recent & (r_calling if one_each else r_calling[row]))
        share = n_loud / np.maximum(n, 1)
        voice_share = np.where(n_voiced > 0, n_calling / np.maximum(n_voiced, 1), 1.0)
        with_company = b["company_t"][beds[p_run]] >= p_t - COMPANY_MS
        on = ((n >= MIN_SAMPLES) & (share >= LOUD_SHARE_ON) & (voice_share >= VOICE_SHARE)
              & ~with_company)
        off = share <= LOUD_SHARE_OFF
        # The state after each point (hysteresis): that of the bed's latest point that decided
        # (on or off), else the bed's state before this round.
        prior = b["loud"][hb]
        decided = np.maximum.accumulate(np.where(on | off, np.arange(len(points)), -1))
        state = np.where(decided >= np.repeat(firsts, counts), on[np.maximum(decided, 0)],
                         np.repeat(prior, counts))
        before = np.concatenate(([False], state[:-1]))
        before[firsts] = prior
        b["loud"][hb] = state[lasts]
        # Few: the first rise and the last fall of a bed in this round.
        rises = np.flatnonzero(state & ~before)
        if len(rises):
            _, first_rise = np.unique(p_run[rises], return_index=True)
            for q in rises[first_rise].tolist():
                i = int(beds[p_run[q]])
                if b["raised_new"][i]:  # an earlier rise, not reported yet, stands
                    continue
                r = int(row[q])
                mask = r_t[r] > cutoff[q]
                window = slice(lo[q], hi[q])
                loud_levels = np.concatenate((r_level[r][mask & r_loud[r]],
                                              k_level[window][k_loud[window]]))
                loud_times = np.concatenate((r_t[r][mask & r_loud[r]],
                                             kt[window][k_loud[window]]))
                b["loud_since"][i] = loud_times.min()  # (most of the window is loud)
                b["raised_at"][i] = p_t[q]
                b["raised_new"][i] = True
                b["raised_level"][i] = np.mean(loud_levels)
                b["raised_baseline"][i] = reference[p_run[q]]
                b["raised_hour_db"][i] = b["usual_hour"][i, k_local[points[q]] // HOUR_MS % 24]
                b["raised_any_db"][i] = b["most_days"][i]
                hour = int(k_local[points[q]] // HOUR_MS % 24)
                learnt = np.fmax(b["usual_hour"][i, hour],
                                 b["most_days"][i] - (USUAL_MARGIN_DB - DAY_MARGIN_DB))
                b["raised_learnt"][i] = b["usual_values"][i, hour] >= LEARNT_VALUES
                b["raised_default"][i] = ~b["raised_learnt"][i] & ~(learnt >= DEFAULT_USUAL_DB)
        falls = np.flatnonzero(~state & before)
        if len(falls):
            _, last_fall = np.unique(p_run[falls][::-1], return_index=True)
            for q in falls[::-1][last_fall].tolist():
                i, r = int(beds[p_run[q]]), int(row[q])
                values = np.concatenate((r_level[r][r_t[r] > cutoff[q]], k_level[lo[q]:hi[q]]))
                b["cleared_at"][i] = p_t[q]
                b["cleared_level"][i] = np.median(values)

    def _evaluate(self, now_ms: int) -> list[Finding]:
        n = self.fleet.n_beds
        if not n:
            return []
        b = self.beds
        active = b["active"][:n]
        loud = b["loud"][:n] & (b["last_received"][:n] >= now_ms - STALE_MS)
        new = b["raised_new"][:n]
        # A condition that became true since the last evaluation is reported at the sample
        # time where it did, even if it cleared again within the same batch of samples.
        on = np.flatnonzero(~active & (loud | new))
        findings: list[Finding] = []
        above = self.fleet.setting("sound_db_above_baseline")
        for i in on.tolist():
            since = int(b["loud_since"][i])
            b["active_since"][i] = since
            level, base = float(b["raised_level"][i]), float(b["raised_baseline"][i])
            this_hour, any_hour = float(b["raised_hour_db"][i]), float(b["raised_any_db"][i])
            warm_up = bool(b["raised_default"][i])
            expected = []
            if not np.isnan(this_hour):
                expected.append(f"usually up to {this_hour:.0f} dB at this hour")
            if not np.isnan(any_hour):
                expected.append(f"{any_hour:.0f} dB on most days")
            if warm_up:
                expected.append(f"this hour not learnt yet: up to {DEFAULT_USUAL_DB:.0f} dB "
                                "(an ordinary TV) taken as usual")
            summary = f"sound {level - base:.0f} dB above the room's baseline, with voice"
            findings.append(self._finding(
                i, at=int(b["raised_at"][i]) if new[i] else now_ms, active=True,
                started_at=since,
                summary=f"{summary}; {', '.join(expected)}" if expected else summary,
                evidence={"sustained_at": int(b["raised_at"][i]),
                          "level_db": _or_none(level), "baseline_db": _or_none(base),
                          "above_db": _or_none(level - base),
                          "threshold_above_db": rounded(above[i]),
                          "usual_at_this_hour_db": _or_none(this_hour),
                          "usual_any_hour_db": _or_none(any_hour),
                          "hour_learnt": bool(b["raised_learnt"][i]),
                          "warm_up_usual_db": DEFAULT_USUAL_DB if warm_up else None}))
        active[on] = True
        new[:] = False
        off = np.flatnonzero(active & ~loud)
        for i in off.tolist():
            # Cleared where the samples said so; with no data for STALE_MS, now, on what was
            # last heard. Under keys of its own: the engine merges this into the alert's
            # evidence, which keeps the level that raised it.
            at, cleared = now_ms, float("nan")
            raised = int(b["raised_at"][i])
            if not b["loud"][i] and raised != NONE and b["cleared_at"][i] >= raised:
                at, cleared = int(b["cleared_at"][i]), float(b["cleared_level"][i])
            else:
                recent = self.ring.recent_values(i, LEVEL, span_ms=SUSTAIN_MS,
                                                 min_samples=MIN_SAMPLES,
                                                 longest_ms=LONGEST_MS)
                if len(recent):
                    cleared = float(np.median(recent))
            findings.append(self._finding(
                i, at=at, active=False, started_at=int(b["active_since"][i]),
                summary="sound back to normal", evidence={"cleared_level_db": _or_none(cleared)}))
            b["active_since"][i] = NONE
        active[off] = False
        return findings


def _or_none(value: float) -> float | None:
    return None if np.isnan(value) else rounded(value)


def _select(samples: S, at: np.ndarray) -> S:
    """The samples at positions ``at``."""
    return type(samples)(**{f.name: getattr(samples, f.name)[at] for f in fields(samples)})


def _latest(column: np.ndarray, beds: np.ndarray, t: np.ndarray) -> None:
    """``column[bed] = max(column[bed], t)`` for every sample (ordered by bed and time, as a
    round's are: each bed's last is its latest)."""
    if len(beds):
        rows, _, last, _ = groups(beds)
        column[rows] = np.maximum(column[rows], t[last])
