"""Detector state across restarts (:mod:`gateway.detect.snapshot`), and issue #12's acceptance:
a restart in the middle of a replay (snapshot, stop, restore, continue) gives the same alerts
as a replay without the restart."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

import homecare.replay
from devices.registry import Registry
from gateway.detect import build_detectors
from gateway.detect.snapshot import SNAPSHOT_FILE, Restored, restore_snapshot, save_snapshot
from homecare.replay import replay_file

HOUR = 3_600_000


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Registry]:
    """One simulated day of six people with different routines (learning, incidents: three a
    bed, since the detectors raise few false alerts on ordinary lives)."""
    tmp = tmp_path_factory.mktemp("snapshot")
    subprocess.run([sys.executable, "-m", "homecare.cli", "simulate", "--beds", "6", "--days",
                    "1", "--seed", "5", "--profiles", "diverse", "--incidents-per-bed-day", "3",
                    "--quiet", "--out",
                    str(tmp / "traffic.jsonl"), "--registry", str(tmp / "sites.toml")],
                   check=True, timeout=120)
    return tmp / "traffic.jsonl", Registry.load(tmp / "sites.toml")


def replay(traffic: tuple[Path, Registry], restarts: list[int]) -> list[bytes]:
    alerts, summary = replay_file(traffic[0], None, registry=traffic[1], tick_ms=60_000,
                                  restart_after_ms=restarts)
    assert summary.restarts == len(restarts)
    return [msgspec.json.encode(alert) for alert in alerts]


def test_a_replay_restarted_twice_raises_exactly_the_alerts_of_one_without(
        traffic: tuple[Path, Registry], monkeypatch: pytest.MonkeyPatch) -> None:
    whole = replay(traffic, [])
    assert len(whole) >= 5
    assert replay(traffic, [9 * HOUR, 17 * HOUR + 1234]) == whole
    # The comparison can fail: restarted without restoring, the detectors forget what they
    # learnt and what they were in the middle of, and the alerts differ.
    monkeypatch.setattr(homecare.replay, "restore_snapshot", lambda path, detectors: Restored())
    assert replay(traffic, [9 * HOUR, 17 * HOUR + 1234]) != whole


def test_a_missing_snapshot_is_a_first_start(tmp_path: Path) -> None:
    detectors = build_detectors(Registry(), timezone="Asia/Shanghai")
    restored = restore_snapshot(tmp_path / SNAPSHOT_FILE, detectors)
    assert restored.taken_at_ms is None
    assert not restored.restored
    assert set(restored.fresh) == {d.name for d in detectors}


def test_snapshot_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / SNAPSHOT_FILE
    detectors = build_detectors(Registry(), timezone="Asia/Shanghai")
    size = save_snapshot(path, detectors, taken_at_ms=123)
    assert size == path.stat().st_size
    assert not path.with_name(path.name + ".tmp").exists()
    again = build_detectors(Registry(), timezone="Asia/Shanghai")
    restored = restore_snapshot(path, again)
    assert restored.taken_at_ms == 123
    assert not restored.fresh
    assert [d.state() for d in again] == [d.state() for d in detectors]


def test_an_unreadable_snapshot_is_moved_aside_and_every_detector_starts_fresh(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / SNAPSHOT_FILE
    path.write_bytes(b"\x00 not msgpack at all")
    detectors = build_detectors(Registry(), timezone="Asia/Shanghai")
    with caplog.at_level(logging.ERROR):
        restored = restore_snapshot(path, detectors)
    assert not restored.restored
    assert len(restored.fresh) == len(detectors)
    assert not path.exists()
    assert path.with_name(path.name + ".unreadable").exists()
    assert "detect.snapshot_unreadable" in caplog.text


def test_one_detector_that_cannot_restore_does_not_keep_the_others_from_theirs(
        tmp_path: Path) -> None:
    path = tmp_path / SNAPSHOT_FILE
    detectors = build_detectors(Registry(), timezone="Asia/Shanghai")
    save_snapshot(path, detectors)
    # Tamper one detector's blob: it holds another detector's state.
    saved = msgspec.msgpack.decode(path.read_bytes())
    names = list(saved["detectors"])
    saved["detectors"][names[0]] = saved["detectors"][names[1]]
    path.write_bytes(msgspec.msgpack.encode(saved))
    restored = restore_snapshot(path, build_detectors(Registry(), timezone="Asia/Shanghai"))
    assert list(restored.fresh) == [names[0]]
    assert restored.restored == names[1:]


@pytest.mark.parametrize("blob_sizes", [(0, 3), (200, 70_000), (300_000,) * 17])
@pytest.mark.parametrize("position", [None, 0, 2**40])
def test_the_snapshot_written_in_parts_is_the_same_msgpack_as_one_body(
        blob_sizes: tuple[int, ...], position: int | None) -> None:
    # The blobs are written between headers, not copied into one body (a 20 MB copy held the
    # interpreter while calls waited): the file must stay byte for byte what it was, so that
    # every snapshot written before restores.
    from gateway.detect.snapshot import _Snapshot, _snapshot_parts

    snapshot = _Snapshot(version=1, taken_at_ms=1_764_000_000_000, detectors={
        f"detector-{i}": bytes([i % 256]) * size for i, size in enumerate(blob_sizes)},
        journal_position=position)
    parts = _snapshot_parts(snapshot)
    assert b"".join(parts) == msgspec.msgpack.encode(snapshot)
    assert msgspec.msgpack.decode(b"".join(parts), type=_Snapshot) == snapshot
    # Each blob is handed to the file as it is.
    assert all(any(part is blob for part in parts) for blob in snapshot.detectors.values()
               if len(blob) > 1)
