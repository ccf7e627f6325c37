"""Bed routes in process: registry beds with live device state, recent values, series from
memory or the database (with its errors as 502/503), and the alert summaries (storms,
unregistered devices) that list a bed counted and named on it until resolved."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerts.api._beds import MAX_UNHEARD_DEVICES
from alerts.errors import HistoryError, HistoryFailed, HistoryUnavailable
from alerts.livestate import LiveState
from alerts.model import AlertType, Finding, Severity
from alerts.storms import AlertStorms
from devices.codec import Codec
from devices.registry import Registry
from gateway.config import Settings
from gateway.runtime import Gateway
from gateway.tsdb.history import flux, influxql
from tests.inprocess import API_KEY
from tests.unit.test_api_app import T0, Harness, api, build

__all__ = ["api"]

REGISTRY = {
    "defaults": {"heartbeat_s": 60, "offline_factor": 2},
    "sites": {"site-01": {"beds": {
        "bed-0001": {"person": "p-3f9a1c", "devices": {
            "btn-0001": {"kind": "button"}, "fs-0001": {"kind": "fall", "heartbeat_s": 30}}},
        "bed-0002": {}}}},
}


def vitals(bed: str, seq: int, t: int, hr: float) -> tuple[str, str]:
    return (f"homecare/v1/site-01/{bed}/fall/fs-{bed[-4:]}/telemetry",
            f'{{"ts":{t},"seq":{seq},"in_bed":true,"heart_rate":{hr}}}')


async def test_beds_list_registry_and_auto_registered_beds_with_device_state(
        tmp_path: Path) -> None:
    api = build(tmp_path, registry=Registry.from_mapping(REGISTRY))
    api.feed(("homecare/v1/site-01/bed-0001/button/btn-0001/status",
              f'{{"ts":{T0},"seq":1,"state":"online","battery":12,"fw":"2.1.0",'
              '"heartbeat_s":600}'),
             vitals("bed-0001", 1, T0, 68.5),
             ("homecare/v1/site-02/bed-0099/audio/au-0099/telemetry",
              f'{{"ts":{T0},"seq":1,"level_db":41.5}}'))
    api.open_alert(site="site-01", bed="bed-0001")
    api.now[0] = T0 + 90_000  # fs-0001 silent for 90 s > 2 x its 30 s heartbeat
    body = (await api.client.get("/api/v1/beds", headers=api.auth("viewer"))).json()
    beds = {(b["site"], b["bed"]): b for b in body["items"]}
    assert list(beds) == [("site-01", "bed-0001"), ("site-01", "bed-0002"),
                          ("site-02", "bed-0099")]
    bed = beds[("site-01", "bed-0001")]
    assert (bed["person"], bed["auto_registered"], bed["open_alerts"]) == ("p-3f9a1c", False, 1)
    devices = {d["device"]: d for d in bed["devices"]}
    assert devices["btn-0001"] == {
        "device": "btn-0001", "kind": "button", "state": "online", "reported_state": "online",
        "battery": 12.0, "fw": "2.1.0", "heartbeat_s": 600.0, "last_seen": T0,
        "status_at": T0, "registered": True, "auto_registered": False,
        "clock_offset_s": 0.0, "clock_wrong": False}
    assert devices["fs-0001"]["state"] == "offline"
    assert devices["fs-0001"]["heartbeat_s"] == 30.0
    assert bed["latest"]["heart_rate"] == {"t": T0, "value": 68.5}
    assert beds[("site-01", "bed-0002")]["devices"] == []
    auto = beds[("site-02", "bed-0099")]
    assert auto["auto_registered"] is True
    assert auto["devices"][0]["auto_registered"] is True
    await api.client.aclose()


async def test_a_bed_shows_a_last_will_at_once_and_each_device_clock(api: Harness) -> None:
    status = "homecare/v1/site-01/bed-0001/fall/fs-0001/status"
    api.feed((status, f'{{"ts":{T0 - 5_000},"seq":1,"state":"online","heartbeat_s":300}}'),
             vitals("bed-0001", 2, T0 - 100, 66.0))
    # The broker publishes the will: its ts is the time the sensor connected, hours ago.
    api.now[0] = T0 + 2_000
    api.feed((status, f'{{"ts":{T0 - 3 * 3_600_000},"seq":0,"state":"offline"}}'))
    api.feed(("homecare/v1/site-01/bed-0001/audio/au-0001/telemetry",
              f'{{"ts":{T0 // 1000},"seq":1,"level_db":41.5}}'))
    body = (await api.client.get("/api/v1/beds/site-01/bed-0001",
                                 headers=api.auth("viewer"))).json()
    devices = {d["device"]: d for d in body["devices"]}
    fall = devices["fs-0001"]
    assert (fall["state"], fall["reported_state"]) == ("offline", "offline")
    assert (fall["clock_wrong"], fall["clock_offset_s"]) == (False, -0.1)
    sound = devices["au-0001"]
    assert sound["clock_wrong"] is True
    assert sound["clock_offset_s"] == (T0 // 1000 - T0 - 2_000) / 1000


async def test_beds_are_paged_by_site_and_bed(api: Harness) -> None:
    for i in range(5):
        api.feed(vitals(f"bed-{i:04d}", 1, T0, 60 + i))
    first = (await api.client.get("/api/v1/beds", params={"limit": 2},
                                  headers=api.auth("viewer"))).json()
    assert [b["bed"] for b in first["items"]] == ["bed-0000", "bed-0001"]
    assert first["next_cursor"] == "site-01/bed-0001"
    rest = (await api.client.get("/api/v1/beds", params={"cursor": first["next_cursor"]},
                                 headers=api.auth("viewer"))).json()
    assert [b["bed"] for b in rest["items"]] == ["bed-0002", "bed-0003", "bed-0004"]
    assert rest["next_cursor"] is None
    other = (await api.client.get("/api/v1/beds", params={"site": "site-02"},
                                  headers=api.auth("viewer"))).json()
    assert other["items"] == []


async def test_one_bed_has_recent_values_and_its_open_alerts(api: Harness) -> None:
    for i in range(120):
        api.feed(vitals("bed-0001", i, T0 + i * 60_000, 60 + i % 10), received=T0 + i * 60_000)
    api.open_alert(bed="bed-0001")
    api.open_alert(bed="bed-0002")
    response = await api.client.get("/api/v1/beds/site-01/bed-0001",
                                    params={"recent_minutes": 30},
                                    headers=api.auth("viewer"))
    assert response.status_code == 200, response.text  # a 422 once in a fresh run, 2026-12-03
    bed = response.json()
    assert len(bed["recent"]["heart_rate"]) == 31
    assert bed["recent"]["heart_rate"][-1] == {"t": T0 + 119 * 60_000, "value": 69.0}
    assert [a["bed"] for a in bed["alerts"]] == ["bed-0001"]
    missing = await api.client.get("/api/v1/beds/site-01/bed-9999",
                                   headers=api.auth("viewer"))
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


async def test_series_come_from_memory_when_it_covers_the_range(api: Harness) -> None:
    for i in range(30):
        api.feed(vitals("bed-0001", i, T0 + i * 60_000, 60 + i), received=T0 + i * 60_000)
    api.now[0] = T0 + 30 * 60_000
    body = (await api.client.get("/api/v1/beds/site-01/bed-0001/series",
                                 params={"metric": "heart_rate", "since": T0 + 600_000,
                                         "until": T0 + 900_000},
                                 headers=api.auth("viewer"))).json()
    assert (body["source"], body["complete"]) == ("memory", True)
    assert [p["value"] for p in body["points"]] == [70.0, 71.0, 72.0, 73.0, 74.0]
    default = (await api.client.get("/api/v1/beds/site-01/bed-0001/series",
                                    params={"metric": "heart_rate", "limit": 3},
                                    headers=api.auth("viewer"))).json()
    assert [p["value"] for p in default["points"]] == [87.0, 88.0, 89.0]
    older = (await api.client.get("/api/v1/beds/site-01/bed-0001/series",
                                  params={"metric": "in_bed", "since": T0 - 86_400_000},
                                  headers=api.auth("viewer"))).json()
    assert (older["source"], older["complete"]) == ("memory", False), \
        "no database configured: memory, flagged incomplete"
    bad = await api.client.get("/api/v1/beds/site-01/bed-0001/series",
                               params={"metric": "zone"}, headers=api.auth("viewer"))
    assert bad.status_code == 422
    reversed_range = await api.client.get(
        "/api/v1/beds/site-01/bed-0001/series",
        params={"metric": "heart_rate", "since": T0 + 10, "until": T0},
        headers=api.auth("viewer"))
    assert reversed_range.status_code == 400


class FakeHistory:
    name = "fake"

    def __init__(self, error: HistoryError | None = None) -> None:
        self.error = error
        self.asked: list[tuple[str, str, str, int, int, int]] = []

    async def series(self, site: str, bed: str, metric: str, *, since: int, until: int,
                     max_points: int) -> list[tuple[int, float]]:
        self.asked.append((site, bed, metric, since, until, max_points))
        if self.error is not None:
            raise self.error
        return [(since, 1.0), (since + 1000, 2.0)]

    async def close(self) -> None:
        pass


async def test_series_older_than_memory_come_from_the_database(tmp_path: Path) -> None:
    history = FakeHistory()
    api = build(tmp_path, history=history)
    api.feed(vitals("bed-0001", 1, T0, 60))
    week_ago = T0 - 7 * 86_400_000
    body = (await api.client.get("/api/v1/beds/site-01/bed-0001/series",
                                 params={"metric": "heart_rate", "since": week_ago,
                                         "limit": 500},
                                 headers=api.auth("viewer"))).json()
    assert body["source"] == "influxdb"
    assert body["points"] == [{"t": week_ago, "value": 1.0}, {"t": week_ago + 1000,
                                                               "value": 2.0}]
    assert history.asked == [("site-01", "bed-0001", "heart_rate", week_ago, T0 + 1, 500)]
    await api.client.aclose()


async def test_database_errors_are_502_or_503_json(tmp_path: Path) -> None:
    for error, status in [(HistoryUnavailable("time-series database unreachable"), 503),
                          (HistoryFailed("time-series database answered HTTP 500"), 502)]:
        api = build(tmp_path / str(status), history=FakeHistory(error))
        api.feed(vitals("bed-0001", 1, T0, 60))
        response = await api.client.get(
            "/api/v1/beds/site-01/bed-0001/series",
            params={"metric": "heart_rate", "since": T0 - 7 * 86_400_000},
            headers=api.auth("viewer"))
        assert response.status_code == status
        assert response.json() == {"error": "unavailable" if status == 503 else "bad_gateway",
                                   "detail": str(error)}
        await api.client.aclose()


def test_history_queries_downsample_and_quote() -> None:
    q = influxql("site-01", "bed-0001", "heart_rate", since=0, until=3_600_000,
                 max_points=60, rp="week")
    assert q == ('SELECT mean("heart_rate") FROM "week"."vitals" WHERE "site" = \'site-01\''
                 " AND \"bed\" = 'bed-0001' AND time >= 0ms AND time < 3600000ms"
                 " GROUP BY time(60000ms) fill(none)")
    assert "last(\"presence\")" in influxql("s", "b", "presence", since=0, until=10,
                                            max_points=5)
    f = flux('buck"et', "s", "b", "in_bed", since=1_000, until=2_000, max_points=10)
    assert 'from(bucket: "buck\\"et")' in f
    assert "range(start: 1970-01-01T00:00:01.000Z, stop: 1970-01-01T00:00:02.000Z)" in f
    assert "fn: last" in f
    assert 'r._measurement == "vitals" and r._field == "in_bed"' in f


def presence(bed: str, seq: int, t: int, present: bool) -> tuple[str, str]:
    return (f"homecare/v1/site-01/{bed}/infrared/ir-{bed[-4:]}/telemetry",
            f'{{"ts":{t},"seq":{seq},"presence":{str(present).lower()},"motion":0,'
            f'"people":{int(present)}}}')


async def test_a_bed_says_since_when_nobody_is_home(tmp_path: Path) -> None:
    """Issue #12: "away since" on the bed page, once the infrared has seen nobody for half
    an hour; not for a moment in the bathroom, and gone when someone is back."""
    api = build(tmp_path, registry=Registry.from_mapping(REGISTRY))
    minute = 60_000
    left = T0 + 10 * minute
    api.feed(*[presence("bed-0001", i, T0 + i * minute, T0 + i * minute < left)
               for i in range(20)], received=T0 + 19 * minute)

    async def away() -> int | None:
        body = (await api.client.get("/api/v1/beds/site-01/bed-0001",
                                     headers=api.auth("viewer"))).json()
        value: int | None = body["away_since"]
        return value

    assert await away() is None, "nobody for 10 minutes is not away yet"
    api.feed(*[presence("bed-0001", i, T0 + i * minute, False) for i in range(20, 45)],
             received=T0 + 44 * minute)
    assert await away() == left
    listed = (await api.client.get("/api/v1/beds", headers=api.auth("viewer"))).json()
    assert {b["bed"]: b["away_since"] for b in listed["items"]}["bed-0001"] == left
    api.feed(presence("bed-0001", 45, T0 + 45 * minute, True), received=T0 + 45 * minute)
    assert await away() is None
    await api.client.aclose()


async def test_bed_pages_merge_registry_and_live_beds_without_walking_every_bed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #17 (fresh verifier): after a flood of made-up ids every /beds call sorted all
    beds on the event loop (1.2 s at 100,000). Pages now come from indexes kept sorted: the
    route never walks the registry's or the live state's beds, and a page of the union of
    registry beds and beds only live state holds (none here are fed through the registry)
    is the same as paging the sorted union by hand."""
    registry = Registry.from_mapping({"sites": {
        "s1": {"beds": {f"r{i:02d}": {} for i in range(0, 12, 3)}},
        "s3": {"beds": {"r00": {}}}}})
    api = build(tmp_path, registry=registry)
    codec = Codec()
    live_only = [("s1", f"r{i:02d}") for i in range(0, 12, 2)] + [("s2", "x1")]
    messages = [codec.decode(f"homecare/v1/{s}/{b}/audio/au-{s}-{b}/telemetry",
                             f'{{"ts":{T0},"seq":1,"level_db":40}}'.encode())
                for s, b in live_only]
    api.ctx.live.accept(messages, [T0] * len(messages))  # type: ignore[arg-type]
    everything = sorted({(b.site, b.id) for b in registry.beds()} | set(live_only))

    def walked(*_: object) -> None:
        raise AssertionError("the bed list walked every bed")
    monkeypatch.setattr(Registry, "beds", walked)
    monkeypatch.setattr(LiveState, "beds", walked)
    for site in (None, "s1", "s2"):
        expected = [k for k in everything if site is None or k[0] == site]
        for limit in (1, 2, 3, 100):
            got: list[tuple[str, str]] = []
            cursor = None
            while True:
                params: dict[str, object] = {"limit": limit}
                if site is not None:
                    params["site"] = site
                if cursor is not None:
                    params["cursor"] = cursor
                body = (await api.client.get("/api/v1/beds", params=params,
                                             headers=api.auth("viewer"))).json()
                got += [(b["site"], b["bed"]) for b in body["items"]]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert got == expected, (site, limit)
    await api.client.aclose()


