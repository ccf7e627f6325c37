"""Issue #13, 5, acceptance: the response report on a scripted set of alerts matches values
computed by hand.

Nine alerts at a station in Shanghai (shifts: day from 08:00, night from 20:00; the target: a
critical alert acknowledged within 60 s), driven through the real engine, store and API with a
settable clock; the report is read at 2026-12-03 20:10 for the two days 2 and 3 December.

(day of December, Shanghai time; + times after the opening)

* A1 s-01 button, critical, 02 09:00: ack anna +30 s; resolved anna +600 s, handled_by_phone
* A2 s-02 fall, critical, 02 10:00: ack bo +90 s (late); resolved bo +1800 s, caregiver_sent
* A3 s-02 button, critical, 02 21:30: resolved by anna +45 s without an ack, false_alarm
* A9 s-01 button, critical, 02 23:59: ack anna +40 s; called again +100 s; ack bo +130 s;
  resolved bo +500 s, ambulance_called
* A4 s-02 button, critical, 03 02:00: cancelled by the person +20 s (now high); ack bo +50 s;
  resolved bo +300 s, false_alarm
* A5 s-01 inactivity, high, 03 08:30: ack anna +120 s; resolved anna +900 s, other
* A6 s-01 device_offline, medium, 03 09:00: never answered; cleared +280 s, resolved by the
  system +400 s
* A7 s-02 button, critical, 03 19:59: never answered, open (11 min at the report)
* A8 s-01 fall, critical, 03 20:09:30: never answered, open (30 s at the report)

Time to acknowledge is the first answer by a person: the first acknowledgement, or a
resolution without one (A3). A9's first acknowledgement counts, not the one after it was called
again. A4 stays a critical alert though the person's cancel made it high. A8 is still inside
its 60 s: neither met nor missed yet. A7 has missed it.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.model import AlertType, EventRef, Finding, Severity
from alerts.reports import ReportSettings, Shift
from devices.registry import Registry
from tests.unit.test_api_app import Harness, build

ZONE = ZoneInfo("Asia/Shanghai")
BUTTON, FALL = AlertType.EMERGENCY_BUTTON, AlertType.FALL


def at(text: str) -> int:
    """Epoch ms of a wall-clock time in Shanghai (``2026-12-02 09:00:00``)."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZONE).timestamp() * 1000)


SINCE, UNTIL, NOW = at("2026-12-02 00:00:00"), at("2026-12-04 00:00:00"), at(
    "2026-12-03 20:10:00")


class Station:
    """The scripted station: alerts opened, answered and resolved at set times."""

    def __init__(self, api: Harness) -> None:
        self.api = api
        self.ids: dict[str, str] = {}

    def open(self, name: str, when: str, site: str, bed: str, type: AlertType,
             severity: Severity = Severity.CRITICAL) -> int:
        t = at(when)
        event = (EventRef(device=f"dev-{bed}", seq=1, device_ts=t, digest=f"{name}-1",
                          call=True) if type in (BUTTON, FALL) else None)
        [change] = self.api.engine.apply([Finding(
            type=type, site=site, bed=bed, at=t, severity=severity, summary=name,
            episode=f"dev-{bed}" if type is AlertType.DEVICE_OFFLINE else "",
            event=event)], t)
        self.api.engine.commit()
        self.ids[name] = change.alert.id
        return t

    async def post(self, name: str, t: int, action: str, role: str,
                   body: dict[str, Any] | None = None) -> None:
        self.api.now[0] = t
        response = await self.api.client.post(
            f"/api/v1/alerts/{self.ids[name]}/{action}", json=body or {},
            headers=self.api.auth(role))
        assert response.status_code == 200, response.text

    async def acknowledge(self, name: str, t: int, role: str) -> None:
        await self.post(name, t, "acknowledge", role)

    async def resolve(self, name: str, t: int, role: str, outcome: str) -> None:
        await self.post(name, t, "resolve", role, {"note": "done", "outcome": outcome})


