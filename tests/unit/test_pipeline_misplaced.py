"""A device the registry lists, seen on another site, bed or kind, is a dead letter
(``device_misplaced``): counted, never handed to the alert rules, the detectors or the live
state, in the urgent lane as in turn. Devices the registry does not list keep being registered
on first sight, stored and alerted."""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest

from devices import Message, Registry
from gateway.ingest import pipeline as pipeline_module
from gateway.ingest import registrywatch
from gateway.ingest.message import RawMessage
from gateway.ingest.pipeline import DEVICE_MISPLACED, Pipeline
from gateway.ingest.registrywatch import RegistryWatch
from gateway.monitoring import Metrics

T0 = 1_763_884_800_000
REGISTRY = """
[sites.site-01.beds.bed-0007.devices.btn-0007]
kind = "button"
[sites.site-01.beds.bed-0007.devices.badge-c01]
kind = "badge"
[sites.site-01.beds.bed-0099.devices.btn-0099]
kind = "button"
"""
HOME = "homecare/v1/site-01/bed-0007/button/btn-0007"
OTHER_BED = "homecare/v1/site-01/bed-0099/button/btn-0007"
AS_FALL = "homecare/v1/site-01/bed-0099/fall/btn-0007"
OTHER_SITE = "homecare/v1/site-02/bed-0007/button/btn-0007"
PRESS = {"event": "press"}
FALL = {"event": "fall_detected", "confidence": 0.97, "posture": "lying"}
OFFLINE = {"state": "offline"}


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[str] = []

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        self.seen.extend(m.address.topic for m in messages)

    def commit(self) -> None:
        pass


def raw(topic: str, fields: dict[str, object], seq: int, *, retain: bool = False
        ) -> RawMessage:
    body = json.dumps({"ts": T0 + seq, "seq": seq, **fields}).encode()
    return RawMessage(topic, body, seq, 1, T0 + seq, retain=retain)


@pytest.fixture
def parts() -> tuple[Pipeline, Recorder, Recorder, Registry, Metrics]:
    registry = Registry.from_mapping(tomllib.loads(REGISTRY))
    rules, live = Recorder("alerts"), Recorder("livestate")
    metrics = Metrics()
    pipeline = Pipeline(metrics=metrics, registry=registry, stages=(rules, live),
                        urgent_stages=(rules,))
    return pipeline, rules, live, registry, metrics


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_registered_button_pressing_elsewhere_is_a_dead_letter_never_a_call(
        parts: tuple[Pipeline, Recorder, Recorder, Registry, Metrics]) -> None:
    pipeline, rules, live, registry, metrics = parts
    raws = [raw(f"{OTHER_BED}/event", PRESS, 1), raw(f"{AS_FALL}/event", FALL, 2),
            raw(f"{OTHER_SITE}/event", PRESS, 3), raw(f"{HOME}/event", PRESS, 4)]
    urgent = pipeline.process_urgent(raws)
    pipeline.process(raws)
    assert urgent == 1
    assert rules.seen == live.seen == [f"{HOME}/event"]
    batch = pipeline.take()
    assert [(d.topic, d.reason) for d in batch.deadletters] == [
        (f"{OTHER_BED}/event", DEVICE_MISPLACED), (f"{AS_FALL}/event", DEVICE_MISPLACED),
        (f"{OTHER_SITE}/event", DEVICE_MISPLACED)]
    assert batch.deadletters[0].detail == (
        "btn-0007 is registered at site-01/bed-0007 as button; seen at site-01/bed-0099 as "
        "button")
    assert batch.deadletters[1].detail.endswith("seen at site-01/bed-0099 as fall")
    assert batch.points == 1  # only the press at home is stored as a point
    assert len(batch.raws) == 4  # every message is acknowledged with its batch
    # Counted once each (the urgent lane and the turn do not count twice).
    assert metric(metrics, "homecare_messages_misplaced_total", differs="bed") == 2
    assert metric(metrics, "homecare_messages_misplaced_total", differs="site") == 1
    assert metric(metrics, "homecare_messages_rejected_total", reason=DEVICE_MISPLACED) == 3
    # Nothing was registered where the device was seen.
    bed = registry.bed("site-01", "bed-0099")
    assert bed is not None
    assert set(bed.devices) == {"btn-0099"}
    assert registry.bed("site-02", "bed-0007") is None
    assert metric(metrics, "homecare_devices_auto_registered_total") == 0