async def test_a_flood_of_made_up_devices_on_a_bed_is_counted_not_listed(
        tmp_path: Path) -> None:
    """Issue #17 (fresh verifier): 50,000 made-up devices on one listed bed made its page
    12 MB. Listed devices and those live state holds are shown; the others registered on first
    sight are capped and counted."""
    api = build(tmp_path, registry=Registry.from_mapping(REGISTRY))
    made_up = [(f"homecare/v1/site-01/bed-0001/infrared/ir{i:05d}/status",
                f'{{"ts":{T0},"seq":1,"state":"online","battery":80}}') for i in range(2000)]
    api.feed(*made_up)
    held = len(api.ctx.live.devices_of("site-01", "bed-0001"))
    assert 0 < held <= api.ctx.live.max_devices_per_bed
    for path in ("/api/v1/beds", "/api/v1/beds/site-01/bed-0001"):
        body = (await api.client.get(path, headers=api.auth("viewer"))).json()
        bed = body if "recent" in body else body["items"][0]
        shown = {d["device"] for d in bed["devices"]}
        assert {"btn-0001", "fs-0001"} <= shown, "the registry file's devices are always shown"
        live = {d.device for d in api.ctx.live.devices_of("site-01", "bed-0001")}
        assert live <= shown, "so are the devices live state holds"
        assert len(shown) == 2 + held + MAX_UNHEARD_DEVICES
        assert bed["devices_not_shown"] == 2002 - len(shown)
        assert [d["device"] for d in bed["devices"]] == sorted(shown)
    quiet = (await api.client.get("/api/v1/beds/site-01/bed-0002",
                                  headers=api.auth("viewer"))).json()
    assert quiet["devices_not_shown"] == 0
    await api.client.aclose()