@pytest.fixture
async def station(tmp_path: Path) -> Any:
    registry = Registry.from_mapping({"defaults": {"timezone": "Asia/Shanghai"}})
    api = build(tmp_path, registry=registry, reports=ReportSettings(
        shifts=(Shift("day", 8 * 60), Shift("night", 20 * 60)), ack_target_s=60.0))
    for name in ("anna", "bo"):
        api.tokens[name] = api.keys.create(name, "dispatcher", actor="test")[1]
    s = Station(api)
    engine = api.engine
    t = s.open("A1", "2026-12-02 09:00:00", "s-01", "bed-1", BUTTON)
    await s.acknowledge("A1", t + 30_000, "anna")
    await s.resolve("A1", t + 600_000, "anna", "handled_by_phone")
    t = s.open("A2", "2026-12-02 10:00:00", "s-02", "bed-2", FALL)
    await s.acknowledge("A2", t + 90_000, "bo")
    await s.resolve("A2", t + 1_800_000, "bo", "caregiver_sent")
    t = s.open("A3", "2026-12-02 21:30:00", "s-02", "bed-3", BUTTON)
    await s.resolve("A3", t + 45_000, "anna", "false_alarm")
    t = s.open("A9", "2026-12-02 23:59:00", "s-01", "bed-9", BUTTON)
    await s.acknowledge("A9", t + 40_000, "anna")
    again = t + 100_000  # another press: back to open, needs acknowledgement again
    engine.apply([Finding(type=BUTTON, site="s-01", bed="bed-9", at=again,
                          severity=Severity.CRITICAL, event=EventRef(
                              device="dev-bed-9", seq=2, device_ts=again, digest="A9-2",
                              call=True))], again)
    engine.commit()
    await s.acknowledge("A9", t + 130_000, "bo")
    await s.resolve("A9", t + 500_000, "bo", "ambulance_called")
    t = s.open("A4", "2026-12-03 02:00:00", "s-02", "bed-4", BUTTON)
    engine.apply([Finding(type=BUTTON, site="s-02", bed="bed-4", at=t + 20_000,
                          severity=Severity.CRITICAL,
                          evidence={"cancelled_at": t + 20_000})], t + 20_000)
    engine.commit()
    assert engine.get(s.ids["A4"]).severity is Severity.HIGH  # type: ignore[union-attr]
    await s.acknowledge("A4", t + 50_000, "bo")
    await s.resolve("A4", t + 300_000, "bo", "false_alarm")
    t = s.open("A5", "2026-12-03 08:30:00", "s-01", "bed-5", AlertType.INACTIVITY,
               Severity.HIGH)
    await s.acknowledge("A5", t + 120_000, "anna")
    await s.resolve("A5", t + 900_000, "anna", "other")
    t = s.open("A6", "2026-12-03 09:00:00", "s-01", "bed-6", AlertType.DEVICE_OFFLINE,
               Severity.MEDIUM)
    engine.apply([Finding(type=AlertType.DEVICE_OFFLINE, site="s-01", bed="bed-6",
                          at=t + 280_000, severity=Severity.MEDIUM, episode="dev-bed-6",
                          active=False)], t + 280_000)
    engine.tick(t + 400_000)  # clear grace 120 s: resolved by the system
    engine.commit()
    s.open("A7", "2026-12-03 19:59:00", "s-02", "bed-7", BUTTON)
    s.open("A8", "2026-12-03 20:09:30", "s-01", "bed-8", FALL)
    api.now[0] = NOW
    try:
        yield s
    finally:
        await api.client.aclose()


async def report(s: Station, role: str = "viewer", **params: Any) -> Any:
    response = await s.api.client.get("/api/v1/reports/response", headers=s.api.auth(role),
                                      params={"since": SINCE, "until": UNTIL, **params})
    assert response.status_code == 200, response.text
    return response


def stats(group: dict[str, Any]) -> tuple[Any, ...]:
    return (group["alerts"], group["answered"], group["critical"], group["critical_decided"],
            group["critical_within_target"], group["critical_within_target_share"])


