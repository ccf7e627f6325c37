"""Verifying the service log against heads kept elsewhere, from a stored checkpoint: a chain
rewritten and re-hashed after an edit passes its own links but not the heads the platform
kept, which name the first record that differs; each verification goes on from the last
record verified, and a rewrite behind that checkpoint is still found."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alerts.servicelog import GENESIS, ServiceLog, ServiceRecord, chain_hash
from tests.unit.test_servicelog import event, tamper


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "servicelog.sqlite3"


@pytest.fixture
def log(path: Path) -> ServiceLog:
    service_log = ServiceLog(path)
    service_log.append([event(i) for i in range(10)], now_ms=1)
    return service_log


def heads(log: ServiceLog) -> list[tuple[int, str]]:
    """What the platform keeps: each record's ``(seq, hash)`` as it was delivered."""
    return [(r.seq, r.hash) for r in log.query(newest_first=False, limit=1000)]


def rewrite(path: Path, log: ServiceLog, seq: int, caregiver: str = "c-9") -> None:
    """Edit record ``seq`` and re-hash it and every record after it, and the stored head: a
    forger who knows the scheme. The chain's own links are all right afterwards."""
    records = log.query(newest_first=False, limit=1000)
    statements = []
    prev = records[seq - 2].hash if seq > 1 else GENESIS
    for record in records[seq - 1:]:
        body = record.body()
        if record.seq == seq:
            body["caregiver"] = caregiver
        digest = chain_hash(prev, body)
        statements.append(f"UPDATE service_log SET caregiver = '{body['caregiver']}',"
                          f" prev_hash = '{prev}', hash = '{digest}' WHERE seq = {record.seq}")
        prev = digest
    statements.append(f"UPDATE chain_head SET hash = '{prev}'")
    tamper(path, *statements)


def test_a_rewritten_chain_passes_its_own_links_but_not_the_heads_kept_elsewhere(
        log: ServiceLog, path: Path) -> None:
    kept = heads(log)
    rewrite(path, log, 4)
    assert log.verify(full=True).ok, "re-hashed: every link and the stored head agree"
    last_only = log.verify(heads=[kept[-1]], full=True)
    assert not last_only.ok
    # One head after the edit cannot say which record changed (a fresh verifier: "record 10,
    # sound up to record 9" was false): the chain does not reach it, nothing before is vouched.
    assert last_only.first_bad_seq is None, last_only.error
    assert (last_only.suspect_from, last_only.suspect_to, last_only.records) == (1, 10, 0)
    assert "does not reach the kept head (record 10" in (last_only.error or "")
    two = log.verify(heads=[kept[1], kept[-1]], full=True)
    assert (two.first_bad_seq, two.suspect_from, two.records) == (None, 3, 2), two.error
    every = log.verify(heads=kept, full=True)
    assert not every.ok
    assert every.first_bad_seq == 4, "the heads of every record name the first one rewritten"
    assert "record 4 differs from the kept head" in (every.error or "")


def test_heads_kept_before_a_record_was_added_say_nothing_against_it(
        log: ServiceLog) -> None:
    kept = heads(log)[:5]
    log.append([event(10), event(11)])
    assert log.verify(heads=kept).ok


def test_a_kept_head_beyond_the_log_means_its_tail_was_removed(log: ServiceLog,
                                                               path: Path) -> None:
    kept = log.head()
    seventh = heads(log)[6]
    tamper(path, "DELETE FROM service_log WHERE seq >= 8",
           f"UPDATE chain_head SET seq = 7, hash = '{seventh[1]}'")
    # A head for the last record left: only the tail was removed.
    result = log.verify(heads=[seventh, kept])
    assert not result.ok
    assert (result.first_bad_seq, result.records) == (8, 7), result.error
    # The head beyond the log alone cannot tell a cut tail from a chain also rewritten before
    # it: nothing is called sound.
    alone = log.verify(heads=[kept], full=True)
    assert (alone.ok, alone.first_bad_seq, alone.records) == (False, None, 0), alone.error
    assert (alone.suspect_from, alone.suspect_to) == (1, 8)  # record 8 is gone: at most 8


def renumber(path: Path, log: ServiceLog, seq: int) -> None:
    """Remove record ``seq``, number the ones after it one less, re-hash them, fix the
    stored head and remove the checkpoint: each record's own links are right."""
    records = log.query(newest_first=False, limit=1000)
    statements = [f"DELETE FROM service_log WHERE seq = {seq}"]
    prev = records[seq - 2].hash if seq > 1 else GENESIS
    for record in records[seq:]:
        body = record.body() | {"seq": record.seq - 1}
        digest = chain_hash(prev, body)
        statements.append(f"UPDATE service_log SET seq = {record.seq - 1}, prev_hash = '{prev}',"
                          f" hash = '{digest}' WHERE seq = {record.seq}")
        prev = digest
    statements.append(f"UPDATE chain_head SET seq = {records[-1].seq - 1}, hash = '{prev}'")
    tamper(path, *statements, "DELETE FROM verify_checkpoint")


