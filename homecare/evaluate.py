"""Score alerts against ground-truth labels (``homecare evaluate``).

An alert *matches* a label when both have the same site, bed and type and the alert was opened
between the label's start and its end plus a tolerance. Per alert type:

* **recall**: labels matched by at least one alert / labels;
* **precision**: alerts that match some label / alerts (a second alert for the same label is
  not false, but is counted under ``repeats``: alarm fatigue shows there);
* **delay**: first matching alert's ``opened_at`` minus the label's start (median, p95 and
  maximum); for alerts that say what was usual for the person (inactivity's
  ``usual_minutes``), also the median delay from the moment the stillness became longer than
  usual;
* **false per bed-day**: alerts matching no label / (beds x days).

Bed-days come from ``bed_days`` when given, else from the beds and the time span seen in the
labels and alerts (an underestimate for beds with neither, so the false rate errs high).

With the beds' profiles (:class:`devices.BedProfile`, e.g. ``homecare simulate
--bed-profiles``), the same is counted per profile: beds, labels detected, and false alerts
per bed-day per alert type, so that "about one false alert per bed-day" shows whose lives
raise it (early risers, couples, loud TVs...). A profile's bed-days are its share of the
listed beds times the bed-days; beds that are not listed are counted under ``(unlisted)``,
with no bed-days of their own.

>>> from devices import BedProfile, Label
>>> labels = [Label("s1", "b1", "fall", 0, 60_000)]
>>> alerts = [AlertRecord(id="a", type="fall", site="s1", bed="b1", opened_at=500),
...           AlertRecord(id="b", type="abnormal_sound", site="s1", bed="b2", opened_at=900)]
>>> beds = [BedProfile("s1", "b1", "standard"), BedProfile("s1", "b2", "hard_of_hearing")]
>>> scored = evaluate(labels, alerts, bed_days=4, profiles=beds)
>>> [(p.profile, p.bed_days, p.false_per_bed_day("abnormal_sound")) for p in scored.profiles]
[('standard', 2.0, 0.0), ('hard_of_hearing', 2.0, 0.5)]
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import numpy as np

from devices.labels import ALERT_TYPES, BedProfile, Label

DAY_MS: Final = 86_400_000
DEFAULT_TOLERANCE_S: Final = 600.0
UNLISTED: Final = "(unlisted)"
"""The profile of beds missing from the bed profiles given."""


class AlertRecord(msgspec.Struct, frozen=True):
    """The fields of an alert that scoring needs (every other field is ignored)."""

    id: str
    type: str
    site: str
    bed: str
    opened_at: int
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)


@dataclass(slots=True)
class TypeScore:
    type: str
    labels: int = 0
    detected: int = 0
    alerts: int = 0
    matched_alerts: int = 0
    repeats: int = 0
    delays_ms: list[int] = field(default_factory=list)
    past_usual_ms: list[int] = field(default_factory=list)
    """Per detected label whose alert says what was usual (inactivity's ``usual_minutes``):
    from the moment the stillness became longer than usual to the alert."""
    missed: list[Label] = field(default_factory=list)
    false_alerts: list[AlertRecord] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.detected / self.labels if self.labels else None

    @property
    def precision(self) -> float | None:
        return self.matched_alerts / self.alerts if self.alerts else None

    def delay_s(self, q: float) -> float | None:
        if not self.delays_ms:
            return None
        return float(np.percentile(np.array(self.delays_ms, dtype=np.float64), q)) / 1000


@dataclass(slots=True)
class ProfileScore:
    """Labels, detections and false alerts of the beds of one profile, per alert type."""

    profile: str
    beds: int
    bed_days: float
    labels: Counter[str] = field(default_factory=Counter)
    detected: Counter[str] = field(default_factory=Counter)
    false_alerts: Counter[str] = field(default_factory=Counter)

    @property
    def recall(self) -> float | None:
        total = sum(self.labels.values())
        return sum(self.detected.values()) / total if total else None

    def false_per_bed_day(self, type_: str | None = None) -> float | None:
        """False alerts of ``type_`` (of every type when None) per bed-day of this profile."""
        if not self.bed_days:
            return None
        count = (sum(self.false_alerts.values()) if type_ is None
                 else self.false_alerts[type_])
        return count / self.bed_days


@dataclass(slots=True)
class Evaluation:
    scores: dict[str, TypeScore]
    total: TypeScore
    bed_days: float
    tolerance_s: float
    profiles: list[ProfileScore] = field(default_factory=list)
    """Per profile, when the beds' profiles were given (in the order they were listed)."""

    def false_per_bed_day(self, score: TypeScore) -> float | None:
        return len(score.false_alerts) / self.bed_days if self.bed_days else None

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for score in [*self.scores.values(), self.total]:
            out.append({
                "type": score.type, "labels": score.labels, "detected": score.detected,
                "alerts": score.alerts, "false_alerts": len(score.false_alerts),
                "repeats": score.repeats, "recall": _round(score.recall),
                "precision": _round(score.precision),
                "delay_median_s": _round(score.delay_s(50), 1),
                "delay_p95_s": _round(score.delay_s(95), 1),
                "delay_max_s": _round(score.delay_s(100), 3),
                "delay_past_usual_median_s": _round(
                    float(np.median(score.past_usual_ms)) / 1000, 1)
                if score.past_usual_ms else None,
                "false_per_bed_day": _round(self.false_per_bed_day(score), 4),
            })
        return out

    def profile_rows(self) -> list[dict[str, Any]]:
        out = []
        for p in self.profiles:
            types = {}
            for name in self.scores:
                types[name] = {
                    "labels": p.labels[name], "detected": p.detected[name],
                    "false_alerts": p.false_alerts[name],
                    "false_per_bed_day": _round(p.false_per_bed_day(name), 4)}
            out.append({
                "profile": p.profile, "beds": p.beds, "bed_days": round(p.bed_days, 2),
                "labels": sum(p.labels.values()), "detected": sum(p.detected.values()),
                "recall": _round(p.recall), "false_alerts": sum(p.false_alerts.values()),
                "false_per_bed_day": _round(p.false_per_bed_day(), 4), "types": types})
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "tolerance_s": self.tolerance_s, "bed_days": round(self.bed_days, 2),
            "types": self.rows(),
            "profiles": self.profile_rows(),
            "missed": [msgspec.to_builtins(label) for s in self.scores.values()
                       for label in s.missed],
            "false_alerts": [msgspec.to_builtins(alert) for s in self.scores.values()
                             for alert in s.false_alerts],
        }

    def table(self) -> str:
        head = ("type", "labels", "alerts", "recall", "precision", "delay p50", "delay p95",
                "false", "repeats", "false/bed-day")
        lines = [head]
        for row in self.rows():
            lines.append((
                row["type"], str(row["labels"]), str(row["alerts"]), _fmt(row["recall"], 3),
                _fmt(row["precision"], 3), _duration(row["delay_median_s"]),
                _duration(row["delay_p95_s"]), str(row["false_alerts"]), str(row["repeats"]),
                _fmt(row["false_per_bed_day"], 3)))
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        text = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                          for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
                for line in lines]
        text.insert(1, "-" * len(text[0]))
        text.insert(len(text) - 1, "-" * len(text[0]))
        text.append(f"bed-days {self.bed_days:.1f}, tolerance {self.tolerance_s:g} s")
        for row in self.rows():
            if row.get("delay_past_usual_median_s") is not None:
                text.append(f"{row['type']}: median delay from the moment it became longer "
                            "than usual for the person at that hour: "
                            f"{_duration(row['delay_past_usual_median_s'])}")
        if self.profiles:
            text += ["", self.profile_table()]
        return "\n".join(text)

    def profile_table(self) -> str:
        """False alerts per bed-day by profile, in the columns of the alert types that have
        any (all of them zero: none)."""
        types = [name for name in self.scores
                 if any(p.false_alerts[name] for p in self.profiles)]
        head = ("profile", "beds", "bed-days", "labels", "recall", "false", "false/bed-day",
                *types)
        lines = [head]
        for p in self.profiles:
            lines.append((
                p.profile, str(p.beds), f"{p.bed_days:.1f}", str(sum(p.labels.values())),
                _fmt(p.recall, 3), str(sum(p.false_alerts.values())),
                _fmt(p.false_per_bed_day(), 3),
                *(_fmt(p.false_per_bed_day(name), 3) for name in types)))
        return _columns(lines, "false alerts per bed-day by profile and alert type")