async def test_the_report_matches_the_values_computed_by_hand(station: Station) -> None:
    body = (await report(station)).json()
    assert (body["since"], body["until"], body["timezone"]) == (SINCE, UNTIL, "Asia/Shanghai")
    assert body["ack_target_s"] == 60.0
    assert body["shifts"] == [{"name": "day", "start": "08:00"},
                              {"name": "night", "start": "20:00"}]
    totals = body["totals"]
    # Answered: A1 30, A9 40, A3 45, A4 50, A2 90, A5 120 s.
    assert stats(totals) == (9, 6, 7, 6, 4, round(4 / 6, 4))
    assert totals["ack_median_s"] == 47.5  # (45 + 50) / 2
    assert totals["ack_p90_s"] == 120.0  # nearest rank: the 6th of 6
    assert totals["ack_mean_s"] == 62.5  # 375 / 6
    assert totals["ack_max_s"] == 120.0
    # Resolved: A3 45, A4 300, A6 400, A9 500, A1 600, A5 900, A2 1800 s.
    assert totals["resolved"] == 7
    assert totals["resolve_median_s"] == 500.0
    assert totals["resolve_p90_s"] == 1800.0  # the 7th of 7
    assert totals["resolve_mean_s"] == round(4545 / 7, 3)

    days = {d["key"]: d for d in body["by_day"]}
    assert list(days) == ["2026-12-02", "2026-12-03"]
    assert [d["start"] for d in body["by_day"]] == [SINCE, SINCE + 86_400_000]  # local midnights
    assert {g["start"] for g in (*body["by_shift"], *body["by_site"])} == {None}
    assert stats(days["2026-12-02"]) == (4, 4, 4, 4, 3, 0.75)  # A1 A2 A3 A9
    assert days["2026-12-02"]["ack_median_s"] == 42.5  # 30 40 45 90
    assert stats(days["2026-12-03"]) == (5, 2, 3, 2, 1, 0.5)  # A4 A5 A6 A7 A8
    assert days["2026-12-03"]["ack_median_s"] == 85.0  # 50 120

    shifts = {d["key"]: d for d in body["by_shift"]}
    assert list(shifts) == ["day", "night"]
    assert stats(shifts["day"]) == (5, 3, 3, 3, 1, round(1 / 3, 4))  # A1 A2 A5 A6 A7
    assert stats(shifts["night"]) == (4, 3, 4, 3, 3, 1.0)  # A3 A4 A8 A9

    sites = {d["key"]: d for d in body["by_site"]}
    assert stats(sites["s-01"]) == (5, 3, 3, 2, 2, 1.0)  # A1 A5 A6 A8 A9
    assert stats(sites["s-02"]) == (4, 3, 4, 4, 2, 0.5)  # A2 A3 A4 A7

    dispatchers = {d["key"]: d for d in body["by_dispatcher"]}
    assert list(dispatchers) == ["anna", "bo", None]
    assert stats(dispatchers["anna"]) == (4, 4, 3, 3, 3, 1.0)  # A1 A3 A5 A9
    assert dispatchers["anna"]["ack_median_s"] == 42.5  # 30 40 45 120
    assert stats(dispatchers["bo"]) == (2, 2, 2, 2, 1, 0.5)  # A2 A4
    assert stats(dispatchers[None]) == (3, 0, 2, 1, 0, 0.0)  # A6 A7 A8
    assert dispatchers[None]["ack_median_s"] is None

    outcomes = {o["type"]: o for o in body["outcomes"]}
    assert outcomes["emergency_button"]["resolved_by_person"] == 4
    assert outcomes["emergency_button"]["outcomes"] == {
        "ambulance_called": 1, "false_alarm": 2, "handled_by_phone": 1}
    assert outcomes["emergency_button"]["false_alarms"] == 2
    assert outcomes["emergency_button"]["false_alarm_share"] == 0.5
    assert outcomes["fall"]["outcomes"] == {"caregiver_sent": 1}
    assert outcomes["fall"]["false_alarm_share"] == 0.0
    assert outcomes["inactivity"]["outcomes"] == {"other": 1}
    assert outcomes["device_offline"]["resolved_by_system"] == 1
    assert outcomes["device_offline"]["false_alarm_share"] is None

    rows = {r["id"]: r for r in body["alerts"]}
    assert body["alerts_total"] == 9
    a9 = rows[station.ids["A9"]]
    assert (a9["answered_by"], a9["ack_s"], a9["within_target"]) == ("anna", 40.0, True)
    assert (a9["day"], a9["shift"], a9["resolve_s"], a9["outcome"]) == (
        "2026-12-02", "night", 500.0, "ambulance_called")
    a3 = rows[station.ids["A3"]]
    assert (a3["answer"], a3["answered_by"], a3["ack_s"]) == ("resolved", "anna", 45.0)
    a4 = rows[station.ids["A4"]]
    assert (a4["severity"], a4["critical"], a4["within_target"]) == ("high", True, True)
    assert rows[station.ids["A7"]]["within_target"] is False
    assert rows[station.ids["A8"]]["within_target"] is None
    a6 = rows[station.ids["A6"]]
    assert (a6["answer"], a6["resolved_by"], a6["resolve_s"]) == (None, "system", 400.0)


