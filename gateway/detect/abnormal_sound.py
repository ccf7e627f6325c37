"""``abnormal_sound``: distress heard in the room, judged against this hour's usual sound.

Each bed learns its room's sound, only while someone is home (the infrared sensor's presence
and people count; a bed without one learns always):

* the **room's baseline**: the median of its 10-minute mean levels over the last day
  (:class:`~gateway.detect._ring.SlotBaseline`; loud slots are left out), its quiet level;
* **this hour's usual**: per local hour of day (site time zone), the level the room reaches
  within an hour of it for ten minutes or more on at least three of the last seven days (the
  70 % quantile over the days; the loudest day while only one or two are known;
  :class:`~gateway.detect._ring.HourOfDay`): the evening TV, the hard-of-hearing resident's
  loud radio, the lunchtime visit. Slots in which the condition was on are left out, so an
  incident never becomes the usual;
* the **household**: how many people are usually home (time-weighted share of infrared samples
  with at least two, and three, people; a household of one until learnt otherwise).

A sample is loud when it is at least ``sound_db_above_baseline`` (BedSettings, the margin
``M``) above the room's baseline *and* at least ``0.4 M`` above this hour's usual (and above a
steady sound already judged ordinary, below). Over the last :data:`SUSTAIN_MS` the condition
turns on when

* **sustained**: most samples are loud and most of those that report voice activity have
  voice (as before); or
* **screams, calls for help**: at least :data:`PEAK_SHARE` of them (and :data:`MIN_PEAKS`)
  are voice peaks another ``0.4 M`` above that, coming and going over at least
  :data:`PEAK_SPAN_MS`: a call for help over the evening TV;

unless more people than the household's usual are there talking (a family visit, a child
shouting now and then): conversation, unless the level is extreme (median at least
:data:`EXTREME_DB`). The condition clears when the sound is back to this hour's usual (or
few samples are loud); when it has lasted :data:`STEADY_MS` without peaks (a steady sound
for that long is TV, radio or steady voices: its level then counts as ordinary until the sound
drops back); when visitors are talking; or when no audio came for :data:`STALE_MS`. A later
incident is therefore a new alert.

Warm-up: until an hour has been heard on one day, only the room's baseline counts (as before
the hours were learnt; until a few slots exist, the quieter quartile of the recent samples
stands in, at most :data:`COLD_REFERENCE_DB`). So on the first evening a TV louder than the
margin is raised once and clears after :data:`STEADY_MS`; the next evening it is usual.
Physically impossible levels (below 0 or above 140 dB) are a sensor fault, not a sound, and
are ignored here. Evidence gives this hour's usual level and the days it was learnt from, the
level seen, the voice share and the people count.

For example, three minutes of 85 dB with voice in a room never heard before (the cold
reference is then 40 dB, the default margin 25 dB):

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
>>> print(finding.type, finding.severity, finding.summary)
abnormal_sound high sound 45 dB above the room's baseline, with voice
>>> finding.evidence["usual_db"], finding.evidence["hour"]  # 14:00 not learnt yet
(None, 14)
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from alerts.model import AlertType, Finding, Severity
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import Batch, Infrared, groups
from gateway.detect._ring import HourOfDay, SampleRing, SlotBaseline, row_quantile
from gateway.detect._table import NONE

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
USUAL_SHARE: Final = 0.4
"""A loud sample is at least this share of the margin above this hour's usual level."""
PEAK_SHARE: Final = 0.3
MIN_PEAKS: Final = 3
"""Screams: this share (and number) of the window's samples are voice peaks another
:data:`USUAL_SHARE` of the margin above the loud level."""
PEAK_SPAN_MS: Final = MINUTE_MS
"""Screams come and go: peaks over at least this long with quieter samples between them (a
sound that rises and stays is judged as sustained)."""
EXTREME_DB: Final = 85.0
"""A median level this loud is raised even with visitors talking."""
STEADY_MS: Final = 30 * MINUTE_MS
"""A condition on this long without peaks is a steady sound (TV, radio, steady voices)."""
HOME_MEMORY_MS: Final = 30 * MINUTE_MS
"""The infrared sensor's "nobody home" holds for audio this long after its sample."""
PEOPLE_FRESH_MS: Final = 10 * MINUTE_MS
"""A people count older than this is unknown (evidence)."""
VISITORS_MEMORY_MS: Final = 5 * MINUTE_MS
"""Visitors seen this long ago still count: the sound heard lags the people counted."""
HOUSEHOLD_TAU_MS: Final = 12 * 60 * MINUTE_MS
"""Time constant of the household's usual people count."""

