"""Housekeeping of the data directory (gateway/storage/housekeeping.py): old alert changes and
key audit archived by month and still verifiable, recent ones kept; dead letters and used
acknowledge links deleted by age; WAL files checkpointed; metrics and the log line."""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from alerts.acklinks import AckLinks
from alerts.keys import KeyStore
from alerts.model import Alert, AlertChange, AlertStatus, AlertType, Severity
from alerts.plans import PlannedVisit
from alerts.planstore import PlanStore
from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from gateway.storage.deadletters import DeadLetter, DeadLetterStore
from gateway.storage.housekeeping import (
    ARCHIVE_DIR,
    MANIFEST,
    Housekeeper,
    HousekeepingMetrics,
    Policy,
    archive_cutoff_ms,
    month_start_ms,
    verify_archive,
)

DAY = 86_400_000
NOW = month_start_ms(2026, 6) + 14 * DAY  # 2026-06-15
OLD_JAN = month_start_ms(2025, 1) + 3 * DAY
OLD_FEB = month_start_ms(2025, 2) + 3 * DAY
RECENT = month_start_ms(2026, 5) + 3 * DAY


def _alert(incident: str, at: int, status: AlertStatus, n: int) -> Alert:
    return Alert(id=f"id-{n}", incident=incident, type=AlertType.DEVICE_OFFLINE,
                 severity=Severity.HIGH, site="s1", bed="b1", opened_at=at, updated_at=at,
                 status=status)


def _write(store: AlertStore, alert: Alert, *actions: tuple[str, int, AlertStatus]) -> None:
    for action, at, status in actions:
        seq = store.last_seq() + 1
        store.write([AlertChange(seq=seq, at=at, action=action, alert=msgspec.structs.replace(
            alert, status=status, updated_at=at))])


def _alert_history(data_dir: Path) -> AlertStore:
    """Episode 1 (January 2025) and 2 (February 2025) of one incident, both resolved; an alert
    of another incident opened in May 2026 and still open."""
    store = AlertStore(data_dir / "alerts.sqlite3")
    key = "s1/b1/device_offline"
    _write(store, _alert(f"{key}/#1", OLD_JAN, AlertStatus.OPEN, 1),
           ("opened", OLD_JAN, AlertStatus.OPEN), ("resolved", OLD_JAN + 60_000,
                                                   AlertStatus.RESOLVED))
    _write(store, _alert(f"{key}/#2", OLD_FEB, AlertStatus.OPEN, 2),
           ("opened", OLD_FEB, AlertStatus.OPEN), ("resolved", OLD_FEB + 60_000,
                                                   AlertStatus.RESOLVED))
    _write(store, _alert("s1/b1/low_battery/#1", RECENT, AlertStatus.OPEN, 3),
           ("opened", RECENT, AlertStatus.OPEN))
    return store


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]


def _keeper(data_dir: Path, **policy: object) -> Housekeeper:
    return Housekeeper(data_dir, Policy(**policy))  # type: ignore[arg-type]


def test_cutoff_keeps_the_current_month_and_whole_months_before() -> None:
    assert archive_cutoff_ms(NOW, 13) == month_start_ms(2025, 5)
    assert archive_cutoff_ms(month_start_ms(2026, 1), 1) == month_start_ms(2025, 12)


def test_old_alert_changes_are_archived_by_month_and_recent_ones_kept(tmp_path: Path) -> None:
    store = _alert_history(tmp_path)
    counters = store.episode_counters()
    report = _keeper(tmp_path).run(NOW)

    assert report.archived == {"alert-changes": 4}
    archive = tmp_path / ARCHIVE_DIR
    assert sorted(p.name for p in archive.glob("*.gz")) == [
        "alert-changes-2025-01.jsonl.gz", "alert-changes-2025-02.jsonl.gz"]
    rows = _rows(archive / "alert-changes-2025-01.jsonl.gz")
    assert [(r["seq"], r["action"]) for r in rows] == [(1, "opened"), (2, "resolved")]
    assert json.loads(rows[1]["alert"])["status"] == "resolved"
    # Live: only the recent change; the recent alert's history intact.
    assert [c.seq for c in store.changes_since(0)] == [5]
    assert [c.action for c in store.history("id-3")] == ["opened"]
    # Episode 1 left the live API; episode 2, the last of its incident key, stays so the
    # next episode is numbered 3, as before.
    assert store.get("id-1") is None
    assert store.get("id-2") is not None
    assert store.episode_counters() == counters
    assert store.last_seq() == 5
    check = verify_archive(tmp_path)
    assert check.ok, check.problems
    assert check.rows == {"alert-changes": 4}
    # A second run archives nothing more.
    assert _keeper(tmp_path).run(NOW).archived == {}
    store.close()


