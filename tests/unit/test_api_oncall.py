"""``/api/v1/oncall`` (the roster: dispatchers read it, admins replace it, checked whole) and
``/ack/<token>`` (the one-time acknowledge link: a page, then a POST that acknowledges once,
audited; expired, foreign and spent links refused)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from alerts.acklinks import AckLinks
from alerts.api._acklink import AUDIT_REFUSALS_PER_MINUTE
from alerts.errors import NewerCall
from alerts.escalation import Chain, EscalationPolicy, Step
from alerts.model import AlertType, EventRef, Finding, Severity
from alerts.roster import Roster
from alerts.rosterstore import RosterStore
from devices.registry import Registry
from tests.unit.test_api_app import T0, build

ROSTER: dict[str, Any] = {
    "staff": [{"id": "anna", "name": "Anna (synthetic)", "role": "dispatcher",
               "email": "anna@station.invalid", "phone": "+86 138 0000 0001"},
              {"id": "li", "name": "Li (synthetic)", "role": "nurse"}],
    "shifts": [{"name": "day", "start": "08:00"}, {"name": "night", "start": "20:00"}],
    "duty": [{"site": "*", "shift": "day", "dispatchers": ["anna"], "nurse": "li"}]}
CHAINS = (Chain(name="calls", severities=frozenset({Severity.CRITICAL}),
                steps=(Step(recipients=("dispatchers_on_duty",), wait_s=60),)),)
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def harness(tmp_path: Path, **options: object):  # type: ignore[no-untyped-def]
    registry = Registry.from_mapping({"sites": {"site-01": {"timezone": "Asia/Shanghai"}}})
    store = RosterStore(tmp_path / "oncall.json", seed=Roster.from_mapping(ROSTER))
    return build(tmp_path, registry=registry, oncall=store,
                 escalation=EscalationPolicy(chains=CHAINS), **options)


def _pressed(api):  # type: ignore[no-untyped-def]
    """bed-0007's emergency button pressed at T0: its critical alert, committed."""
    alert = api.engine.apply([Finding(type=AlertType.EMERGENCY_BUTTON, site="site-01",
                                      bed="bed-0007", at=T0, severity=Severity.CRITICAL,
                                      summary="emergency button pressed")], T0)[0].alert
    api.engine.commit()
    return alert


async def test_the_roster_is_shown_to_dispatchers_and_replaced_whole_by_admins(
        tmp_path: Path) -> None:
    api = harness(tmp_path)
    try:
        url = "/api/v1/oncall"
        assert (await api.client.get(url, headers=api.auth("viewer"))).status_code == 403
        shown = (await api.client.get(url, headers=api.auth("dispatcher"))).json()
        assert shown["source"] == "file"
        assert shown["staff"][0]["phone"] == "+86 138 0000 0001"
        assert [c["name"] for c in shown["chains"]] == [
            "calls", "default-critical", "default-high", "default-medium", "default-low"]
        ten_am = int(dt.datetime(2026, 1, 2, 10, tzinfo=SHANGHAI).timestamp() * 1000)
        now = (await api.client.get(f"{url}/now", params={"site": "site-01", "at": ten_am},
                                    headers=api.auth("dispatcher"))).json()
        assert (now["timezone"], now["shift"], now["date"]) == ("Asia/Shanghai", "day",
                                                                 "2026-01-02")
        assert [s["id"] for s in now["dispatchers"]] == ["anna"]
        assert now["nurse"]["id"] == "li"

        night = {**ROSTER, "duty": [{"site": "*", "shift": "night", "dispatchers": ["anna"]}]}
        assert (await api.client.put(url, json=night, headers=api.auth("dispatcher"))
                ).status_code == 403
        bad = {**ROSTER, "duty": [{"site": "*", "shift": "dawn", "dispatchers": ["li"]}],
               "staff": [*ROSTER["staff"], {"id": "x", "name": "X", "role": "nurse",
                                            "email": "not an address"}]}
        refused = await api.client.put(url, json=bad, headers=api.auth("admin"))
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_roster"
        assert any("duty[0].shift" in p for p in refused.json()["detail"])
        assert "not an address" not in refused.text
        replaced = await api.client.put(url, json=night, headers=api.auth("admin"))
        assert replaced.status_code == 200, replaced.text
        assert (replaced.json()["source"], replaced.json()["updated_by"]) == ("api",
                                                                               "bootstrap")
        now = (await api.client.get(f"{url}/now", params={"site": "site-01", "at": ten_am},
                                    headers=api.auth("dispatcher"))).json()
        assert (now["dispatchers"], now["nurse"]) == ([], None)
        assert RosterStore(tmp_path / "oncall.json",
                           seed=Roster.from_mapping(ROSTER)).source == "api"
        audit = api.keys.audit_log()
        assert [(e.actor, e.action, e.status) for e in reversed(audit)
                if e.target == url] == [("dispatcher-1", "PUT", 403), ("bootstrap", "PUT", 400),
                                        ("bootstrap", "PUT", 200)]
    finally:
        await api.client.aclose()


