"""Each destination gets its share, tested on the payloads real receivers get (a platform, the
institution and one bed's family on loopback, tests/upstream_receiver.py): the family its own
bed's alerts of the chosen types and its visit records, and no staff key name, note, comment,
assignee, call, outcome, evidence or other resident; the institution everything without staff
names and notes; the platform everything, as before."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.model import (
    Alert,
    AlertChange,
    AlertStatus,
    AlertType,
    ContactCall,
    Severity,
    VisitEvent,
)
from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from gateway.config import Settings, load
from gateway.errors import ConfigError
from gateway.upstream import (
    FAMILY_ACTIONS,
    Outbox,
    Shares,
    Upstream,
    family_secret,
    institution_secret,
)
from tests.upstream_receiver import Receiver

SECRET = b"a-test-secret-of-some-length"
STAFF = "anna-dispatch"
"""A dispatcher's API key name: it must reach no family and no institution."""
NOTE = "Neighbour in flat 3 has the key"
COMMENT = "Daughter says she takes new pills"
CHECKER = "app-key-carer-7"
"""The API key a caregiver's app checked in with."""


def _alert(bed: str, n: int, type_: AlertType = AlertType.EMERGENCY_BUTTON,
           **fields: Any) -> Alert:
    values: dict[str, Any] = {
        "id": f"id-{bed}-{n}", "incident": f"s1/{bed}/{type_}/#{n}", "type": type_,
        "severity": Severity.CRITICAL, "site": "s1", "bed": bed, "opened_at": 1_000 + n,
        "updated_at": 1_000 + n, "status": AlertStatus.OPEN,
        "summary": f"{type_} at {bed}", "evidence": {"device": f"dev-{bed}", "seq": n}}
    values.update(fields)
    return Alert(**values)


def _handled_call(store: AlertStore) -> None:
    """A call on bed-0001 handled the whole way, other types on it, a fall on bed-0002."""
    call = ContactCall(contact=1, result="answered", at=1_300, by=STAFF)
    history: list[tuple[str, str | None, str | None, Alert]] = [
        ("opened", None, None, _alert("bed-0001", 1)),
        ("assigned", STAFF, None, _alert("bed-0001", 1, assigned_to=STAFF, assigned_at=1_100)),
        ("commented", STAFF, COMMENT, _alert("bed-0001", 1, assigned_to=STAFF)),
        ("contact_called", STAFF, None,
         _alert("bed-0001", 1, assigned_to=STAFF, contact_calls=(call,))),
        ("escalated", "system", None, _alert("bed-0001", 1, escalation_level=1)),
        ("acknowledged", STAFF, NOTE,
         _alert("bed-0001", 1, status=AlertStatus.ACKNOWLEDGED, acknowledged_by=STAFF,
                acknowledged_at=1_400, note=NOTE, assigned_to=STAFF, contact_calls=(call,))),
        ("resolved", STAFF, "Son went over",
         _alert("bed-0001", 1, status=AlertStatus.RESOLVED, acknowledged_by=STAFF,
                acknowledged_at=1_400, resolved_by=STAFF, resolved_at=1_500,
                note="Son went over", outcome="family_came", assigned_to=STAFF,
                contact_calls=(call,))),
        ("opened", None, None, _alert(
            "bed-0001", 2, AlertType.SERVICE_ANOMALY, severity=Severity.MEDIUM,
            evidence={"caregiver": "c-9", "also_at": "bed-0002"})),
        ("opened", None, None, _alert("bed-0001", 3, AlertType.SENSOR_FAULT)),
        ("opened", None, None, _alert("bed-0002", 4, AlertType.FALL)),
        ("opened", None, None, _alert("", 5, AlertType.DEVICE_OFFLINE)),
    ]
    store.write([AlertChange(seq=i + 1, at=a.updated_at, action=action, actor=actor,
                             note=note, alert=a)
                 for i, (action, actor, note, a) in enumerate(history)])


def _visits(log: ServiceLog) -> None:
    log.append([
        VisitEvent(origin="o-1", at=5_000, site="s1", bed="bed-0001", caregiver="c-9",
                   visit="v-1", event="check_in", source="api", method="app", actor=CHECKER),
        VisitEvent(origin="o-2", at=5_100, site="s1", bed="bed-0002", caregiver="c-8",
                   visit="v-2", event="check_in", source="badge", method="nfc",
                   device="bdg-2"),
        VisitEvent(origin="o-3", at=6_000, site="s1", bed="bed-0001", caregiver="c-9",
                   visit="v-1", event="check_out", source="api", method="app",
                   services=("medication",), actor=CHECKER),
    ])


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    started = {"platform": Receiver(SECRET), "institution": Receiver(institution_secret(SECRET)),
               "family": Receiver(family_secret(SECRET, "s1", "bed-0001"))}
    for receiver in started.values():
        receiver.start()
    yield started
    for receiver in started.values():
        receiver.stop()