def test_an_archive_changed_or_removed_is_found(tmp_path: Path) -> None:
    _alert_history(tmp_path).close()
    _keeper(tmp_path).run(NOW)
    archive = tmp_path / ARCHIVE_DIR
    path = archive / "alert-changes-2025-01.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).replace(b'"resolved"', b'"acknowledged"', 1)
    path.write_bytes(gzip.compress(lines))
    assert any("SHA-256" in p for p in verify_archive(tmp_path).problems)

    path.unlink()
    problems = verify_archive(tmp_path).problems
    assert any("missing" in p for p in problems)
    assert any("seq 1..2 are neither archived nor live" in p for p in problems)


def test_a_manifest_line_changed_breaks_its_chain(tmp_path: Path) -> None:
    _alert_history(tmp_path).close()
    _keeper(tmp_path).run(NOW)
    manifest = tmp_path / ARCHIVE_DIR / MANIFEST
    lines = manifest.read_text().splitlines()
    first = json.loads(lines[0])
    first["rows"] = 1
    manifest.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    assert any("chain is broken" in p for p in verify_archive(tmp_path).problems)


def test_changes_a_reader_has_not_read_stay_live(tmp_path: Path) -> None:
    _alert_history(tmp_path).close()
    outbox = sqlite3.connect(tmp_path / "outbox.sqlite3")
    outbox.execute("CREATE TABLE cursors (source TEXT PRIMARY KEY, seq INTEGER NOT NULL)")
    outbox.execute("INSERT INTO cursors VALUES ('alerts', 1)")
    outbox.commit()
    outbox.close()
    report = _keeper(tmp_path).run(NOW)
    assert report.archived == {"alert-changes": 1}
    store = AlertStore(tmp_path / "alerts.sqlite3")
    assert [c.seq for c in store.changes_since(0)] == [2, 3, 4, 5]
    store.close()
    assert verify_archive(tmp_path).ok
    # An outbox the gateway no longer uses (its upstream unset) holds nothing back.
    report = Housekeeper(tmp_path, Policy(), alert_readers=["servicelog.sqlite3"]).run(NOW)
    assert report.archived == {"alert-changes": 3}


def test_a_deletion_interrupted_after_the_archive_is_finished_next_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _alert_history(tmp_path).close()
    keeper = _keeper(tmp_path)

    def crash(*args: object) -> None:
        raise OSError("killed")

    monkeypatch.setattr(keeper, "_delete_range", crash)
    keeper.run(NOW)
    assert any("still in the live store" in p for p in verify_archive(tmp_path).problems)
    monkeypatch.undo()
    _keeper(tmp_path).run(NOW)
    check = verify_archive(tmp_path)
    assert check.ok, check.problems
    assert check.rows == {"alert-changes": 4}  # each change archived once


