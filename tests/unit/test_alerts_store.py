"""The alert store: gap-free audit log that never reuses a seq after a restore, filters,
keyset pagination, durability across reopen."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from unittest import mock

import msgspec
import numpy as np
import pytest

from alerts.errors import AlertError, InvalidCursor, StoreUnavailable
from alerts.model import (
    Alert,
    AlertChange,
    AlertStatus,
    AlertType,
    EventRef,
    HandledEvent,
    Severity,
)
from alerts.store import SCHEMA_VERSION, SEQ_RESERVE, AlertStore, split_incident


def _alert(n: int, *, severity: Severity = Severity.HIGH, status: AlertStatus = AlertStatus.OPEN,
           type_: AlertType = AlertType.DEVICE_OFFLINE, site: str = "s1",
           bed: str | None = None, opened_at: int | None = None) -> Alert:
    bed = bed or f"bed-{n:04d}"
    return Alert(id=f"id-{n:06d}", incident=f"{site}/{bed}/{type_}/#1", type=type_,
                 severity=severity, site=site, bed=bed,
                 opened_at=opened_at if opened_at is not None else 1_000 + n,
                 updated_at=opened_at if opened_at is not None else 1_000 + n, status=status)


class _Log:
    """Appends changes to a store with the next sequence numbers."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store

    def add(self, *alerts: Alert, action: str = "opened", actor: str | None = None,
            note: str | None = None) -> list[AlertChange]:
        seq = self.store.last_seq()
        changes = [AlertChange(seq=seq + i + 1, at=a.updated_at, action=action, actor=actor,
                               note=note, alert=a) for i, a in enumerate(alerts)]
        self.store.write(changes)
        return changes