async def test_a_bed_the_registry_forgot_is_still_shown_as_registered_on_first_sight(
        tmp_path: Path) -> None:
    """Registrations on first sight are a bounded memo (issue 17): a bed live state still
    holds after the memo forgot it was shown as a bed of the registry file
    (``auto_registered: false``)."""
    registry = Registry.from_mapping(REGISTRY)
    registry.first_sight_max = 1
    api = build(tmp_path, registry=registry)
    api.feed(("homecare/v1/site-02/bed-0098/audio/au-0098/telemetry",
              f'{{"ts":{T0},"seq":1,"level_db":41.5}}'),
             ("homecare/v1/site-02/bed-0099/audio/au-0099/telemetry",
              f'{{"ts":{T0},"seq":1,"level_db":41.5}}'))
    assert registry.bed("site-02", "bed-0098") is None  # forgotten by the registry
    body = (await api.client.get("/api/v1/beds/site-02/bed-0098",
                                 headers=api.auth("viewer"))).json()
    assert body["auto_registered"] is True
    assert [(d["device"], d["registered"], d["auto_registered"]) for d in body["devices"]] == [
        ("au-0098", True, True)]
    listed = (await api.client.get("/api/v1/beds/site-01/bed-0001",
                                   headers=api.auth("viewer"))).json()
    assert listed["auto_registered"] is False
    assert {d["device"]: d["auto_registered"] for d in listed["devices"]} == {
        "btn-0001": False, "fs-0001": False}
    await api.client.aclose()