async def _deliver(tmp_path: Path, receivers: dict[str, Receiver], counts: dict[str, int],
                   shares: Shares | None = None) -> None:
    alerts = AlertStore(tmp_path / "alerts.sqlite3")
    log = ServiceLog(tmp_path / "servicelog.sqlite3")
    _handled_call(alerts)
    _visits(log)
    upstream = Upstream(Outbox(tmp_path / "outbox.sqlite3"), url=receivers["platform"].url,
                        institution_url=receivers["institution"].url,
                        families={("s1", "bed-0001"): receivers["family"].url},
                        secret=SECRET, source="gw-1", alert_store=alerts, service_log=log,
                        shares=shares, timeout_s=2.0)
    stop = asyncio.Event()
    task = asyncio.create_task(upstream.run(stop))
    try:
        for name, count in counts.items():
            assert await asyncio.to_thread(receivers[name].wait_for, count, 30.0), \
                (name, receivers[name].keys())
        # Everything queued is delivered: nothing more is on its way to anyone.
        for _ in range(100):
            if upstream.outbox.counts()["pending"] == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert upstream.outbox.counts()["pending"] == 0
    for name, count in counts.items():
        assert len(receivers[name].keys()) == count, (name, receivers[name].keys())
        assert all(d.signed for d in receivers[name].accepted), f"{name}: signed for it"


def _text(receiver: Receiver) -> str:
    return "\n".join(json.dumps(d.body) for d in receiver.accepted)