def test_a_record_removed_and_the_rest_renumbered_is_vouched_for_by_no_head_beyond_the_log(
        log: ServiceLog, path: Path) -> None:
    # The platform kept only the last head (10); record 5 was removed, 6-10 numbered 5-9 and
    # re-hashed, the stored head fixed. This was "the kept head (record 10) is gone: records
    # after 9 were removed", sound up to record 9, though 5-9 were rewritten.
    kept = heads(log)
    assert log.verify().ok  # the checkpoint: record 10
    renumber(path, log, 5)
    assert log.verify(full=True).ok, "its own links and the stored head agree"
    # ...and that pass (the background audit's) moved the checkpoint to the re-hashed record 9:
    # it vouches for nothing.
    for full in (True, False):
        result = log.verify(heads=[kept[-1]], full=full)
        assert not result.ok
        assert result.first_bad_seq is None, result.error
        assert (result.suspect_from, result.suspect_to, result.records) == (1, 10, 0), (
            result.error)
        assert "the log ends at record 9, which no head vouches for" in (result.error or "")
    before = log.verify(heads=[kept[3], kept[-1]], full=True)
    assert (before.first_bad_seq, before.suspect_from, before.records) == (None, 5, 4), (
        before.error)
    every = log.verify(heads=kept, full=True)
    assert (every.first_bad_seq, every.records) == (5, 4), every.error


def test_a_checkpoint_a_pass_moved_to_a_rewritten_record_vouches_for_nothing(
        log: ServiceLog, path: Path) -> None:
    # Records 8-10 removed, 4 edited and 4-7 re-hashed, head fixed; a pass without kept heads
    # (the background audit) moves the checkpoint to 7; the gateway then appends a new record
    # 8. Against the platform's head 8 it was "record 8 differs ... re-hashed from it",
    # sound up to 7: the checkpoint vouched for record 7.
    kept = heads(log)
    tamper(path, "DELETE FROM service_log WHERE seq >= 8",
           f"UPDATE chain_head SET seq = 7, hash = '{kept[6][1]}'")
    rewrite(path, log, 4)
    assert log.verify(full=True).ok
    log.append([event(20)])
    result = log.verify(heads=[kept[7]])
    assert not result.ok
    assert (result.first_bad_seq, result.suspect_from, result.suspect_to, result.records) == (
        None, 1, 8, 0), result.error


def test_a_record_beyond_the_stored_head_is_found(log: ServiceLog, path: Path) -> None:
    eighth = heads(log)[7]
    tamper(path, f"UPDATE chain_head SET seq = 8, hash = '{eighth[1]}'")
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == 9, result.error


def test_verification_goes_on_from_the_last_record_verified(log: ServiceLog) -> None:
    first = log.verify()
    assert (first.ok, first.checked, first.records, first.from_seq) == (True, 10, 10, 1)
    log.append([event(10), event(11), event(12)])
    then = log.verify()
    assert (then.ok, then.checked, then.records, then.from_seq) == (True, 3, 13, 11)
    assert then.head_seq == 13
    again = log.verify()
    assert (again.ok, again.checked, again.records) == (True, 0, 13)
    assert log.verify(full=True).checked == 13


def test_the_checkpoint_survives_a_restart(log: ServiceLog, path: Path) -> None:
    assert log.verify().checked == 10
    log.close()
    reopened = ServiceLog(path)
    reopened.append([event(10)])
    assert reopened.verify().checked == 1


def test_a_rewrite_behind_the_checkpoint_is_found_by_the_next_verification(
        log: ServiceLog, path: Path) -> None:
    kept = heads(log)
    assert log.verify().ok
    rewrite(path, log, 4)
    result = log.verify()
    assert not result.ok, "the checkpoint is a head too: the rewrite changed its record"
    assert (result.first_bad_seq, result.suspect_from, result.suspect_to) == (None, 1, 10), (
        result.error)
    assert log.verify(heads=kept).first_bad_seq == 4