STORM_REGISTRY = {"sites": {"site-01": {"beds": {
    f"bed-000{n}": {"devices": {f"ir-000{n}": {"kind": "infrared"}}} for n in (1, 2, 3)}}}}


def _offline(site: str, bed: str, device: str, *, active: bool = True) -> Finding:
    return Finding(type=AlertType.DEVICE_OFFLINE, site=site, bed=bed, at=T0,
                   severity=Severity.MEDIUM, episode=device, active=active,
                   summary=f"{device} offline")


def _fold(api: Harness, storms: AlertStorms, findings: list[Finding]) -> None:
    """As the gateway's alerting stage does: through the storms, into the engine, stored."""
    api.engine.apply(storms.filter(findings, api.now[0]), api.now[0])
    api.engine.commit()


async def _bed_views(api: Harness, *beds: str) -> dict[str, tuple[dict[str, Any],
                                                                  dict[str, Any]]]:
    """Each bed's entry in the bed list and its own page."""
    listed = (await api.client.get("/api/v1/beds", headers=api.auth("viewer"))).json()
    entries = {b["bed"]: b for b in listed["items"]}
    return {bed: (entries[bed], (await api.client.get(
        f"/api/v1/beds/site-01/{bed}", headers=api.auth("viewer"))).json()) for bed in beds}