async def test_a_family_receives_its_own_beds_chosen_alerts_and_visits_and_no_staff_or_notes(
        tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    await _deliver(tmp_path, receivers, {"platform": 14, "institution": 14, "family": 5})
    family = receivers["family"]
    changes = [d.body["change"] for d in family.accepted if d.body["kind"] == "alert_change"]
    assert [c["action"] for c in changes] == ["opened", "acknowledged", "resolved"]
    assert {c["alert"]["bed"] for c in changes} == {"bed-0001"}
    assert [c["alert"]["status"] for c in changes] == ["open", "acknowledged", "resolved"]
    assert changes[-1]["alert"]["resolved_at"] == 1_500
    assert changes[0]["alert"]["summary"] == "emergency_button at bed-0001"
    records = [d.body["record"] for d in family.accepted if d.body["kind"] == "service_record"]
    assert [(r["bed"], r["visit"], r["event"]) for r in records] == [
        ("bed-0001", "v-1", "check_in"), ("bed-0001", "v-1", "check_out")]
    assert records[1]["services"] == ["medication"]
    assert records[1]["hash"], "the record's hash, to point at it"
    # No number of the gateway's logs (issue #14, a fresh verifier: the service log's head seq
    # 64 told a family how busy the other beds were): no seq, no chain head, keys of the
    # record's hash or a digest, the same for each entry on every retry.
    assert family.keys()[3:] == [f"gw-1/service/{r['hash']}" for r in records]
    assert all(re.fullmatch(r"gw-1/alert/[0-9a-f]{32}", k) for k in family.keys()[:3]), \
        family.keys()
    assert len(set(family.keys())) == 5
    for delivered in family.accepted:
        assert "head" not in delivered.body
        assert "seq" not in delivered.body.get("change", delivered.body.get("record"))
        assert delivered.body["key"] == delivered.key
    for name in ("platform", "institution"):
        kept = [d.body for d in receivers[name].accepted if d.body["kind"] == "service_record"]
        assert [(b["key"], b["head"]["seq"], b["record"]["seq"]) for b in kept] == [
            (f"gw-1/service/{n}", n, n) for n in (1, 2, 3)], "the log-wide head kept"
    text = _text(family)
    for absent in (STAFF, NOTE, COMMENT, "Son went over", CHECKER, "bed-0002", "c-8",
                   "assigned_to", "contact_calls", "checklist", "outcome", "family_came",
                   "evidence", "incident", "actor", "note", "escalat", "prev_hash"):
        assert absent not in text, f"{absent!r} reached the family"


async def test_the_institution_gets_everything_without_staff_names_or_notes(
        tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    await _deliver(tmp_path, receivers, {"platform": 14, "institution": 14, "family": 5})
    institution, platform = receivers["institution"], receivers["platform"]
    assert institution.keys() == platform.keys()
    text = _text(institution)
    for absent in (STAFF, NOTE, COMMENT, "Son went over", CHECKER):
        assert absent not in text, f"{absent!r} reached the institution"
    resolved = institution.accepted[6].body["change"]
    assert (resolved["action"], resolved["alert"]["outcome"]) == ("resolved", "family_came")
    assert resolved["alert"]["contact_calls"] == [
        {"contact": 1, "result": "answered", "at": 1_300}], "the call, not who made it"
    assert institution.accepted[7].body["change"]["alert"]["evidence"]["also_at"] == "bed-0002"
    # The platform: everything as stored, as before.
    full = _text(platform)
    for present in (STAFF, NOTE, COMMENT, CHECKER, "prev_hash"):
        assert present in full
    assert platform.accepted[6].body["change"]["alert"]["resolved_by"] == STAFF


async def test_the_settings_choose_each_destinations_share(
        tmp_path: Path, receivers: dict[str, Receiver]) -> None:
    settings = Settings(upstream_platform_alert_types=("emergency_button", "fall"),
                        upstream_institution_detail="full",
                        upstream_family_alert_types=("*",), upstream_family_visits=False)
    shares = Shares.from_settings(settings)
    # platform: the call's 7 changes and bed-0002's fall, and every record; institution: all
    # 11 changes in full and the records; family: every type, but its bed's and only the
    # changes a family follows (the call's 3, the anomaly and the sensor fault), no visits.
    await _deliver(tmp_path, receivers, {"platform": 11, "institution": 14, "family": 5},
                   shares)
    family = receivers["family"]
    assert [(d.body["change"]["action"], d.body["change"]["alert"]["type"])
            for d in family.accepted] == [
        ("opened", "emergency_button"), ("acknowledged", "emergency_button"),
        ("resolved", "emergency_button"), ("opened", "service_anomaly"),
        ("opened", "sensor_fault")]
    assert "also_at" not in _text(family), "no evidence, whatever the types"
    assert STAFF in _text(receivers["institution"])
    platform_keys = receivers["platform"].keys()
    assert [k for k in platform_keys if "/alert/" in k] == [
        f"gw-1/alert/{seq}" for seq in (1, 2, 3, 4, 5, 6, 7, 10)]


def test_family_actions_are_the_ones_a_family_follows() -> None:
    assert {"assigned", "commented", "contact_called", "checklist_checked", "escalated",
            "updated"}.isdisjoint(FAMILY_ACTIONS)
    assert {"opened", "acknowledged", "resolved", "auto_resolved"} <= FAMILY_ACTIONS


def test_the_share_settings_come_from_the_file_or_the_environment_and_name_a_bad_type(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Shares.from_settings(Settings())
    assert (defaults.platform.detail, defaults.platform.alert_types) == ("full", None)
    assert (defaults.institution.detail, defaults.institution.alert_types) == ("no_staff", None)
    assert defaults.family.alert_types is not None
    assert "emergency_button" in defaults.family.alert_types
    assert "service_anomaly" not in defaults.family.alert_types
    assert defaults.family.service_records

    config = tmp_path / "gateway.toml"
    config.write_text('[upstream]\nfamily_alert_types = ["fall"]\nfamily_visits = false\n'
                      'institution_url = "http://127.0.0.1:9/hook"\n'
                      'institution_detail = "full"\n', encoding="utf-8")
    monkeypatch.setenv("HOMECARE_UPSTREAM_SECRET", "s" * 20)
    monkeypatch.setenv("HOMECARE_UPSTREAM_PLATFORM_ALERT_TYPES", "emergency_button, fall")
    shares = Shares.from_settings(load(config))
    assert shares.family.alert_types == frozenset({"fall"})
    assert not shares.family.service_records
    assert shares.institution.detail == "full"
    assert shares.platform.alert_types == frozenset({"emergency_button", "fall"})

    monkeypatch.setenv("HOMECARE_UPSTREAM_FAMILY_ALERT_TYPES", "fall,falls")
    monkeypatch.delenv("HOMECARE_UPSTREAM_SECRET")
    with pytest.raises(ConfigError) as refused:
        load(config)
    message = str(refused.value)
    assert "upstream_family_alert_types (HOMECARE_UPSTREAM_FAMILY_ALERT_TYPES)" in message
    assert "'falls'" in message
    monkeypatch.delenv("HOMECARE_UPSTREAM_FAMILY_ALERT_TYPES")
    with pytest.raises(ConfigError, match="upstream_institution_url needs upstream_secret"):
        load(config)


def test_a_gateway_with_an_institution_url_delivers_there(tmp_path: Path) -> None:
    from devices.registry import Registry
    from gateway.runtime import Gateway

    gateway = Gateway(Settings(data_dir=tmp_path, upstream_secret="s" * 20,
                               upstream_institution_url="http://127.0.0.1:9/hook"),
                      registry=Registry(), serve_http=False)
    assert gateway.upstream is not None
    assert list(gateway.upstream.destinations) == ["institution"]
    assert gateway.upstream.destinations["institution"].share.detail == "no_staff"
    gateway._close_stores()
