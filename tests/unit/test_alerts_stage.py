"""The alerting stage: rules before detectors, detector faults contained, settings wired."""

from __future__ import annotations

import doctest
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import alerts.engine
import alerts.escalation
import alerts.rules
import alerts.store
from alerts.engine import AlertEngine
from alerts.model import AlertType, Finding, Severity
from alerts.store import AlertStore
from devices import Codec, Message, Registry
from gateway.config import load
from gateway.detect.alerting import (
    AlertingStage,
    engine_from_settings,
    load_detectors,
    policy_from_settings,
)
from gateway.errors import ConfigError

T0 = 1_763_884_800_000


def _press(bed: str = "bed-0001", seq: int = 1) -> Message:
    m = Codec().decode(f"homecare/v1/site-01/{bed}/button/btn-1/event",
                       json.dumps({"ts": T0, "seq": seq, "event": "press"}).encode())
    assert isinstance(m, Message)
    return m


class Broken:
    name = "broken"

    def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        raise RuntimeError("detector bug")

    def evaluate(self, now_ms: int) -> list[Finding]:
        raise RuntimeError("detector bug")


class Silent:
    """Reports low battery for every bed it saw, at evaluation time."""

    name = "battery"

    def __init__(self) -> None:
        self.beds: set[tuple[str, str]] = set()

    def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        self.beds.update((m.address.site, m.address.bed) for m in messages)

    def evaluate(self, now_ms: int) -> list[Finding]:
        return [Finding(type=AlertType.LOW_BATTERY, site=s, bed=b, at=now_ms,
                        severity=Severity.LOW) for s, b in sorted(self.beds)]


