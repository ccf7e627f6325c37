"""The detector journal (:mod:`gateway.detect.journal`): after a crash the detectors get back
every batch handed to them since their snapshot (issue #14, D-B of a fresh tester).

The detectors of a gateway killed after a snapshot, restored from it and given the journal,
hold exactly the state of detectors that never stopped; a torn last record is cut off; a
snapshot records the position it holds exactly (or is not written), and the segments it
covers are deleted; the journal is bounded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from devices.codec import Codec, Message
from devices.registry import Registry
from gateway.detect import build_detectors
from gateway.detect.journal import (
    JOURNAL_DIR,
    SEGMENT_SUFFIX,
    DetectorJournal,
    JournaledStage,
)
from gateway.detect.snapshot import (
    SNAPSHOT_FILE,
    SnapshotOvertaken,
    restore_snapshot,
    save_snapshot,
)
from gateway.ingest.message import RawMessage

T0 = 1_764_000_000_000
SITE = "site-01"
CODEC = Codec()


def raw(topic: str, payload: dict[str, object], received_ms: int) -> RawMessage:
    return RawMessage(topic, json.dumps(payload).encode(), 0, 1, received_ms)


def traffic(minutes: int, *, start_min: int = 0, beds: int = 3) -> list[list[RawMessage]]:
    """One batch a minute: each bed's infrared (with people), audio, vitals; a badge visit."""
    batches = []
    for minute in range(start_min, start_min + minutes):
        ts = T0 + minute * 60_000
        batch = []
        for b in range(beds):
            bed = f"bed-{b:04d}"
            seq = minute + 1
            batch.append(raw(f"homecare/v1/{SITE}/{bed}/infrared/ir-{b}/telemetry",
                             {"ts": ts, "seq": seq, "presence": True, "motion": minute % 3,
                              "people": 1 + (minute % 2), "zone": "room"}, ts + 40))
            batch.append(raw(f"homecare/v1/{SITE}/{bed}/audio/au-{b}/telemetry",
                             {"ts": ts, "seq": seq, "level_db": 40.0 + minute % 7,
                              "voice": minute % 5 == 0}, ts + 41))
            batch.append(raw(f"homecare/v1/{SITE}/{bed}/fall/fs-{b}/telemetry",
                             {"ts": ts, "seq": seq, "in_bed": minute % 4 != 0,
                              "breathing_rate": 15.0, "heart_rate": 70.0}, ts + 42))
        if minute == start_min + 1:
            batch.append(raw(f"homecare/v1/{SITE}/bed-0000/badge/bd-0/event",
                             {"ts": ts, "seq": 1, "event": "check_in", "caregiver": "cg-1",
                              "visit": "v-1", "method": "nfc"}, ts + 43))
        batches.append(batch)
    return batches


class Rules:
    """The alerting stage as the journal sees it: hands each batch to its detectors."""

    name = "alerts"

    def __init__(self, detectors: Sequence[object]) -> None:
        self.detectors = detectors

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        for detector in self.detectors:
            detector.update(messages, received_ms)  # type: ignore[attr-defined]

    def commit(self) -> None:
        pass


def hand_over(stage: JournaledStage, batches: list[list[RawMessage]]) -> None:
    for batch in batches:
        messages = [CODEC.decode(r.topic, r.payload) for r in batch]
        assert all(isinstance(m, Message) for m in messages)
        stage.accept_sources(messages, [r.received_ms for r in batch], batch)  # type: ignore[arg-type]
        stage.commit()


def detectors() -> list:  # type: ignore[type-arg]
    return build_detectors(Registry(), timezone="Asia/Shanghai")


def states(dets: Sequence) -> dict[str, bytes]:  # type: ignore[type-arg]
    return {d.name: d.state() for d in dets}