async def test_the_csv_tables_carry_the_same_figures(station: Station) -> None:
    response = await report(station, format="csv", table="alerts")
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 9
    a1 = next(r for r in rows if r["id"] == station.ids["A1"])
    assert (a1["ack_s"], a1["within_target"], a1["shift"], a1["day"]) == (
        "30.0", "true", "day", "2026-12-02")
    assert a1["opened_at_local"] == "2026-12-02 09:00:00"
    days = list(csv.DictReader(io.StringIO(
        (await report(station, format="csv", table="days")).text)))
    assert [(d["key"], d["critical_within_target_share"]) for d in days] == [
        ("2026-12-02", "0.75"), ("2026-12-03", "0.5")]
    outcomes = list(csv.DictReader(io.StringIO(
        (await report(station, format="csv", table="outcomes")).text)))
    assert {(o["type"], o["outcome"], o["count"]) for o in outcomes} >= {
        ("emergency_button", "false_alarm", "2"), ("fall", "caregiver_sent", "1")}


async def test_a_site_filter_and_the_default_period(station: Station) -> None:
    body = (await report(station, site="s-02")).json()
    assert stats(body["totals"]) == (4, 3, 4, 4, 2, 0.5)
    response = await station.api.client.get("/api/v1/reports/response",
                                            headers=station.api.auth("viewer"))
    recent = response.json()  # the 7 days up to now
    assert (recent["since"], recent["until"]) == (NOW - 7 * 86_400_000, NOW)
    assert recent["totals"]["alerts"] == 9


@pytest.mark.parametrize(("params", "status"), [
    ({"since": UNTIL, "until": SINCE}, 400),
    ({"since": SINCE - 400 * 86_400_000, "until": UNTIL}, 400),
    ({"format": "xml"}, 422), ({"table": "nope"}, 422), ({"sinse": 1}, 422)])
async def test_bad_periods_and_formats_are_refused(station: Station, params: dict[str, Any],
                                                   status: int) -> None:
    response = await station.api.client.get("/api/v1/reports/response", params=params,
                                            headers=station.api.auth("viewer"))
    assert response.status_code == status, response.text


async def test_every_key_role_reads_it_and_no_key_does_not(station: Station) -> None:
    for role in ("viewer", "dispatcher", "admin"):
        await report(station, role)
    response = await station.api.client.get("/api/v1/reports/response")
    assert response.status_code == 401