def test_an_emergency_call_is_raised_and_committed_even_when_a_detector_fails(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    registry = CollectorRegistry()
    stage = AlertingStage(AlertEngine(store), detectors=[Broken(), Silent()],
                          metrics=registry)
    stage.accept([_press()], [T0 + 5])
    assert stage.engine.urgent_pending
    stage.commit()
    [alert] = store.open_alerts()
    assert (alert.type, alert.severity, alert.opened_at) == (
        AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, T0 + 5)
    changes = stage.tick(T0 + 1000)
    assert [c.alert.type for c in changes] == [AlertType.LOW_BATTERY]
    stage.commit()
    assert store.last_seq() == 2
    assert registry.get_sample_value("homecare_detector_errors_total",
                                     {"detector": "broken"}) == 2
    assert registry.get_sample_value("homecare_alert_changes_total",
                                     {"action": "opened"}) == 2
    assert registry.get_sample_value("homecare_alerts_open", {
        "severity": "critical", "status": "open", "type": "emergency_button"}) == 1
    assert registry.get_sample_value("homecare_alerts_open", {
        "severity": "low", "status": "open", "type": "low_battery"}) == 1
    assert registry.get_sample_value("homecare_alert_findings_total") == 2
    assert caplog.text.count("detector.failed") == 1, "logged once a minute, not per batch"


def test_replayed_presses_are_counted_and_logged_once_a_minute_across_a_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "alerts.sqlite3"
    stage = AlertingStage(AlertEngine(AlertStore(path)), metrics=CollectorRegistry())
    stage.accept([_press(seq=7)], [T0 + 5])
    stage.commit()
    [alert] = stage.engine.open_alerts()
    stage.engine.resolve(alert.id, actor="anna", note="handled", now_ms=T0 + 60_000)
    stage.engine.store.close()
    registry = CollectorRegistry()  # a restarted gateway, the same store
    stage = AlertingStage(AlertEngine(AlertStore(path)), metrics=registry)
    for hours in (1, 2, 3):
        stage.accept([_press(seq=7)], [T0 + hours * 3_600_000])
    stage.commit()
    assert stage.engine.open_alerts() == []
    assert stage.engine.store.count() == 1
    assert registry.get_sample_value("homecare_alert_replays_ignored_total") == 3
    assert caplog.text.count("alerts.replay_ignored") == 1, "logged once a minute"
    stage.accept([_press(seq=8)], [T0 + 4 * 3_600_000])  # a new press still calls
    assert [a.incident[-2:] for a in stage.engine.open_alerts()] == ["#2"]


def test_an_empty_batch_is_ignored() -> None:
    stage = AlertingStage(AlertEngine(AlertStore(":memory:")))
    stage.accept([], [])
    assert stage.engine.staged == 0


def test_detectors_come_from_gateway_detect() -> None:
    detectors = load_detectors(Registry(), timezone=None)
    assert isinstance(detectors, list)
    for d in detectors:
        assert isinstance(d.name, str)


def test_alert_settings_build_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("HOMECARE_ALERT_ESCALATION_CRITICAL_S", "2, 4")
    monkeypatch.setenv("HOMECARE_ALERT_REPEAT_CRITICAL_S", "3")
    monkeypatch.setenv("HOMECARE_ALERT_ESCALATION_HIGH_S", "")
    monkeypatch.setenv("HOMECARE_ALERT_CANCEL_WINDOW_S", "30")
    monkeypatch.setenv("HOMECARE_CLOCK_WINDOW_S", "3600")
    config = tmp_path / "gateway.toml"
    config.write_text("[alert]\nescalation_medium_s = [10]\nrepeat_medium_s = 20\n"
                      "clear_grace_s = 0\n")
    settings = load(config)
    policy = policy_from_settings(settings)
    assert policy.critical.steps_ms == (2000, 4000)
    assert policy.critical.repeat_ms == 3000
    assert policy.high.steps_ms == ()
    assert policy.high.repeat_ms == 600_000
    assert policy.medium.steps_ms == (10_000,)
    assert policy.medium.repeat_ms == 20_000
    assert policy.low.steps_ms == ()
    assert policy.low.repeat_ms is None
    engine = engine_from_settings(settings, AlertStore(":memory:"))
    assert (engine.cancel_window_ms, engine.clear_grace_ms) == (30_000, 0)
    assert (engine.clock_window_ms, engine.clock_ahead_ms) == (3_600_000, 15 * 60_000)


@pytest.mark.parametrize(("name", "value"), [
    ("HOMECARE_ALERT_ESCALATION_CRITICAL_S", "60,-1"),
    ("HOMECARE_ALERT_ESCALATION_CRITICAL_S", "soon"),
    ("HOMECARE_ALERT_CANCEL_WINDOW_S", "-5"),
    ("HOMECARE_ALERT_FALL_NO_MOTION_S", "0"),
])
def test_bad_alert_settings_fail_at_start_naming_the_variable(
        name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load()


@pytest.mark.parametrize("module", [alerts.engine, alerts.escalation, alerts.rules,
                                    alerts.store])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0


class Order:
    """Records the receipt times of what it is handed, in order."""

    name = "order"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        self.seen.extend(received_ms)

    def evaluate(self, now_ms: int) -> list[Finding]:
        return []


def test_detectors_held_at_start_get_the_journal_first_and_a_press_still_opens_at_once(
        tmp_path: Path) -> None:
    """Issue #14, D-B: at start the journal's records are handed back to the detectors on
    their own thread while intake resumes; the batches intake hands over meanwhile are held and
    given after them, in order, and a press among them opens its alert at once."""
    store = AlertStore(tmp_path / "alerts.sqlite3")
    order = Order()
    stage = AlertingStage(AlertEngine(store), detectors=[order])
    stage.hold_detectors()
    stage.accept([_press(seq=1)], [T0 + 10])  # intake, resumed at once
    assert stage.engine.urgent_pending, "the rules are not held"
    stage.commit()
    assert [a.type for a in store.open_alerts()] == [AlertType.EMERGENCY_BUTTON]
    stage.accept([_press(bed="bed-0002", seq=1)], [T0 + 20])
    assert order.seen == [], "held"
    order.update([_press(seq=9)], [T0 + 1])  # the journal, handed back on another thread
    assert stage.release_detectors() == 2
    assert order.seen == [T0 + 1, T0 + 10, T0 + 20]
    stage.accept([_press(bed="bed-0003", seq=1)], [T0 + 30])
    assert order.seen == [T0 + 1, T0 + 10, T0 + 20, T0 + 30], "handed over at once again"
    assert stage.release_detectors() == 0