async def test_a_bed_in_an_alert_storm_shows_the_summary_until_it_is_resolved(
        tmp_path: Path) -> None:
    """A device offline only inside a storm's summary left its bed at ``open_alerts: 0``."""
    registry = Registry.from_mapping(STORM_REGISTRY)
    storms = AlertStorms(registry, threshold=1)
    api = build(tmp_path, registry=registry, storms=storms)
    try:
        _fold(api, storms, [_offline("site-01", "bed-0001", "ir-0001"),
                            _offline("site-01", "bed-0002", "ir-0002")])
        [summary] = api.engine.open_alerts()
        assert (summary.bed, summary.evidence["members"]) == ("", ["bed-0001/ir-0001",
                                                                  "bed-0002/ir-0002"])
        ref = {"id": summary.id, "type": "device_offline", "severity": "medium",
               "status": "open", "site": "site-01", "opened_at": T0,
               "summary": "Alert storm on site site-01: device offline on 2 devices"}
        views = await _bed_views(api, "bed-0001", "bed-0002", "bed-0003")
        for bed in ("bed-0001", "bed-0002"):
            entry, page = views[bed]
            assert (entry["open_alerts"], entry["summaries"]) == (1, [ref]), bed
            assert (page["open_alerts"], page["summaries"], page["alerts"]) == (1, [ref], [])
        entry, page = views["bed-0003"]
        assert (entry["open_alerts"], entry["summaries"], page["summaries"]) == (0, [], [])
        # Acknowledged, it is still unresolved: still the bed's, as the bed's own alerts are.
        acked = await api.client.post(f"/api/v1/alerts/{summary.id}/acknowledge", json={},
                                      headers=api.auth("dispatcher"))
        assert acked.status_code == 200
        entry, page = (await _bed_views(api, "bed-0001"))["bed-0001"]
        assert (entry["open_alerts"], [s["status"] for s in page["summaries"]]) == (
            1, ["acknowledged"])
        resolved = await api.client.post(f"/api/v1/alerts/{summary.id}/resolve",
                                         json={"note": "power back", "outcome": "other"},
                                         headers=api.auth("dispatcher"))
        assert resolved.status_code == 200
        for bed, (entry, page) in (await _bed_views(api, "bed-0001", "bed-0002")).items():
            assert (entry["open_alerts"], entry["summaries"]) == (0, []), bed
            assert (page["open_alerts"], page["summaries"]) == (0, []), bed
    finally:
        await api.client.aclose()


