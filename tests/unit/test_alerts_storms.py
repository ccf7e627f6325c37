"""alerts.storms: unregistered and storming findings folded into one summary per site and type,
emergencies never; bounded; taken back after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

import alerts.storms
from alerts.engine import SUMMARY_UPDATE_MS, AlertEngine
from alerts.model import Alert, AlertType, Finding, Severity
from alerts.store import AlertStore
from alerts.storms import (
    LISTED,
    STORM_THRESHOLD,
    STORM_WINDOW_MS,
    UNREGISTERED_SITES,
    AlertStorms,
    summary_incident,
)
from devices import Registry

T0 = 1_793_606_400_000
OFFLINE = AlertType.DEVICE_OFFLINE


def _registry() -> Registry:
    return Registry.from_mapping({"sites": {"s1": {"beds": {
        f"b{n}": {"devices": {f"ir-{n}": {"kind": "infrared"}}} for n in range(100)}}}})


def _finding(site: str, bed: str, *, type: AlertType = OFFLINE, episode: str | None = None,
             active: bool = True, severity: Severity = Severity.MEDIUM,
             at: int = T0) -> Finding:
    if episode is None:
        episode = f"ir-{bed[1:]}" if type is OFFLINE else ""
    return Finding(type=type, site=site, bed=bed, at=at, severity=severity, episode=episode,
                   active=active)


def _summaries(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.evidence.get("summary")]



def _restarted(engine: AlertEngine, store: AlertStore, tmp_path: Path
               ) -> tuple[AlertEngine, AlertStorms]:
    """Commit, close the store, and start again on it as a restarted gateway does: a new
    engine on the same file and storms resumed from its open alerts."""
    engine.commit()
    store.close()
    engine = AlertEngine(AlertStore(tmp_path / "alerts.sqlite3"))
    storms = AlertStorms(_registry())
    storms.resume(engine.open_alerts())
    return engine, storms

def test_emergencies_are_never_summarised_registered_or_not_storm_or_not() -> None:
    storms = AlertStorms(_registry())
    calls = [_finding("s1", f"b{n}", type=AlertType.FALL, severity=Severity.CRITICAL)
             for n in range(50)]
    calls += [_finding("made-up", f"x{n}", type=AlertType.EMERGENCY_BUTTON,
                       severity=Severity.CRITICAL) for n in range(50)]
    assert storms.filter(calls, T0) == calls
    mixed = [_finding("made-up", f"x{n}") for n in range(30)] + calls[:3]
    out = storms.filter(mixed, T0)
    assert out[:3] == calls[:3]
    [summary] = out[3:]
    assert summary.evidence["count"] == 30


def test_unregistered_beds_and_devices_are_one_summary_per_site_and_type() -> None:
    storms = AlertStorms(_registry())
    found = [_finding("s1", f"new-{n}", episode=f"d{n}") for n in range(3)]  # unknown beds
    found += [_finding("s1", "b7", episode="extra-sensor")]  # unknown device, listed bed
    found += [_finding(f"made-up-{n}", "x", episode="d") for n in range(5)]
    found += [_finding("s1", "b8")]  # listed device on a listed bed: its own alert
    found += [_finding("s1", "new-0", type=AlertType.LOW_BATTERY, episode="d0")]
    out = storms.filter(found, T0)
    assert out[0] == found[9]
    by_key = {(f.site, f.type): f for f in _summaries(out)}
    assert set(by_key) == {("s1", OFFLINE), (UNREGISTERED_SITES, OFFLINE),
                           ("s1", AlertType.LOW_BATTERY)}
    local = by_key[("s1", OFFLINE)]
    assert local.evidence["members"] == ["new-0/d0", "new-1/d1", "new-2/d2", "b7/extra-sensor"]
    assert local.summary == "4 unregistered devices on site s1: device offline"
    elsewhere = by_key[(UNREGISTERED_SITES, OFFLINE)]
    assert elsewhere.evidence["members"][0] == "made-up-0/x/d"
    assert elsewhere.evidence["count"] == 5
    assert (elsewhere.bed, elsewhere.episode, elsewhere.active) == ("", "summary", True)


def test_a_bed_alert_from_an_unlisted_device_on_a_listed_bed_is_its_own() -> None:
    storms = AlertStorms(_registry())
    inactivity = _finding("s1", "b3", type=AlertType.INACTIVITY, severity=Severity.HIGH)
    assert storms.filter([inactivity], T0) == [inactivity]


def test_a_storm_beyond_the_threshold_joins_one_summary_until_all_clear() -> None:
    storms = AlertStorms(_registry())
    first = [_finding("s1", f"b{n}") for n in range(STORM_THRESHOLD)]
    assert storms.filter(first, T0) == first  # up to the threshold: alerts of their own
    more = [_finding("s1", f"b{n}", at=T0 + 60_000) for n in range(STORM_THRESHOLD, 25)]
    [summary] = storms.filter(more, T0 + 60_000)
    assert summary.evidence["count"] == 25 - STORM_THRESHOLD
    assert summary.evidence["storm"] == 25 - STORM_THRESHOLD
    assert summary.summary == "Alert storm on site s1: device offline on 15 devices"
    # An update of an alert opened before the storm still goes to that alert.
    again = _finding("s1", "b0", severity=Severity.HIGH, at=T0 + 120_000)
    assert storms.filter([again], T0 + 120_000) == [again]
    # Clears: an individual one passes, a member's leaves the summary; the last clears it.
    out = storms.filter([_finding("s1", "b0", active=False), _finding("s1", "b20",
                                                                      active=False)], T0)
    assert [(f.bed, f.active) for f in out] == [("b0", False), ("", True)]
    assert out[1].evidence["count"] == 14
    ends = storms.filter([_finding("s1", f"b{n}", active=False)
                          for n in range(STORM_THRESHOLD, 25) if n != 20], T0 + 180_000)
    [cleared] = ends
    assert (cleared.active, cleared.evidence["count"]) == (False, 0)
    assert storms.summaries == 0


def test_a_storm_arriving_in_one_round_is_summarised_whole() -> None:
    storms = AlertStorms(_registry())
    found = [_finding("s1", f"b{n}", type=AlertType.SENSOR_FAULT) for n in range(80)]
    [summary] = storms.filter(found, T0)
    assert summary.evidence["count"] == 80
    assert summary.evidence["members"] == [f"b{n}" for n in range(LISTED)]
    assert summary.evidence["members_omitted"] == 80 - LISTED


def _anomaly(bed: str, visit: str, *, at: int = T0, site: str = "s1") -> Finding:
    return Finding(type=AlertType.SERVICE_ANOMALY, site=site, bed=bed, at=at,
                   severity=Severity.MEDIUM, episode=f"c1/{visit}", active=True,
                   evidence={"reasons": ["not_sensed"]})


def test_a_summary_counts_beds_apart_from_its_members() -> None:
    # Twelve never-came visits on one bed were "service anomaly on 12 beds"; one more on
    # another bed, "on 13 beds".
    storms = AlertStorms(_registry())
    [summary] = storms.filter([_anomaly("b1", f"v{n}") for n in range(12)], T0)
    assert summary.summary == "Alert storm on site s1: 12 service anomalies on 1 bed"
    assert (summary.evidence["count"], summary.evidence["beds_count"]) == (12, 1)
    [summary] = storms.filter([_anomaly("b2", "w1", at=T0 + 60_000)], T0 + 60_000)
    assert summary.summary == "Alert storm on site s1: 13 service anomalies on 2 beds"
    assert (summary.evidence["count"], summary.evidence["beds_count"]) == (13, 2)
    # Other bed types too; unregistered beds as well.
    [summary] = storms.filter([_finding("s1", "b3", type=AlertType.VITAL_SIGNS,
                                        episode=f"e{n}") for n in range(11)], T0)
    assert summary.summary == "Alert storm on site s1: 11 vital signs alerts on 1 bed"
    [summary] = storms.filter([_finding("s1", "new-1", type=AlertType.INACTIVITY,
                                        episode=f"e{n}") for n in range(3)], T0)
    assert summary.summary == "3 unregistered inactivity alerts on 1 bed on site s1"
    # A device type counts devices (each its own member), however few their beds.
    [summary] = storms.filter([_finding("s1", "b4", type=AlertType.LOW_BATTERY,
                                        episode=f"d{n}") for n in range(11)], T0)
    assert summary.summary == "11 unregistered devices on site s1: low battery"
    assert summary.evidence["beds_count"] == 1


def test_beds_of_members_known_only_by_count_are_not_claimed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts.storms, "MEMBERS_KEPT", 5)
    storms = AlertStorms(_registry())
    [summary] = storms.filter([_anomaly(f"b{n % 3}", f"v{n}") for n in range(20)], T0)
    assert summary.summary == "Alert storm on site s1: 20 service anomalies on at least 3 beds"


def test_openings_spread_beyond_the_window_are_no_storm() -> None:
    storms = AlertStorms(_registry())
    for n in range(3 * STORM_THRESHOLD):
        f = _finding("s1", f"b{n}", at=T0 + n * STORM_WINDOW_MS // 5)
        assert storms.filter([f], f.at) == [f]


def test_a_members_severity_raises_the_summary() -> None:
    storms = AlertStorms(_registry())
    storms.filter([_finding("x", "y", episode="d1")], T0)
    [summary] = storms.filter([_finding("x", "y", episode="d1", severity=Severity.HIGH)], T0)
    assert summary.severity is Severity.HIGH
    assert storms.filter([_finding("x", "y", episode="d1")], T0) == []  # nothing new


def test_without_a_registry_only_storms_are_summarised() -> None:
    for storms in (AlertStorms(None), AlertStorms(Registry())):
        few = [_finding(f"site-{n}", "b1") for n in range(20)]
        assert storms.filter(few, T0) == few


def test_memory_is_bounded_members_beyond_the_cap_are_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts.storms, "MEMBERS_KEPT", 100)
    monkeypatch.setattr(alerts.storms, "INDIVIDUAL_KEPT", 50)
    storms = AlertStorms(_registry())
    [summary] = storms.filter([_finding("x", f"b{n}", episode="d") for n in range(300)], T0)
    assert summary.evidence["count"] == 300
    assert len(storms._summaries[(UNREGISTERED_SITES, OFFLINE)].members) == 100
    # A clear of a member known only by count takes one off the count.
    [summary] = storms.filter([_finding("x", "b250", episode="d", active=False)], T0)
    assert summary.evidence["count"] == 299
    for n in range(10):  # individual conditions over many sites, types and times
        storms.filter([_finding("s1", f"b{m}", type=t, at=T0 + n * 2 * STORM_WINDOW_MS)
                       for m in range(STORM_THRESHOLD)
                       for t in (AlertType.LOW_BATTERY, AlertType.INACTIVITY)],
                      T0 + n * 2 * STORM_WINDOW_MS)
    assert len(storms._individual) <= 50


def test_summaries_and_individual_alerts_are_taken_back_after_a_restart(
        tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    engine = AlertEngine(store)
    storms = AlertStorms(_registry())
    found = [_finding("s1", f"new-{n}", episode=f"d{n}") for n in range(LISTED + 5)]
    found += [_finding("s1", "b1")]
    engine.apply(storms.filter(found, T0), T0)
    engine, again = _restarted(engine, store, tmp_path)
    assert again.summaries == 1
    # A listed member clears by name, an unlisted one by count, the individual alert as is.
    out = again.filter([_finding("s1", "new-0", episode="d0", active=False),
                        _finding("s1", f"new-{LISTED + 2}", episode="dx", active=False),
                        _finding("s1", "b1", active=False)], T0 + 1000)
    assert [(f.bed, f.active) for f in out] == [("b1", False), ("", True)]
    assert out[1].evidence["count"] == LISTED + 3


def _dark(site: str, *, active: bool = True, at: int = T0,
          beds: tuple[str, ...] = ("b1", "b2", "b3")) -> Finding:
    return Finding(type=AlertType.SITE_OFFLINE, site=site, bed="", at=at,
                   severity=Severity.HIGH, active=active, summary=f"{site} dark",
                   evidence={"beds": list(beds)})


def test_a_listed_sites_site_level_alerts_pass_through_as_they_are() -> None:
    # A listed site gone dark, and the gateway's own health, are already one alert each:
    # never an "unregistered bed" (their bed is empty), never folded into a storm summary.
    storms = AlertStorms(_registry())
    site = [_dark("s1")]
    health = [Finding(type=AlertType.GATEWAY_HEALTH, site="_gateway", bed="", at=T0,
                      severity=Severity.HIGH, episode=check)
              for check in ("mqtt_connected", "tsdb_writable")]
    again = [_dark("s1", at=T0 + n) for n in range(STORM_THRESHOLD * 3)]
    for findings in (site, health, again, [*site, *health, _finding("made-up", "x1")]):
        out = storms.filter(findings, T0)
        assert [f for f in out if f.type in (AlertType.SITE_OFFLINE,
                                               AlertType.GATEWAY_HEALTH)] == [
            f for f in findings if f.type is not OFFLINE]
    assert storms.summaries == 1  # the unregistered device only
    cleared = [_dark("s1", active=False, at=T0 + 1)]
    assert storms.filter(cleared, T0 + 1) == cleared


def test_made_up_sites_gone_dark_are_one_summary_listing_the_sites() -> None:
    # 330 made-up sites of three made-up beds each, all silent: one high alert for them all,
    # as their beds' alerts are, not 330. A listed site's own outage, and the emergencies of
    # the made-up sites, still open their own.
    storms = AlertStorms(_registry())
    made_up = [_dark(f"fake-{n}") for n in range(330)]
    calls = [_finding("fake-7", "newbed", type=AlertType.EMERGENCY_BUTTON,
                      severity=Severity.CRITICAL),
             _finding("fake-8", "newbed2", type=AlertType.FALL, severity=Severity.CRITICAL)]
    out = storms.filter([*made_up[:165], *calls, _dark("s1"), *made_up[165:]], T0)
    assert out[:3] == [*calls, _dark("s1")]
    [summary] = out[3:]
    assert (summary.type, summary.site, summary.bed, summary.severity) == (
        AlertType.SITE_OFFLINE, UNREGISTERED_SITES, "", Severity.HIGH)
    assert summary.summary == "site offline on 330 unregistered sites"
    ev = summary.evidence
    assert (ev["count"], ev["unregistered"], ev["storm"], ev["beds_count"]) == (330, 330, 0, 0)
    assert ev["members"] == [f"fake-{n}" for n in range(LISTED)]
    assert ev["members_omitted"] == 330 - LISTED
    # An update of a member (more beds dark) changes nothing; clears take members out, the
    # last one clears the summary.
    assert storms.filter([_dark("fake-3", at=T0 + 1, beds=("b1", "b2", "b3", "b4"))],
                         T0 + 1) == []
    [fewer] = storms.filter([_dark(f"fake-{n}", active=False, at=T0 + 2)
                             for n in range(329)], T0 + 2)
    assert fewer.active
    assert fewer.evidence["members"] == ["fake-329"]
    assert fewer.summary == "site offline on 1 unregistered site"
    [gone] = storms.filter([_dark("fake-329", active=False, at=T0 + 3)], T0 + 3)
    assert not gone.active
    assert storms.summaries == 0


def test_made_up_sites_summary_and_an_earlier_own_alert_are_taken_back(
        tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    engine = AlertEngine(store)
    # One made-up site's outage opened on its own (by a gateway before sites were folded),
    # then two folded.
    engine.apply([_dark("fake-old")], T0)
    engine.apply(AlertStorms(_registry()).filter([_dark("fake-1"), _dark("fake-2")], T0), T0)
    engine, storms = _restarted(engine, store, tmp_path)
    assert storms.summaries == 1
    # The old alert takes its own updates and clear (else it would stay open for ever).
    update = _dark("fake-old", at=T0 + 5, beds=("b1", "b2", "b3", "b4"))
    assert storms.filter([update], T0 + 5) == [update]
    [summary] = storms.filter([_dark("fake-1", active=False, at=T0 + 6)], T0 + 6)
    assert summary.evidence["members"] == ["fake-2"]
    cleared = _dark("fake-old", active=False, at=T0 + 7)
    assert storms.filter([cleared], T0 + 7) == [cleared]


def test_open_site_level_alerts_are_not_taken_back_as_members_after_a_restart(
        tmp_path: Path) -> None:
    engine = AlertEngine(AlertStore(tmp_path / "alerts.sqlite3"))
    engine.apply([Finding(type=AlertType.SITE_OFFLINE, site="s1", bed="", at=T0,
                          severity=Severity.HIGH, evidence={"beds": ["b1", "b2"]})], T0)
    engine.commit()
    storms = AlertStorms(_registry())
    storms.resume(engine.open_alerts())
    assert storms.summaries == 0
    again = [Finding(type=AlertType.SITE_OFFLINE, site="s1", bed="", at=T0 + 5,
                     severity=Severity.HIGH, active=False)]
    assert storms.filter(again, T0 + 5) == again


# --- the beds a summary lists (the bed pages' index) ------------------------------------------


def test_a_summarys_beds_are_indexed_as_it_opens_gains_members_and_they_clear() -> None:
    storms = AlertStorms(_registry())
    offline = summary_incident("s1", OFFLINE)
    # Opens: two devices the registry does not list on listed bed b1, one on b2.
    storms.filter([_finding("s1", "b1", episode="extra-1"), _finding("s1", "b1", episode="extra-2"),
                   _finding("s1", "b2", episode="extra-3")], T0)
    assert storms.summaries_of("s1", "b1") == [offline]
    assert storms.summaries_of("s1", "b2") == [offline]
    assert storms.summaries_of("s1", "b3") == []
    # Gains members: b3, and a summary of another type on b1.
    storms.filter([_finding("s1", "b3", episode="extra-4"),
                   _finding("s1", "b1", type=AlertType.LOW_BATTERY, episode="extra-1")], T0)
    assert storms.summaries_of("s1", "b3") == [offline]
    assert storms.summaries_of("s1", "b1") == [
        offline, summary_incident("s1", AlertType.LOW_BATTERY)]
    # Members clear: a bed stays listed while any of its members is in the summary.
    storms.filter([_finding("s1", "b1", episode="extra-1", active=False)], T0 + 1000)
    assert storms.summaries_of("s1", "b1") == [
        offline, summary_incident("s1", AlertType.LOW_BATTERY)]
    storms.filter([_finding("s1", "b1", episode="extra-2", active=False),
                   _finding("s1", "b1", type=AlertType.LOW_BATTERY, episode="extra-1",
                            active=False)], T0 + 2000)
    assert storms.summaries_of("s1", "b1") == []
    assert storms.summaries_of("s1", "b2") == [offline]
    # The last member's clear clears the summary: no bed is listed any more.
    storms.filter([_finding("s1", "b2", episode="extra-3", active=False),
                   _finding("s1", "b3", episode="extra-4", active=False)], T0 + 3000)
    assert storms.summaries == 0
    assert storms._beds == {}


def test_a_storms_beds_and_made_up_beds_are_indexed_site_level_members_are_not() -> None:
    storms = AlertStorms(_registry())
    storms.filter([_finding("s1", f"b{n}") for n in range(STORM_THRESHOLD + 5)], T0)
    assert all(storms.summaries_of("s1", f"b{n}") == [summary_incident("s1", OFFLINE)]
               for n in range(STORM_THRESHOLD + 5))
    # A made-up site's bed is listed under the summary of the unregistered sites.
    storms.filter([_finding("made-up", "x1", episode="d1"), _dark("made-up-2")], T0)
    assert storms.summaries_of("made-up", "x1") == [
        summary_incident(UNREGISTERED_SITES, OFFLINE)]
    assert storms.summaries_of("made-up-2", "") == []  # a site, no bed


def test_beds_of_members_beyond_the_cap_are_not_indexed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts.storms, "MEMBERS_KEPT", 5)
    storms = AlertStorms(_registry())
    storms.filter([_finding("x", f"b{n}", episode="d") for n in range(8)], T0)
    assert [n for n in range(8) if storms.summaries_of("x", f"b{n}")] == [0, 1, 2, 3, 4]


def test_a_summarys_named_beds_are_indexed_again_after_a_restart(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    engine = AlertEngine(store)
    storms = AlertStorms(_registry())
    found = [_finding("s1", f"new-{n}", episode=f"d{n}") for n in range(LISTED + 5)]
    engine.apply(storms.filter(found, T0), T0)
    engine, again = _restarted(engine, store, tmp_path)
    key = summary_incident("s1", OFFLINE)
    [alert] = engine.open_alerts()
    assert alert.incident == f"{key}#1"
    assert again.summaries_of("s1", "new-0") == [key]
    assert again.summaries_of("s1", f"new-{LISTED + 2}") == [], \
        "beyond the listed members, only their number survives a restart"
    again.filter([_finding("s1", "new-0", episode="d0", active=False)], T0 + 1000)
    assert again.summaries_of("s1", "new-0") == []


def test_the_stored_summary_follows_its_members_within_seconds_not_a_minute(
        tmp_path: Path) -> None:
    """The alert list and the streams read what is stored: a summary's count there must not
    lag the alert itself (its page) by the minute other alerts' quiet updates wait."""
    store = AlertStore(tmp_path / "alerts.sqlite3")
    engine = AlertEngine(store, update_interval_ms=60_000)
    storms = AlertStorms(_registry())

    def offline(first: int, n: int, at: int) -> None:
        found = [_finding("s1", f"new-{i}", episode=f"d{i}", at=at)
                 for i in range(first, first + n)]
        engine.apply(storms.filter(found, at), at)
        engine.commit()

    def summary() -> Alert:
        [alert] = [a for a in store.list_alerts()[0] if a.evidence.get("summary")]
        return alert

    def stored() -> tuple[str, int]:
        return summary().summary, summary().evidence["count"]

    offline(0, 200, T0)
    assert stored() == ("200 unregistered devices on site s1: device offline", 200)
    offline(200, 300, T0 + 1_000)
    [live] = [a for a in engine.open_alerts() if a.evidence.get("summary")]
    assert live.evidence["count"] == 500
    engine.tick(T0 + 1_000 + SUMMARY_UPDATE_MS)
    engine.commit()
    assert stored() == ("500 unregistered devices on site s1: device offline", 500)
    # Every member back: the text says so, as its evidence does.
    gone = [_finding("s1", f"new-{i}", episode=f"d{i}", active=False, at=T0 + 9_000)
            for i in range(500)]
    engine.apply(storms.filter(gone, T0 + 9_000), T0 + 9_000)
    engine.commit()
    alert = summary()
    assert alert.evidence["count"] == 0
    assert alert.summary == "device offline on site s1: every member cleared"