def test_key_audit_is_archived_by_month(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.sqlite3")
    for at in (OLD_JAN, OLD_JAN + 1, RECENT):
        keys.audit(actor="admin", action="key.create", target="k", status=201, now_ms=at)
    report = _keeper(tmp_path).run(NOW)
    assert report.archived == {"key-audit": 2}
    assert [e.at for e in keys.audit_log()] == [RECENT]
    rows = _rows(tmp_path / ARCHIVE_DIR / "key-audit-2025-01.jsonl.gz")
    assert [r["at"] for r in rows] == [OLD_JAN, OLD_JAN + 1]
    assert verify_archive(tmp_path).ok
    keys.close()


def _plan(n: int, start_ms: int) -> PlannedVisit:
    return PlannedVisit(site="s1", bed="b1", plan=f"p{n}", caregiver="cg-1", date="2025-01-04",
                        start="09:00", end="10:00", start_ms=start_ms,
                        end_ms=start_ms + 3_600_000, services=("bath",))


def test_past_plans_are_archived_by_month_and_current_ones_kept(tmp_path: Path) -> None:
    with PlanStore(tmp_path / "plans.sqlite3") as plans:
        for n, at in enumerate((OLD_JAN, OLD_FEB, RECENT, NOW + DAY)):
            plans.put(_plan(n, at), actor="admin", now_ms=at)
    report = _keeper(tmp_path).run(NOW)
    assert report.archived == {"plans": 2}
    with PlanStore(tmp_path / "plans.sqlite3") as plans:
        assert [p.plan for p in plans.list()] == ["p2", "p3"]
    rows = _rows(tmp_path / ARCHIVE_DIR / "plans-2025-01.jsonl.gz")
    assert [(r["plan"], r["end_ms"]) for r in rows] == [("p0", OLD_JAN + 3_600_000)]
    assert json.loads(str(rows[0]["body"]))["caregiver"] == "cg-1"
    assert verify_archive(tmp_path).ok
    # Off: nothing archived.
    with PlanStore(tmp_path / "off" / "plans.sqlite3") as plans:
        plans.put(_plan(0, OLD_JAN), actor="admin", now_ms=OLD_JAN)
        plans.put(_plan(1, RECENT), actor="admin", now_ms=RECENT)
    assert _keeper(tmp_path / "off", plans_live_months=0).run(NOW).archived == {}


def test_judged_visits_of_past_months_are_archived(tmp_path: Path) -> None:
    ServiceLog(tmp_path / "servicelog.sqlite3").close()
    db = sqlite3.connect(tmp_path / "servicelog.sqlite3")
    with db:
        db.executemany("INSERT INTO judged_visit VALUES ('s1', 'b1', 'cg-1', ?, ?, '{}')",
                       [(f"v{n}", at) for n, at in enumerate((OLD_JAN, RECENT, NOW))])
    assert _keeper(tmp_path).run(NOW).archived == {"judged-visits": 1}
    assert [r[0] for r in db.execute("SELECT visit FROM judged_visit")] == ["v1", "v2"]
    db.close()
    assert [r["visit"] for r in _rows(tmp_path / ARCHIVE_DIR / "judged-visits-2025-01.jsonl.gz")
            ] == ["v0"]
    assert verify_archive(tmp_path).ok


def test_dead_letters_past_their_age_are_deleted(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "deadletters.sqlite3")
    store.add([DeadLetter(received_ms=NOW - 31 * DAY, topic="t/old", payload=b"x",
                          reason="undecodable", detail=""),
               DeadLetter(received_ms=NOW - 29 * DAY, topic="t/new", payload=b"y",
                          reason="undecodable", detail="")])
    report = _keeper(tmp_path, dead_letter_max_age_ms=30 * DAY).run(NOW)
    assert report.deleted == {"deadletters": 1}
    assert [d.topic for d in store.recent()] == ["t/new"]
    store.close()


def test_used_ack_links_past_their_age_are_deleted_never_before_they_expire(
        tmp_path: Path) -> None:
    links = AckLinks(tmp_path / "acklinks.sqlite3", secret=b"s" * 32, ttl_ms=3_600_000)
    for key, at in (("old", NOW - 91 * DAY), ("new", NOW - 89 * DAY), ("live", NOW - 1000)):
        token = links.mint(key=key, alert_id="A1", recipient="anna", step=1, channel="email",
                           now_ms=at)
        claim = links.read(token, now_ms=at)
        assert not isinstance(claim, str)
        links.use(claim, client="127.0.0.1", result="acknowledged", now_ms=at)
    _keeper(tmp_path, ack_link_max_age_ms=90 * DAY).run(NOW)
    assert [links.used(k) is not None for k in ("old", "new", "live")] == [False, True, True]
    # An age shorter than the links' lifetime: the lifetime holds.
    _keeper(tmp_path, ack_link_max_age_ms=1, ack_link_ttl_ms=3_600_000).run(NOW)
    assert links.used("live") is not None
    links.close()


def test_a_checkpoint_shrinks_a_wal_that_grew(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    alert = _alert("s1/b1/device_offline/#1", RECENT, AlertStatus.OPEN, 1)
    big = msgspec.structs.replace(alert, summary="x" * 2000)
    for i in range(500):
        _write(store, big, ("updated", RECENT + i, AlertStatus.OPEN))
    wal = tmp_path / "alerts.sqlite3-wal"
    grown = wal.stat().st_size
    assert grown > 1024 * 1024  # the store keeps its connection open: nothing shrinks it
    report = _keeper(tmp_path).run(NOW)
    assert wal.stat().st_size == 0
    assert report.wal_truncated_bytes == grown
    assert len(store.history("id-1")) == 500  # nothing lost
    store.close()


def test_a_file_mostly_free_is_vacuumed_and_metrics_and_log_tell(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = DeadLetterStore(tmp_path / "deadletters.sqlite3")
    store.add([DeadLetter(received_ms=NOW - 40 * DAY, topic=f"t/{i}", payload=b"x" * 900,
                          reason="undecodable", detail="") for i in range(2000)])
    store.close()
    before = (tmp_path / "deadletters.sqlite3").stat().st_size
    registry = CollectorRegistry()
    keeper = Housekeeper(tmp_path, Policy(), metrics=HousekeepingMetrics(registry))
    with caplog.at_level(logging.INFO, logger="homecare.housekeeping"):
        report = keeper.run(NOW)
    assert report.deleted == {"deadletters": 2000}
    assert "deadletters.sqlite3" in report.vacuumed
    after = (tmp_path / "deadletters.sqlite3").stat().st_size
    assert after < before / 4
    assert report.freed_bytes >= before - after
    assert registry.get_sample_value("homecare_store_bytes",
                                     {"store": "deadletters"}) == report.store_bytes["deadletters"]
    assert registry.get_sample_value("homecare_housekeeping_last_freed_bytes") == \
        report.freed_bytes
    assert registry.get_sample_value("homecare_housekeeping_rows_total",
                                     {"store": "deadletters", "action": "deleted"}) == 2000
    line = next(r.getMessage() for r in caplog.records
                if r.getMessage().startswith("housekeeping.done"))
    assert f"freed_bytes={report.freed_bytes}" in line
    assert "deleted_deadletters=2000" in line


def test_homecare_verify_archive_names_what_is_wrong(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from homecare.cli import app

    _alert_history(tmp_path).close()
    _keeper(tmp_path).run(NOW)
    runner = CliRunner()
    good = runner.invoke(app, ["verify-archive", "--data-dir", str(tmp_path)])
    assert good.exit_code == 0, good.output
    assert "2 files, alert-changes 4 (up to 4): ok" in good.output
    (tmp_path / ARCHIVE_DIR / "alert-changes-2025-02.jsonl.gz").unlink()
    bad = runner.invoke(app, ["verify-archive", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 1
    assert "alert-changes-2025-02.jsonl.gz: missing" in bad.output
    assert "seq 3..4 are neither archived nor live" in bad.output


def test_deletions_go_in_slices_through_the_open_store(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's dead-letter store counts its rows: they are deleted through it, a slice
    at a time, so its count (the API's, the budget's) stays true."""
    store = DeadLetterStore(tmp_path / "deadletters.sqlite3")
    store.add([DeadLetter(received_ms=NOW - 40 * DAY, topic=f"t/{i}", payload=b"x",
                          reason="undecodable", detail="") for i in range(1050)])
    keeper = Housekeeper(tmp_path, Policy(slice_rows=100), deadletters=store)
    seen: list[int] = []
    pause = keeper._pause

    def between_slices() -> None:  # another writer gets in here: the file is not locked
        seen.append(store.count())
        assert store.count() == len(store.recent(10_000))
        pause()

    monkeypatch.setattr(keeper, "_pause", between_slices)
    keeper.run(NOW)
    assert seen[:3] == [950, 850, 750]
    assert store.count() == 0
    store.close()


def test_a_checkpoint_a_reader_holds_up_gives_way_and_the_run_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _alert_history(tmp_path)
    reader = sqlite3.connect(tmp_path / "alerts.sqlite3", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM changes").fetchone()  # holds its snapshot
    _write(store, _alert("s1/b1/low_battery/#1", RECENT, AlertStatus.OPEN, 3),
           ("updated", RECENT + 1, AlertStatus.OPEN))
    with caplog.at_level(logging.INFO, logger="homecare.housekeeping"):
        report = _keeper(tmp_path).run(NOW)
    reader.execute("COMMIT")
    assert any("housekeeping.checkpoint_busy file=alerts.sqlite3" in r.getMessage()
               for r in caplog.records)
    assert report.errors == []
    assert (tmp_path / "alerts.sqlite3-wal").stat().st_size > 0
    assert _keeper(tmp_path).run(NOW).wal_truncated_bytes > 0  # next run, reader gone
    store.close()


def test_a_stop_while_archiving_leaves_no_partial_file(tmp_path: Path) -> None:
    _alert_history(tmp_path).close()
    keeper = _keeper(tmp_path)
    keeper.stopping.set()
    keeper.run(NOW)
    assert not list((tmp_path / ARCHIVE_DIR).glob("*"))
    assert verify_archive(tmp_path).ok
    keeper = _keeper(tmp_path)
    original = keeper._write_rows

    def stop_midway(*args: object) -> object:
        keeper.stopping.set()
        return original(*args)  # type: ignore[arg-type]

    keeper._write_rows = stop_midway  # type: ignore[method-assign]
    report = keeper.run(NOW)
    assert report.archived == {}
    assert not list((tmp_path / ARCHIVE_DIR).glob("*"))
    store = AlertStore(tmp_path / "alerts.sqlite3")
    assert len(store.changes_since(0)) == 5
    store.close()


def test_a_manifest_line_cut_short_is_archived_again(tmp_path: Path) -> None:
    _alert_history(tmp_path).close()
    keeper = _keeper(tmp_path)
    delete_range = keeper._delete_range
    calls: list[object] = []

    def crash(*args: object) -> None:
        calls.append(args)
        if len(calls) == 2:
            raise OSError("power lost")
        delete_range(*args)  # type: ignore[arg-type]

    keeper._delete_range = crash  # type: ignore[method-assign]
    keeper.run(NOW)  # January archived and deleted, February archived only
    manifest = tmp_path / ARCHIVE_DIR / MANIFEST
    first, second = manifest.read_text().splitlines()
    manifest.write_text(first + "\n" + second[:40])  # the second append cut short
    report = _keeper(tmp_path).run(NOW)
    assert report.archived == {"alert-changes": 2}  # February again
    check = verify_archive(tmp_path)
    assert check.ok, check.problems
    assert check.rows == {"alert-changes": 4}
    assert len(manifest.read_text().splitlines()) == 2


def test_a_change_numbered_among_archived_ones_but_of_a_later_month_stays(
        tmp_path: Path) -> None:
    """The clock set back: seq 2 was written in March, seq 3 (clock back) in January. January
    is archived (seqs 1 and 3), March is not due yet: seq 2 stays live, and the whole still
    verifies."""
    store = AlertStore(tmp_path / "alerts.sqlite3")
    alert = _alert("s1/b1/device_offline/#1", OLD_JAN, AlertStatus.OPEN, 1)
    march = month_start_ms(2025, 3) + 3 * DAY
    _write(store, alert, ("opened", OLD_JAN, AlertStatus.OPEN),
           ("updated", march, AlertStatus.OPEN), ("updated", OLD_JAN + 1, AlertStatus.OPEN),
           ("updated", RECENT, AlertStatus.OPEN))
    now = month_start_ms(2026, 4) + 14 * DAY  # the cutoff: 2025-03-01
    report = _keeper(tmp_path).run(now)
    assert report.archived == {"alert-changes": 2}
    assert [c.seq for c in store.changes_since(0)] == [2, 4]
    check = verify_archive(tmp_path)
    assert check.ok, check.problems
    store.close()


def test_the_archive_is_private_under_umask_022(tmp_path: Path) -> None:
    """Issue #13: archived alert changes and key audit (residents' alerts, who did what) were
    0644 files in a 0755 directory under the common umask 022, readable by every local user."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        _alert_history(tmp_path).close()
        archive = tmp_path / ARCHIVE_DIR
        archive.mkdir(mode=0o755)  # an older gateway made it so
        assert stat.S_IMODE(archive.stat().st_mode) == 0o755
        assert _keeper(tmp_path).run(NOW).archived == {"alert-changes": 4}
    finally:
        os.umask(old)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o700
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in archive.glob("*.gz")}
    assert files == {"alert-changes-2025-01.jsonl.gz": 0o600,
                     "alert-changes-2025-02.jsonl.gz": 0o600}
    # The manifest too (a fresh tester, issue #16: it was 0644).
    assert stat.S_IMODE((archive / MANIFEST).stat().st_mode) == 0o600
    assert verify_archive(tmp_path).ok