def test_written_changes_are_the_audit_log_and_the_alert_rows(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    log = _Log(store)
    a = _alert(1)
    acked = msgspec.structs.replace(a, status=AlertStatus.ACKNOWLEDGED, acknowledged_by="d1",
                                    acknowledged_at=2_000, updated_at=2_000)
    log.add(a)
    log.add(acked, action="acknowledged", actor="d1", note="on my way")
    assert store.get(a.id) == acked
    assert store.get("nope") is None
    history = store.history(a.id)
    assert [(c.seq, c.action, c.actor, c.note) for c in history] == [
        (1, "opened", None, None), (2, "acknowledged", "d1", "on my way")]
    assert [c.alert for c in history] == [a, acked]
    assert store.last_seq() == 2
    assert [c.seq for c in store.changes_since(0)] == [1, 2]
    assert [c.seq for c in store.changes_since(1)] == [2]
    assert store.changes_since(2) == []
    assert [c.seq for c in store.changes_since(0, limit=1)] == [1]


def test_a_write_that_would_leave_a_gap_or_repeat_a_seq_is_refused_and_writes_nothing(
        tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "a.sqlite3")
    _Log(store).add(_alert(1))
    for seq in (1, 3):
        with pytest.raises(ValueError, match="sequence"):
            store.write([AlertChange(seq=seq, at=1, action="opened", alert=_alert(2))])
    with pytest.raises(ValueError, match="sequence"):
        store.write([AlertChange(seq=2, at=1, action="opened", alert=_alert(2)),
                     AlertChange(seq=4, at=1, action="opened", alert=_alert(3))])
    assert store.last_seq() == 1
    assert store.get(_alert(2).id) is None
    store.write([])  # nothing to do


def test_store_is_wal_with_full_sync_and_has_a_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    AlertStore(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    store = AlertStore(path)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def _handled(device: str, seq: int, *, call: bool = True, at: int = 5) -> HandledEvent:
    return HandledEvent(site="s1", bed="bed-0001", at=at, event=EventRef(
        device=device, seq=seq, device_ts=1_000 + seq, digest=f"d{seq}", call=call))


def test_handled_events_are_kept_per_device_and_lane_with_the_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    store = AlertStore(path)
    store.write([AlertChange(seq=1, at=1, action="opened", alert=_alert(1))],
                [_handled("btn-1", 7), _handled("btn-1", 8, call=False)])
    store.write([], [_handled("btn-1", 9, at=6), _handled("fs-1", 3)])  # memory alone
    assert store.last_seq() == 1
    store.close()
    reopened = AlertStore(path)
    assert reopened.handled_events() == [
        _handled("btn-1", 8, call=False), _handled("btn-1", 9, at=6), _handled("fs-1", 3)]


def test_a_version_1_store_is_upgraded_in_place_and_keeps_its_alerts(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    store = AlertStore(path)
    _Log(store).add(_alert(1))
    store.close()
    with sqlite3.connect(path) as db:  # as a gateway before the memory of handled events
        db.execute("DROP TABLE handled_events")
        db.execute("UPDATE schema_version SET version = 1")
    upgraded = AlertStore(path)
    assert upgraded.get(_alert(1).id) == _alert(1)
    assert upgraded.handled_events() == []
    upgraded.write([], [_handled("btn-1", 1)])
    assert (upgraded._db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            == SCHEMA_VERSION)
    upgraded.close()


def test_a_store_from_a_newer_gateway_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    AlertStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(AlertError, match="schema version 99"):
        AlertStore(path)


def test_everything_written_is_there_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    store = AlertStore(path)
    log = _Log(store)
    alerts = [_alert(i, status=AlertStatus.RESOLVED if i % 3 == 0 else AlertStatus.OPEN)
              for i in range(1, 10)]
    log.add(*alerts)
    store.close()
    reopened = AlertStore(path)
    assert reopened.last_seq() == 9
    assert {a.id for a in reopened.open_alerts()} == {
        a.id for a in alerts if a.status is not AlertStatus.RESOLVED}
    assert [reopened.get(a.id) for a in alerts] == alerts


def test_default_order_is_open_then_acknowledged_then_resolved_by_severity_newest_first(
        ) -> None:
    store = AlertStore(":memory:")
    log = _Log(store)
    rows = [
        _alert(1, severity=Severity.LOW, opened_at=5),
        _alert(2, severity=Severity.CRITICAL, opened_at=1),
        _alert(3, severity=Severity.CRITICAL, opened_at=9),
        _alert(4, severity=Severity.CRITICAL, status=AlertStatus.ACKNOWLEDGED, opened_at=20),
        _alert(5, severity=Severity.CRITICAL, status=AlertStatus.RESOLVED, opened_at=30),
        _alert(6, severity=Severity.MEDIUM, opened_at=7),
    ]
    log.add(*rows)
    alerts, cursor = store.list_alerts()
    assert [a.id for a in alerts] == ["id-000003", "id-000002", "id-000006", "id-000001",
                                      "id-000004", "id-000005"]
    assert cursor is None


def test_filters_take_one_value_or_a_list_and_combine(tmp_path: Path) -> None:
    store = AlertStore(":memory:")
    log = _Log(store)
    log.add(_alert(1, severity=Severity.CRITICAL, type_=AlertType.FALL, site="a", bed="b1",
                   opened_at=100),
            _alert(2, severity=Severity.HIGH, type_=AlertType.FALL, site="a", bed="b2",
                   opened_at=200),
            _alert(3, severity=Severity.LOW, type_=AlertType.LOW_BATTERY, site="b", bed="b1",
                   opened_at=300, status=AlertStatus.RESOLVED))

    def ids(**filters: object) -> set[str]:
        alerts, _ = store.list_alerts(**filters)  # type: ignore[arg-type]
        return {a.id[-1] for a in alerts}

    assert ids(status="open") == {"1", "2"}
    assert ids(status=["open", "resolved"]) == {"1", "2", "3"}
    assert ids(severity=Severity.CRITICAL) == {"1"}
    assert ids(severity=["critical", "low"]) == {"1", "3"}
    assert ids(type="fall") == {"1", "2"}
    assert ids(site="b") == {"3"}
    assert ids(bed="b1") == {"1", "3"}
    assert ids(bed=["b1", "b2"], site="a") == {"1", "2"}
    assert ids(since=200) == {"2", "3"}
    assert ids(until=200) == {"1"}
    assert ids(since=100, until=300, type="fall", status="open") == {"1", "2"}
    assert ids(site=[]) == set()
    with pytest.raises(ValueError, match="AlertStatus"):
        store.list_alerts(status="closed")
    with pytest.raises(ValueError):
        store.list_alerts(limit=0)
    with pytest.raises(ValueError):
        store.list_alerts(limit=1001)
    assert store.count() == 3
    assert store.count(status=["open", "acknowledged"]) == 2


def test_pages_cover_every_alert_exactly_once() -> None:
    store = AlertStore(":memory:")
    severities = list(Severity)
    statuses = list(AlertStatus)
    alerts = [_alert(i, severity=severities[i % 4], status=statuses[i % 3],
                     opened_at=1_000 + (i * 7919) % 97) for i in range(250)]
    _Log(store).add(*alerts)
    everything, _ = store.list_alerts(limit=1000)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = store.list_alerts(limit=17, cursor=cursor)
        seen += [a.id for a in page]
        pages += 1
        if cursor is None:
            break
        assert pages < 100
    assert seen == [a.id for a in everything]
    assert len(set(seen)) == 250


def test_cursor_is_stable_when_alerts_are_inserted_between_pages() -> None:
    store = AlertStore(":memory:")
    log = _Log(store)
    log.add(*[_alert(i, severity=Severity.HIGH, opened_at=10_000 + i) for i in range(30)])
    first, cursor = store.list_alerts(limit=10)
    assert cursor is not None
    # New alerts that sort before, among and after the remaining ones.
    log.add(_alert(100, severity=Severity.CRITICAL, opened_at=50_000),
            _alert(101, severity=Severity.HIGH, opened_at=10_015),
            _alert(102, severity=Severity.LOW, opened_at=1))
    rest: list[Alert] = []
    while cursor is not None:
        page, cursor = store.list_alerts(limit=10, cursor=cursor)
        rest += page
    ids = [a.id for a in first + rest]
    assert len(ids) == len(set(ids)), "no alert is served twice"
    assert {f"id-{i:06d}" for i in range(30)} <= set(ids), "no earlier alert is skipped"
    assert "id-000100" not in ids, "a new alert sorting before the cursor is not mixed in"


def test_a_foreign_cursor_is_refused() -> None:
    store = AlertStore(":memory:")
    for cursor in ("garbage!", "", "W10", "WyJjMSIsMSwyLDMsNF0"):
        with pytest.raises(InvalidCursor):
            store.list_alerts(cursor=cursor)


def test_evidence_from_numpy_and_odd_values_is_stored_as_json() -> None:
    store = AlertStore(":memory:")
    alert = msgspec.structs.replace(_alert(1), evidence={
        "hr": np.float64(151.5), "n": np.int64(3), "when": object.__new__(object)})
    _Log(store).add(alert)
    stored = store.get(alert.id)
    assert stored is not None
    assert stored.evidence["hr"] == 151.5
    assert stored.evidence["n"] == 3
    assert isinstance(stored.evidence["when"], str)


def test_concurrent_writers_and_readers_keep_the_log_gap_free(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "a.sqlite3")
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(base: int) -> None:
        try:
            for i in range(50):
                with lock:  # the engine serialises seq allocation; the store must cope
                    _Log(store).add(_alert(base + i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(100):
                store.list_alerts(limit=20)
                store.changes_since(max(0, store.last_seq() - 5))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(b,)) for b in (0, 1000, 2000)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert [c.seq for c in store.changes_since(0, limit=1000)] == list(range(1, 151))


def test_incident_keys_split_into_key_and_episode() -> None:
    assert split_incident("s/b/fall/#3") == ("s/b/fall/", 3)
    assert split_incident("s/b/device_offline/ir-1#12") == ("s/b/device_offline/ir-1", 12)
    with pytest.raises(ValueError):
        split_incident("s/b/fall/")


def _backup(path: Path, to: Path) -> None:
    with sqlite3.connect(path) as source, sqlite3.connect(to) as copy:
        source.backup(copy)


def _restore(backup: Path, path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    backup.replace(path)


def test_a_store_restored_from_a_backup_never_reuses_a_seq_and_records_the_skipped_range(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "alerts.sqlite3"
    store = AlertStore(path)
    log = _Log(store)
    for n in range(1, 25):
        log.add(_alert(n))
    backup = tmp_path / "backup.sqlite3"
    _backup(path, backup)
    for n in range(25, 28):
        log.add(_alert(n))
    store.close()
    assert path.with_name("alerts.sqlite3.seq-high").read_text() == "27 issued\n"

    _restore(backup, path)
    restored = AlertStore(path)
    assert restored.last_seq() == 27
    assert restored.changes_since(24) == []
    assert restored.skipped_range(25) == restored.skipped_range(27) == (24, 27)
    assert restored.skipped_range(24) is restored.skipped_range(28) is None
    [record] = [r for r in caplog.records if "alerts.store_restored" in r.getMessage()]
    assert "restored_head=24 high_water=27 skipped=3 last_stop=clean" in record.getMessage()
    new = _Log(restored).add(_alert(30), _alert(31))
    assert [c.seq for c in new] == [28, 29]
    assert [c.seq for c in restored.changes_since(24)] == [28, 29]
    with pytest.raises(ValueError, match="after 29"):
        restored.write([AlertChange(seq=25, at=1, action="opened", alert=_alert(32))])
    restored.close()

    caplog.clear()
    reopened = AlertStore(path)  # the range stays recorded; nothing new is skipped or logged
    assert reopened.last_seq() == 29
    assert reopened.skipped_range(26) == (24, 27)
    assert not [r for r in caplog.records if "store_restored" in r.getMessage()]
    reopened.close()


def test_a_killed_store_restarts_without_a_gap_and_its_restore_still_skips(
        tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    store = AlertStore(path)
    backup = tmp_path / "backup.sqlite3"
    _Log(store).add(_alert(1))
    _backup(path, backup)
    _Log(store).add(_alert(2), _alert(3))
    mark = path.with_name("alerts.sqlite3.seq-high")
    assert mark.read_text() == f"{1 + SEQ_RESERVE} reserved\n", "written once per reservation"
    store._db.close()  # killed: no clean close

    restarted = AlertStore(path)
    assert restarted.last_seq() == 3
    assert [c.seq for c in _Log(restarted).add(_alert(4))] == [4]
    restarted._db.close()  # killed again, then the backup (head 1) restored

    _restore(backup, path)
    restored = AlertStore(path)
    assert restored.last_seq() == 4
    assert restored.skipped_range(2) == (1, 4)
    assert [c.seq for c in _Log(restored).add(_alert(5))] == [5]
    restored.close()
    assert mark.read_text() == "5 issued\n"


def test_after_a_reboot_without_a_clean_stop_the_reserved_seqs_are_skipped_never_reused(
        tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    store = AlertStore(path)
    _Log(store).add(_alert(1), _alert(2))
    store._db.close()  # power lost: the exact hint is from another boot
    issued = path.with_name("alerts.sqlite3.seq-issued")
    issued.write_text(issued.read_text().replace(issued.read_text().split()[0], "other-boot"))

    rebooted = AlertStore(path)
    assert rebooted.last_seq() == 2 + SEQ_RESERVE
    assert rebooted.skipped_range(3) == (2, 2 + SEQ_RESERVE)
    [change] = _Log(rebooted).add(_alert(3))
    assert change.seq == 3 + SEQ_RESERVE
    rebooted.close()


def test_a_clean_restart_skips_nothing(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    store = AlertStore(path)
    _Log(store).add(_alert(1))
    store.close()
    reopened = AlertStore(path)
    assert reopened.last_seq() == 1
    assert reopened.skipped_range(1) is None
    assert [c.seq for c in _Log(reopened).add(_alert(2))] == [2]
    reopened.close()


def test_a_high_water_mark_that_cannot_be_written_fails_the_write_and_writes_nothing(
        tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    with mock.patch("alerts.store.os.fsync", side_effect=OSError(28, "No space left")), \
            pytest.raises(StoreUnavailable):
        _Log(store).add(_alert(1))
    assert store.last_seq() == 0
    assert store.get(_alert(1).id) is None
    assert [c.seq for c in _Log(store).add(_alert(1))] == [1]
    store.close()
