"""Caregiver and visit ids: one rule in every place that takes them (issue #14, a fresh
verifier): badges (intake), plans (CSV and API), query parameters and the app's check-in and
check-out. Before, a badge's ``护工-李`` was recorded while the plans refused it ("not an id")
and ``?caregiver=`` answered 422, so that caregiver could never be planned, looked up or
checked out through the app."""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import StringConstraints, TypeAdapter

from alerts import PlanStore
from alerts.plans import DEFAULT_CATALOGUE, Catalogue, parse_plans_csv
from devices import PERSON_ID_PATTERN, Codec, Rejected, person_id_problem
from devices.registry import Registry
from tests.unit.test_api_app import Harness, build

GOOD = ("护工-李", "访视-001", "2026-12-02T00:10+08:00", "c-012", "Ärztin.Müller", "x" * 128)
BAD = ("Li Ping", " c1", "c1 ", "a/b", "a\\b", "a\tb", "a\u202eb", "a\u200db", "a\u3000b",
       "a\nb", "=1+1", "+1", "-1", "@SUM(A1)", "", "x" * 129)
RULE = ("not an id (printable characters, no spaces, / or \\, not starting with = + - @, at most "
        "128)")
TOPIC = "homecare/v1/site-01/bed-0001/badge/bd-0001/event"
REGISTRY = {"defaults": {"timezone": "Asia/Shanghai"},
            "sites": {"site-01": {"beds": {"bed-0001": {}}}}}


def badge(caregiver: str, visit: str = "访视-001") -> bytes:
    return json.dumps({"ts": 1, "seq": 1, "event": "check_in", "caregiver": caregiver,
                       "visit": visit, "method": "nfc"}).encode()


