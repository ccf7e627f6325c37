"""Devices registered on first sight are a bounded memo (issue 17, fresh verifier): every
made-up id seen once was registered and kept for ever (about 0.55 KB with 64-character ids),
so the README's RSS bound held to ~250,000 such ids only, and every made-up site joined
``registry.sites``, which the roster's gap checks and its uncovered-sites gauge walk. Now at
most ``first_sight_max`` devices are kept, the least recently seen forgotten first, never a
device of the registry file; a forgotten device is registered again when seen, and its calls
raise their alerts as ever; made-up sites never enter ``registry.sites``."""

from __future__ import annotations

import gc
import json
import logging
import tracemalloc
import zoneinfo
from pathlib import Path

import pytest

from alerts.engine import AlertEngine
from alerts.model import AlertType
from alerts.roster import Roster
from alerts.rosterstore import RosterStore
from alerts.store import AlertStore
from devices import Registry
from devices.topics import Address, Channel, Kind
from gateway.detect.alerting import AlertingStage
from gateway.ingest import pipeline as pipeline_module
from gateway.ingest.message import RawMessage
from gateway.ingest.pipeline import Pipeline
from gateway.monitoring import Metrics

T0 = 1_763_884_800_000
LISTED = {"sites": {"site-01": {"beds": {"bed-0007": {"devices": {
    "btn-0007": {"kind": "button"}, "ir-0007": {"kind": "infrared"}}}}}}}


def address(site: str, bed: str, device: str, kind: Kind = Kind.INFRARED) -> Address:
    return Address(site, bed, kind, device, Channel.STATUS)


def test_registrations_are_bounded_and_the_least_recently_seen_goes_first() -> None:
    registry = Registry.from_mapping(LISTED)
    registry.first_sight_max = 3
    on_listed_bed = address("site-01", "bed-0007", "ir-extra")
    registry.ensure(on_listed_bed)
    for n in range(3):
        registry.ensure(address(f"made-up-{n}", "b", f"d-{n}"))
    # The device on the listed bed was the least recently seen: forgotten first, its bed kept.
    bed = registry.bed("site-01", "bed-0007")
    assert bed is not None
    assert sorted(bed.devices) == ["btn-0007", "ir-0007"]
    assert (registry.first_sight_devices, registry.first_sight_evicted) == (3, 1)
    assert registry.last_evicted == "site-01/bed-0007/ir-extra"
    # Seen again, made-up-0 goes last: made-up-1 goes next, its bed with it.
    assert registry.seen(address("made-up-0", "b", "d-0"))
    assert registry.ensure(address("made-up-0", "b", "d-0"))[1] is False
    registry.ensure(address("made-up-9", "b", "d-9"))
    assert registry.bed("made-up-1", "b") is None
    assert ("made-up-1", "b") not in registry.bed_keys
    assert registry.bed("made-up-0", "b") is not None
    # A forgotten device is registered again, flagged, when seen again.
    device, new = registry.ensure(address("made-up-1", "b", "d-1"))
    assert (new, device.auto_registered) == (True, True)
    assert registry.seen(address("site-01", "bed-0007", "btn-0007")) is False  # listed
    # The file's devices are never forgotten, however many made-up ids come.
    for n in range(100):
        registry.ensure(address("site-01", "bed-0007", f"made-up-{n}"))
    assert sorted(registry.bed("site-01", "bed-0007").devices)[:2] == [  # type: ignore[union-attr]
        "btn-0007", "ir-0007"]
    assert registry.first_sight_devices == 3
    assert len(registry.bed_keys) == 1 + 0  # only the listed bed: the made-up beds went
    assert sorted(registry.sites) == ["site-01"]


def test_made_up_sites_never_reach_the_sites_the_roster_walks(tmp_path: Path) -> None:
    """The roster's gap check and its uncovered-sites gauge (each metrics scrape) walk
    ``registry.sites``: 10,000 made-up sites made each scrape evaluate 10,001 sites, and the
    gauge said 10,001 sites had no dispatcher at night."""
    registry = Registry.from_mapping(LISTED)
    for n in range(10_000):
        registry.ensure(address(f"made-up-{n}", "b", f"d-{n}"))
    assert list(registry.sites) == ["site-01"]
    # What replay warns of at its end (sites without a time zone), a walk of the memo:
    assert len(registry.first_sight_sites()) == 10_000
    roster = Roster.from_mapping({
        "staff": [{"id": "anna", "name": "Anna (synthetic)", "role": "dispatcher"}],
        "shifts": [{"name": "day", "start": "08:00"}, {"name": "night", "start": "20:00"}],
        "duty": [{"site": "*", "shift": "day", "dispatchers": ["anna"]}]})
    utc = zoneinfo.ZoneInfo("UTC")
    night = T0 + 14 * 3_600_000  # 22:00 UTC
    store = RosterStore(tmp_path / "oncall.json", seed=roster,
                        sites=lambda: list(registry.sites), zone=lambda site: utc,
                        clock=lambda: night)
    assert store.sites_uncovered(night) == 1
    assert {g.site for g in store.gaps(night)} == {"site-01"}


