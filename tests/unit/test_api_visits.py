"""Service log and visit routes in process: check-in/out by the app, idempotent retries,
filters, pages, chain verification; validation before anything enters the chain (422, 404 for
beds nobody knows, 409 for check-ins/outs that contradict their visit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alerts.model import VisitEvent
from devices.registry import Registry
from tests.unit.test_api_app import T0, Harness, build

VISIT = {"site": "site-01", "bed": "bed-0007", "caregiver": "c-012", "visit": "v-88"}
REGISTRY = {"sites": {"site-01": {"beds": {"bed-0007": {}, "bed-0001": {}}},
                      "site-02": {"beds": {"bed-0002": {}}}}}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Harness]:
    """The API harness with a registry listing site-01's bed-0007 and bed-0001."""
    harness = build(tmp_path, registry=Registry.from_mapping(REGISTRY))
    try:
        yield harness
    finally:
        await harness.client.aclose()


async def visit(api: Harness, action: str, body: dict[str, Any]) -> Any:
    return await api.client.post(f"/api/v1/visits/{action}", json=body,
                                 headers=api.auth("dispatcher"))


async def test_check_in_and_out_are_recorded_with_the_key_name_and_chained(
        api: Harness) -> None:
    checked_in = await api.client.post("/api/v1/visits/check-in", json=VISIT,
                                       headers=api.auth("dispatcher"))
    assert checked_in.status_code == 201
    record = checked_in.json()
    assert (record["seq"], record["event"], record["source"], record["method"],
            record["actor"], record["at"]) == (1, "check_in", "api", "app", "dispatcher-1", T0)
    assert record["prev_hash"] == "0" * 64
    retry = await api.client.post("/api/v1/visits/check-in", json=VISIT,
                                  headers=api.auth("admin"))
    assert retry.status_code == 200
    assert retry.json() == record, "a retried check-in returns the first record"
    api.now[0] = T0 + 1_800_000
    out = await api.client.post("/api/v1/visits/check-out",
                                json={**VISIT, "services": ["bath", "meds"]},
                                headers=api.auth("dispatcher"))
    assert out.status_code == 201
    assert out.json()["services"] == ["bath", "meds"]
    assert out.json()["prev_hash"] == record["hash"]
    check = (await api.client.get("/api/v1/service-logs/verify",
                                  headers=api.auth("viewer"))).json()
    assert check["ok"] is True
    assert check["records"] == 2
    assert check["head_hash"] == out.json()["hash"]


async def test_service_logs_are_filtered_and_paged_newest_first(api: Harness) -> None:
    for i in range(5):
        api.now[0] = T0 + i * 1000
        body = {**VISIT, "caregiver": f"c-{i % 2}", "visit": f"v-{i}"}
        assert (await api.client.post("/api/v1/visits/check-in", json=body,
                                      headers=api.auth("dispatcher"))).status_code == 201
    page = (await api.client.get("/api/v1/service-logs", params={"limit": 2},
                                 headers=api.auth("viewer"))).json()
    assert [r["seq"] for r in page["items"]] == [5, 4]
    rest = (await api.client.get("/api/v1/service-logs",
                                 params={"cursor": page["next_cursor"]},
                                 headers=api.auth("viewer"))).json()
    assert [r["seq"] for r in rest["items"]] == [3, 2, 1]
    assert rest["next_cursor"] is None
    by_caregiver = (await api.client.get(
        "/api/v1/service-logs", params={"caregiver": "c-1", "since": T0 + 2000},
        headers=api.auth("viewer"))).json()
    assert [r["visit"] for r in by_caregiver["items"]] == ["v-3"]
    by_bed = (await api.client.get(
        "/api/v1/service-logs", params={"site": "site-01", "bed": "bed-0001"},
        headers=api.auth("viewer"))).json()
    assert by_bed["items"] == []


