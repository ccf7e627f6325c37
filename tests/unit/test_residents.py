"""Resident profiles: validation, the CSV import (a clear problem per row, idempotent upserts)
and the store (its own file, private, tightened at open, never blocking the gateway, never
logging a profile). Synthetic people only (tests/fixtures/residents.csv)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.errors import ResidentStoreUnavailable
from alerts.residents import Contact, Resident, parse_csv, problems
from alerts.residentstore import ResidentStore

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "residents.csv"
T0 = 1_763_884_800_000

HEADER = "site,bed,display_name,phone,contact1_name,contact1_relation,contact1_phone\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common umask 022, under which files are created readable by everyone."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def profile(**changes: object) -> Resident:
    values: dict[str, object] = {
        "site": "site-01", "bed": "bed-0009", "display_name": "Li Shufen (synthetic)",
        "address": "Example Road 9", "phone": "010-5555-0901",
        "contacts": (Contact(name="Li Wei (synthetic)", relation="son",
                             phone="138 0555 0902"),),
        "medical_notes": "asthma", "access_notes": "key safe 0000 (synthetic)"}
    values.update(changes)
    return Resident(**values)  # type: ignore[arg-type]


# --- validation and CSV -------------------------------------------------------------------------

def test_a_valid_profile_has_no_problems_and_each_bad_field_is_named() -> None:
    assert problems(profile()) == []
    bad = profile(display_name="", phone="call me", address="x" * 501,
                  contacts=(Contact(name="", phone="1"),), medical_notes="a\x00b")
    assert [field for field, _ in problems(bad)] == [
        "display_name", "address", "phone", "contact1_name", "contact1_phone",
        "medical_notes"]


def test_the_fixture_file_imports_with_contacts_in_order_and_multiline_cells() -> None:
    result = parse_csv(FIXTURE.read_text(encoding="utf-8"))
    assert result.problems == ()
    assert [(r.row, r.bed) for r in result.rows] == [
        (2, "bed-0001"), (3, "bed-0002"), (4, "bed-0003")]  # as a spreadsheet counts rows
    first = result.rows[0].applied_to(None)
    assert first.address.splitlines() == ["Building 9, Unit 2, Room 301",
                                          "Example Road 1, Testing District"]
    assert [c.relation for c in first.contacts] == ["son", "neighbour"]
    assert result.rows[1].applied_to(None).display_name.startswith("钱桂芳")
    assert len(result.rows[2].applied_to(None).contacts) == 1


def test_every_bad_row_is_reported_with_its_row_and_column_and_never_its_value() -> None:
    text = (HEADER
            + "site-01,bed-0001,Ok Person,010-5555-0001,,,\n"
            + "site 01,bed-0002,Secret Name,,,,\n"                # bad site id
            + "site-01,bed-0003,,010-5555-0003,,,\n"              # no name
            + "site-01,bed-0004,Secret Name,phone-secret,,,\n"    # bad phone
            + "site-01,bed-0005,Secret Name,,,son,\n"             # contact without name/phone
            + "site-01,bed-0001,Twice,,,,\n"                      # same bed again
            + "site-01,bed-0006,Secret Name,,,,,extra\n"          # a cell too many
            + ",,,,,,\n")                                         # empty: skipped
    result = parse_csv(text)
    assert [r.bed for r in result.rows] == ["bed-0001"]
    assert [(p.row, p.column) for p in result.problems] == [
        (3, "site"), (4, "display_name"), (5, "phone"), (6, "contact1_name"),
        (6, "contact1_phone"), (7, "bed"), (8, "")]
    assert str(result.problems[5]) == "row 7, bed: this bed is also on row 2"
    report = "\n".join(str(p) for p in result.problems)
    for secret in ("Secret", "phone-secret", "Twice", "extra", "son"):
        assert secret not in report


def test_a_header_with_unknown_missing_or_incomplete_columns_is_refused_as_a_whole() -> None:
    result = parse_csv("site,bed,name,contact2_phone,phone,phone\nsite-01,bed-0001,x,1,2,3\n")
    assert result.rows == ()
    assert {(p.row, p.column) for p in result.problems} == {
        (1, "phone"), (1, "name"), (1, "display_name"), (1, "contact2_name"),
        (1, "contact1_name")}
    assert "unknown column" in str(next(p for p in result.problems if p.column == "name"))
    assert parse_csv("").problems[0].message.startswith("the file is empty")


def test_contacts_must_be_listed_in_order_without_gaps() -> None:
    text = ("site,bed,display_name,contact1_name,contact1_phone,contact2_name,contact2_phone\n"
            "site-01,bed-0001,A,,,B,010-5555-0002\n")
    [problem] = parse_csv(text).problems
    assert (problem.row, problem.column) == (2, "contact2_name")
    assert "contact 1 is empty" in problem.message


def test_a_byte_order_mark_and_header_case_are_accepted() -> None:
    result = parse_csv("\ufeffSite,BED,Display_Name\nsite-01,bed-0001,Zhou Yun (synthetic)\n")
    assert result.problems == ()
    assert result.rows[0].fields == {"display_name": "Zhou Yun (synthetic)"}


# --- the store ------------------------------------------------------------------------------

def test_the_profile_file_and_sqlites_files_beside_it_are_readable_by_the_owner_only(
        tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "data" / "residents.sqlite3"
    with ResidentStore(path) as store:
        store.put(profile(), actor="admin", now_ms=T0)
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    other = tmp_path / "other"
    other.write_text("")
    assert mode(other) == 0o644  # the umask would have made it world-readable


def test_permissions_loosened_by_someone_are_tightened_at_open_and_said_without_content(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "residents.sqlite3"
    with ResidentStore(path) as store:
        store.put(profile(), actor="admin", now_ms=T0)
    os.chmod(path, 0o644)
    caplog.set_level(logging.DEBUG)
    with ResidentStore(path) as store:
        assert mode(path) == 0o600
        assert store.get("site-01", "bed-0009") == profile(updated_at=T0, updated_by="admin")
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "residents.permissions_tightened" in warning.getMessage()
    assert "residents.sqlite3" in warning.getMessage()
    assert "644" in warning.getMessage()


def test_a_profile_file_that_cannot_be_opened_refuses_calls_but_not_the_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "residents.sqlite3"
    path.mkdir()  # not a file: cannot be opened
    store = ResidentStore(path)  # the gateway starts all the same
    with pytest.raises(ResidentStoreUnavailable):
        store.get("site-01", "bed-0001")
    with pytest.raises(ResidentStoreUnavailable):
        store.put(profile(), actor="admin", now_ms=T0)
    assert sum("residents.unavailable" in r.getMessage() for r in caplog.records) == 1
    path.rmdir()
    assert store.get("site-01", "bed-0001") is None  # opens once it can
    store.close()


def test_a_put_is_an_idempotent_upsert_recording_who_and_when() -> None:
    store = ResidentStore(":memory:")
    assert store.put(profile(), actor="admin", now_ms=T0) == "created"
    assert store.put(profile(), actor="other", now_ms=T0 + 1) == "unchanged"
    assert store.get("site-01", "bed-0009") == profile(updated_at=T0, updated_by="admin")
    assert store.put(profile(phone=""), actor="other", now_ms=T0 + 2) == "updated"
    assert store.get("site-01", "bed-0009") == profile(phone="", updated_at=T0 + 2,
                                                       updated_by="other")
    with pytest.raises(ValueError, match="display_name"):
        store.put(profile(display_name=""), actor="admin", now_ms=T0)
    assert store.delete("site-01", "bed-0009")
    assert not store.delete("site-01", "bed-0009")
    assert store.get("site-01", "bed-0009") is None


def test_importing_the_same_file_twice_changes_nothing_and_a_changed_row_updates_one(
        tmp_path: Path) -> None:
    text = FIXTURE.read_text(encoding="utf-8")
    with ResidentStore(tmp_path / "residents.sqlite3") as store:
        first = store.import_rows(parse_csv(text).rows, actor="cli:ops", now_ms=T0)
        assert (first.count("created"), first.count("updated"), first.count("unchanged")) == (
            3, 0, 0)
        again = store.import_rows(parse_csv(text).rows, actor="cli:ops", now_ms=T0 + 1)
        assert [done for *_, done in again.rows] == ["unchanged"] * 3
        changed = store.import_rows(parse_csv(text.replace("高血压", "高血压 房颤")).rows,
                                    actor="cli:ops", now_ms=T0 + 2)
        assert [(row, bed, done) for row, _, bed, done in changed.rows] == [
            (2, "bed-0001", "unchanged"), (3, "bed-0002", "updated"),
            (4, "bed-0003", "unchanged")]
        updated = store.get("site-01", "bed-0002")
        assert updated is not None
        assert updated.medical_notes == "高血压 房颤"
        assert store.count() == 3


def test_columns_left_out_keep_the_stored_fields_and_contact_columns_replace_the_list() -> None:
    store = ResidentStore(":memory:")
    store.put(profile(), actor="admin", now_ms=T0)
    only_phone = parse_csv("site,bed,display_name,phone\n"
                           "site-01,bed-0009,Li Shufen (synthetic),010-5555-0999\n")
    store.import_rows(only_phone.rows, actor="admin", now_ms=T0 + 1)
    kept = store.get("site-01", "bed-0009")
    assert kept is not None
    assert (kept.phone, kept.medical_notes, kept.contacts) == (
        "010-5555-0999", "asthma", profile().contacts)
    new_contacts = parse_csv("site,bed,display_name,contact1_name,contact1_phone\n"
                             "site-01,bed-0009,Li Shufen (synthetic),Li Na (synthetic),"
                             "139 0555 0903\n")
    store.import_rows(new_contacts.rows, actor="admin", now_ms=T0 + 2)
    replaced = store.get("site-01", "bed-0009")
    assert replaced is not None
    assert replaced.contacts == (Contact(name="Li Na (synthetic)", phone="139 0555 0903"),)


def test_an_import_is_all_or_nothing_and_a_dry_run_writes_nothing() -> None:
    store = ResidentStore(":memory:")
    rows = parse_csv(FIXTURE.read_text(encoding="utf-8")).rows
    dry = store.import_rows(rows, actor="admin", now_ms=T0, dry_run=True)
    assert dry.count("created") == 3
    assert store.count() == 0
    with pytest.raises(ValueError, match="row 3"):
        store.import_rows([profile(bed="bed-0100"), profile(bed="bed-0101", phone="x")],
                          actor="admin", now_ms=T0)
    assert store.count() == 0


def test_no_profile_field_is_ever_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                         ) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "residents.sqlite3"
    text = FIXTURE.read_text(encoding="utf-8")
    with ResidentStore(path) as store:
        store.import_rows(parse_csv(text).rows, actor="admin", now_ms=T0)
        store.get("site-01", "bed-0001")
        with pytest.raises(ValueError):
            store.put(profile(phone="x"), actor="admin", now_ms=T0)
    os.chmod(path, 0o664)
    with ResidentStore(path) as store:
        store.delete("site-01", "bed-0002")
    parse_csv(text.replace("010-5555-0101", "not-a-phone"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged  # the tightening was logged
    for value in ("Zhao", "钱", "5555", "Key safe", "diabetes", "son", "neighbour", "Example"):
        assert value not in logged


def test_profiles_are_listed_by_site_and_bed_a_page_at_a_time() -> None:
    store = ResidentStore(":memory:")
    for site, bed in (("site-02", "bed-0001"), ("site-01", "bed-0002"), ("site-01", "bed-0001")):
        store.put(profile(site=site, bed=bed), actor="admin", now_ms=T0)
    assert [(r.site, r.bed) for r in store.list()] == [
        ("site-01", "bed-0001"), ("site-01", "bed-0002"), ("site-02", "bed-0001")]
    assert [r.bed for r in store.list(site="site-01", limit=1)] == ["bed-0001"]
    assert [r.bed for r in store.list(site="site-01", after=("site-01", "bed-0001"))] == [
        "bed-0002"]
    assert store.list(site="site-01", bed="bed-0009") == []
