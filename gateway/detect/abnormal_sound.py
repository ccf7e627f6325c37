"""``abnormal_sound``: sound far above the room's own baseline, sustained, with voice.

The room's baseline is the median of its 10-minute mean levels over the last day
(:class:`~gateway.detect._ring.SlotBaseline`; loud slots are left out). Until a few slots
exist, the quieter quartile of the recent samples stands in (at most
:data:`COLD_REFERENCE_DB`). A sample is loud when it is at least
``sound_db_above_baseline`` (BedSettings) above the baseline; the condition holds when, over
the last :data:`SUSTAIN_MS`, most samples are loud and most of those that report voice
activity have voice. Physically impossible levels (below 0 or above 140 dB) are a sensor
fault, not a sound, and are ignored here.

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
"""

from __future__ import annotations

from typing import Final

import numpy as np

from alerts.model import AlertType, Finding, Severity
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import Batch, groups
from gateway.detect._ring import SampleRing, SlotBaseline, row_quantile
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
        b.column("baseline_db", np.float32, np.nan)
        b.column("last_received", np.int64, NONE)
        b.column("active", np.bool_, False)
        b.column("active_since", np.int64, NONE)

    def _reference(self, beds: np.ndarray) -> np.ndarray:
        _, median, _, valid = self.baseline.quantiles(beds, 0)
        reference = np.where(valid >= MIN_SLOTS, median, np.nan).astype(np.float64)
        cold = np.flatnonzero(np.isnan(reference))
        if len(cold):
            _, values = self.ring.window(beds[cold])
            reference[cold] = np.minimum(row_quantile(values[:, LEVEL], 0.25), COLD_REFERENCE_DB)
        return reference

    def _update(self, batch: Batch) -> None:
        au = batch.audio
        level = au.level
        ok = (level >= PLAUSIBLE_DB[0]) & (level <= PLAUSIBLE_DB[1])
        if not ok.any():
            return
        bed, t, level, voice = au.bed[ok], au.t[ok], level[ok], au.voice[ok]
        beds, starts, _, lengths = groups(bed)  # a round's samples are ordered by bed
        b = self.beds
        above = self.fleet.settings["sound_db_above_baseline"]
        threshold = np.repeat(self._reference(beds) + above[beds], lengths)
        loud_sample = level >= threshold  # NaN reference: not loud
        self.ring.push(bed, t, np.stack([level, voice], axis=1))
        self.baseline.add(bed, t, level[:, None], loud_sample[:, None])
        last = b["last_received"]
        last[beds] = np.maximum(last[beds], np.maximum.reduceat(au.received[ok], starts))
        times, values = self.ring.window(beds)
        levels, voices = values[:, LEVEL], values[:, VOICE]
        recent, _ = self.ring.recent(beds, times, span_ms=SUSTAIN_MS, min_samples=MIN_SAMPLES,
                                     longest_ms=LONGEST_MS)
        reference = self._reference(beds)
        loud = recent & (levels >= (reference + above[beds])[:, None])
        n = recent.sum(axis=1)
        share = loud.sum(axis=1) / np.maximum(n, 1)
        voiced = recent & ~np.isnan(voices)
        n_voice = voiced.sum(axis=1)
        voice_share = np.where(n_voice > 0, (voiced & (voices == 1)).sum(axis=1)
                               / np.maximum(n_voice, 1), 1.0)
        on = (n >= MIN_SAMPLES) & (share >= LOUD_SHARE_ON) & (voice_share >= VOICE_SHARE)
        off = share <= LOUD_SHARE_OFF
        was = b["loud"][beds]
        now_loud = np.where(was, ~off, on)
        started = np.flatnonzero(now_loud & ~was)
        if len(started):
            b["loud_since"][beds[started]] = np.where(loud[started], times[started],
                                                      np.iinfo(np.int64).max).min(axis=1)
        b["loud"][beds] = now_loud
        b["baseline_db"][beds] = reference

    def _recent_level(self, bed: int) -> float:
        level = self.ring.recent_values(bed, LEVEL, span_ms=SUSTAIN_MS, min_samples=MIN_SAMPLES,
                                        longest_ms=LONGEST_MS)
        return float(np.mean(level)) if len(level) else float("nan")

    def _evaluate(self, now_ms: int) -> list[Finding]:
        n = self.fleet.n_beds
        if not n:
            return []
        b = self.beds
        active = b["active"][:n]
        fresh = b["last_received"][:n] >= now_ms - STALE_MS
        on, off = transitions(active, b["loud"][:n] & fresh)
        findings: list[Finding] = []
        above = self.fleet.setting("sound_db_above_baseline")
        for i in on.tolist():
            since = int(b["loud_since"][i])
            b["active_since"][i] = since
            level, base = self._recent_level(i), float(b["baseline_db"][i])
            findings.append(self._finding(
                i, at=now_ms, active=True, started_at=since,
                summary=f"sound {level - base:.0f} dB above the room's baseline, with voice",
                evidence={"level_db": rounded(level), "baseline_db": rounded(base),
                          "above_db": rounded(level - base),
                          "threshold_above_db": rounded(above[i])}))
        for i in off.tolist():
            findings.append(self._finding(
                i, at=now_ms, active=False, started_at=int(b["active_since"][i]),
                summary="sound back to normal",
                evidence={"level_db": rounded(self._recent_level(i))}))
            b["active_since"][i] = NONE
        return findings
