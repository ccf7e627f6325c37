"""Escalation chains: per severity and alert type, each step's recipients, channels and wait;
the engine's timers follow the chain of the alert; the old settings are the default chain; a
fact about an alert (a notification) is recorded in its history without changing it."""

from __future__ import annotations

import pytest

from alerts.engine import AlertEngine
from alerts.errors import AlertNotFound
from alerts.escalation import CHANNELS, Chain, EscalationPolicy, Schedule, Step
from alerts.model import AlertStatus, AlertType, Finding, Severity
from alerts.store import AlertStore

T0 = 1_763_884_800_000
S = 1000

FALLS = Chain(name="falls", types=frozenset({"fall"}), severities=frozenset({Severity.CRITICAL}),
              steps=(Step(recipients=("dispatchers_on_duty",), wait_s=20),
                     Step(recipients=("duty_nurse",), channels=("console", "email"), wait_s=40),
                     Step(recipients=("station_manager",), wait_s=100)))
CALLS = Chain(name="calls", severities=frozenset({Severity.CRITICAL}),
              steps=(Step(recipients=("dispatchers_on_duty",), wait_s=10),
                     Step(recipients=("duty_nurse",))))


def press(type_: AlertType = AlertType.EMERGENCY_BUTTON, bed: str = "bed-0001") -> Finding:
    return Finding(type=type_, site="site-01", bed=bed, at=T0, severity=Severity.CRITICAL)


def test_the_first_matching_chain_sets_the_timeline_by_type_and_severity() -> None:
    policy = EscalationPolicy(chains=(FALLS, CALLS))
    assert policy.chain(Severity.CRITICAL, "fall") is FALLS
    assert policy.chain(Severity.CRITICAL, "emergency_button") is CALLS
    assert policy.chain(Severity.HIGH, "fall").name == "default-high"
    assert policy.first_at(Severity.CRITICAL, opened_at=0, type="fall") == 20 * S
    assert policy.next_at(Severity.CRITICAL, level=1, since=0, type="fall") == 40 * S
    # The last step repeats after its wait; a last step without one ends the chain.
    assert policy.next_at(Severity.CRITICAL, level=5, since=0, type="fall") == 100 * S
    assert policy.next_at(Severity.CRITICAL, level=1, since=0, type="emergency_button") is None
    assert [FALLS.step(level) for level in (0, 2, 4)] == [(1, 0), (3, 0), (3, 2)]


def test_without_chains_the_escalation_settings_are_the_default_chain() -> None:
    policy = EscalationPolicy(critical=Schedule.seconds((60, 180), 300),
                              medium=Schedule.seconds((1800,)))
    chain = policy.chain(Severity.CRITICAL, "emergency_button")
    assert chain.schedule() == policy.critical == policy.schedule(Severity.CRITICAL, "fall")
    assert [s.recipients for s in chain.steps] == [
        ("dispatchers_on_duty",), ("dispatchers_on_duty", "duty_nurse"),
        ("dispatchers_on_duty", "duty_nurse", "station_manager")]
    assert [s.wait_s for s in chain.steps] == [60, 180, 300]
    assert chain.steps[0].channels == CHANNELS
    medium = policy.chain(Severity.MEDIUM, "device_offline")
    assert [s.channels for s in medium.steps] == [("console",), ("console",)]
    assert policy.chain(Severity.LOW).steps[0].wait_s is None


def test_chains_from_the_oncall_file_are_checked() -> None:
    chain = Chain.from_mapping({"name": "calls", "severities": ["critical"], "steps": [
        {"recipients": ["dispatchers_on_duty"], "channels": ["console", "webhook"], "wait_s": 30},
        {"recipients": ["duty_nurse", "family_contact"], "wait_s": 60}]})
    assert chain.schedule() == Schedule.seconds((30,), 60)
    assert Chain.from_mapping(chain.to_mapping()) == chain
    for bad, why in [
            ({"name": "x", "steps": [{"recipients": ["cook"]}]}, "recipients"),
            ({"name": "x", "steps": [{"recipients": ["duty_nurse"], "channels": ["fax"]}]},
             "channels"),
            ({"name": "x", "steps": [{"recipients": ["duty_nurse"]},
                                     {"recipients": ["station_manager"]}]}, "wait_s"),
            ({"name": "x", "types": ["flood"], "steps": [{"recipients": ["duty_nurse"]}]},
             "unknown alert type"),
            ({"name": "x", "severities": ["urgent"], "steps": [{"recipients": ["duty_nurse"]}]},
             "severities"),
            ({"name": "x y", "steps": [{"recipients": ["duty_nurse"]}]}, "chain name"),
            ({"name": "x", "steps": [{"recipients": ["duty_nurse"], "wait": 3}]}, "unknown key")]:
        with pytest.raises(ValueError, match=why):
            Chain.from_mapping(bad)
    with pytest.raises(ValueError, match="same name"):
        EscalationPolicy(chains=(CALLS, CALLS))


def test_the_engine_escalates_each_alert_on_its_own_chain() -> None:
    engine = AlertEngine(AlertStore(":memory:"), policy=EscalationPolicy(chains=(FALLS, CALLS)))
    fall = engine.apply([press(AlertType.FALL)], T0)[0].alert
    call = engine.apply([press(bed="bed-0002")], T0)[0].alert
    assert fall.next_escalation_at == T0 + 20 * S
    assert call.next_escalation_at == T0 + 10 * S
    changes = engine.tick(T0 + 20 * S)
    assert sorted((c.alert.bed, c.alert.escalation_level, c.alert.next_escalation_at)
                  for c in changes) == [("bed-0001", 1, T0 + 60 * S), ("bed-0002", 1, None)]
    # After the last step, the falls chain takes its last step again every 100 s.
    changes = engine.tick(T0 + 160 * S)
    assert [(c.alert.id, c.alert.escalation_level, c.alert.next_escalation_at)
            for c in changes] == [(fall.id, 3, T0 + 260 * S)]


def test_a_fact_about_an_alert_is_in_its_history_and_on_the_stream_without_changing_it() -> None:
    store = AlertStore(":memory:")
    engine = AlertEngine(store)
    seen: list[str] = []
    engine.add_listener(lambda changes: seen.extend(c.action for c in changes))
    opened = engine.apply([press()], T0)[0].alert
    engine.commit()
    change = engine.record(opened.id, action="notified", note="step 1 of chain c: anna (email)",
                           now_ms=T0 + 5)
    assert (change.action, change.actor, change.at) == ("notified", "system", T0 + 5)
    assert change.alert == opened, "the alert itself is unchanged"
    assert engine.get(opened.id) == opened
    assert [c.action for c in store.history(opened.id)] == ["opened", "notified"]
    assert seen == ["opened", "notified"]
    # Also once it is resolved (a delivery result may come after the acknowledgement).
    engine.resolve(opened.id, actor="anna", note="done", now_ms=T0 + 9, outcome="false_alarm")
    late = engine.record(opened.id, action="notification_delivered", note="email to anna",
                         now_ms=T0 + 10)
    assert late.alert.status is AlertStatus.RESOLVED
    assert [c.action for c in store.history(opened.id)][-1] == "notification_delivered"
    with pytest.raises(AlertNotFound):
        engine.record("nope", action="notified", note="x", now_ms=T0)