def test_a_head_kept_elsewhere_is_checked_behind_the_checkpoint(log: ServiceLog,
                                                                path: Path) -> None:
    kept = heads(log)
    assert log.verify().ok
    rewrite(path, log, 4)
    # The forger rewrote the checkpoint too (it is in the same file): the kept heads still see.
    tamper(path, f"UPDATE verify_checkpoint SET hash = '{log.head()[1]}'")
    assert log.verify().ok, "without a head from elsewhere a complete forgery passes"
    result = log.verify(heads=kept[5:6])
    assert not result.ok
    assert (result.first_bad_seq, result.suspect_to) == (None, 6), result.error


def test_an_edit_behind_the_checkpoint_is_found_by_a_full_pass(log: ServiceLog,
                                                               path: Path) -> None:
    assert log.verify().ok
    tamper(path, "UPDATE service_log SET caregiver = 'c-9' WHERE seq = 4")
    assert log.verify().ok, ("a plain edit behind the checkpoint leaves every hash in place: "
                             "only recomputing the records finds it")
    result = log.verify(full=True)
    assert not result.ok
    assert result.first_bad_seq == 4


def test_the_checkpoint_never_moves_past_a_bad_record(log: ServiceLog, path: Path) -> None:
    assert log.verify().ok
    log.append([event(10), event(11), event(12)])
    tamper(path, "UPDATE service_log SET caregiver = 'c-9' WHERE seq = 12")
    for _ in range(2):
        result = log.verify()
        assert not result.ok
        assert (result.first_bad_seq, result.from_seq) == (12, 11)
    db = sqlite3.connect(path)
    assert db.execute("SELECT seq FROM verify_checkpoint").fetchone() == (10,)
    db.close()


def test_a_record_hashes_the_same_whether_read_as_a_record_or_verified_from_its_row(
        log: ServiceLog) -> None:
    record: ServiceRecord = log.query(newest_first=False, limit=1)[0]
    assert chain_hash(GENESIS, record.body()) == record.hash
    assert "detail" not in record.body(), "records without detail hash as they always did"


def test_the_background_audit_rechecks_what_incremental_verification_skips(
        log: ServiceLog, path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A fresh verifier: an edit behind the checkpoint (record 4, hashes kept) was answered
    # ok by every incremental verification (the API's default). The gateway's housekeeping
    # runs the full one (ServiceLog.audit) on its schedule; its result is kept, counted in
    # metrics, logged loudly, and keeps the incremental answer from saying sound.
    from prometheus_client import CollectorRegistry

    from alerts.servicelog import ServiceLogRecorder
    from gateway.config import Settings
    from gateway.storage.housekeeping import Housekeeper, Policy

    registry = CollectorRegistry()
    ServiceLogRecorder(log, metrics=registry)
    assert registry.get_sample_value("homecare_service_log_full_verify_ok") != 1.0  # never
    first = log.verify()
    assert first.ok
    assert first.last_full is not None, "the first one recomputed every record: a full one"
    assert first.last_full.ok
    log.append([event(10), event(11)])
    tamper(path, "UPDATE service_log SET caregiver = 'c-9' WHERE seq = 4")
    routine = log.verify()
    assert routine.ok
    assert routine.checked == 2
    assert routine.last_full == first.last_full
    housekeeper = Housekeeper(path.parent, Policy.from_settings(Settings()),
                              audits=[("servicelog-audit", log.audit)])
    housekeeper.run()
    assert "servicelog.audit_failed first_bad_seq=4" in caplog.text
    audit = log.last_audit()
    assert audit is not None
    assert (audit.ok, audit.first_bad_seq) == (False, 4)
    assert registry.get_sample_value("homecare_service_log_full_verify_ok") == 0.0
    assert registry.get_sample_value("homecare_service_log_full_verify_first_bad_seq") == 4.0
    after = log.verify()
    assert (after.ok, after.first_bad_seq, after.checked) == (False, 4, 0)
    assert ServiceLog(path).last_audit() == audit, "kept in the file"


def test_verify_log_incremental_says_when_the_rest_was_last_fully_verified(
        log: ServiceLog, path: Path) -> None:
    from typer.testing import CliRunner

    from homecare.cli import app

    runner = CliRunner()
    args = ["verify-log", "--data-dir", str(path.parent), "--incremental"]
    assert runner.invoke(app, args).exit_code == 0  # the first: every record
    log.append([event(10)])
    tamper(path, "UPDATE service_log SET caregiver = 'c-9' WHERE seq = 4")
    routine = runner.invoke(app, args)
    assert routine.exit_code == 0, routine.output
    assert "records before 11 were not recomputed now: last fully verified" in routine.output
    assert runner.invoke(app, args[:-1]).exit_code == 1  # the full pass finds record 4
    after = runner.invoke(app, args)
    assert after.exit_code == 1, after.output
    assert "first bad record: 4" in after.output