async def test_visit_bodies_are_validated(api: Harness) -> None:
    for body in [{**VISIT, "caregiver": "Jane Doe"},  # names are not pseudonymous ids
                 {**VISIT, "site": "x" * 65},
                 {**VISIT, "bed": "bed 0007"}, {**VISIT, "bed": "bed-0007\n"},
                 {**VISIT, "site": "site-ö1"}, {**VISIT, "bed": ""}, {**VISIT, "visit": None},
                 {**VISIT, "caregiver": 12}, {**VISIT, "visit": "v" * 129},
                 {k: v for k, v in VISIT.items() if k != "visit"},
                 {**VISIT, "extra": 1},
                 {**VISIT, "services": ["ok"] * 101}, {**VISIT, "services": "bath"},
                 {**VISIT, "services": ["bath meds"]}, [VISIT], "check-out"]:
        response = await api.client.post("/api/v1/visits/check-out", json=body,
                                         headers=api.auth("dispatcher"))
        assert response.status_code == 422, body
        assert response.json()["error"] == "invalid_request"
    assert (await visit(api, "check-in", {**VISIT, "services": []})).status_code == 422
    assert api.ctx.service_log.head()[0] == 0


async def test_check_in_or_out_at_a_site_or_bed_nobody_knows_is_404_and_records_nothing(
        api: Harness) -> None:
    for action in ("check-in", "check-out"):
        no_site = await visit(api, action, {**VISIT, "site": "site-99"})
        assert no_site.status_code == 404
        assert no_site.json() == {"error": "not_found", "detail": "no site site-99"}
        no_bed = await visit(api, action, {**VISIT, "bed": "bed-0099"})
        assert no_bed.status_code == 404
        assert no_bed.json() == {"error": "not_found", "detail": "no bed site-01/bed-0099"}
        elsewhere = await visit(api, action, {**VISIT, "site": "site-02"})
        assert elsewhere.json()["detail"] == "no bed site-02/bed-0007"
    assert api.ctx.service_log.head()[0] == 0
    # A bed seen live (auto-registered on first sight) is known as well.
    api.feed(("homecare/v1/site-03/bed-0300/button/btn-300/status",
              '{"ts":1763884800000,"seq":1,"state":"online"}'))
    assert (await visit(api, "check-in", {**VISIT, "site": "site-03", "bed": "bed-0300"})
            ).status_code == 201


async def test_a_check_out_must_close_the_open_check_in_of_its_visit_or_is_409(
        api: Harness) -> None:
    never = await visit(api, "check-out", {**VISIT, "services": ["bath"]})
    assert never.status_code == 409
    assert never.json() == {"error": "conflict", "detail": {
        "reason": "no_check_in", "message": "visit v-88 has no check-in"}}
    assert (await visit(api, "check-in", VISIT)).status_code == 201
    conflicts = [({**VISIT, "bed": "bed-0001"}, "other_bed"),
                 ({**VISIT, "caregiver": "c-999"}, "other_caregiver")]
    for body, reason in conflicts:
        response = await visit(api, "check-out", body)
        assert response.status_code == 409, body
        assert response.json()["detail"]["reason"] == reason
    again = await visit(api, "check-in", VISIT)
    assert again.status_code == 200, "a retry"
    assert (await visit(api, "check-out", VISIT)).status_code == 201
    assert (await visit(api, "check-out", VISIT)).status_code == 200, "a retry"
    # The same visit id at another bed is another visit (visits are keyed by site, bed,
    # caregiver and visit id), with its own check-in and check-out.
    elsewhere = {**VISIT, "bed": "bed-0001"}
    assert (await visit(api, "check-in", elsewhere)).status_code == 201
    assert (await visit(api, "check-out", elsewhere)).status_code == 201
    records = api.ctx.service_log.query(newest_first=False)
    assert [(r.bed, r.visit, r.event) for r in records] == [
        ("bed-0007", "v-88", "check_in"), ("bed-0007", "v-88", "check_out"),
        ("bed-0001", "v-88", "check_in"), ("bed-0001", "v-88", "check_out")]
    assert api.ctx.service_log.verify().ok


