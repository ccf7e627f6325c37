"""Score alerts against ground-truth labels (``homecare evaluate``).

An alert *matches* a label when both have the same site, bed and type and the alert was opened
between the label's start and its end plus a tolerance. Per alert type:

* **recall**: labels matched by at least one alert / labels;
* **precision**: alerts that match some label / alerts (a second alert for the same label is
  not false, but is counted under ``repeats``: alarm fatigue shows there);
* **delay**: first matching alert's ``opened_at`` minus the label's start (median, p95 and
  maximum);
* **false per bed-day**: alerts matching no label / (beds x days).

Bed-days come from ``bed_days`` when given, else from the beds and the time span seen in the
labels and alerts (an underestimate for beds with neither, so the false rate errs high).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import numpy as np

from alerts.model import AlertType
from devices.labels import Label

DAY_MS: Final = 86_400_000
DEFAULT_TOLERANCE_S: Final = 600.0


class AlertRecord(msgspec.Struct, frozen=True):
    """The fields of an alert that scoring needs (every other field is ignored)."""

    id: str
    type: str
    site: str
    bed: str
    opened_at: int


@dataclass(slots=True)
class TypeScore:
    type: str
    labels: int = 0
    detected: int = 0
    alerts: int = 0
    matched_alerts: int = 0
    repeats: int = 0
    delays_ms: list[int] = field(default_factory=list)
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
class Evaluation:
    scores: dict[str, TypeScore]
    total: TypeScore
    bed_days: float
    tolerance_s: float

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
                "false_per_bed_day": _round(self.false_per_bed_day(score), 4),
            })
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "tolerance_s": self.tolerance_s, "bed_days": round(self.bed_days, 2),
            "types": self.rows(),
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
        return "\n".join(text)


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
             bed_days: float | None = None, types: Iterable[str] | None = None) -> Evaluation:
    """Match ``alerts`` to ``labels`` and score them per type (see the module docstring)."""
    tolerance_ms = round(tolerance_s * 1000)
    names = list(types) if types is not None else [t.value for t in AlertType]
    for name in [*(x.type for x in labels), *(a.type for a in alerts)]:
        if name not in names:
            names.append(name)
    scores = {name: TypeScore(name) for name in names}
    by_key: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_key[(label.site, label.bed, label.type)].append(i)
        scores[label.type].labels += 1
    first_alert: dict[int, int] = {}
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
    for i, label in enumerate(labels):
        score = scores[label.type]
        if i in first_alert:
            score.detected += 1
            score.delays_ms.append(first_alert[i] - label.start)
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
    return Evaluation(scores=scores, total=total, bed_days=bed_days, tolerance_s=tolerance_s)


def _bed_days(labels: Sequence[Label], alerts: Sequence[AlertRecord]) -> float:
    beds = {(x.site, x.bed) for x in labels} | {(a.site, a.bed) for a in alerts}
    times = [t for x in labels for t in (x.start, x.end)] + [a.opened_at for a in alerts]
    if not beds or not times:
        return 0.0
    return len(beds) * max(1.0, (max(times) - min(times)) / DAY_MS)