def _columns(lines: list[tuple[str, ...]], title: str) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
            for line in lines]
    text.insert(1, "-" * len(text[0]))
    return "\n".join([title, *text])


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if abs(seconds) < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"


def read_alerts(data: bytes) -> list[AlertRecord]:
    decoder = msgspec.json.Decoder(AlertRecord)
    return [decoder.decode(line) for line in data.splitlines() if line.strip()]


def evaluate(labels: Sequence[Label], alerts: Sequence[AlertRecord], *,
             tolerance_s: float = DEFAULT_TOLERANCE_S,
             bed_days: float | None = None, types: Iterable[str] | None = None,
             profiles: Sequence[BedProfile] | None = None) -> Evaluation:
    """Match ``alerts`` to ``labels`` and score them per type, and per profile when the beds'
    ``profiles`` are given (see the module docstring)."""
    tolerance_ms = round(tolerance_s * 1000)
    names: list[str] = list(types) if types is not None else list(ALERT_TYPES)
    for name in [*(x.type for x in labels), *(a.type for a in alerts)]:
        if name not in names:
            names.append(name)
    scores = {name: TypeScore(name) for name in names}
    by_key: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_key[(label.site, label.bed, label.type)].append(i)
        scores[label.type].labels += 1
    first_alert: dict[int, int] = {}
    usual_ms: dict[int, int] = {}
    for alert in sorted(alerts, key=lambda a: (a.opened_at, a.id)):
        score = scores[alert.type]
        score.alerts += 1
        hits = [i for i in by_key.get((alert.site, alert.bed, alert.type), ())
                if labels[i].start <= alert.opened_at <= labels[i].end + tolerance_ms]
        if not hits:
            score.false_alerts.append(alert)
            continue
        score.matched_alerts += 1
        fresh = [i for i in hits if i not in first_alert]
        if not fresh:
            score.repeats += 1
            continue
        first = min(fresh, key=lambda i: labels[i].start)
        first_alert[first] = alert.opened_at
        usual = alert.evidence.get("usual_minutes")
        if isinstance(usual, int | float):
            usual_ms[first] = round(usual * 60_000)
    for i, label in enumerate(labels):
        score = scores[label.type]
        if i in first_alert:
            score.detected += 1
            score.delays_ms.append(first_alert[i] - label.start)
            if i in usual_ms:
                score.past_usual_ms.append(
                    max(0, first_alert[i] - label.start - usual_ms[i]))
        else:
            score.missed.append(label)
    total = TypeScore("all")
    for score in scores.values():
        total.labels += score.labels
        total.detected += score.detected
        total.alerts += score.alerts
        total.matched_alerts += score.matched_alerts
        total.repeats += score.repeats
        total.false_alerts.extend(score.false_alerts)
    if bed_days is None:
        bed_days = _bed_days(labels, alerts)
    scored = Evaluation(scores=scores, total=total, bed_days=bed_days, tolerance_s=tolerance_s)
    if profiles is not None:
        scored.profiles = _by_profile(labels, first_alert, scores, profiles, bed_days)
    return scored


