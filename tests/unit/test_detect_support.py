"""Builders for detector tests (device messages, a clock that feeds and ticks a detector), and
the tests of what every detector relies on: bed numbering, local time and DST, batch columns."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import numpy as np
import pytest

from alerts.model import Finding
from devices import Codec, Message, Registry, Rejected
from gateway.detect import Fleet
from gateway.detect._base import DetectorBase
from gateway.detect._batch import CLOCK_TRUST_MS, extract

SITE = "s1"
MINUTE = 60_000
HOUR = 3_600_000
_codec = Codec()
_seq = itertools.count(1)
_encoder = msgspec.json.Encoder()


def at(date: str, time: str = "00:00", zone: str = "UTC") -> int:
    """Epoch ms of local ``date`` ``time`` in ``zone``."""
    moment = dt.datetime.fromisoformat(f"{date}T{time}").replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return round(moment.timestamp() * 1000)


def message(bed: str, kind: str, device: str, channel: str, body: dict[str, Any],
            *, site: str = SITE) -> Message:
    body.setdefault("seq", next(_seq))
    decoded = _codec.decode(f"homecare/v1/{site}/{bed}/{kind}/{device}/{channel}",
                            _encoder.encode(body))
    assert not isinstance(decoded, Rejected), decoded
    return decoded


def infrared(bed: str, t: int, *, motion: int | None = 0, presence: bool | None = True,
             people: int | None = 1, zone: str | None = "room", ts: int | None = None,
             device: str | None = None, site: str = SITE) -> Message:
    sample = {k: v for k, v in (("presence", presence), ("motion", motion),
                                ("people", people), ("zone", zone)) if v is not None}
    shift = (ts - t) if ts is not None else 0
    return message(bed, "infrared", device or f"ir-{bed}", "telemetry",
                   {"ts": t + shift, "samples": [{"t": t + shift, **sample}]}, site=site)


def vitals(bed: str, t: int, *, in_bed: bool | None = True, heart: float | None = None,
           breathing: float | None = None, samples: int = 1, spacing: int = 10_000,
           ts: int | None = None, device: str | None = None, site: str = SITE) -> Message:
    shift = (ts - t) if ts is not None else 0
    fields = {k: v for k, v in (("in_bed", in_bed), ("heart_rate", heart),
                                ("breathing_rate", breathing)) if v is not None}
    batch = [{"t": t + shift - (samples - 1 - i) * spacing, **fields} for i in range(samples)]
    return message(bed, "fall", device or f"fs-{bed}", "telemetry",
                   {"ts": t + shift, "samples": batch}, site=site)


def audio(bed: str, t: int, level: float | None, *, voice: bool | None = False,
          ts: int | None = None, device: str | None = None, site: str = SITE) -> Message:
    fields = {k: v for k, v in (("level_db", level), ("voice", voice)) if v is not None}
    stamp = ts if ts is not None else t
    return message(bed, "audio", device or f"au-{bed}", "telemetry", {"ts": stamp, **fields},
                   site=site)


def status(bed: str, kind: str, t: int, *, device: str | None = None, state: str = "online",
           battery: float | None = None, heartbeat_s: float | None = None,
           seq: int | None = None, ts: int | None = None, site: str = SITE) -> Message:
    body: dict[str, Any] = {"ts": ts if ts is not None else t, "state": state}
    if battery is not None:
        body["battery"] = battery
    if heartbeat_s is not None:
        body["heartbeat_s"] = heartbeat_s
    if seq is not None:
        body["seq"] = seq
    prefix = {"infrared": "ir", "audio": "au", "fall": "fs", "button": "btn", "badge": "bg"}
    return message(bed, kind, device or f"{prefix[kind]}-{bed}", "status", body, site=site)


def badge(bed: str, t: int, event: str, visit: str, *, services: Sequence[str] | None = None,
          caregiver: str = "c-1", site: str = SITE) -> Message:
    body: dict[str, Any] = {"ts": t, "event": event, "caregiver": caregiver, "visit": visit,
                            "method": "nfc"}
    if services is not None:
        body["services"] = list(services)
    return message(bed, "badge", f"bg-{caregiver}", "event", body, site=site)


def run(detector: DetectorBase, traffic: Iterable[tuple[int, Message]], *, start: int,
        end: int, step: int = 10_000) -> list[Finding]:
    """Feed ``(received_ms, message)`` pairs in batches of ``step`` and evaluate after each."""
    pending = sorted(traffic, key=lambda pair: pair[0])
    findings: list[Finding] = []
    i = 0
    now = start
    while now <= end:
        batch = []
        while i < len(pending) and pending[i][0] < now:
            batch.append(pending[i])
            i += 1
        if batch:
            detector.update([m for _, m in batch], [r for r, _ in batch])
        findings.extend(detector.evaluate(now))
        now += step
    return findings


def every(start: int, end: int, step: int) -> range:
    return range(start, end, step)


def opened(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.active]


def cleared(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if not f.active]


# --- tests of the shared parts ------------------------------------------------------------------


def test_beds_are_numbered_on_first_sight_and_arrays_grow_by_doubling() -> None:
    fleet = Fleet(Registry(), timezone="UTC")
    for n in range(100):
        fleet.bed_index(SITE, f"b{n}")
    assert fleet.n_beds == 100
    assert fleet.bed_index(SITE, "b7") == 7
    assert len(fleet.bed_zone) >= 100
    assert len(fleet.settings["heart_rate_max"]) in (100, 128)


def test_registry_beds_keep_their_own_settings_and_zone() -> None:
    registry = Registry.from_mapping({"sites": {"s1": {
        "timezone": "Europe/Berlin",
        "beds": {"b1": {"settings": {"heart_rate_max": 110, "night_start": "21:00"}}}}}})
    fleet = Fleet(registry, timezone="Asia/Shanghai")
    known = fleet.bed_index("s1", "b1")
    unknown = fleet.bed_index("s2", "b9")
    assert fleet.settings["heart_rate_max"][known] == 110
    assert fleet.settings["heart_rate_max"][unknown] == 130
    assert fleet.night_start_min[known] == 21 * 60
    noon = at("2026-07-01", "12:00", "UTC")
    minutes = fleet.local_minutes(np.array([known, unknown]), np.array([noon, noon]))
    assert minutes.tolist() == [14 * 60, 20 * 60]  # Berlin summer time, Shanghai


@pytest.mark.parametrize(("zone", "date"), [
    ("Europe/Berlin", "2026-03-29"), ("Europe/Berlin", "2026-10-25"),
    ("America/New_York", "2026-03-08"), ("America/New_York", "2026-11-01"),
    ("Australia/Sydney", "2026-04-05"), ("Australia/Lord_Howe", "2026-10-04"),
])
def test_local_time_follows_dst_changes(zone: str, date: str) -> None:
    fleet = Fleet(Registry(), timezone=zone)
    bed = fleet.bed_index(SITE, "b1")
    midnight = at(date, "00:00", zone)
    times = np.arange(midnight, midnight + 30 * HOUR, 7 * MINUTE, dtype=np.int64)
    got = fleet.local_minutes(np.full(len(times), bed), times)
    tz = zoneinfo.ZoneInfo(zone)
    want = [(lambda d: d.hour * 60 + d.minute + d.second / 60)(
        dt.datetime.fromtimestamp(t / 1000, tz)) for t in times.tolist()]
    assert np.allclose(got, want)


@pytest.mark.parametrize("span", [MINUTE, 2 * HOUR, 30 * HOUR, 40 * 24 * HOUR])
def test_local_time_of_beds_in_several_zones_over_short_and_long_spans(span: int) -> None:
    """A round's times (a minute or hours) are converted through a table of the quarter hours
    they span, longer spans one time at a time: the same local times either way, across DST."""
    zones = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
    registry = Registry.from_mapping({"sites": {f"s{n}": {"timezone": zone}
                                                for n, zone in enumerate(zones)}})
    fleet = Fleet(registry, timezone="UTC")
    beds = [fleet.bed_index(f"s{n}", "b1") for n in range(len(zones))]
    rng = np.random.default_rng(7)
    for start in (at("2026-03-29", "00:40", "UTC"), at("2026-10-04", "15:50", "UTC"),
                  at("2026-11-01", "05:55", "UTC")):
        times = np.sort(rng.integers(start, start + span, 200))
        bed = rng.choice(beds, len(times))
        got = fleet.local_ms(bed, times)
        want = [t + round(dt.datetime.fromtimestamp(t / 1000, zoneinfo.ZoneInfo(
                    zones[beds.index(b)])).utcoffset().total_seconds() * 1000)
                for t, b in zip(times.tolist(), bed.tolist(), strict=True)]
        assert got.tolist() == want


def test_night_window_crossing_midnight_and_not() -> None:
    registry = Registry.from_mapping({"sites": {SITE: {"beds": {
        "late": {"settings": {"night_start": "22:00", "night_end": "06:00"}},
        "day": {"settings": {"night_start": "01:00", "night_end": "05:00"}}}}}})
    fleet = Fleet(registry, timezone="UTC")
    late, day = fleet.bed_index(SITE, "late"), fleet.bed_index(SITE, "day")
    minutes = np.array([23 * 60, 3 * 60, 12 * 60, 0.0, 23 * 60, 3 * 60])
    beds = np.array([late, late, late, day, day, day])
    assert fleet.is_night(beds, minutes).tolist() == [True, True, False, False, False, True]


def test_batch_columns_use_receipt_time_for_a_skewed_device_clock() -> None:
    fleet = Fleet(Registry(), timezone="UTC")
    t = at("2026-11-02", "10:00")
    skewed = vitals("b1", t, heart=60, breathing=14, samples=3, ts=t - 40 * HOUR)
    fine = vitals("b2", t, heart=60, breathing=14, samples=3, ts=t - CLOCK_TRUST_MS // 2)
    batch = extract(fleet, [([skewed, fine], [t, t])])
    got = batch.vitals.t.tolist()
    assert got[:3] == [t - 20_000, t - 10_000, t]  # placed at receipt, spacing kept
    assert got[3:] == [t - CLOCK_TRUST_MS // 2 - 20_000 + i * 10_000 for i in range(3)]


def test_rounds_are_shared_by_detectors_and_each_sees_every_batch_once() -> None:
    fleet = Fleet(Registry(), timezone="UTC")
    a, b = fleet.register(), fleet.register()
    t = at("2026-11-02", "10:00")
    first, received = [infrared("b1", t)], [t]
    fleet.feed(a, first, received)
    fleet.feed(b, first, received)  # the same objects handed to the next detector: no copy
    fleet.cut()
    assert [len(x.infrared.t) for x in fleet.rounds_for(a)] == [1]
    second, received = [infrared("b1", t + MINUTE)], [t + MINUTE]
    fleet.feed(a, second, received)
    fleet.feed(a, second, received)  # the same detector again: a new batch
    fleet.cut()
    assert [len(x.infrared.t) for x in fleet.rounds_for(a)] == [2]
    assert [len(x.infrared.t) for x in fleet.rounds_for(b)] == [1, 2]
    assert fleet.rounds_for(b) == []


def test_a_round_extracted_in_small_parts_equals_one_extraction() -> None:
    t = at("2026-11-02", "10:00")
    traffic = []
    for i in range(40):
        bed = f"b{i % 7}"
        traffic.append(infrared(bed, t + i * 1000))
        traffic.append(vitals(bed, t + i * 1000, heart=60 + i, breathing=14, samples=3))
    traffic.append(status("b1", "infrared", t, state="offline", seq=0))
    received = [t + i for i in range(len(traffic))]

    whole = Fleet(Registry(), timezone="UTC")
    whole.register()
    whole.feed(0, traffic, received)
    whole.cut()
    [expected] = whole.rounds_for(0)

    parts = Fleet(Registry(), timezone="UTC", round_messages=5)
    parts.register()
    for start in range(0, len(traffic), 3):  # extracted every 5+ messages, as they come
        parts.feed(0, traffic[start:start + 3], received[start:start + 3])
    parts.cut()
    [got] = parts.rounds_for(0)  # still one round per evaluation

    def columns(batch: Any) -> dict[str, Any]:
        out = {}
        for name in ("device", "received", "ts", "is_will"):
            out[name] = getattr(batch, name).tolist()
        for kind in ("infrared", "vitals", "statuses"):
            part = getattr(batch, kind)
            for name in part.__dataclass_fields__:
                out[f"{kind}.{name}"] = str(np.asarray(getattr(part, name)).tolist())  # NaN
        return out

    assert columns(got) == columns(expected)
    assert len(got.vitals.t) == 120


def test_round_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="round_messages"):
        Fleet(Registry(), round_messages=0)


def test_a_batch_extracted_early_is_not_taken_again_from_the_next_detector() -> None:
    fleet = Fleet(Registry(), timezone="UTC", round_messages=2)
    consumers = [fleet.register() for _ in range(3)]
    t = at("2026-11-02", "10:00")
    batch = [infrared("b1", t + i) for i in range(5)]
    received = [t + i for i in range(5)]
    for consumer in consumers:  # the first hand-over is extracted at once (over 2 messages)
        fleet.feed(consumer, batch, received)
    fleet.cut()
    assert [len(x.infrared.t) for x in fleet.rounds_for(consumers[2])] == [5]