async def test_a_bed_leaves_the_summary_when_its_device_comes_back(tmp_path: Path) -> None:
    registry = Registry.from_mapping(STORM_REGISTRY)
    storms = AlertStorms(registry, threshold=1)
    api = build(tmp_path, registry=registry, storms=storms)
    try:
        _fold(api, storms, [_offline("site-01", f"bed-000{n}", f"ir-000{n}") for n in (1, 2, 3)])
        _fold(api, storms, [_offline("site-01", "bed-0002", "ir-0002", active=False)])
        views = await _bed_views(api, "bed-0001", "bed-0002")
        assert views["bed-0001"][0]["open_alerts"] == 1
        assert (views["bed-0002"][0]["open_alerts"], views["bed-0002"][1]["summaries"]) == (
            0, [])
    finally:
        await api.client.aclose()


async def test_an_unregistered_devices_summary_counts_for_the_listed_beds(
        tmp_path: Path) -> None:
    """"Unregistered devices on site X" lists beds the bed list shows: a made-up device on a
    listed bed, and a bed registered on first sight."""
    registry = Registry.from_mapping(STORM_REGISTRY)
    storms = AlertStorms(registry)
    api = build(tmp_path, registry=registry, storms=storms)
    try:
        api.feed(("homecare/v1/site-01/bed-0009/audio/au-0009/telemetry",
                  f'{{"ts":{T0},"seq":1,"level_db":41.5}}'))
        _fold(api, storms, [_offline("site-01", "bed-0001", "made-up-1"),
                            _offline("site-01", "bed-0009", "au-0009")])
        [summary] = api.engine.open_alerts()
        assert summary.summary == "2 unregistered devices on site site-01: device offline"
        listed = (await api.client.get("/api/v1/beds", headers=api.auth("viewer"))).json()
        counts = {b["bed"]: (b["open_alerts"], [s["id"] for s in b["summaries"]])
                  for b in listed["items"]}
        assert counts == {"bed-0001": (1, [summary.id]), "bed-0002": (0, []),
                          "bed-0003": (0, []), "bed-0009": (1, [summary.id])}
    finally:
        await api.client.aclose()


async def test_the_gateways_api_shows_the_summaries_its_alerting_stage_folds(
        tmp_path: Path) -> None:
    """The gateway hands its alerting stage's storms to the API it serves."""
    registry = Registry.from_mapping(STORM_REGISTRY)
    gateway = Gateway(Settings(data_dir=tmp_path / "data", mqtt_url="mqtt://127.0.0.1:9",
                               api_key=API_KEY), registry=registry, serve_http=False)
    try:
        now = int(time.time() * 1000)
        gateway.alerting.apply([Finding(
            type=AlertType.DEVICE_OFFLINE, site="site-01", bed="bed-0002", at=now,
            severity=Severity.MEDIUM, episode="made-up-7")], now)
        gateway.alerts.commit()
        [summary] = gateway.alerts.open_alerts()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway._http_app()),
                                     base_url="http://testserver") as client:
            page = (await client.get("/api/v1/beds/site-01/bed-0002", headers={
                "Authorization": f"Bearer {API_KEY}"})).json()
        assert (page["open_alerts"], [s["id"] for s in page["summaries"]]) == (1, [summary.id])
    finally:
        gateway._close_stores()


