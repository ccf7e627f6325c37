"""The plan store: idempotent upserts keyed by site and plan id, all-or-nothing imports, the
windows the detector asks for, and a revision that says when anything changed."""

from __future__ import annotations

import sqlite3
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from alerts.errors import PlanStoreUnavailable
from alerts.plans import DEFAULT_CATALOGUE, Catalogue, PlannedVisit, make_plan, parse_plans_csv
from alerts.planstore import PlanStore

CATALOGUE = Catalogue.parse(DEFAULT_CATALOGUE)
UTC = zoneinfo.ZoneInfo("UTC")
HOUR = 3_600_000


def plan(plan_id: str = "p-1", *, bed: str = "bed-0001", site: str = "site-01",
         date: str = "2026-11-02", start: str = "09:00", end: str = "10:00",
         caregiver: str = "c001", services: tuple[str, ...] = ("medication",)) -> PlannedVisit:
    made, problems = make_plan(site=site, bed=bed, plan=plan_id, caregiver=caregiver, date=date,
                               start=start, end=end, services=services, catalogue=CATALOGUE,
                               zone=UTC)
    assert made is not None, problems
    return made


@pytest.fixture
def store() -> Iterator[PlanStore]:
    with PlanStore(":memory:") as opened:
        yield opened


def test_the_same_plan_again_changes_nothing_and_a_change_replaces_it(store: PlanStore) -> None:
    assert store.put(plan(), actor="anna", now_ms=1) == "created"
    revision = store.revision()
    assert store.put(plan(), actor="ben", now_ms=2) == "unchanged"
    assert store.revision() == revision
    stored = store.get("site-01", "p-1")
    assert stored is not None
    assert (stored.updated_at, stored.updated_by) == (1, "anna")
    assert store.put(plan(caregiver="c002"), actor="ben", now_ms=3) == "updated"
    assert store.revision() > revision
    stored = store.get("site-01", "p-1")
    assert stored is not None
    assert (stored.caregiver, stored.updated_by) == ("c002", "ben")


def test_an_import_is_all_or_nothing_and_a_dry_run_writes_nothing(store: PlanStore) -> None:
    store.put(plan("p-1"), actor="anna", now_ms=1)
    rows = [plan("p-1"), plan("p-2", bed="bed-0002"), plan("p-3", caregiver="c009")]
    result = store.import_rows(rows, actor="anna", now_ms=5, dry_run=True)
    assert [what for *_, what in result.rows] == ["unchanged", "created", "created"]
    assert store.get("site-01", "p-2") is None
    result = store.import_rows(rows, actor="anna", now_ms=5)
    assert (result.count("created"), result.count("unchanged")) == (2, 1)
    again = store.import_rows(rows, actor="anna", now_ms=6)
    assert again.count("unchanged") == 3
    with pytest.raises(ValueError, match="actor"):
        store.import_rows(rows, actor="", now_ms=7)


def test_import_rows_keep_their_row_numbers() -> None:
    text = ("site,bed,plan,caregiver,date,start,end,services\n"
            "s,b,p-1,c,2026-11-02,09:00,10:00,medication\n\n"
            "s,b,p-2,c,2026-11-03,09:00,10:00,medication\n")
    parsed = parse_plans_csv(text, catalogue=CATALOGUE, zone_of=lambda site: UTC)
    with PlanStore(":memory:") as store:
        result = store.import_rows(parsed.rows, actor="cli:anna", now_ms=1)
    assert result.rows == ((2, "s", "p-1", "created"), (4, "s", "p-2", "created"))


def test_the_detector_gets_the_windows_that_overlap_a_span(store: PlanStore) -> None:
    store.import_rows([plan("p-1", start="09:00", end="10:00"),
                       plan("p-2", start="11:00", end="12:00", bed="bed-0002"),
                       plan("p-3", date="2026-11-05")], actor="anna", now_ms=1)
    nine = plan().start_ms
    assert [p.plan for p in store.between(nine + HOUR // 2, nine + 2 * HOUR + 1)] == ["p-1",
                                                                                     "p-2"]
    assert [p.plan for p in store.between(nine + HOUR, nine + 2 * HOUR)] == []
    assert store.planned_beds(nine, nine + 4 * HOUR) == {("site-01", "bed-0001"),
                                                         ("site-01", "bed-0002")}


def test_plans_are_listed_by_window_with_filters_and_a_cursor(store: PlanStore) -> None:
    store.import_rows([plan("p-3", start="11:00", end="12:00"),
                       plan("p-1", start="09:00", end="10:00"),
                       plan("p-2", start="10:00", end="11:00", bed="bed-0002")],
                      actor="anna", now_ms=1)
    assert [p.plan for p in store.list()] == ["p-1", "p-2", "p-3"]
    assert [p.plan for p in store.list(bed="bed-0001")] == ["p-1", "p-3"]
    first = store.list(limit=2)
    last = first[-1]
    assert [p.plan for p in store.list(after=(last.start_ms, last.site, last.plan))] == ["p-3"]
    eleven = plan(start="11:00", end="12:00").start_ms
    assert [p.plan for p in store.list(since_ms=eleven)] == ["p-3"]
    assert [p.plan for p in store.list(until_ms=eleven)] == ["p-1", "p-2"]
    assert [p.plan for p in store.list(caregiver="c002")] == []


def test_a_deleted_plan_is_gone_and_the_revision_says_so(store: PlanStore) -> None:
    store.put(plan(), actor="anna", now_ms=1)
    revision = store.revision()
    assert store.delete("site-01", "p-1")
    assert store.get("site-01", "p-1") is None
    assert store.revision() > revision
    assert not store.delete("site-01", "p-1")


def test_a_plan_moved_to_another_bed_is_one_plan(store: PlanStore) -> None:
    store.put(plan(), actor="anna", now_ms=1)
    store.put(msgspec.structs.replace(plan(), bed="bed-0009"), actor="anna", now_ms=2)
    assert [(p.bed, p.plan) for p in store.list()] == [("bed-0009", "p-1")]


def test_another_process_sees_an_import_at_once(tmp_path: Path) -> None:
    path = tmp_path / "plans.sqlite3"
    with PlanStore(path) as gateway, PlanStore(path) as cli:
        before = gateway.revision()
        cli.import_rows([plan()], actor="cli:anna", now_ms=1)
        assert gateway.revision() > before
        assert gateway.get("site-01", "p-1") is not None


def test_a_file_that_cannot_be_opened_refuses_calls_and_recovers(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture
                                                                 ) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data directory should be")
    store = PlanStore(blocked / "plans.sqlite3")
    with pytest.raises(PlanStoreUnavailable):
        store.revision()
    with pytest.raises(PlanStoreUnavailable):
        store.put(plan(), actor="anna", now_ms=1)
    assert sum("plans.unavailable" in r.message for r in caplog.records) == 1
    blocked.unlink()
    assert store.revision() == 0
    store.close()


def test_a_newer_schema_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "plans.sqlite3"
    PlanStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    store = PlanStore(path)
    with pytest.raises(PlanStoreUnavailable, match="newer"):
        store.get("s", "p")
    store.close()
