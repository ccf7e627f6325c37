"""The chaos run's ledger: what was sent, against what arrived where it must.

Each part compares the traffic as published (``traffic.jsonl``, ``calls.jsonl``,
``labels.jsonl`` of :mod:`bench.chaos_traffic`) with a store read from outside after the run,
and says what is missing, duplicated, unexpected or out of order:

* :class:`PointLedger`: the time-series points. What must be stored is computed by the tests'
  oracle (:func:`tests.oracle.expected_points`: from the device contract, not from the
  gateway's encoder), message chunk by message chunk, and kept as one array of timestamps per
  series; the store is read series by series. A point whose device time was outside the
  gateway's clock window is stored at its receipt time with a ``device_ts`` field
  (README, "Device time never loses data silently"): it counts as *retimed* when a
  ``<measurement>_device_ts`` point of its series holds its device time, and a retimed point
  stored twice (a redelivery after a kill; the README's stated limit) is counted apart.
* :func:`dead_letter_ledger`: the messages the codec (or the registry: a listed device
  elsewhere) refuses, against the dead-letter store, by ``(topic, sha256)`` and reason.
* :func:`call_ledger`: every emergency call and fall event against the alert store's change
  log (a change whose alert evidence names the call's device, seq and device time), and every
  labelled critical incident against its calls: missed, and late (from the call's publishing
  to the change, on this machine's wall clock).
* :func:`upstream_ledger`: what the alert store and service log hold against what the
  reference receiver accepted: missing, duplicated (one change or record under two keys),
  out of order (per kind, by seq), unsigned.
* :func:`recovery_summary`: the recovery times of the kills.

>>> ledger = PointLedger()
>>> ledger.add([("homecare/v1/s1/b1/button/btn-1/event", b'{"ts":1000,"seq":1,"event":"press"}')])
>>> ledger.compare("button_event_seq", frozenset({("site", "s1"), ("bed", "b1"),
...                ("device", "btn-1")}), [1000, 1000])
>>> ledger.finish()["duplicated"], ledger.finish()["lost"]
(1, 1)
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from devices import SUBSCRIPTION, Codec, Label, Registry, Rejected
from tests.oracle import expected_points

SeriesKey = tuple[str, frozenset[tuple[str, str]]]

MEASUREMENTS: Final = ("button_event", "fall_event", "badge_event", "device_status",
                       "recording", "infrared", "audio", "vitals")
"""The gateway's measurements (README, "Time-series schema"); a metric is
``<measurement>_<field>``."""

CRITICAL: Final = {"emergency_button": "button", "fall": "fall"}
"""Critical alert types and the device kind whose calls they are."""

LABEL_WINDOW_MS: Final = (60_000, 10 * 60_000)
"""A call belongs to a label when its simulated receipt time is within the label's span,
widened by these (before its start, after its end): a burst fault holds a home's messages
back for up to 8 minutes."""

SAMPLES: Final = 10
"""Examples kept of each kind of discrepancy."""


def subscribed(topic: str) -> bool:
    """Whether the broker hands a message of this topic to the gateway (subscribed to
    :data:`devices.SUBSCRIPTION`, ``homecare/v1/#``): a stray topic outside it (another
    prefix or version) never reaches the gateway, so it is no dead letter there.

    >>> subscribed("homecare/v1/s/b/button/btn/event"), subscribed("homecare/v9/s/b")
    (True, False)
    """
    prefix = SUBSCRIPTION.removesuffix("#")
    return topic.startswith(prefix) or topic == prefix.rstrip("/")


def measurement_of(metric: str) -> str | None:
    """The measurement a metric belongs to.

    >>> measurement_of("device_status_battery"), measurement_of("vitals_device_ts")
    ('device_status', 'vitals')
    """
    for name in sorted(MEASUREMENTS, key=len, reverse=True):
        if metric.startswith(name + "_"):
            return name
    return None


@dataclass
class PointLedger:
    """Expected points, filled chunk by chunk with :meth:`add`; then :meth:`retimed` for each
    ``*_device_ts`` series and :meth:`compare` for every other stored series; then
    :meth:`finish`."""

    registry: Registry | None = None
    expected: dict[SeriesKey, array[int]] = field(default_factory=dict)
    dead_expected: dict[tuple[str, str], str] = field(default_factory=dict)
    """``(topic, sha256 of the payload)`` -> reason of every message that must be a dead
    letter."""
    dead_sent: Counter[str] = field(default_factory=Counter)
    """Reason -> dead-letter messages sent, each sending counted."""
    messages: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    _seen: set[SeriesKey] = field(default_factory=set)
    _retimed_values: dict[SeriesKey, np.ndarray[Any, Any]] = field(default_factory=dict)
    _retimed_stamps: dict[SeriesKey, np.ndarray[Any, Any]] = field(default_factory=dict)
    _codec: Codec = field(default_factory=Codec)

    def add(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """A chunk of the messages sent, in order."""
        self.messages += len(messages)
        valid = []
        for topic, payload in messages:
            if not subscribed(topic):
                self.counts["not_subscribed"] += 1
                continue
            message = self._codec.decode(topic, payload)
            if isinstance(message, Rejected):
                reason = message.reason
            elif self.registry is not None and self.registry.misplaced(message.address):
                reason = "device_misplaced"
            else:
                valid.append((topic, payload))
                continue
            self.dead_sent[reason] += 1
            self.dead_expected[(topic, hashlib.sha256(payload).hexdigest())] = reason
        for (metric, tags, ts) in expected_points(valid):
            series = self.expected.get((metric, tags))
            if series is None:
                series = self.expected[(metric, tags)] = array("q")
            series.append(ts)

    def retimed(self, measurement: str, tags: frozenset[tuple[str, str]],
                stamps: Sequence[int], device_times: Sequence[float]) -> None:
        """A stored ``<measurement>_device_ts`` series: points stored at their receipt time
        (``stamps``) because their device time (the values) was outside the clock window."""
        key = (measurement, tags)
        values = np.asarray(device_times, dtype=np.int64)
        unique, counts = np.unique(values, return_counts=True)
        twice = int((counts - 1).sum())
        self.counts["retimed_points"] += len(values)
        self.counts["retimed_stored_twice"] += twice
        if twice:
            self._example("retimed_stored_twice", f"{measurement} {sorted(tags)} "
                          f"{unique[counts > 1][:3].tolist()}")
        self._retimed_values[key] = unique
        self._retimed_stamps[key] = np.unique(np.asarray(stamps, dtype=np.int64))

    def compare(self, metric: str, tags: frozenset[tuple[str, str]],
                stored: Sequence[int]) -> None:
        """One stored series (every timestamp, repeats included)."""
        key = (metric, tags)
        self._seen.add(key)
        got = np.asarray(stored, dtype=np.int64)
        unique, counts = np.unique(got, return_counts=True)
        duplicated = int((counts - 1).sum())
        raw = self.expected.get(key)
        want = (np.unique(np.frombuffer(raw, dtype=np.int64)) if raw is not None
                else np.zeros(0, dtype=np.int64))
        missing = np.setdiff1d(want, unique, assume_unique=True)
        extra = np.setdiff1d(unique, want, assume_unique=True)
        measurement = measurement_of(metric)
        retime_key = (measurement or "", tags)
        if len(missing) and retime_key in self._retimed_values:
            moved = np.isin(missing, self._retimed_values[retime_key])
            self.counts["retimed"] += int(moved.sum())
            missing = missing[~moved]
        if len(extra) and retime_key in self._retimed_stamps:
            extra = extra[~np.isin(extra, self._retimed_stamps[retime_key])]
        self.counts["expected"] += len(want)
        self.counts["stored"] += len(got)
        self.counts["lost"] += len(missing)
        self.counts["duplicated"] += duplicated
        self.counts["unexpected"] += len(extra)
        if len(missing):
            self._example("lost", f"{metric} {sorted(tags)} {missing[:3].tolist()}")
        if duplicated:
            self._example("duplicated", f"{metric} {sorted(tags)} "
                          f"{unique[counts > 1][:3].tolist()}")
        if len(extra):
            self._example("unexpected", f"{metric} {sorted(tags)} {extra[:3].tolist()}")

    def finish(self) -> dict[str, Any]:
        """The figures; expected series never seen in the store count as lost."""
        counts = Counter(self.counts)
        for key, raw in self.expected.items():
            if key in self._seen:
                continue
            want = np.unique(np.frombuffer(raw, dtype=np.int64))
            metric, tags = key
            retime_key = (measurement_of(metric) or "", tags)
            counts["expected"] += len(want)
            if retime_key in self._retimed_values:
                moved = np.isin(want, self._retimed_values[retime_key])
                counts["retimed"] += int(moved.sum())
                want = want[~moved]
            counts["lost"] += len(want)
            if len(want) and len(self.examples["lost"]) < SAMPLES:
                self.examples["lost"].append(f"{metric} {sorted(tags)} (series absent)")
        by_tags: dict[frozenset[tuple[str, str]], list[tuple[str, array[int]]]] = {}
        wanted = {tags for _, tags in self._retimed_values}
        for (metric, tags), raw in self.expected.items():
            if tags in wanted:
                by_tags.setdefault(tags, []).append((metric, raw))
        for (measurement, tags), values in self._retimed_values.items():
            known = [np.frombuffer(raw, dtype=np.int64) for metric, raw in by_tags.get(tags, ())
                     if measurement_of(metric) == measurement]
            stray = np.setdiff1d(values, np.concatenate(known) if known else values[:0])
            counts["unexpected"] += len(stray)
            if len(stray) and len(self.examples["unexpected"]) < SAMPLES:
                self.examples["unexpected"].append(
                    f"{measurement}_device_ts {sorted(tags)} {stray[:3].tolist()}")
        return {
            "messages_sent": self.messages,
            "not_subscribed": counts["not_subscribed"],
            "series": len(self.expected),
            "expected": counts["expected"],
            "stored": counts["stored"],
            "lost": counts["lost"],
            "duplicated": counts["duplicated"],
            "unexpected": counts["unexpected"],
            "retimed": counts["retimed"],
            "retimed_stored_twice": counts["retimed_stored_twice"],
            "examples": {k: v for k, v in self.examples.items() if v},
        }

    def _example(self, kind: str, text: str) -> None:
        if len(self.examples[kind]) < SAMPLES:
            self.examples[kind].append(text)


def dead_letter_ledger(expected: dict[tuple[str, str], str], sent: Counter[str],
                       stored: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """Dead letters that must exist (``(topic, sha256)`` -> reason; ``sent``: each sending
    counted) against the store's rows ``(topic, sha256, reason)``.

    >>> dead_letter_ledger({("t", "a"): "malformed_json"}, Counter(malformed_json=2),
    ...                    [("t", "a", "malformed_json"), ("t", "a", "malformed_json")])
    ... # doctest: +NORMALIZE_WHITESPACE
    {'sent': 2, 'distinct': 1, 'stored_rows': 2, 'stored_distinct': 1, 'missing': 0,
     'stored_more_than_once': 1, 'unexpected': 0, 'by_reason': {'malformed_json':
     {'sent': 2, 'distinct': 1, 'stored': 1, 'missing': 0}}}
    """
    rows = Counter((topic, sha) for topic, sha, _ in stored)
    reasons = {}
    for topic, sha, reason in stored:
        reasons[(topic, sha)] = reason
    missing = [key for key in expected if key not in rows]
    unexpected = Counter(reasons[key] for key in rows if key not in expected)
    by_reason: dict[str, dict[str, int]] = {}
    for reason in sorted(set(expected.values()) | set(sent)):
        by_reason[reason] = {
            "sent": sent[reason],
            "distinct": sum(1 for r in expected.values() if r == reason),
            "stored": sum(1 for key in rows if expected.get(key) == reason),
            "missing": sum(1 for key in missing if expected[key] == reason)}
    figures: dict[str, Any] = {
        "sent": sum(sent.values()), "distinct": len(expected),
        "stored_rows": sum(rows.values()), "stored_distinct": len(rows),
        "missing": len(missing), "stored_more_than_once": sum(n - 1 for n in rows.values()),
        "unexpected": sum(unexpected.values()), "by_reason": by_reason}
    if unexpected:
        figures["unexpected_by_reason"] = dict(unexpected)
    return figures


@dataclass(frozen=True, slots=True)
class Call:
    site: str
    bed: str
    kind: str
    device: str
    seq: int
    ts: int
    t: int
    """Simulated receipt time."""
    published_ms: int
    """Wall clock, when it was handed to the connection."""


def read_calls(lines: Iterable[dict[str, Any]]) -> list[Call]:
    """Each distinct call once (a duplicate fault sends one twice), at its first publishing."""
    calls: dict[tuple[str, str, str, int, int], Call] = {}
    for c in lines:
        key = (c["site"], c["bed"], c["device"], c["seq"], c["ts"])
        if key not in calls:
            calls[key] = Call(c["site"], c["bed"], c["kind"], c["device"], c["seq"], c["ts"],
                              c["t"], c["published_ms"])
    return list(calls.values())


def call_ledger(calls: Sequence[Call], changes: Iterable[tuple[int, str, dict[str, Any]]],
                labels: Sequence[Label], *, late_ms: int) -> dict[str, Any]:
    """Calls and labelled critical incidents against the alert change log ``(at, action,
    alert)``: a call took effect at the first change of a critical alert of its bed whose
    evidence names its device, seq and device time.

    >>> call = Call("s", "b", "button", "btn", 7, 5_000, 5_000, 100)
    >>> alert = {"type": "emergency_button", "site": "s", "bed": "b",
    ...          "evidence": {"device": "btn", "seq": 7, "device_ts": 5_000}}
    >>> got = call_ledger([call], [(160, "opened", alert)],
    ...                   [Label("s", "b", "emergency_button", 5_000, 5_000)], late_ms=1_000)
    >>> got["calls_missed"], got["labels_missed"], got["call_to_alert_ms"]["max"]
    (0, 0, 60)
    """
    took: dict[tuple[Any, ...], int] = {}
    for at, _action, alert in changes:
        if alert.get("type") not in CRITICAL:
            continue
        ev = alert.get("evidence") or {}
        key = (alert["site"], alert["bed"], ev.get("device"), ev.get("seq"), ev.get("device_ts"))
        if key not in took or at < took[key]:
            took[key] = at
    delays: list[int] = []
    missed: list[Call] = []
    for c in calls:
        effect = took.get((c.site, c.bed, c.device, c.seq, c.ts))
        if effect is None:
            missed.append(c)
        else:
            delays.append(effect - c.published_ms)
    by_bed: dict[tuple[str, str, str], list[Call]] = defaultdict(list)
    for c in calls:
        by_bed[(c.site, c.bed, c.kind)].append(c)
    per_type: dict[str, dict[str, int]] = {}
    label_delays: list[int] = []
    missed_labels: list[str] = []
    late_labels: list[str] = []
    for label in labels:
        kind = CRITICAL.get(label.type)
        if kind is None:
            continue
        row = per_type.setdefault(label.type, {"labels": 0, "detected": 0, "missed": 0,
                                               "late": 0, "no_call_sent": 0})
        row["labels"] += 1
        before, after = LABEL_WINDOW_MS
        mine = sorted((c for c in by_bed.get((label.site, label.bed, kind), ())
                       if label.start - before <= c.t <= label.end + after),
                      key=lambda c: c.t)
        if not mine:
            row["no_call_sent"] += 1
            continue
        effects = [took.get((c.site, c.bed, c.device, c.seq, c.ts)) for c in mine]
        first = next(((c, at) for c, at in zip(mine, effects, strict=True) if at is not None),
                     None)
        if first is None:
            row["missed"] += 1
            missed_labels.append(f"{label.type} {label.site}/{label.bed} start={label.start}")
            continue
        row["detected"] += 1
        delay = first[1] - mine[0].published_ms
        label_delays.append(delay)
        if delay > late_ms:
            row["late"] += 1
            late_labels.append(f"{label.type} {label.site}/{label.bed}: {delay} ms")
    return {
        "calls": len(calls), "calls_took_effect": len(delays), "calls_missed": len(missed),
        "calls_late": sum(1 for d in delays if d > late_ms),
        "call_to_alert_ms": _quantiles(delays),
        "labels": sum(r["labels"] for r in per_type.values()),
        "labels_missed": sum(r["missed"] for r in per_type.values()),
        "labels_late": sum(r["late"] for r in per_type.values()),
        "labels_without_call": sum(r["no_call_sent"] for r in per_type.values()),
        "label_to_alert_ms": _quantiles(label_delays),
        "by_type": per_type, "late_limit_ms": late_ms,
        "examples": {"missed_calls": [f"{c.site}/{c.bed} {c.device} seq={c.seq} ts={c.ts}"
                                      for c in missed[:SAMPLES]],
                     "missed_labels": missed_labels[:SAMPLES],
                     "late_labels": late_labels[:SAMPLES]},
    }


@dataclass(frozen=True, slots=True)
class Accepted:
    """One key as the receiver accepted it (first time), in acceptance order."""

    key: str
    body: dict[str, Any]
    signed: bool


def upstream_ledger(expected: Sequence[str], accepted: Sequence[Accepted], *,
                    pending: Iterable[str] = (), redelivered: int = 0) -> dict[str, Any]:
    """Keys the logs hold (``<source>/alert/<seq>``, ``<source>/service/<seq>``) against
    what the receiver accepted. ``pending``: keys still queued in the outbox at the clean
    stop (not lost: they go after the next start); ``redelivered``: requests the receiver
    dropped as repeats of a key it had (at least once delivery, absorbed by the key).

    >>> a = [Accepted("g/alert/2", {"kind": "alert_change", "change":
    ...       {"seq": 2, "at": 1, "action": "opened", "alert": {"id": "x"}}}, True),
    ...      Accepted("g/alert/1", {"kind": "alert_change", "change":
    ...       {"seq": 1, "at": 0, "action": "opened", "alert": {"id": "y"}}}, True)]
    >>> got = upstream_ledger(["g/alert/1", "g/alert/2", "g/alert/3"], a, pending=["g/alert/3"])
    >>> got["missing"], got["pending_at_stop"], got["out_of_order"]
    (0, 1, 1)
    """
    pending_set = set(pending)
    accepted_keys = [a.key for a in accepted]
    got = set(accepted_keys)
    want = set(expected)
    missing = sorted(want - got - pending_set, key=_key_order)
    content: Counter[tuple[Any, ...]] = Counter()
    order: dict[str, list[int]] = defaultdict(list)
    for a in accepted:
        kind = a.body.get("kind")
        if kind == "alert_change":
            change = dict(a.body.get("change") or {})
            change.pop("seq", None)
            content[("alert", json.dumps(change, sort_keys=True))] += 1
        elif kind == "service_record":
            record = a.body.get("record") or {}
            content[("record", record.get("origin") or json.dumps(
                {k: v for k, v in record.items() if k not in ("seq", "hash", "prev_hash")},
                sort_keys=True))] += 1
        order[a.key.rsplit("/", 2)[-2] if a.key.count("/") >= 2 else "?"].append(_seq(a.key))
    out_of_order = 0
    for seqs in order.values():
        highest = -1
        for seq in seqs:
            if seq < highest:
                out_of_order += 1
            highest = max(highest, seq)
    duplicated = sum(n - 1 for n in content.values() if n > 1)
    return {
        "expected": len(want), "accepted": len(got & want), "missing": len(missing),
        "pending_at_stop": len(pending_set & want - got),
        "unexpected": len(got - want), "duplicated": duplicated,
        "redelivered_requests": redelivered, "out_of_order": out_of_order,
        "unsigned": sum(1 for a in accepted if not a.signed),
        "alert_changes": sum(1 for k in want if "/alert/" in k),
        "service_records": sum(1 for k in want if "/service/" in k),
        "examples": {"missing": missing[:SAMPLES]},
    }


def _seq(key: str) -> int:
    try:
        return int(key.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return -1


def _key_order(key: str) -> tuple[str, int]:
    return key.rsplit("/", 1)[0], _seq(key)


def recovery_summary(kills: Sequence[dict[str, Any]], *, limit_s: float) -> dict[str, Any]:
    """Per kill ``ingest_resumed_s`` (from the SIGKILL to the first batch committed by the
    next process): how many, the worst, and how many over ``limit_s``.

    >>> recovery_summary([{"ingest_resumed_s": 1.2}, {"ingest_resumed_s": 2.5}], limit_s=2)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'kills': 2, 'resumed': 2, 'over_limit': 1, 'limit_s': 2, 'ingest_resumed_s':
     {'p50': 1.85, 'max': 2.5}}
    """
    resumed = [k["ingest_resumed_s"] for k in kills if k.get("ingest_resumed_s") is not None]
    return {"kills": len(kills), "resumed": len(resumed),
            "over_limit": sum(1 for s in resumed if s >= limit_s) + len(kills) - len(resumed),
            "limit_s": limit_s,
            "ingest_resumed_s": ({"p50": round(float(np.percentile(resumed, 50)), 2),
                                  "max": round(max(resumed), 2)} if resumed else None)}


def _quantiles(values: Sequence[int]) -> dict[str, float] | None:
    if not values:
        return None
    data = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(data, 50))),
            "p95": round(float(np.percentile(data, 95))),
            "p99": round(float(np.percentile(data, 99))),
            "max": round(float(data.max()))}


__all__ = ["CRITICAL", "MEASUREMENTS", "Accepted", "Call", "PointLedger", "call_ledger",
           "dead_letter_ledger", "measurement_of", "read_calls", "recovery_summary",
           "subscribed", "upstream_ledger"]