def _dark(site: str, beds: list[str], *, omitted: int = 0, active: bool = True) -> Finding:
    """A ``site_offline`` finding as the offline detector raises it (gateway.detect._sites)."""
    return Finding(type=AlertType.SITE_OFFLINE, site=site, bed="", at=T0,
                   severity=Severity.HIGH, active=active,
                   summary=f"site {site} dark: {len(beds) + omitted} beds",
                   evidence={"beds": beds, "beds_count": len(beds) + omitted,
                             "beds_omitted": omitted, "devices": 9, "silent": 9,
                             "last_wills": 0})


async def test_a_dark_sites_alert_shows_on_the_beds_it_names_until_it_is_resolved(
        tmp_path: Path) -> None:
    """A tester: a whole site dark opened one ``site_offline`` alert naming its beds, and
    every one of them said ``open_alerts: 0, summaries: []``, its devices offline."""
    registry = Registry.from_mapping(STORM_REGISTRY)
    api = build(tmp_path, registry=registry, storms=AlertStorms(registry))
    try:
        api.engine.apply([_dark("site-01", ["bed-0001", "bed-0002"])], api.now[0])
        api.engine.commit()
        [dark] = api.engine.open_alerts()
        views = await _bed_views(api, "bed-0001", "bed-0002", "bed-0003")
        for bed in ("bed-0001", "bed-0002"):
            entry, page = views[bed]
            assert entry["open_alerts"] == page["open_alerts"] == 1, bed
            assert [(s["id"], s["type"]) for s in page["summaries"]] == [
                (dark.id, "site_offline")]
        entry, page = views["bed-0003"]  # still heard: not named
        assert (entry["open_alerts"], page["summaries"]) == (0, [])
        resolved = await api.client.post(f"/api/v1/alerts/{dark.id}/resolve",
                                         json={"note": "power back", "outcome": "other"},
                                         headers=api.auth("dispatcher"))
        assert resolved.status_code == 200
        for bed, (entry, _) in (await _bed_views(api, "bed-0001", "bed-0002")).items():
            assert (entry["open_alerts"], entry["summaries"]) == (0, []), bed
    finally:
        await api.client.aclose()


async def test_a_dark_site_naming_only_some_of_its_beds_shows_on_every_bed_of_the_site(
        tmp_path: Path) -> None:
    # The alert names the first 50 beds and counts the rest: which of the others are dark is
    # not known, so every bed of the site shows it rather than one dark bed looking calm.
    registry = Registry.from_mapping(STORM_REGISTRY)
    api = build(tmp_path, registry=registry, storms=AlertStorms(registry))
    try:
        api.engine.apply([_dark("site-01", ["bed-0001"], omitted=60)], api.now[0])
        api.engine.commit()
        views = await _bed_views(api, "bed-0001", "bed-0002", "bed-0003")
        assert [views[b][0]["open_alerts"] for b in sorted(views)] == [1, 1, 1]
    finally:
        await api.client.aclose()


async def test_the_beds_of_made_up_sites_gone_dark_show_their_summary(tmp_path: Path) -> None:
    # A tester: made-up sites gone dark are one "site offline on N unregistered sites"
    # summary (its members are sites), and their beds said open_alerts 0, devices offline.
    registry = Registry.from_mapping(STORM_REGISTRY)
    storms = AlertStorms(registry)
    api = build(tmp_path, registry=registry, storms=storms)
    try:
        for site in ("mk-1", "mk-2", "mk-3"):
            api.feed((f"homecare/v1/{site}/ubed-1/infrared/ir-{site}/telemetry",
                      f'{{"ts":{T0},"seq":1,"presence":true}}'))
        _fold(api, storms, [_dark("mk-1", ["ubed-1"]), _dark("mk-2", ["ubed-1"])])
        [summary] = [a for a in api.engine.open_alerts() if a.evidence.get("summary")]
        assert summary.type is AlertType.SITE_OFFLINE
        for site, expected in (("mk-1", [summary.id]), ("mk-2", [summary.id]), ("mk-3", [])):
            page = (await api.client.get(f"/api/v1/beds/{site}/ubed-1",
                                         headers=api.auth("viewer"))).json()
            assert ([s["id"] for s in page["summaries"]], page["open_alerts"]) == (
                expected, len(expected)), site
        listed = (await api.client.get("/api/v1/beds", headers=api.auth("viewer"))).json()
        counts = {b["site"]: b["open_alerts"] for b in listed["items"] if b["bed"] == "ubed-1"}
        assert counts == {"mk-1": 1, "mk-2": 1, "mk-3": 0}
    finally:
        await api.client.aclose()


