"""Faults a gateway must survive: bad payloads, stray topics, duplicates, reordering, clock
skew and bursts. Off unless asked for; never labelled as incidents.

Corrupting faults (malformed JSON, wrong types, unknown topics, oversize) are *extra* messages
next to an intact original, so the valid stream stays whole and every rejected line is a
fault. Duplicates, reordering, clock skew and bursts change how or when valid messages
arrive. With ``must_cover`` (set for the first bed of a run), every kind and every variant
appears at least once within the first chunk.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any, Final, NamedTuple

import msgspec
import numpy as np

from devices import MAX_PAYLOAD_BYTES
from simulators.clock import DAY_MS, HOUR_MS, MINUTE_MS
from simulators.traffic import Action, Emission

VARIANTS: Final[dict[str, tuple[str, ...]]] = {
    "malformed_json": ("truncated", "not_utf8", "trailing_garbage", "empty"),
    "wrong_types": ("seq_string", "ts_string", "field_type", "negative_seq"),
    "unknown_topic": ("unknown_kind", "unknown_channel", "bad_id", "other_prefix",
                      "unknown_version", "short_topic"),
    "oversize": ("padded",),
    "duplicate": ("resent",),
    "reorder": ("late",),
    "clock_skew": ("ahead", "behind"),
    "burst": ("flush",),
}
FAULT_KINDS: Final = tuple(VARIANTS)
"""Every fault kind, in summary order."""


class Fault(NamedTuple):
    """One injected fault, for the fault log: when it was received and where."""

    t: int
    kind: str
    variant: str
    topic: str


_encoder = msgspec.json.Encoder()


class FaultInjector:
    """Applies faults to one bed's chunks; deterministic for its random generator."""

    def __init__(self, rng: np.random.Generator, *, rate: float, must_cover: bool) -> None:
        self.rng = rng
        self.rate = rate
        self.log: list[Fault] = []
        self.counts: Counter[str] = Counter()
        self._must = [(k, v) for k in FAULT_KINDS for v in VARIANTS[k]] if must_cover else []
        self._turn: Counter[str] = Counter()

    def apply(self, items: list[Emission]) -> list[Emission]:
        """The chunk with faults applied (same list object, changed in place)."""
        eligible = [i for i, e in enumerate(items) if e.action in (Action.PUBLISH, Action.RETAIN)]
        if not eligible:
            return items
        chosen: list[tuple[int, str, str]] = []
        if self._must:
            stride = max(1, len(eligible) // (len(self._must) + 1))
            for j, (kind, variant) in enumerate(self._must):
                chosen.append((eligible[min(len(eligible) - 1, (j + 1) * stride)], kind, variant))
            self._must = []
        hits = np.flatnonzero(self.rng.random(len(eligible)) < self.rate).tolist()
        for h in hits:
            kind = FAULT_KINDS[int(self.rng.integers(0, len(FAULT_KINDS)))]
            variants = VARIANTS[kind]
            chosen.append((eligible[h], kind, variants[self._turn[kind] % len(variants)]))
            self._turn[kind] += 1
        bursts: list[tuple[int, int]] = []
        for index, kind, variant in chosen:
            original = items[index]
            if kind == "reorder" and "/telemetry" not in original.topic:
                index = next((i for i in eligible if i > index and "/telemetry" in items[i].topic),
                             index)
                original = items[index]
            if kind == "burst":
                hold = int(self.rng.integers(2 * MINUTE_MS, 8 * MINUTE_MS))
                bursts.append((original.t, original.t + hold))
                self._record(original.t + hold, kind, variant, original.topic)
                continue
            changed = self._fault(original, kind, variant)
            if kind in ("duplicate", "malformed_json", "wrong_types", "unknown_topic", "oversize"):
                items.append(changed)
            else:
                items[index] = changed
            self._record(changed.t, kind, variant, changed.topic)
        for start, end in bursts:
            # A home network outage: messages queue in the devices and arrive together.
            step = 0
            for i, e in enumerate(items):
                if start <= e.t < end and e.action != Action.WILL:
                    step += 1
                    items[i] = e._replace(t=end + step)
        return items

    def _record(self, t: int, kind: str, variant: str, topic: str) -> None:
        self.counts[kind] += 1
        self.log.append(Fault(t, kind, variant, topic))

    def _fault(self, e: Emission, kind: str, variant: str) -> Emission:
        rng = self.rng
        if kind == "duplicate":
            return e._replace(t=e.t + int(rng.integers(1_000, 120_000)))
        if kind == "reorder":
            return e._replace(t=e.t + int(rng.integers(61_000, 240_000)))
        if kind == "clock_skew":
            sign = 1 if variant == "ahead" else -1
            offset = sign * int(rng.integers(HOUR_MS, 400 * DAY_MS))
            body = _decode(e.payload)
            body["ts"] = max(0, body["ts"] + offset)
            for sample in body.get("samples", ()):
                sample["t"] = max(0, sample["t"] + offset)
            return e._replace(payload=_encoder.encode(body))
        extra = e._replace(t=e.t + int(rng.integers(1, 50)), action=Action.PUBLISH)
        if kind == "malformed_json":
            payload = {
                "truncated": e.payload[: len(e.payload) // 2],
                "not_utf8": b"\xff\xfe" + e.payload[2:],
                "trailing_garbage": e.payload + b'}{"',
                "empty": b"",
            }[variant]
            return extra._replace(payload=payload)
        if kind == "wrong_types":
            return extra._replace(payload=_encoder.encode(_mistype(_decode(e.payload), variant)))
        if kind == "oversize":
            body = _decode(e.payload)
            body["debug"] = base64.b64encode(rng.bytes(MAX_PAYLOAD_BYTES)).decode()
            return extra._replace(payload=_encoder.encode(body))
        return extra._replace(topic=_stray_topic(e.topic, variant))


def _decode(payload: bytes) -> dict[str, Any]:
    body = msgspec.json.decode(payload)
    assert isinstance(body, dict)
    return body


def _mistype(body: dict[str, Any], variant: str) -> dict[str, Any]:
    if variant == "seq_string":
        body["seq"] = str(body["seq"])
    elif variant == "ts_string":
        body["ts"] = "yesterday"
    elif variant == "negative_seq":
        body["seq"] = -1
    else:
        target = body["samples"][0] if "samples" in body else body
        key = next(k for k in target if k not in ("ts", "seq", "t"))
        target[key] = 7 if isinstance(target[key], str) else "n/a"
    return body


def _stray_topic(topic: str, variant: str) -> str:
    parts = topic.split("/")
    if variant == "unknown_kind":
        parts[4] = "thermostat"
    elif variant == "unknown_channel":
        parts[6] = "config"
    elif variant == "bad_id":
        parts[5] = parts[5] + "!" + "x" * 70
    elif variant == "other_prefix":
        parts[0] = "domotica"
    elif variant == "unknown_version":
        parts[1] = "v9"
    else:
        parts = parts[:4]
    return "/".join(parts)