def test_detectors_restored_and_given_the_journal_hold_what_detectors_that_never_stopped_do(
        tmp_path: Path) -> None:
    before, after = traffic(30), traffic(40, start_min=30)
    # The gateway that never stops.
    steady = detectors()
    steady_stage = Rules(steady)
    for batch in before + after:
        if batch is after[0]:
            states(steady)  # folded where the other one is snapshotted, as that does
        steady_stage.accept([CODEC.decode(r.topic, r.payload) for r in batch],  # type: ignore[misc]
                            [r.received_ms for r in batch])
    # The gateway killed 40 minutes after its snapshot.
    live = detectors()
    journal = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=2**30)
    journal.replay(live, after=None)
    stage = JournaledStage(Rules(live), journal)
    hand_over(stage, before)
    save_snapshot(tmp_path / SNAPSHOT_FILE, live, journal=journal)
    hand_over(stage, after)
    del live, stage, journal  # kill -9: nothing else is written

    restarted = detectors()
    restored = restore_snapshot(tmp_path / SNAPSHOT_FILE, restarted)
    assert restored.journal_position == 30
    journal = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=2**30)
    replayed = journal.replay(restarted, after=restored.journal_position)
    assert (replayed.records, replayed.gaps, replayed.cut_bytes) == (40, 0, 0)
    assert replayed.messages == sum(len(b) for b in after)
    assert states(restarted) == states(steady)
    # Without the journal (the code before), the restarted detectors miss those 40 minutes.
    forgetful = detectors()
    restore_snapshot(tmp_path / SNAPSHOT_FILE, forgetful)
    assert states(forgetful) != states(steady)
    # Positions go on after the journal's.
    assert journal.position == 70


def test_a_torn_last_record_is_cut_off_and_the_journal_goes_on(tmp_path: Path) -> None:
    journal = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=2**30)
    journal.replay([], after=None)
    stage = JournaledStage(Rules([]), journal)
    hand_over(stage, traffic(5))
    [segment] = sorted((tmp_path / JOURNAL_DIR).glob(f"*{SEGMENT_SUFFIX}"))
    whole = segment.stat().st_size
    with open(segment, "ab") as handle:  # a power loss in the middle of the sixth record
        handle.write(b"\x90\x01\x00\x00\x12\x34\x56\x78\x06\x00\x00\x00\x00\x00\x00\x00partial")
    seen: list[Message] = []

    class Collect:
        def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
            seen.extend(messages)

    journal = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=2**30)
    replayed = journal.replay([Collect()], after=None)
    assert (replayed.records, replayed.cut_bytes) == (5, 23)
    assert segment.stat().st_size == whole
    assert len(seen) == sum(len(b) for b in traffic(5))
    stage = JournaledStage(Rules([]), journal)
    hand_over(stage, traffic(2, start_min=5))
    seen.clear()
    again = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=2**30).replay([Collect()],
                                                                           after=None)
    assert (again.records, again.gaps, again.cut_bytes) == (7, 0, 0)


def test_a_snapshot_deletes_the_segments_it_covers_and_a_clean_stop_leaves_none(
        tmp_path: Path) -> None:
    dets = detectors()
    journal = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=64 * 4096)
    journal.replay(dets, after=None)
    stage = JournaledStage(Rules(dets), journal)
    hand_over(stage, traffic(60))
    segments = list((tmp_path / JOURNAL_DIR).glob(f"*{SEGMENT_SUFFIX}"))
    assert len(segments) > 1  # 4 KiB segments
    save_snapshot(tmp_path / SNAPSHOT_FILE, dets, journal=journal)
    hand_over(stage, traffic(1, start_min=60))
    left = list((tmp_path / JOURNAL_DIR).glob(f"*{SEGMENT_SUFFIX}"))
    assert len(left) == 1
    assert DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=2**30).replay(
        [], after=60).records == 1
    save_snapshot(tmp_path / SNAPSHOT_FILE, dets, journal=journal)
    journal.close()
    assert not list((tmp_path / JOURNAL_DIR).glob(f"*{SEGMENT_SUFFIX}"))