@pytest.mark.parametrize("value", GOOD)
def test_intake_and_plans_take_the_same_ids(value: str) -> None:
    message = Codec().decode(TOPIC, badge(value, value))
    assert not isinstance(message, Rejected), message
    assert (message.payload.caregiver, message.payload.visit) == (value, value)
    result = parse_plans_csv("site,bed,plan,caregiver,date,start,end,services\n"
                             f"site-01,bed-0001,p-1,{value},2026-12-02,10:00,10:30,cleaning\n",
                             catalogue=Catalogue.parse(DEFAULT_CATALOGUE),
                             zone_of=lambda site: zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert not result.problems
    assert result.rows[0].plan.caregiver == value


@pytest.mark.parametrize("value", BAD)
def test_an_id_no_place_can_take_is_dead_lettered_with_its_reason(value: str) -> None:
    for caregiver, visit, field in ((value, "v-1", "caregiver"), ("c-1", value, "visit")):
        rejected = Codec().decode(TOPIC, badge(caregiver, visit))
        assert isinstance(rejected, Rejected)
        assert rejected.reason == "invalid_payload"
        assert field in rejected.detail  # the length by the schema, the rest by the rule
        if value and len(value) <= 128:
            assert rejected.detail == f"{field}: {RULE}"
    if value.strip() != value:
        return  # a CSV cell's padding is not part of its value
    result = parse_plans_csv("site,bed,plan,caregiver,date,start,end,services\n"
                             f'site-01,bed-0001,p-1,"{value}",2026-12-02,10:00,10:30,cleaning\n',
                             catalogue=Catalogue.parse(DEFAULT_CATALOGUE),
                             zone_of=lambda site: zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert [(p.column, p.message) for p in result.problems] == [
        ("caregiver", RULE)]


def test_the_apis_pattern_refuses_nothing_the_rule_takes() -> None:
    """The API's pattern (Rust regex, newer Unicode tables) takes every id the rule takes; what
    it takes beyond (characters assigned after Python's tables) the rule itself refuses."""
    pattern = TypeAdapter(Annotated[str, StringConstraints(pattern=PERSON_ID_PATTERN)])
    refused = []
    for point in [*range(0x3400), *range(0xA000, 0xD800), *range(0xE000, 0x10000),
                  *range(0x1F000, 0x20100)]:
        value = f"a{chr(point)}"
        if person_id_problem(value) is None:
            try:
                pattern.validate_python(value)
            except ValueError:
                refused.append(hex(point))
    assert refused == []


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = build(tmp_path, registry=Registry.from_mapping(REGISTRY),
                    plans=PlanStore(tmp_path / "plans.sqlite3"))
    try:
        yield harness
    finally:
        await harness.client.aclose()


async def test_a_caregiver_a_badge_names_is_planned_looked_up_and_checked_in_by_the_app(
        api: Harness) -> None:
    caregiver, visit = "护工-李", "2026-12-02T00:10+08:00"
    planned = await api.client.put(
        "/api/v1/plans/site-01/P9", headers=api.auth("admin"),
        json={"bed": "bed-0001", "caregiver": caregiver, "date": "2026-12-02",
              "start": "10:00", "end": "10:30", "services": ["cleaning"]})
    assert planned.status_code in (200, 201), planned.text
    imported = await api.client.post(
        "/api/v1/plans/import", headers=api.auth("admin"),
        json={"csv": "site,bed,plan,caregiver,date,start,end,services\n"
                     "site-01,bed-0001,P10,访视员-王,2026-12-02,11:00,11:30,cleaning\n"})
    assert imported.status_code == 200, imported.text
    listed = await api.client.get("/api/v1/plans", params={"caregiver": caregiver},
                                  headers=api.auth("viewer"))
    assert listed.status_code == 200, listed.text
    assert [p["plan"] for p in listed.json()["items"]] == ["P9"]
    body = {"site": "site-01", "bed": "bed-0001", "caregiver": caregiver, "visit": visit}
    checked_in = await api.client.post("/api/v1/visits/check-in", json=body,
                                       headers=api.auth("dispatcher"))
    assert checked_in.status_code == 201, checked_in.text
    checked_out = await api.client.post("/api/v1/visits/check-out",
                                        json={**body, "services": ["cleaning"]},
                                        headers=api.auth("dispatcher"))
    assert checked_out.status_code == 201, checked_out.text
    found = await api.client.get("/api/v1/service-logs",
                                 params={"caregiver": caregiver, "visit": visit},
                                 headers=api.auth("viewer"))
    assert found.status_code == 200, found.text
    assert [r["event"] for r in found.json()["items"]] == ["check_out", "check_in"]


@pytest.mark.parametrize("value", ["Li Ping", "a/b", "a\u202eb", "a\u200db", "=1+1",
                                   "x" * 129, "a\U00100000b", "a\U00060000b"])
async def test_every_api_place_refuses_what_intake_refuses(api: Harness, value: str) -> None:
    """What the OpenAPI document's pattern refuses answers 422; what fits it but breaks the
    rule (a bidirectional override, a zero-width joiner) answers 400 ``invalid_id``."""
    fits_document = re.match(PERSON_ID_PATTERN, value) is not None
    expected = (400, "invalid_id") if fits_document else (422, "invalid_request")
    planned = await api.client.put(
        "/api/v1/plans/site-01/P9", headers=api.auth("admin"),
        json={"bed": "bed-0001", "caregiver": value, "date": "2026-12-02",
              "start": "10:00", "end": "10:30", "services": ["cleaning"]})
    listed = await api.client.get("/api/v1/plans", params={"caregiver": value},
                                  headers=api.auth("viewer"))
    checked_in = await api.client.post(
        "/api/v1/visits/check-in", headers=api.auth("dispatcher"),
        json={"site": "site-01", "bed": "bed-0001", "caregiver": "c-1", "visit": value})
    logs = await api.client.get("/api/v1/service-logs", params={"visit": value},
                                headers=api.auth("viewer"))
    for answer in (planned, listed, checked_in, logs):
        assert (answer.status_code, answer.json()["error"]) == expected, answer.text


NFC, NFD, WIDE = "José-护工", "Jose\u0301-护工", "\uff23\uff0d\uff10\uff11"  # C-01 in full width


def test_one_caregiver_typed_three_ways_is_one_id_at_intake_and_in_plans() -> None:
    """Ids in one form (width, then NFC) wherever they come in (issue #14): a badge sending
    ``José`` decomposed and a plan typed with it composed named two caregivers, so the visit
    took no plan (``unplanned``) and the overlap check could not see the caregiver twice; an
    id typed in full width with a Chinese input method was another caregiver than the badge's
    ``C-01``."""
    message = Codec().decode(TOPIC, badge(NFD, WIDE))
    assert not isinstance(message, Rejected), message
    assert (message.payload.caregiver, message.payload.visit) == (NFC, "C-01")
    formula = Codec().decode(TOPIC, badge("\uff1d1+1"))
    assert isinstance(formula, Rejected)
    assert formula.detail == f"caregiver: {RULE}"
    result = parse_plans_csv("site,bed,plan,caregiver,date,start,end,services\n"
                             f"site-01,bed-0001,p-1,{NFD},2026-12-02,10:00,10:30,cleaning\n"
                             f"site-01,bed-0001,p-2,{WIDE},2026-12-02,11:00,11:30,cleaning\n",
                             catalogue=Catalogue.parse(DEFAULT_CATALOGUE),
                             zone_of=lambda site: zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert not result.problems
    assert [row.plan.caregiver for row in result.rows] == [NFC, "C-01"]


async def test_the_api_keeps_one_form_of_an_id(api: Harness) -> None:
    planned = await api.client.put(
        "/api/v1/plans/site-01/P9", headers=api.auth("admin"),
        json={"bed": "bed-0001", "caregiver": NFD, "date": "2026-12-02",
              "start": "10:00", "end": "10:30", "services": ["cleaning"]})
    assert planned.status_code in (200, 201), planned.text
    listed = await api.client.get("/api/v1/plans", params={"caregiver": NFC},
                                  headers=api.auth("viewer"))
    assert [(p["plan"], p["caregiver"]) for p in listed.json()["items"]] == [("P9", NFC)]
    body = {"site": "site-01", "bed": "bed-0001", "caregiver": NFD, "visit": WIDE}
    checked_in = await api.client.post("/api/v1/visits/check-in", json=body,
                                       headers=api.auth("dispatcher"))
    assert checked_in.status_code == 201, checked_in.text
    checked_out = await api.client.post(
        "/api/v1/visits/check-out", headers=api.auth("dispatcher"),
        json={**body, "caregiver": NFC, "visit": "C-01", "services": ["cleaning"]})
    assert checked_out.status_code == 201, checked_out.text
    found = await api.client.get("/api/v1/service-logs", params={"caregiver": NFD,
                                                                 "visit": WIDE},
                                 headers=api.auth("viewer"))
    assert [(r["event"], r["caregiver"], r["visit"]) for r in found.json()["items"]] == [
        ("check_out", NFC, "C-01"), ("check_in", NFC, "C-01")]
    formula = await api.client.put(
        "/api/v1/plans/site-01/P10", headers=api.auth("admin"),
        json={"bed": "bed-0001", "caregiver": "\uff0b1", "date": "2026-12-02",
              "start": "10:00", "end": "10:30", "services": ["cleaning"]})
    assert (formula.status_code, formula.json()["error"]) == (400, "invalid_id"), formula.text