def test_a_retained_offline_status_on_another_bed_reaches_no_detector(
        parts: tuple[Pipeline, Recorder, Recorder, Registry, Metrics]) -> None:
    pipeline, rules, live, _, metrics = parts
    pipeline.process([raw(f"{OTHER_BED}/status", OFFLINE, 0, retain=True),
                      raw(f"{HOME}/status", {"state": "online"}, 1)])
    assert rules.seen == live.seen == [f"{HOME}/status"]
    assert [d.reason for d in pipeline.take().deadletters] == [DEVICE_MISPLACED]
    assert metric(metrics, "homecare_messages_misplaced_total", differs="bed") == 1


def test_misplaced_again_and_again_stays_a_dead_letter(
        parts: tuple[Pipeline, Recorder, Recorder, Registry, Metrics]) -> None:
    """The check is not a first-sight check: the hundredth message from the wrong bed is
    refused like the first, and the device's own bed keeps working in between."""
    pipeline, rules, _, _, _ = parts
    for seq in range(1, 101):
        pipeline.process([raw(f"{OTHER_BED}/event", PRESS, 2 * seq),
                          raw(f"{HOME}/event", PRESS, 2 * seq + 1)])
    assert rules.seen == [f"{HOME}/event"] * 100
    assert len(pipeline.take().deadletters) == 100


def test_unregistered_devices_are_still_registered_stored_and_alerted(
        parts: tuple[Pipeline, Recorder, Recorder, Registry, Metrics]) -> None:
    pipeline, rules, _, registry, metrics = parts
    new = "homecare/v1/site-01/bed-0099/button/btn-new/event"
    badge = "homecare/v1/site-01/bed-0099/badge/badge-c01/event"
    check_in = {"event": "check_in", "caregiver": "c01", "visit": "v1", "method": "nfc"}
    raws = [raw(new, PRESS, 1), raw(badge, check_in, 2)]
    assert pipeline.process_urgent(raws[:1]) == 1  # the inbox's urgent lane: the press
    pipeline.process(raws)
    assert rules.seen == [new, badge]
    assert pipeline.take().deadletters == []
    bed = registry.bed("site-01", "bed-0099")
    assert bed is not None
    assert bed.devices["btn-new"].auto_registered
    assert metric(metrics, "homecare_messages_misplaced_total", differs="bed") == 0


def test_misplaced_devices_are_logged_at_most_once_a_minute(
        parts: tuple[Pipeline, Recorder, Recorder, Registry, Metrics],
        caplog: pytest.LogCaptureFixture) -> None:
    pipeline, _, _, _, _ = parts
    with caplog.at_level(logging.WARNING, logger="homecare.pipeline"):
        for seq in range(1, 51):
            pipeline.process([raw(f"{OTHER_BED}/event", PRESS, seq)])
    lines = [r.getMessage() for r in caplog.records if "misplaced" in r.getMessage()]
    assert len(lines) == 1
    assert "btn-0007" in lines[0]
    assert "site-01/bed-0099" in lines[0]