async def test_a_roster_leaving_a_site_without_a_dispatcher_is_accepted_with_warnings(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue #13: a roster with nobody on duty somewhere was answered 200 and said nothing.
    It is still accepted (an admin may be halfway through an edit) but the answers list every
    coverage gap of the next week, per site in its zone, and the gateway logs them."""
    api = harness(tmp_path)
    try:
        url = "/api/v1/oncall"
        # The file's roster has dispatchers for the day only: every night of the week is a gap
        # at the registry's site, in Shanghai's zone (T0 is 16:00 there).
        shown = (await api.client.get(url, headers=api.auth("dispatcher"))).json()
        gaps = shown["warnings"]
        assert len(gaps) == 7, gaps
        first = dt.datetime.fromtimestamp(T0 / 1000, SHANGHAI).replace(hour=20)
        assert (gaps[0]["site"], gaps[0]["timezone"], gaps[0]["start"], gaps[0]["end"]) == (
            "site-01", "Asia/Shanghai", int(first.timestamp() * 1000),
            int((first + dt.timedelta(hours=12)).timestamp() * 1000))
        assert "no dispatcher on duty at site-01" in gaps[0]["message"]

        caplog.set_level("WARNING", logger="homecare.alerts.oncall")
        caplog.clear()
        site_sh_days = {**ROSTER, "duty": [
            {"site": "site-01", "shift": "day", "dispatchers": ["anna"]},
            {"site": "site-01", "shift": "night", "dispatchers": ["anna"]},
            {"site": "site-sh", "shift": "night", "weekdays": ["mon", "tue", "wed", "thu", "fri",
                                                              "sat"],
             "dispatchers": ["anna"]},
            {"site": "site-sh", "shift": "day", "dispatchers": ["anna"], "nurse": "li"}]}
        put = await api.client.put(url, json=site_sh_days, headers=api.auth("admin"))
        assert put.status_code == 200, put.text
        # Sunday's night at site-sh (a site the duty names, not in the registry) is the only
        # gap: its own entries name dispatchers for every other shift.
        assert [w["site"] for w in put.json()["warnings"]] == ["site-sh"], put.text
        assert any(r.getMessage().startswith("oncall.gap site=site-sh from=")
                   for r in caplog.records), caplog.records

        covered = {**ROSTER, "duty": [
            {"site": "*", "shift": "day", "dispatchers": ["anna"]},
            {"site": "*", "shift": "night", "dispatchers": ["anna"]}]}
        put = await api.client.put(url, json=covered, headers=api.auth("admin"))
        assert (put.status_code, put.json()["warnings"]) == (200, [])
        assert (await api.client.get(url, headers=api.auth("dispatcher"))
                ).json()["warnings"] == []
    finally:
        await api.client.aclose()


async def test_an_acknowledge_link_shows_the_alert_acknowledges_once_and_is_audited(
        tmp_path: Path) -> None:
    links = AckLinks(tmp_path / "acklinks.sqlite3", secret=b"k" * 32, ttl_ms=600_000)
    api = harness(tmp_path, acklinks=links)
    try:
        alert = _pressed(api)
        token = links.mint(key="gw/notify/x/1/email/li", alert_id=alert.id, recipient="li",
                           step=2, channel="email", now_ms=T0)
        page = await api.client.get(f"/ack/{token}")
        assert page.status_code == 200
        assert "Acknowledge as li" in page.text
        assert "emergency button pressed" in page.text
        assert "form-action 'self'" in page.headers["content-security-policy"]
        assert api.engine.get(alert.id).status.value == "open"  # type: ignore[union-attr]
        done = await api.client.post(f"/ack/{token}", headers={"Accept": "application/json"})
        assert done.status_code == 200, done.text
        assert done.json()["acknowledged_by"] == "oncall:li"
        acknowledged = api.engine.get(alert.id)
        assert acknowledged is not None
        assert (acknowledged.acknowledged_by, acknowledged.note) == (
            "oncall:li", "through the acknowledge link of step 2 (email)")
        again = await api.client.post(f"/ack/{token}")
        assert again.status_code == 410
        assert "oncall:li" in again.text
        assert (await api.client.get(f"/ack/{token}")).status_code == 410
        assert (await api.client.post(f"/ack/{token[:-4]}AAAA")).status_code == 404
        assert (await api.client.get("/ack/not-a-token")).status_code == 404
        api.now[0] = T0 + 600_001
        other = links.mint(key="gw/notify/x/1/webhook/anna", alert_id=alert.id,
                           recipient="anna", step=1, channel="webhook", now_ms=T0)
        assert (await api.client.post(f"/ack/{other}")).status_code == 410, "expired"
        entries = [e for e in reversed(api.keys.audit_log()) if e.action == "ACK_LINK"]
        uses = [(e.actor, e.action, e.status, e.target) for e in entries]
        # The tampered and the expired POST are audited too, without the token.
        assert uses == [("oncall:li", "ACK_LINK", 200, f"/alerts/{alert.id}"),
                        ("oncall:li", "ACK_LINK", 410, f"/alerts/{alert.id}"),
                        ("oncall:unknown", "ACK_LINK", 404, "/ack"),
                        ("oncall:anna", "ACK_LINK", 410, f"/alerts/{alert.id}")]
        assert "expired" in entries[-1].detail
        assert all(token[:20] not in e.detail and other[:20] not in e.detail for e in entries)
        [(key, use)] = links.uses(alert.id)
        assert (key, use.recipient, use.result) == ("gw/notify/x/1/email/li", "li",
                                                    "acknowledged")
    finally:
        await api.client.aclose()


async def test_a_link_of_an_earlier_call_does_not_acknowledge_a_newer_call(
        tmp_path: Path) -> None:
    """Issue #13: press, acknowledge through the link, press again: a link sent for the first
    press is refused (410, audited), not spent; one sent for the new call works."""
    links = AckLinks(tmp_path / "acklinks.sqlite3", secret=b"k" * 32)
    api = harness(tmp_path, acklinks=links)
    try:
        def press(at: int, seq: int) -> Any:
            changes = api.engine.apply([Finding(
                type=AlertType.EMERGENCY_BUTTON, site="site-01", bed="bed-0007", at=at,
                severity=Severity.CRITICAL, summary="emergency button pressed",
                event=EventRef(device="btn-1", seq=seq, device_ts=at, digest=f"d{seq}",
                               call=True))], at)
            api.engine.commit()
            return changes[-1]

        opened = press(T0, 1)
        alert = opened.alert

        def link(change_seq: int, who: str, channel: str) -> str:
            # The notification key as alerts.notify makes it: the seq binds the link.
            return links.mint(key=f"gw/notify/{alert.id}/{change_seq}/{channel}/{who}",
                              alert_id=alert.id, recipient=who, step=1, channel=channel,
                              now_ms=T0)

        email, webhook = link(opened.seq, "li", "email"), link(opened.seq, "anna", "webhook")
        first = await api.client.post(f"/ack/{email}")
        assert first.status_code == 200, first.text
        repeat = press(T0 + 60_000, 2)
        assert repeat.note.startswith("emergency button pressed; a new call after ack")
        assert api.engine.get(alert.id).status.value == "open"  # type: ignore[union-attr]

        shown = await api.client.get(f"/ack/{webhook}")
        assert shown.status_code == 410
        assert "a newer call came after this link was sent" in shown.text
        late = await api.client.post(f"/ack/{webhook}", headers={"Accept": "application/json"})
        assert late.status_code == 410, late.text
        assert late.json()["reason"] == "a newer call came after this link was sent"
        assert api.engine.get(alert.id).status.value == "open"  # type: ignore[union-attr]
        assert [k for k, _ in links.uses(alert.id)] == [f"gw/notify/{alert.id}/{opened.seq}"
                                                        "/email/li"], "not spent"
        refused = next(e for e in api.keys.audit_log() if e.action == "ACK_LINK")
        assert (refused.actor, refused.status) == ("oncall:anna", 410)
        assert "a newer call came after this link was sent" in refused.detail
        # A link of the new call acknowledges it.
        fresh = link(repeat.seq, "anna", "webhook")
        assert (await api.client.post(f"/ack/{fresh}")).status_code == 200
        assert api.engine.get(alert.id).acknowledged_by == "oncall:anna"  # type: ignore[union-attr]
    finally:
        await api.client.aclose()


async def test_the_engine_refuses_an_acknowledgement_sent_for_an_earlier_call(
        tmp_path: Path) -> None:
    """The engine's own check: the new call is only staged (not yet in the written history)
    when the old link is used."""
    api = harness(tmp_path)
    try:
        def press(at: int, seq: int) -> Any:
            return api.engine.apply([Finding(
                type=AlertType.EMERGENCY_BUTTON, site="site-01", bed="bed-0007", at=at,
                severity=Severity.CRITICAL,
                event=EventRef(device="btn-1", seq=seq, device_ts=at, digest=f"d{seq}",
                               call=True))], at)[-1]

        opened = press(T0, 1)
        api.engine.acknowledge(opened.alert.id, actor="d1", note=None, now_ms=T0 + 1,
                               sent_for=opened.seq)
        repeat = press(T0 + 60_000, 2)
        with pytest.raises(NewerCall):
            api.engine.acknowledge(opened.alert.id, actor="oncall:li", note=None,
                                   now_ms=T0 + 61_000, sent_for=opened.seq)
        done = api.engine.acknowledge(opened.alert.id, actor="oncall:li", note=None,
                                      now_ms=T0 + 62_000, sent_for=repeat.seq)
        assert done.acknowledged_by == "oncall:li"
    finally:
        await api.client.aclose()


async def test_a_link_for_an_alert_someone_answered_is_spent_and_says_who(
        tmp_path: Path) -> None:
    links = AckLinks(tmp_path / "acklinks.sqlite3", secret=b"k" * 32)
    api = harness(tmp_path, acklinks=links)
    try:
        alert = api.engine.apply([Finding(type=AlertType.FALL, site="site-01", bed="bed-1",
                                          at=T0, severity=Severity.CRITICAL)], T0)[0].alert
        api.engine.acknowledge(alert.id, actor="dispatcher-1", note=None, now_ms=T0 + 1)
        token = links.mint(key="k", alert_id=alert.id, recipient="li", step=1,
                           channel="webhook", now_ms=T0)
        shown = await api.client.get(f"/ack/{token}")
        assert (shown.status_code, "Already acknowledged" in shown.text) == (200, True)
        late = await api.client.post(f"/ack/{token}")
        assert late.status_code == 409
        assert "dispatcher-1" in late.text
        assert (await api.client.post(f"/ack/{token}")).status_code == 410
        # Resolved by someone else than who acknowledged it: the page names who resolved it.
        api.engine.resolve(alert.id, actor="dispatcher-2", note="handled",
                           outcome="false_alarm", now_ms=T0 + 2)
        other = links.mint(key="k2", alert_id=alert.id, recipient="li", step=1,
                           channel="email", now_ms=T0)
        shown = await api.client.get(f"/ack/{other}")
        assert "resolved by dispatcher-2" in shown.text
        assert "dispatcher-1" not in shown.text
        resolved = await api.client.post(f"/ack/{other}")
        assert resolved.status_code == 409
        assert "already resolved by dispatcher-2" in resolved.text
    finally:
        await api.client.aclose()


async def test_a_family_contacts_link_never_acknowledges_the_call(tmp_path: Path) -> None:
    """Issue #13 (a verifier's defect): a link sent to a relative (before their notifications
    lost it) acknowledged the emergency call and stopped the staff's chain. Refused (403,
    audited); the alert stays open."""
    links = AckLinks(tmp_path / "acklinks.sqlite3", secret=b"k" * 32, ttl_ms=600_000)
    api = harness(tmp_path, acklinks=links)
    try:
        alert = _pressed(api)
        token = links.mint(key=f"gw/notify/{alert.id}/1/webhook/family_contact-1",
                           alert_id=alert.id, recipient="family_contact-1", step=1,
                           channel="webhook", now_ms=T0)
        page = await api.client.get(f"/ack/{token}")
        assert page.status_code == 200
        assert "Acknowledge as" not in page.text
        done = await api.client.post(f"/ack/{token}", headers={"Accept": "application/json"})
        assert done.status_code == 403, done.text
        assert api.engine.get(alert.id).status.value == "open"  # type: ignore[union-attr]
        [refused] = [e for e in api.keys.audit_log() if e.action == "ACK_LINK"]
        assert (refused.actor, refused.status) == ("oncall:family_contact-1", 403)
    finally:
        await api.client.aclose()


async def test_links_that_do_not_work_are_failed_authentications_limited_per_address(
        tmp_path: Path) -> None:
    """Issue #17 (a tester's defect): ``POST /ack/<made-up token>`` had no limit, was not
    counted, and wrote an audit row each (1 MB a second at 1,000 requests a second, kept 13
    months). Now made-up, expired and spent links share the wrong keys' budget per address (429
    with ``Retry-After`` past it), are counted, and their audit rows are bounded; a real link
    still works from the locked address."""
    registry = CollectorRegistry()
    links = AckLinks(tmp_path / "acklinks.sqlite3", secret=b"k" * 32, ttl_ms=600_000)
    api = harness(tmp_path, acklinks=links, auth_failures_per_minute=5, metrics=registry)
    try:
        alert = _pressed(api)
        token = links.mint(key="gw/notify/x/1/email/li", alert_id=alert.id, recipient="li",
                           step=1, channel="email", now_ms=T0)
        expired = links.mint(key="gw/notify/x/1/email/anna", alert_id=alert.id,
                             recipient="anna", step=1, channel="email", now_ms=T0 - 600_001)
        assert (await api.client.post(f"/ack/{expired}")).status_code == 410
        assert (await api.client.get(f"/ack/{token[:-4]}AAAA")).status_code == 404
        statuses = [(await api.client.post(f"/ack/made-up-{n}")).status_code for n in range(40)]
        assert statuses == [404] * 3 + [429] * 37
        limited = await api.client.post("/ack/made-up", headers={"Accept": "application/json"})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "made-up" not in limited.text
        # An API key never used is not tried from this address either: one budget.
        assert (await api.client.get("/api/v1/me", headers=api.auth("viewer"))
                ).status_code == 429
        done = await api.client.post(f"/ack/{token}", headers={"Accept": "application/json"})
        assert done.status_code == 200, "a real link is not held up by the lockout"
        assert (await api.client.post(f"/ack/{token}")).status_code == 410  # spent: a failure

        def count(reason: str) -> float | None:
            return registry.get_sample_value("homecare_api_auth_failures_total",
                                              {"reason": reason})
        assert (count("link_expired"), count("link_invalid"), count("link_used"),
                count("throttled")) == (1, 4, 1, 39)
        rows = [e for e in reversed(api.keys.audit_log()) if e.action == "ACK_LINK"]
        assert [(e.actor, e.status) for e in rows] == [
            ("oncall:anna", 410), *[("oncall:unknown", 404)] * 3, ("oncall:li", 200),
            ("oncall:li", 410)], "the 429s are counted, not audited row by row"
        assert all("made-up" not in e.detail for e in rows)
    finally:
        await api.client.aclose()


async def test_refused_links_write_a_bounded_number_of_audit_rows_from_any_addresses(
        tmp_path: Path) -> None:
    """A flood from many addresses (each within its own budget) writes at most
    AUDIT_REFUSALS_PER_MINUTE rows a minute; the next row says how many were left out."""
    links = AckLinks(tmp_path / "acklinks.sqlite3", secret=b"k" * 32)
    api = harness(tmp_path, acklinks=links)
    try:
        for n in range(50):
            transport = httpx.ASGITransport(app=api.app, client=(f"198.51.100.{n}", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.post(f"/ack/made-up-{n}")).status_code == 404
        rows = [e for e in api.keys.audit_log() if e.action == "ACK_LINK"]
        assert len(rows) == AUDIT_REFUSALS_PER_MINUTE
        api.now[0] += 60_000
        assert (await api.client.post("/ack/made-up")).status_code == 404
        [newest, *_] = [e for e in api.keys.audit_log() if e.action == "ACK_LINK"]
        assert f"{50 - AUDIT_REFUSALS_PER_MINUTE} refused before this one not recorded" \
            in newest.detail
    finally:
        await api.client.aclose()