async def test_the_app_cannot_check_in_again_or_out_twice_a_visit_a_badge_recorded(
        api: Harness) -> None:
    badge = {k: VISIT[k] for k in ("site", "bed", "caregiver", "visit")}
    api.ctx.service_log.append([
        VisitEvent(origin="badge:1", at=T0, event="check_in", source="badge", **badge),
        VisitEvent(origin="badge:2", at=T0 + 1, event="check_out", source="badge", **badge)])
    for action, reason in [("check-in", "already_checked_in"),
                           ("check-out", "already_checked_out")]:
        response = await visit(api, action, VISIT)
        assert response.status_code == 409
        assert response.json()["detail"]["reason"] == reason
    assert api.ctx.service_log.head()[0] == 2


async def test_badge_events_set_aside_are_listed_with_their_reason(api: Harness) -> None:
    api.ctx.service_log.append([VisitEvent(
        origin="badge:9", at=T0, site="site-01", bed="bed-0007", caregiver="c-1", visit="v-9",
        event="check_out", source="badge", method="nfc", services=("bath",), device="bd-7")],
        set_aside_refused=True)
    page = await api.client.get("/api/v1/service-logs/refused", headers=api.auth("viewer"))
    assert page.status_code == 200
    [item] = page.json()["items"]
    assert (item["visit"], item["event"], item["reason"], item["device"], item["services"]) == (
        "v-9", "check_out", "no_check_in", "bd-7", ["bath"])
    assert (await api.client.get("/api/v1/service-logs", headers=api.auth("viewer"))
            ).json()["items"] == []


async def test_a_badge_visit_id_reused_at_the_same_bed_is_listed_as_such(api: Harness) -> None:
    # The second visit of a badge that always sends v-9 (a reason the listing did not know).
    badge = {"site": "site-01", "bed": "bed-0007", "caregiver": "c-1", "visit": "v-9",
             "source": "badge", "method": "nfc", "device": "bd-7"}
    api.ctx.service_log.append([
        VisitEvent(origin=f"badge:{n}", at=T0 + n * 60_000, event=event, **badge)
        for n, event in enumerate(("check_in", "check_out", "check_in"))],
        set_aside_refused=True)
    page = await api.client.get("/api/v1/service-logs/refused", headers=api.auth("viewer"))
    assert page.status_code == 200
    [item] = page.json()["items"]
    assert (item["visit"], item["event"], item["reason"]) == ("v-9", "check_in",
                                                              "visit_id_reused")