def test_a_snapshot_overtaken_by_a_batch_is_not_written(tmp_path: Path) -> None:
    dets = detectors()
    journal = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=2**30)
    journal.replay(dets, after=None)
    stage = JournaledStage(Rules(dets), journal)
    hand_over(stage, traffic(2))
    path = tmp_path / SNAPSHOT_FILE
    journal.begin()  # a batch being handed over when the snapshot begins
    with pytest.raises(SnapshotOvertaken):
        save_snapshot(path, dets, journal=journal)
    journal.end()

    class Intruder:
        """A detector during whose state() an emergency call is handed over."""

        name = "intruder"

        def state(self) -> bytes:
            hand_over(stage, traffic(1, start_min=2))
            return b""

        def restore(self, blob: bytes) -> None:
            pass

    with pytest.raises(SnapshotOvertaken):
        save_snapshot(path, [*dets, Intruder()], journal=journal)
    assert not path.exists()
    assert save_snapshot(path, dets, journal=journal) > 0
    assert restore_snapshot(path, detectors()).journal_position == 3


def test_the_journal_is_bounded_and_asks_for_a_snapshot_before_its_cap(tmp_path: Path) -> None:
    dets = detectors()
    journal = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=64 * 1024)
    journal.replay(dets, after=None)
    stage = JournaledStage(Rules(dets), journal)
    hand_over(stage, traffic(5))
    assert not journal.wants_snapshot
    hand_over(stage, traffic(15, start_min=5))
    assert journal.wants_snapshot  # a quarter of the cap (4 MiB at the default cap)
    hand_over(stage, traffic(200, start_min=20))
    assert journal.not_journaled > 0
    assert journal.disk_bytes <= 64 * 1024
    save_snapshot(tmp_path / SNAPSHOT_FILE, dets, journal=journal)
    assert not journal.wants_snapshot
    hand_over(stage, traffic(3, start_min=220))
    assert journal.disk_bytes < 64 * 1024 // 4
    replayed = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=2**30).replay(
        [], after=restore_snapshot(tmp_path / SNAPSHOT_FILE, detectors()).journal_position)
    assert (replayed.records, replayed.gaps) == (3, 0)


def test_a_snapshot_without_a_journal_position_restores_as_before(tmp_path: Path) -> None:
    dets = detectors()
    Rules(dets).accept([CODEC.decode(r.topic, r.payload) for r in traffic(1)[0]],  # type: ignore[misc]
                       [r.received_ms for r in traffic(1)[0]])
    save_snapshot(tmp_path / SNAPSHOT_FILE, dets)
    restored = restore_snapshot(tmp_path / SNAPSHOT_FILE, detectors())
    assert restored.journal_position is None
    assert len(restored.restored) == len(dets)


def test_a_bad_segment_or_a_failing_detector_never_stops_a_start(tmp_path: Path) -> None:
    journal = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=2**30)
    journal.replay([], after=None)
    hand_over(JournaledStage(Rules([]), journal), traffic(3))
    journal.close()
    (tmp_path / JOURNAL_DIR / f"{0:020d}{SEGMENT_SUFFIX}").mkdir()  # unreadable, sorted first
    seen: list[int] = []

    class Failing:
        def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
            raise RuntimeError("a bug")

    class Collect:
        def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
            seen.append(len(messages))

    replayed = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=2**30).replay(
        [Failing(), Collect()], after=None)
    assert (replayed.records, replayed.corrupt_segments, replayed.failed_updates) == (3, 1, 1)
    assert sum(seen) == sum(len(b) for b in traffic(3))


def test_what_a_restart_hands_back_counts_towards_the_next_snapshot(tmp_path: Path) -> None:
    """A gateway killed before its journal grew enough to ask for a snapshot left it to the
    next process, which counted only what it recorded itself: killed every minute or so (the
    chaos run), no process ever asked, no snapshot was taken and each start handed back every
    batch since the first (54,000 messages in 1.9 s after four kills), beside intake resuming.
    What a start reads back now counts: the journal asks for a snapshot once it holds a
    quarter of its cap, whichever process wrote it."""
    for run, minutes in enumerate((5, 5, 5, 5)):
        journal = DetectorJournal(tmp_path / JOURNAL_DIR, max_bytes=64 * 1024)
        dets = detectors()
        journal.replay(dets, after=None)
        if journal.wants_snapshot:
            break
        hand_over(JournaledStage(Rules(dets), journal), traffic(minutes, start_min=5 * run))
        journal.write()  # killed: nothing closed, no snapshot
    else:
        pytest.fail("no start asked for a snapshot: the journal grows with every kill")
    assert run > 0, "one process alone wrote a quarter of the cap"
