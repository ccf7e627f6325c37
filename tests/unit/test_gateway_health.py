"""gateway_health: the gateway's broker connection, database and stores as alerts, after a
configurable time; shorter failures raise nothing."""

from __future__ import annotations

from pathlib import Path

from alerts.engine import AlertEngine
from alerts.model import GATEWAY_SITE, AlertStatus, AlertType, Severity
from alerts.store import AlertStore
from gateway.detect.gateway_health import GatewayHealthWatch

T0 = 1_793_606_400_000
OK = {"mqtt_connected": True, "tsdb_writable": True, "alerts_writable": True}
WHY = {"mqtt_connected": "not connected to the broker (reconnecting)",
       "tsdb_writable": "database writes failing: connection refused"}


def test_a_check_failing_for_the_set_time_is_one_alert_and_clears_when_it_passes() -> None:
    watch = GatewayHealthWatch(after_ms=30_000)
    down = {**OK, "mqtt_connected": False}
    assert watch.observe(OK, {}, T0) == []
    assert watch.observe(down, WHY, T0 + 1_000) == []
    assert watch.observe(down, WHY, T0 + 30_999) == []
    [raised] = watch.observe(down, WHY, T0 + 31_000)
    assert (raised.type, raised.site, raised.bed, raised.episode, raised.active) == (
        AlertType.GATEWAY_HEALTH, GATEWAY_SITE, "", "mqtt_connected", True)
    assert raised.severity is Severity.HIGH
    assert raised.started_at == T0 + 1_000
    assert raised.evidence["reason"] == WHY["mqtt_connected"]
    assert "broker" in raised.summary
    assert watch.observe(down, WHY, T0 + 60_000) == []  # edge-triggered
    [cleared] = watch.observe(OK, {}, T0 + 90_000)
    assert (cleared.episode, cleared.active) == ("mqtt_connected", False)
    assert watch.observe(OK, {}, T0 + 91_000) == []


def test_failures_shorter_than_the_set_time_raise_nothing() -> None:
    watch = GatewayHealthWatch(after_ms=30_000)
    db_down = {**OK, "tsdb_writable": False}
    found = []
    for second in range(0, 600, 5):  # 20 s down, 10 s up, again and again
        checks = db_down if second % 30 < 20 else OK
        found += watch.observe(checks, WHY, T0 + second * 1000)
    assert found == []


def test_each_check_is_its_own_alert_and_the_database_is_less_urgent_than_the_broker(
        ) -> None:
    watch = GatewayHealthWatch(after_ms=0)
    found = watch.observe({"mqtt_connected": False, "tsdb_writable": False,
                           "alerts_writable": True}, WHY, T0)
    assert {(f.episode, f.severity) for f in found} == {
        ("mqtt_connected", Severity.HIGH), ("tsdb_writable", Severity.MEDIUM)}


def test_alerts_raised_before_a_restart_are_taken_back_and_cleared(tmp_path: Path) -> None:
    engine = AlertEngine(AlertStore(tmp_path / "alerts.sqlite3"), clear_grace_ms=0)
    before = GatewayHealthWatch(after_ms=0)
    engine.apply(before.observe({**OK, "tsdb_writable": False}, WHY, T0), T0)
    engine.commit()
    [alert] = engine.open_alerts()
    after = GatewayHealthWatch(after_ms=0)
    after.resume(engine.open_alerts())
    engine.apply(after.observe(OK, {}, T0 + 5_000), T0 + 5_000)
    engine.commit()
    assert engine.open_alerts() == []
    resolved = engine.get(alert.id)
    assert resolved is not None
    assert resolved.status is AlertStatus.RESOLVED


def test_the_summary_says_how_long_in_seconds_until_a_minute_and_a_half() -> None:
    """A verifier saw "lost for 0 min" 15 s after the broker went (issue #13)."""
    health = GatewayHealthWatch(after_ms=15_000)
    assert health.observe({"mqtt_connected": False}, {}, 1_000) == []
    [raised] = health.observe({"mqtt_connected": False}, {}, 16_000)
    assert " for 15 s" in raised.summary, raised.summary
    later = GatewayHealthWatch(after_ms=600_000)
    later.observe({"tsdb_writable": False}, {}, 0)
    [raised] = later.observe({"tsdb_writable": False}, {}, 600_000)
    assert " for 10 min" in raised.summary, raised.summary