async def test_after_a_restart_a_silent_device_shows_its_alert_and_a_made_up_bed_its_page(
        tmp_path: Path) -> None:
    """After a restart the live state holds nothing of a device not heard since: its bed said
    ``unknown``, ``last_seen`` null beside its open ``device_offline`` alert, and a bed outside
    the registry answered 404 while alerts were about it (a tester, 2026-12-03)."""
    api = build(tmp_path, registry=Registry.from_mapping(REGISTRY))
    try:
        heard = T0 - 600_000
        api.engine.apply([Finding(
            type=AlertType.DEVICE_OFFLINE, site="site-01", bed="bed-0001", at=T0,
            severity=Severity.MEDIUM, episode="fs-0001", started_at=heard,
            summary="fall fs-0001 silent for 10 min (heartbeat 30 s)",
            evidence={"device": "fs-0001", "kind": "fall", "reason": "silent",
                      "last_heard_ms": heard})], T0)
        api.engine.commit()
        made_up = api.open_alert(site="site-77", bed="x-1", type=AlertType.LOW_BATTERY,
                                 severity=Severity.LOW, episode="ir-x-1")
        page = (await api.client.get("/api/v1/beds/site-01/bed-0001",
                                     headers=api.auth("viewer"))).json()
        devices = {d["device"]: d for d in page["devices"]}
        assert (devices["fs-0001"]["state"], devices["fs-0001"]["last_seen"]) == (
            "offline", heard)
        assert (devices["btn-0001"]["state"], devices["btn-0001"]["last_seen"]) == (
            "unknown", None)  # no alert about it: never heard is all that is known
        other = await api.client.get("/api/v1/beds/site-77/x-1", headers=api.auth("viewer"))
        assert other.status_code == 200, other.text
        assert [a["id"] for a in other.json()["alerts"]] == [made_up.id]
        missing = await api.client.get("/api/v1/beds/site-77/x-2", headers=api.auth("viewer"))
        assert missing.status_code == 404
    finally:
        await api.client.aclose()


async def test_a_device_in_a_storm_not_heard_since_a_restart_shows_offline(
        tmp_path: Path) -> None:
    """The same after a restart for a device that is a member of a storm's summary (a fresh
    tester, 2026-12-03: ``unknown``, ``last_seen`` null beside the summary)."""
    registry = Registry.from_mapping(STORM_REGISTRY)
    storms = AlertStorms(registry, threshold=1)
    api = build(tmp_path, registry=registry, storms=storms)
    try:
        heard = T0 - 300_000
        _fold(api, storms, [
            Finding(type=AlertType.DEVICE_OFFLINE, site="site-01", bed=f"bed-000{n}", at=T0,
                    severity=Severity.MEDIUM, episode=f"ir-000{n}", started_at=heard,
                    summary="offline", evidence={"kind": "infrared"}) for n in (1, 2)])
        views = await _bed_views(api, "bed-0001", "bed-0003")
        [device] = views["bed-0001"][1]["devices"]
        assert (device["state"], device["last_seen"]) == ("offline", heard)
        [other] = views["bed-0003"][1]["devices"]
        assert (other["state"], other["last_seen"]) == ("unknown", None)
    finally:
        await api.client.aclose()


async def test_without_a_registry_a_silent_device_with_its_alert_is_listed_after_a_restart(
        tmp_path: Path) -> None:
    """No registry file: first sights are forgotten at a restart, and the bed page listed no
    device beside the device's open ``device_offline`` (a fresh tester, 2026-12-03)."""
    api = build(tmp_path)
    try:
        heard = T0 - 60_000
        api.engine.apply([Finding(
            type=AlertType.DEVICE_OFFLINE, site="s2", bed="b1", at=T0,
            severity=Severity.MEDIUM, episode="ir-9", started_at=heard, summary="silent",
            evidence={"device": "ir-9", "kind": "infrared", "last_heard_ms": heard})], T0)
        api.engine.commit()
        page = (await api.client.get("/api/v1/beds/s2/b1", headers=api.auth("viewer"))).json()
        [device] = page["devices"]
        assert (device["device"], device["kind"], device["state"], device["last_seen"]) == (
            "ir-9", "infrared", "offline", heard)
    finally:
        await api.client.aclose()