def _histogram(api: Harness, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    registry = api.ctx.metrics
    assert registry is not None
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_prometheus_histograms_time_each_first_answer_and_resolution(
        tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    api = build(tmp_path, metrics=CollectorRegistry())
    try:
        s = Station(api)
        t = s.open("A1", "2026-12-02 09:00:00", "s-01", "bed-1", BUTTON)
        await s.acknowledge("A1", t + 30_000, "dispatcher")
        again = t + 100_000
        api.engine.apply([Finding(type=BUTTON, site="s-01", bed="bed-1", at=again,
                                  severity=Severity.CRITICAL, event=EventRef(
                                      device="dev-bed-1", seq=2, device_ts=again,
                                      digest="A1-2", call=True))], again)
        api.engine.commit()
        await s.acknowledge("A1", t + 130_000, "dispatcher")
        await s.resolve("A1", t + 600_000, "dispatcher", "handled_by_phone")
        t = s.open("A3", "2026-12-02 21:30:00", "s-02", "bed-3", BUTTON)
        await s.resolve("A3", t + 45_000, "dispatcher", "false_alarm")
        count = _histogram(api, "homecare_alert_acknowledge_seconds_count")
        total = _histogram(api, "homecare_alert_acknowledge_seconds_sum")
        key = (("severity", "critical"), ("type", "emergency_button"))
        assert count[key] == 2  # A1's first acknowledgement and A3's resolution
        assert math.isclose(total[key], 75.0)
        resolved = _histogram(api, "homecare_alert_resolve_seconds_count")
        assert resolved[(("by", "person"), ("severity", "critical"),
                         ("type", "emergency_button"))] == 2
        within = _histogram(api, "homecare_alert_acknowledge_seconds_bucket")
        assert within[(("le", "60.0"), *key)] == 2
    finally:
        await api.client.aclose()


def test_shifts_and_the_target_are_settings_and_a_bad_shift_stops_the_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import Settings, load
    from gateway.errors import ConfigError

    assert Settings().report_settings() == ReportSettings()
    assert [(s.name, s.start) for s in ReportSettings().shifts] == [
        ("day", "08:00"), ("night", "20:00")]
    config = tmp_path / "gateway.toml"
    config.write_text('[report]\nshifts = ["early=06:00", "late=14:00", "night=22:00"]\n'
                      "ack_target_s = 30\n", encoding="utf-8")
    loaded = load(config).report_settings()
    assert [s.name for s in loaded.shifts] == ["early", "late", "night"]
    assert loaded.ack_target_s == 30.0
    assert loaded.shift_at(5 * 60) == "night"
    monkeypatch.setenv("HOMECARE_REPORT_SHIFTS", "night=20:00,day=08:00")
    assert [s.name for s in load(None).report_settings().shifts] == ["day", "night"]
    for bad in ("day=8:00", "Day=08:00", "day=08:00,day=20:00", "a=08:00,b=08:00", ""):
        monkeypatch.setenv("HOMECARE_REPORT_SHIFTS", bad)
        with pytest.raises(ConfigError, match="report_shifts"):
            load(None)


async def test_day_and_shift_are_the_sites_zone_and_the_rosters_shifts(tmp_path: Path) -> None:
    """Issue #13 (a verifier's defect): a press at 04:30 in New York, which the roster paged as
    the night shift of 30 November, was reported at the station's 17:30, day shift."""
    from alerts.roster import Roster
    from alerts.rosterstore import RosterStore

    registry = Registry.from_mapping({"defaults": {"timezone": "Asia/Shanghai"},
                                      "sites": {"ny-01": {"timezone": "America/New_York"}}})
    roster = Roster.from_mapping({
        "staff": [{"id": "anna", "name": "Anna", "role": "dispatcher"}],
        "shifts": [{"name": "early", "start": "07:00"}, {"name": "late", "start": "15:00"},
                   {"name": "nights", "start": "23:00"}],
        "duty": [{"site": "*", "shift": "nights", "dispatchers": ["anna"]}]})
    api = build(tmp_path, registry=registry, oncall=RosterStore(tmp_path / "oncall.json",
                                                                seed=roster),
                reports=ReportSettings(shifts=(Shift("day", 8 * 60), Shift("night", 20 * 60))))
    s = Station(api)
    new_york = ZoneInfo("America/New_York")
    press = int(datetime(2026, 12, 1, 4, 30, 58, tzinfo=new_york).timestamp() * 1000)
    assert press == at("2026-12-01 17:30:58")  # the station's time
    paged = roster.on_duty("ny-01", press, new_york)
    assert (paged.shift, paged.date) == ("nights", "2026-11-30")
    s.open("NY", "2026-12-01 17:30:58", "ny-01", "bed-1", BUTTON)
    s.open("SH", "2026-12-01 17:30:58", "sh-01", "bed-1", BUTTON)  # the registry's default zone
    api.now[0] = press + 3_600_000
    try:
        response = await api.client.get(
            "/api/v1/reports/response", headers=api.auth("viewer"),
            params={"since": at("2026-11-30 00:00:00"), "until": at("2026-12-03 00:00:00")})
        assert response.status_code == 200, response.text
        body = response.json()
        rows = {r["site"]: r for r in body["alerts"]}
        assert (rows["ny-01"]["opened_at_local"], rows["ny-01"]["day"],
                rows["ny-01"]["shift"]) == ("2026-12-01 04:30:58", "2026-12-01", "nights")
        assert rows["ny-01"]["shift_date"] == "2026-11-30"  # the night the roster paged
        assert (rows["sh-01"]["opened_at_local"], rows["sh-01"]["day"], rows["sh-01"]["shift"],
                rows["sh-01"]["shift_date"]) == (
            "2026-12-01 17:30:58", "2026-12-01", "late", "2026-12-01")
        assert body["shifts"] == [{"name": "early", "start": "07:00"},
                                  {"name": "late", "start": "15:00"},
                                  {"name": "nights", "start": "23:00"}]
        assert [(g["key"], g["alerts"]) for g in body["by_shift"]] == [
            ("early", 0), ("late", 1), ("nights", 1)]
        csv_rows = list(csv.DictReader(io.StringIO((await api.client.get(
            "/api/v1/reports/response", headers=api.auth("viewer"),
            params={"since": at("2026-11-30 00:00:00"), "until": at("2026-12-03 00:00:00"),
                    "format": "csv", "table": "alerts"})).text)))
        assert {(r["site"], r["shift"], r["shift_date"]) for r in csv_rows} == {
            ("ny-01", "nights", "2026-11-30"), ("sh-01", "late", "2026-12-01")}
    finally:
        await api.client.aclose()