def test_devices_registered_on_first_sight_are_logged_once_per_interval(
        parts: tuple[Pipeline, Recorder, Recorder, Registry, Metrics],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of made-up ids wrote a line per batch (113 lines/s, 1.1 MB for 200,000 ids,
    each naming a topic the device chose): now the first at once, then one line per interval
    with the count since and the latest, escaped; every device still counted (issue 17)."""
    clock = [1000.0]
    monkeypatch.setattr(pipeline_module.time, "monotonic", lambda: clock[0])
    pipeline, _, _, _, metrics = parts
    with caplog.at_level(logging.INFO, logger="homecare.pipeline"):
        for n in range(1, 51):
            pipeline.process([raw(f"homecare/v1/site-01/made-up-{n}/infrared/ir-{n}/status",
                                  {"state": "online"}, n)])
        clock[0] += pipeline_module.AUTO_REGISTERED_LOG_INTERVAL_S
        pipeline.process([raw(f"{HOME}/status", {"state": "online"}, 51)])  # a listed one
    lines = [r.getMessage() for r in caplog.records if "auto_registered" in r.getMessage()]
    assert lines == [
        "registry.auto_registered devices=1 "
        "last='homecare/v1/site-01/made-up-1/infrared/ir-1/status'",
        "registry.auto_registered devices=49 "
        "last='homecare/v1/site-01/made-up-50/infrared/ir-50/status'"]
    assert metric(metrics, "homecare_devices_auto_registered_total") == 50


def test_addresses_seen_are_remembered_up_to_a_bound(
        parts: tuple[Pipeline, Recorder, Recorder, Registry, Metrics],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The set of addresses seen was cleared only past 1,000,000, each holding its Address
    (about 500 bytes with 64-character ids) (issue 17): now the oldest go first; one forgotten
    and seen again is taken as before, and not counted as a new device again."""
    monkeypatch.setattr(pipeline_module, "KNOWN_MAX", 10)
    pipeline, rules, _, registry, metrics = parts
    topics = [f"homecare/v1/site-01/made-up-{n}/button/btn-{n}/event" for n in range(30)]
    pipeline.process([raw(t, PRESS, n + 1) for n, t in enumerate(topics)])
    assert len(pipeline._known) == 10
    pipeline.process([raw(topics[0], PRESS, 100), raw(f"{OTHER_BED}/event", PRESS, 101)])
    assert len(pipeline._known) == 10
    assert rules.seen == [*topics, topics[0]]
    assert [d.reason for d in pipeline.take().deadletters] == [DEVICE_MISPLACED]
    assert metric(metrics, "homecare_devices_auto_registered_total") == 30
    assert registry.bed("site-01", "made-up-0") is not None


def _move(path: Path, text: str) -> None:
    """Rewrite the registry file so that its time, not only its bytes, moves on."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def test_a_device_moved_in_the_registry_file_calls_from_its_new_bed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The documented move (edit the registry, regenerate the ACL, reload the broker) leaves
    the gateway holding the registry it read at start: a fresh tester's press from the moved
    button at its new bed was dead-lettered as misplaced and acknowledged, a call lost until
    the gateway restarted. The file is read again when a listed device is seen out of its
    place and the file changed."""
    path = tmp_path / "registry.toml"
    path.write_text(REGISTRY, encoding="utf-8")
    registry = Registry.load(path)
    rules, live = Recorder("alerts"), Recorder("livestate")
    watch = RegistryWatch(path, cache=tmp_path / "registry.cache.json")
    pipeline = Pipeline(metrics=Metrics(), registry=registry, stages=(rules, live),
                        urgent_stages=(rules,), registry_watch=watch)
    moved_to = "homecare/v1/site-01/bed-0100/button/btn-0007"
    monkeypatch.setattr(registrywatch, "CHECK_EVERY_S", 0.0)
    pipeline.process([raw(f"{HOME}/event", PRESS, 1)])
    # Before the file changes: still out of its place (the file is looked at, unchanged).
    pipeline.process([raw(f"{moved_to}/event", PRESS, 2)])
    assert rules.seen == [f"{HOME}/event"]
    _move(path, REGISTRY.replace("bed-0007.devices.btn-0007", "bed-0100.devices.btn-0007"))
    with caplog.at_level(logging.WARNING, logger="homecare.pipeline"):
        # The urgent lane first, as a call comes; then the turn (the same copy, once).
        calls = [raw(f"{moved_to}/event", PRESS, 3)]
        assert pipeline.process_urgent(calls) == 1
        pipeline.process(calls)
        # Its old bed is now somewhere else: refused there, even though seen there before.
        pipeline.process([raw(f"{HOME}/event", PRESS, 4)])
    assert rules.seen == [f"{HOME}/event", f"{moved_to}/event"]
    assert live.seen == [f"{HOME}/event", f"{moved_to}/event"]
    reasons = [(d.topic, d.reason) for d in pipeline.take().deadletters]
    assert reasons == [(f"{moved_to}/event", DEVICE_MISPLACED), (f"{HOME}/event",
                                                                 DEVICE_MISPLACED)]
    assert "registry.changed_on_disk devices_placed_anew=1" in caplog.text
    # Another device of the file is still bound to its own place.
    pipeline.process([raw("homecare/v1/site-01/bed-0100/button/btn-0099/event", PRESS, 5)])
    assert rules.seen[-1] == f"{moved_to}/event"


def test_a_registry_file_made_unreadable_keeps_the_places_read_at_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(REGISTRY, encoding="utf-8")
    rules = Recorder("alerts")
    pipeline = Pipeline(metrics=Metrics(), registry=Registry.load(path), stages=(rules,),
                        registry_watch=RegistryWatch(path))
    monkeypatch.setattr(registrywatch, "CHECK_EVERY_S", 0.0)
    _move(path, "[sites.site-01 this is not TOML")
    pipeline.process([raw(f"{OTHER_BED}/event", PRESS, 1), raw(f"{HOME}/event", PRESS, 2)])
    assert rules.seen == [f"{HOME}/event"]
    assert [d.reason for d in pipeline.take().deadletters] == [DEVICE_MISPLACED]
