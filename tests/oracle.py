"""What the time-series store must contain for a set of published messages.

Computed from the device contract directly (not from the gateway's line-protocol encoder), so
it is an independent check: one key per numeric or boolean field of each point, as
``(metric, tags, timestamp_ms)`` where ``metric`` is ``<measurement>_<field>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

from devices import Codec, Rejected, Telemetry, sample_fields
from devices.schemas import BadgeEvent, ButtonEvent, FallEvent, RecordingEvent, Status

PointKey = tuple[str, frozenset[tuple[str, str]], int]

_TELEMETRY = {"infrared": "infrared", "audio": "audio", "fall": "vitals"}
_EVENTS = {ButtonEvent: "button_event", RecordingEvent: "recording", FallEvent: "fall_event",
           BadgeEvent: "badge_event", Status: "device_status"}


def expected_points(messages: Iterable[tuple[str, bytes]]) -> Counter[PointKey]:
    codec = Codec()
    points: Counter[PointKey] = Counter()
    seen: set[tuple[str, bytes]] = set()
    for topic, payload in messages:
        if (topic, payload) in seen:  # an exact duplicate is stored once
            continue
        seen.add((topic, payload))
        message = codec.decode(topic, payload)
        if isinstance(message, Rejected):
            continue
        a = message.address
        tags = {("bed", a.bed), ("device", a.device), ("site", a.site)}
        body = message.payload
        if isinstance(body, Telemetry):
            measurement = _TELEMETRY[a.kind]
            for sample in body.samples:
                for name in sample_fields(sample):
                    points[(f"{measurement}_{name}", frozenset(tags), sample.t)] += 1
            continue
        measurement = _EVENTS[type(body)]
        if measurement in ("recording", "device_status"):
            tags.add(("kind", str(a.kind)))
        fields = msgspec.structs.asdict(body)
        fields.pop("ts")
        for name, value in fields.items():
            if value is not None:
                points[(f"{measurement}_{name}", frozenset(tags), body.ts)] += 1
    return points


def victoria_points(export: list[dict[str, object]]) -> Counter[PointKey]:
    """Keys of every stored sample (duplicates counted) from ``/api/v1/export`` lines."""
    points: Counter[PointKey] = Counter()
    for series in export:
        labels = dict(series["metric"])  # type: ignore[call-overload]
        name = labels.pop("__name__")
        labels.pop("db", None)
        tags = frozenset(labels.items())
        for ts in series["timestamps"]:  # type: ignore[attr-defined]
            points[(name, tags, int(ts))] += 1
    return points


def influx_points(rows_by_measurement: dict[str, list[dict[str, object]]]) -> Counter[PointKey]:
    points: Counter[PointKey] = Counter()
    tag_names = {"bed", "device", "site", "kind"}
    for measurement, rows in rows_by_measurement.items():
        for row in rows:
            tags = frozenset((k, str(v)) for k, v in row.items() if k in tag_names and v)
            for name, value in row.items():
                if name in tag_names or name == "time" or name.startswith("_") or value is None:
                    continue
                points[(f"{measurement}_{name}", tags, int(row["time"]))] += 1  # type: ignore[call-overload]
    return points