def _by_profile(labels: Sequence[Label], first_alert: dict[int, int],
                scores: dict[str, TypeScore], profiles: Sequence[BedProfile],
                bed_days: float) -> list[ProfileScore]:
    of_bed = {(p.site, p.bed): p.profile for p in profiles}
    beds = Counter(of_bed.values())
    per_bed = bed_days / len(of_bed) if of_bed else 0.0
    out = {name: ProfileScore(name, n, n * per_bed) for name, n in beds.items()}

    def score(site: str, bed: str) -> ProfileScore:
        name = of_bed.get((site, bed), UNLISTED)
        if name not in out:
            out[name] = ProfileScore(name, 0, 0.0)
        return out[name]

    for i, label in enumerate(labels):
        p = score(label.site, label.bed)
        p.labels[label.type] += 1
        if i in first_alert:
            p.detected[label.type] += 1
    for type_score in scores.values():
        for alert in type_score.false_alerts:
            score(alert.site, alert.bed).false_alerts[alert.type] += 1
    return list(out.values())


def _bed_days(labels: Sequence[Label], alerts: Sequence[AlertRecord]) -> float:
    beds = {(x.site, x.bed) for x in labels} | {(a.site, a.bed) for a in alerts}
    times = [t for x in labels for t in (x.start, x.end)] + [a.opened_at for a in alerts]
    if not beds or not times:
        return 0.0
    return len(beds) * max(1.0, (max(times) - min(times)) / DAY_MS)