def test_memory_of_registrations_is_bounded() -> None:
    """64-character ids, each seen once: registrations held stop growing at the bound."""
    cap = 2_000
    registry = Registry(first_sight_max=cap)
    pad = "x" * 54

    def flood(first: int, n: int) -> None:
        for i in range(first, first + n):
            registry.ensure(address(f"s{i:09d}{pad}", f"b{i:09d}{pad}", f"d{i:09d}{pad}"))

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        flood(0, cap)
        gc.collect()
        full = tracemalloc.get_traced_memory()[0] - before
        flood(cap, 20_000)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert registry.first_sight_devices == cap
    assert len(registry.bed_keys) == cap
    assert full < cap * 1024, f"{full / cap:.0f} bytes per registration"
    assert after < full * 1.1 + 64 * 1024, f"{after - full} bytes grown for 20,000 more ids"


def raw(topic: str, fields: dict[str, object], seq: int) -> RawMessage:
    body = json.dumps({"ts": T0 + seq, "seq": seq, **fields}).encode()
    return RawMessage(topic, body, seq, 1, T0 + seq)


def test_a_forgotten_first_sight_button_still_raises_its_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A button seen once, forgotten under a flood of made-up ids (out of the registry and out
    of the intake's memo of addresses), then pressed: a critical emergency alert at once, in
    the urgent lane and in turn; every eviction counted, logged once per interval."""
    monkeypatch.setattr(pipeline_module, "KNOWN_MAX", 50)
    clock = [1000.0]
    monkeypatch.setattr(pipeline_module.time, "monotonic", lambda: clock[0])
    registry = Registry.from_mapping(LISTED)
    registry.first_sight_max = 20
    engine = AlertEngine(AlertStore(tmp_path / "alerts.sqlite3"))
    stage = AlertingStage(engine)
    metrics = Metrics()
    pipeline = Pipeline(metrics=metrics, registry=registry, stages=(stage,),
                        urgent_stages=(stage,))
    button = "homecare/v1/site-09/bed-new/button/btn-new"
    seq = 1
    with caplog.at_level(logging.INFO, logger="homecare.pipeline"):
        pipeline.process([raw(f"{button}/status", {"state": "online"}, seq)])
        for n in range(200):
            seq += 1
            pipeline.process([raw(f"homecare/v1/made-up-{n}/b-{n}/infrared/ir-{n}/status",
                                  {"state": "online"}, seq)])
        assert registry.bed("site-09", "bed-new") is None
        clock[0] += pipeline_module.AUTO_REGISTERED_LOG_INTERVAL_S
        press = [raw(f"{button}/event", {"event": "press"}, seq + 1)]
        assert pipeline.process_urgent(press) == 1
        stage.commit()
        pipeline.process(press)
        stage.commit()
    calls = [a for a in engine.open_alerts() if a.type is AlertType.EMERGENCY_BUTTON]
    assert [(a.site, a.bed) for a in calls] == [("site-09", "bed-new")]
    again = registry.bed("site-09", "bed-new")
    assert again is not None
    assert again.devices["btn-new"].auto_registered
    assert registry.first_sight_devices == 20
    evicted = metrics.registry.get_sample_value(
        "homecare_devices_first_sight_evicted_total") or 0.0
    assert evicted == registry.first_sight_evicted == 182
    lines = [r.getMessage() for r in caplog.records if "first_sight_evicted" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0] == ("registry.first_sight_evicted devices=1 held=20 "
                        "last='site-09/bed-new/btn-new'")
    assert lines[1].startswith("registry.first_sight_evicted devices=181 held=20 ")


def test_a_device_seen_often_is_not_forgotten_before_one_seen_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The intake marks a first-sight device seen at each of its messages, so a flood of
    made-up ids forgets them, not a new device in a real home that keeps talking."""
    registry = Registry(first_sight_max=10)
    pipeline = Pipeline(metrics=Metrics(), registry=registry)
    busy = "homecare/v1/site-01/bed-new/fall/fs-new/telemetry"
    seq = 1
    pipeline.process([raw(busy, {"in_bed": True}, seq)])
    for n in range(100):
        seq += 2
        pipeline.process([raw(f"homecare/v1/made-up/b-{n}/infrared/ir-{n}/status",
                              {"state": "online"}, seq),
                          raw(busy, {"in_bed": True}, seq + 1)])
    assert registry.bed("site-01", "bed-new") is not None
    assert registry.first_sight_evicted == 91
    assert pipeline.registered_total == 101, "the busy device was never registered twice"