async def test_a_failing_service_log_is_503_and_records_nothing(api: Harness) -> None:
    from alerts.errors import ServiceLogUnavailable

    def failing(*args: object, **kwargs: object) -> None:
        raise ServiceLogUnavailable("service log write failed: disk I/O error")

    api.ctx.service_log.append = failing  # type: ignore[method-assign, assignment]
    response = await api.client.post("/api/v1/visits/check-in", json=VISIT,
                                      headers=api.auth("dispatcher"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "unavailable"


async def checked_in_and_out(api: Harness) -> tuple[dict[str, Any], dict[str, Any]]:
    """VISIT checked in, then out with ``["bath"]``; both records as answered."""
    checked_in = await visit(api, "check-in", VISIT)
    assert checked_in.status_code == 201
    api.now[0] = T0 + 1_800_000
    checked_out = await visit(api, "check-out", {**VISIT, "services": ["bath"]})
    assert checked_out.status_code == 201
    return checked_in.json(), checked_out.json()


def assert_refused(response: Any, reason: str) -> None:
    assert response.status_code == 409, response.json()
    assert response.json()["detail"]["reason"] == reason


async def test_a_check_in_by_another_caregiver_is_their_own_visit_not_a_retry_of_the_first(
        api: Harness) -> None:
    # Two caregivers' apps numbering their visits alike: two visits, each recorded.
    first = await visit(api, "check-in", VISIT)
    assert first.status_code == 201
    theirs = await visit(api, "check-in", {**VISIT, "caregiver": "c-2"})
    assert theirs.status_code == 201
    assert theirs.json()["seq"] != first.json()["seq"]
    assert (await visit(api, "check-in", {**VISIT, "caregiver": "c-2"})).status_code == 200
    api.now[0] = T0 + 1_800_000
    assert (await visit(api, "check-out", {**VISIT, "services": ["bath"]})).status_code == 201
    assert_refused(await visit(api, "check-in", VISIT), "already_checked_in")
    assert api.ctx.service_log.head()[0] == 3


async def test_a_check_out_by_another_caregiver_after_the_check_out_is_409_not_a_retry(
        api: Harness) -> None:
    await checked_in_and_out(api)
    assert_refused(await visit(api, "check-out", {**VISIT, "caregiver": "c-9",
                                                  "services": ["bath"]}),
                   "no_check_in")  # c-9's own v-88 was never checked in
    assert api.ctx.service_log.head()[0] == 2


async def test_a_second_check_out_with_other_services_is_409_so_they_are_not_silently_lost(
        api: Harness) -> None:
    _, checked_out = await checked_in_and_out(api)
    assert_refused(await visit(api, "check-out", {**VISIT, "services": ["meds"]}),
                   "already_checked_out")
    assert_refused(await visit(api, "check-out", {**VISIT, "services": ["bath", "meds"]}),
                   "already_checked_out")
    [record] = api.ctx.service_log.query(visit="v-88", newest_first=True, limit=1)
    assert (record.seq, record.services) == (checked_out["seq"], ("bath",))


async def test_the_same_check_in_after_the_check_out_is_409_not_a_retry(api: Harness) -> None:
    await checked_in_and_out(api)
    assert_refused(await visit(api, "check-in", VISIT), "already_checked_in")
    assert api.ctx.service_log.head()[0] == 2
    assert api.ctx.service_log.verify().ok


async def test_the_identical_retry_is_still_200_with_the_first_record(api: Harness) -> None:
    checked_in = await visit(api, "check-in", VISIT)
    retry = await api.client.post("/api/v1/visits/check-in", json=VISIT,
                                  headers=api.auth("admin"))
    assert (retry.status_code, retry.json()) == (200, checked_in.json()), "another key too"
    api.now[0] = T0 + 1_800_000
    checked_out = await visit(api, "check-out", {**VISIT, "services": ["bath"]})
    assert checked_out.status_code == 201
    api.now[0] = T0 + 1_900_000
    retry = await visit(api, "check-out", {**VISIT, "services": ["bath"]})
    assert (retry.status_code, retry.json()) == (200, checked_out.json())
    assert api.ctx.service_log.head()[0] == 2


async def test_the_chain_is_verified_against_heads_kept_elsewhere_from_the_checkpoint(
        api: Harness, tmp_path: Path) -> None:
    from tests.unit.test_servicelog import tamper

    for n in range(3):
        body = {**VISIT, "visit": f"v-{n}"}
        assert (await visit(api, "check-in", body)).status_code == 201
        assert (await visit(api, "check-out", {**body, "services": ["bath"]})).status_code == 201
    kept = [(r.seq, r.hash) for r in api.ctx.service_log.query(newest_first=False)]
    heads = [f"{seq}:{digest}" for seq, digest in kept]
    first = (await api.client.get("/api/v1/service-logs/verify", params={"head": heads},
                                  headers=api.auth("viewer"))).json()
    assert (first["ok"], first["records"], first["checked"], first["from_seq"]) == (
        True, 6, 6, 1)
    assert (await visit(api, "check-in", {**VISIT, "visit": "v-9"})).status_code == 201
    then = (await api.client.get("/api/v1/service-logs/verify", params={"head": heads[-1]},
                                 headers=api.auth("viewer"))).json()
    assert (then["ok"], then["records"], then["checked"], then["from_seq"]) == (True, 7, 1, 7)
    third = kept[2]
    assert api.ctx.service_log.audit().ok  # the gateway's background full verification
    tamper(tmp_path / "servicelog.sqlite3",
           "UPDATE service_log SET caregiver = 'c-9' WHERE seq = 3")
    routine = (await api.client.get("/api/v1/service-logs/verify",
                                    headers=api.auth("viewer"))).json()
    assert routine["ok"] is True, "a plain edit behind the checkpoint needs a full pass"
    # ...and says so: the records before from_seq are vouched for as of the last full pass.
    assert (routine["checked"], routine["from_seq"]) == (0, 8)
    assert routine["last_full"]["ok"] is True
    assert routine["last_full"]["head_seq"] == 7
    assert "records before 8 as of the full verification at" in routine["scope"]
    full = (await api.client.get("/api/v1/service-logs/verify",
                                 params={"full": "true", "head": f"{third[0]}:{third[1]}"},
                                 headers=api.auth("viewer"))).json()
    assert (full["ok"], full["first_bad_seq"], full["checked"]) == (False, 3, 2)
    # A fresh verifier: the default, incremental answer said ok with checked 0. Once the
    # gateway's background audit found record 3, it is not sound until a full pass is (a
    # caller's heads never mark the log unsound for later answers: only the file's own pass).
    assert (await api.client.get("/api/v1/service-logs/verify", headers=api.auth("viewer"))
            ).json()["ok"] is True
    assert not api.ctx.service_log.audit().ok
    again = (await api.client.get("/api/v1/service-logs/verify",
                                  headers=api.auth("viewer"))).json()
    assert (again["ok"], again["first_bad_seq"], again["checked"]) == (False, 3, 0)
    assert again["last_full"]["first_bad_seq"] == 3
    assert "found record 3 bad" in again["scope"]
    bad = await api.client.get("/api/v1/service-logs/verify", params={"head": "3:nothex"},
                               headers=api.auth("viewer"))
    assert bad.status_code == 422


async def test_a_head_beyond_a_renumbered_log_vouches_for_no_record(
        api: Harness, tmp_path: Path) -> None:
    # The platform kept the last head (6); record 3 was removed, 4-6 numbered 3-5 and
    # re-hashed with the stored head, and the background audit (its own links: sound) moved
    # the checkpoint to record 5. This was "records after 5 were removed", sound up to 5.
    from tests.unit.test_servicelog_verify import renumber

    for n in range(3):
        body = {**VISIT, "visit": f"v-{n}"}
        assert (await visit(api, "check-in", body)).status_code == 201
        assert (await visit(api, "check-out", {**body, "services": ["bath"]})).status_code == 201
    seq, digest = api.ctx.service_log.head()
    assert seq == 6
    renumber(tmp_path / "servicelog.sqlite3", api.ctx.service_log, 3)
    assert api.ctx.service_log.audit().ok
    for full in ("false", "true"):
        answer = (await api.client.get("/api/v1/service-logs/verify",
                                       params={"head": f"{seq}:{digest}", "full": full},
                                       headers=api.auth("viewer"))).json()
        assert (answer["ok"], answer["first_bad_seq"], answer["records"]) == (False, None, 0), (
            answer)
        assert (answer["suspect_from"], answer["suspect_to"]) == (1, 6)


async def test_service_records_are_served_with_their_detail_and_found_by_event(
        api: Harness) -> None:
    from alerts.servicelog import ServiceEntry

    assert (await visit(api, "check-in", VISIT)).status_code == 201
    assert (await visit(api, "check-out", {**VISIT, "services": ["bath"]})).status_code == 201
    api.ctx.service_log.append_service([ServiceEntry(
        site="site-01", bed="bed-0007", caregiver="c-012", visit="v-88", at=T0, method="app",
        services=("bath",), detail={"verdict": "verified", "reasons": []})])
    page = (await api.client.get("/api/v1/service-logs", params={"event": "service"},
                                 headers=api.auth("viewer"))).json()
    [record] = page["items"]
    assert (record["seq"], record["event"], record["source"], record["actor"]) == (
        3, "service", "gateway", None)
    assert record["detail"] == {"verdict": "verified", "reasons": []}
    check_ins = (await api.client.get("/api/v1/service-logs", params={"event": "check_in"},
                                      headers=api.auth("viewer"))).json()
    assert [r["seq"] for r in check_ins["items"]] == [1]
    assert all(r.get("detail") is None for r in check_ins["items"])