SUSTAINED, SCREAMS = 1, 2
PATTERNS: Final = {SUSTAINED: "sustained", SCREAMS: "screams"}
BACK, STEADY, CONVERSATION, NO_AUDIO = 1, 2, 3, 4
REASONS: Final = {BACK: "back_to_usual", STEADY: "steady", CONVERSATION: "conversation",
                  NO_AUDIO: "no_audio"}
_CLEARED: Final = {BACK: "sound back to normal", STEADY: "a steady sound for long: TV, radio or "
                   "steady voices", CONVERSATION: "visitors talking", NO_AUDIO: "no audio"}


def _optional(value: float) -> float | None:
    return None if np.isnan(value) else rounded(value)


class AbnormalSoundDetector(DetectorBase):
    name = "abnormal_sound"
    alert_type = AlertType.ABNORMAL_SOUND
    severity = Severity.HIGH

    def _declare(self) -> None:
        b = self.beds
        self.ring = SampleRing(b, "recent", metrics=2, width=WIDTH, spacing_ms=SPACING_MS)
        self.baseline = SlotBaseline(b, "baseline", metrics=1)
        self.hours = HourOfDay(b, "hours")
        b.column("loud", np.bool_, False)
        b.column("loud_since", np.int64, NONE)
        b.column("baseline_db", np.float32, np.nan)
        b.column("last_received", np.int64, NONE)
        b.column("active", np.bool_, False)
        b.column("active_since", np.int64, NONE)
        # What the latest judgement saw (the evidence of a finding).
        b.column("usual_db", np.float32, np.nan)
        b.column("usual_days", np.int64, 0)
        b.column("hour", np.int64, 0)
        b.column("threshold_db", np.float32, np.nan)
        b.column("median_db", np.float32, np.nan)
        b.column("peak_db", np.float32, np.nan)
        b.column("voice_share", np.float32, np.nan)
        b.column("pattern", np.int8, 0)
        b.column("reason", np.int8, 0)
        b.column("steady_db", np.float32, np.nan)
        """The level of a steady sound judged ordinary, until the sound drops back."""
        # Who is home (infrared).
        b.column("home", np.float32, np.nan)
        """1 someone home, 0 nobody, NaN never said."""
        b.column("home_at", np.int64, NONE)
        b.column("people", np.float32, np.nan)
        b.column("people_at", np.int64, NONE)
        b.column("two_or_more", np.float64, 0.0)
        b.column("three_or_more", np.float64, 0.0)
        b.column("household_at", np.int64, NONE)
        b.column("visitors_at", np.int64, NONE)
        """The latest infrared sample with more people than the household."""

    def household(self, beds: np.ndarray) -> np.ndarray:
        """How many people usually are at home, per bed (1 until learnt otherwise)."""
        b = self.beds
        usual: np.ndarray = (1 + (b["two_or_more"][beds] > 0.5).astype(np.int64)
                             + (b["three_or_more"][beds] > 0.5).astype(np.int64))
        return usual

    def _reference(self, beds: np.ndarray) -> np.ndarray:
        _, median, _, valid = self.baseline.quantiles(beds, 0)
        reference = np.where(valid >= MIN_SLOTS, median, np.nan).astype(np.float64)
        cold = np.flatnonzero(np.isnan(reference))
        if len(cold):
            _, values = self.ring.window(beds[cold])
            reference[cold] = np.minimum(row_quantile(values[:, LEVEL], 0.25), COLD_REFERENCE_DB)
        return reference

    def _infrared(self, ir: Infrared) -> None:
        """Who is home: each bed's latest presence and people count, and the household."""
        known = ~np.isnan(ir.presence) | ~np.isnan(ir.people)
        if not known.any():
            return
        b = self.beds
        bed, t, people = ir.bed[known], ir.t[known], ir.people[known]
        nobody = (ir.presence[known] == 0) | (people == 0)
        heads, _, ends, _ = groups(bed)
        newer = t[ends] >= b["home_at"][heads]
        b["home"][heads[newer]] = np.where(nobody[ends[newer]], 0.0, 1.0)
        b["home_at"][heads[newer]] = t[ends[newer]]
        counted = ~np.isnan(people)
        if not counted.any():
            return
        bed, t, people = bed[counted], t[counted], people[counted]
        received = ir.received[known][counted]
        heads, _, ends, _ = groups(bed)
        newer = t[ends] >= b["people_at"][heads]
        b["people"][heads[newer]] = people[ends[newer]]
        b["people_at"][heads[newer]] = t[ends[newer]]
        home = people >= 1
        if home.any():
            self._learn_household(bed[home], people[home], received[home])
        more = people > self.household(bed)
        np.maximum.at(b["visitors_at"], bed[more], t[more])

    def _learn_household(self, bed: np.ndarray, people: np.ndarray, received: np.ndarray
                         ) -> None:
        b = self.beds
        n = len(b["two_or_more"])
        count = np.bincount(bed, minlength=n)
        beds = np.flatnonzero(count)
        latest = np.full(n, NONE, dtype=np.int64)
        np.maximum.at(latest, bed, received)
        since = b["household_at"][beds]
        span = np.where(since == NONE, 0, np.maximum(latest[beds] - since, 0))
        weight = 1.0 - np.exp(-span / HOUSEHOLD_TAU_MS)
        for column, least in (("two_or_more", 2), ("three_or_more", 3)):
            share = np.bincount(bed[people >= least], minlength=n)[beds] / count[beds]
            b[column][beds] += weight * (share - b[column][beds])
        b["household_at"][beds] = latest[beds]

    def _update(self, batch: Batch) -> None:
        self._infrared(batch.infrared)
        au = batch.audio
        level = au.level
        ok = (level >= PLAUSIBLE_DB[0]) & (level <= PLAUSIBLE_DB[1])
        if not ok.any():
            return
        bed, t, level, voice = au.bed[ok], au.t[ok], level[ok], au.voice[ok]
        beds, starts, ends, lengths = groups(bed)  # a round's samples are ordered by bed
        b = self.beds
        above = self.fleet.settings["sound_db_above_baseline"]
        threshold = np.repeat(self._reference(beds) + above[beds], lengths)
        loud_sample = level >= threshold  # NaN reference: not loud
        home = ~((b["home"][bed] == 0) & (t <= b["home_at"][bed] + HOME_MEMORY_MS))
        self.ring.push(bed, t, np.stack([level, voice], axis=1))
        self.baseline.add(bed[home], t[home], level[home][:, None], loud_sample[home][:, None])
        local = self.fleet.local_ms(beds, t[ends])
        self.hours.add(bed, local, np.where(home, level, np.float32(np.nan)), b["loud"][bed])
        last = b["last_received"]
        last[beds] = np.maximum(last[beds], np.maximum.reduceat(au.received[ok], starts))
        self._judge(beds, local, above[beds])

    def _judge(self, beds: np.ndarray, local: np.ndarray, margin: np.ndarray) -> None:
        b = self.beds
        times, values = self.ring.window(beds)
        levels, voices = values[:, LEVEL], values[:, VOICE]
        recent, newest = self.ring.recent(beds, times, span_ms=SUSTAIN_MS,
                                          min_samples=MIN_SAMPLES, longest_ms=LONGEST_MS)
        reference = self._reference(beds)
        usual, days, hour = self.hours.usual(beds, local)
        base = np.fmax(reference + margin, usual + USUAL_SHARE * margin)
        steady = b["steady_db"][beds]
        threshold = np.fmax(base, steady + USUAL_SHARE * margin)
        loud = recent & (levels >= threshold[:, None])
        n = recent.sum(axis=1)
        share = loud.sum(axis=1) / np.maximum(n, 1)
        voiced = recent & ~np.isnan(voices)
        n_voice = voiced.sum(axis=1)
        voice_share = np.where(n_voice > 0, (voiced & (voices == 1)).sum(axis=1)
                               / np.maximum(n_voice, 1), 1.0)
        peaks = loud & (levels >= (threshold + USUAL_SHARE * margin)[:, None]) & (voices == 1)
        n_peaks = peaks.sum(axis=1)
        in_window = np.where(recent, levels, np.float32(np.nan))
        median = row_quantile(in_window, 0.5)
        visitors = b["visitors_at"][beds] >= newest - VISITORS_MEMORY_MS
        conversation = (visitors & (voice_share >= VOICE_SHARE)
                        & ~(median >= EXTREME_DB))
        sustained = (n >= MIN_SAMPLES) & (share >= LOUD_SHARE_ON) & (voice_share >= VOICE_SHARE)
        big = np.iinfo(np.int64).max
        first = np.where(peaks, times, big).min(axis=1)
        last = np.where(peaks, times, -big).max(axis=1)
        between = recent & ~peaks & (times > first[:, None]) & (times < last[:, None])
        screams = ((n_peaks >= MIN_PEAKS) & (n_peaks >= PEAK_SHARE * n) & between.any(axis=1)
                   & (last - first >= PEAK_SPAN_MS))
        on = (sustained | screams) & ~conversation
        was = b["loud"][beds]
        long = was & (newest - b["loud_since"][beds] >= STEADY_MS) & (n_peaks == 0)
        back = ((share <= LOUD_SHARE_OFF) | (median <= np.fmax(usual, reference + margin / 2))) \
            & ~screams
        now_loud = np.where(was, ~(back | long | conversation), on)
        started = np.flatnonzero(now_loud & ~was)
        if len(started):
            b["loud_since"][beds[started]] = np.where(loud[started], times[started],
                                                      np.iinfo(np.int64).max).min(axis=1)
            b["pattern"][beds[started]] = np.where(screams[started] & ~sustained[started],
                                                   SCREAMS, SUSTAINED)
        ended = was & ~now_loud
        b["reason"][beds[ended]] = np.where(long[ended], STEADY,
                                            np.where(conversation[ended], CONVERSATION, BACK))
        # A steady sound judged ordinary stays so (following it up, never up to a peak) until
        # the sound is no longer loud for the room.
        steady = np.where(long, median, steady)
        follow = ~np.isnan(steady) & ~now_loud & (n_peaks == 0)
        steady = np.where(follow, np.fmax(steady, median), steady)
        steady[(n > 0) & (median < base)] = np.nan
        b["steady_db"][beds] = steady
        b["loud"][beds] = now_loud
        b["baseline_db"][beds] = reference
        b["usual_db"][beds] = usual
        b["usual_days"][beds] = days
        b["hour"][beds] = hour
        b["threshold_db"][beds] = threshold
        b["median_db"][beds] = median
        b["peak_db"][beds] = np.where(n > 0, np.nanmax(np.where(recent, levels, -np.inf),
                                                       axis=1), np.nan)
        b["voice_share"][beds] = voice_share

    def _recent_level(self, bed: int) -> float:
        level = self.ring.recent_values(bed, LEVEL, span_ms=SUSTAIN_MS, min_samples=MIN_SAMPLES,
                                        longest_ms=LONGEST_MS)
        return float(np.mean(level)) if len(level) else float("nan")

    def _seen(self, i: int, now_ms: int) -> dict[str, Any]:
        """What was expected for this room at this hour, and what was heard and seen."""
        b = self.beds
        people = float(b["people"][i]) if b["people_at"][i] >= now_ms - PEOPLE_FRESH_MS \
            else float("nan")
        return {"usual_db": _optional(float(b["usual_db"][i])),
                "usual_days": int(b["usual_days"][i]), "hour": int(b["hour"][i]),
                "loud_from_db": _optional(float(b["threshold_db"][i])),
                "median_db": _optional(float(b["median_db"][i])),
                "peak_db": _optional(float(b["peak_db"][i])),
                "voice_share": _optional(float(b["voice_share"][i])),
                "people": None if np.isnan(people) else int(people),
                "household_people": int(self.household(np.array([i]))[0])}

    def _evaluate(self, now_ms: int) -> list[Finding]:
        n = self.fleet.n_beds
        if not n:
            return []
        b = self.beds
        active = b["active"][:n]
        fresh = b["last_received"][:n] >= now_ms - STALE_MS
        b["reason"][:n][active & ~fresh] = NO_AUDIO
        on, off = transitions(active, b["loud"][:n] & fresh)
        findings: list[Finding] = []
        above = self.fleet.setting("sound_db_above_baseline")
        for i in on.tolist():
            since = int(b["loud_since"][i])
            b["active_since"][i] = since
            level, base = self._recent_level(i), float(b["baseline_db"][i])
            pattern = int(b["pattern"][i])
            if pattern == SCREAMS:
                summary = (f"screams or calls for help: peaks of {b['peak_db'][i]:.0f} dB, "
                           f"{b['peak_db'][i] - base:.0f} dB above the room's baseline")
            else:
                summary = f"sound {level - base:.0f} dB above the room's baseline, with voice"
            findings.append(self._finding(
                i, at=now_ms, active=True, started_at=since, summary=summary,
                evidence={"level_db": rounded(level), "baseline_db": rounded(base),
                          "above_db": rounded(level - base),
                          "threshold_above_db": rounded(above[i]),
                          "pattern": PATTERNS[pattern], **self._seen(i, now_ms)}))
        for i in off.tolist():
            reason = int(b["reason"][i]) or BACK
            findings.append(self._finding(
                i, at=now_ms, active=False, started_at=int(b["active_since"][i]),
                summary=_CLEARED[reason],
                evidence={"level_db": rounded(self._recent_level(i)),
                          "reason": REASONS[reason], **self._seen(i, now_ms)}))
            b["active_since"][i] = NONE
        return findings
