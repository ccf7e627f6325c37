"""The alert engine: folding, severity, clearing, escalation, people, listeners, restarts."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from alerts.engine import CANCELLED_AT, PRESSED_AT, UPDATE_ONLY, URGENT, AlertEngine, seeded_ids
from alerts.errors import AlertNotFound, InvalidTransition, StoreUnavailable
from alerts.escalation import EscalationPolicy, Schedule
from alerts.model import Alert, AlertChange, AlertStatus, AlertType, EventRef, Finding, Severity
from alerts.store import AlertStore

T0 = 1_763_884_800_000
S = 1000
MIN = 60 * S


def finding(type_: AlertType = AlertType.VITAL_SIGNS, severity: Severity = Severity.HIGH, *,
            bed: str = "bed-0001", site: str = "site-01", at: int = T0, active: bool = True,
            episode: str = "", summary: str = "", **evidence: Any) -> Finding:
    return Finding(type=type_, site=site, bed=bed, at=at, severity=severity, episode=episode,
                   active=active, summary=summary, evidence=evidence)


def engine(store: AlertStore | None = None, **kwargs: Any) -> AlertEngine:
    return AlertEngine(store or AlertStore(":memory:"), **kwargs)


def one(changes: list[AlertChange]) -> AlertChange:
    assert len(changes) == 1, changes
    return changes[0]


# --- opening and folding ---------------------------------------------------------------------

def test_a_finding_opens_an_alert_with_an_unguessable_id_and_a_first_escalation_time() -> None:
    e = engine()
    change = one(e.apply([finding(severity=Severity.CRITICAL, hr=150)], T0))
    a = change.alert
    assert (change.seq, change.action, change.at) == (1, "opened", T0)
    assert a.status is AlertStatus.OPEN
    assert a.severity is Severity.CRITICAL
    assert a.incident == "site-01/bed-0001/vital_signs/#1"
    assert a.opened_at == a.updated_at == T0
    assert a.evidence == {"hr": 150}
    assert a.next_escalation_at == T0 + 60 * S
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", a.id)
    assert "bed" not in a.id.lower()
    other = one(e.apply([finding(bed="bed-0002")], T0)).alert
    assert other.id != a.id


def test_alert_ids_sort_by_opening_time_and_replay_ids_are_reproducible() -> None:
    ids = seeded_ids(7)
    again = seeded_ids(7)
    first = [ids(T0 + i) for i in range(5)]
    assert first == [again(T0 + i) for i in range(5)]
    assert first == sorted(first)
    assert len(set(first)) == 5
    e1 = engine(id_factory=seeded_ids(1))
    e2 = engine(id_factory=seeded_ids(1))
    assert e1.apply([finding()], T0)[0].alert.id == e2.apply([finding()], T0)[0].alert.id


def test_repeated_findings_update_one_alert_and_are_written_at_most_once_per_interval() -> None:
    e = engine(update_interval_ms=60 * S)
    opened = one(e.apply([finding(hr=150)], T0)).alert
    assert e.apply([finding(hr=151)], T0 + S) == [], "a repeat inside the interval is held"
    held = e.get(opened.id)
    assert held is not None
    assert held.occurrences == 2
    assert held.evidence == {"hr": 151}
    assert held.updated_at == T0 + S
    assert e.tick(T0 + 30 * S) == []
    change = one(e.tick(T0 + 60 * S))
    assert change.action == "updated"
    assert change.alert.occurrences == 2
    assert one(e.apply([finding(hr=152, br=30)], T0 + 121 * S)).alert.evidence == {
        "hr": 152, "br": 30}
    assert len(e.open_alerts()) == 1


def test_incidents_of_different_beds_types_and_episodes_are_separate_alerts() -> None:
    e = engine()
    changes = e.apply([
        finding(AlertType.DEVICE_OFFLINE, episode="ir-1"),
        finding(AlertType.DEVICE_OFFLINE, episode="fs-1"),
        finding(AlertType.DEVICE_OFFLINE, episode="ir-1", bed="bed-0002"),
        finding(AlertType.LOW_BATTERY, episode="ir-1"),
        finding(AlertType.DEVICE_OFFLINE, episode="ir-1"),
    ], T0)
    assert [c.action for c in changes] == ["opened"] * 4
    assert {c.alert.incident for c in changes} == {
        "site-01/bed-0001/device_offline/ir-1#1", "site-01/bed-0001/device_offline/fs-1#1",
        "site-01/bed-0002/device_offline/ir-1#1", "site-01/bed-0001/low_battery/ir-1#1"}


def test_a_new_episode_opens_a_new_alert_after_the_previous_one_was_resolved() -> None:
    e = engine()
    first = one(e.apply([finding()], T0)).alert
    e.resolve(first.id, actor="d1", note="checked", now_ms=T0 + MIN)
    second = one(e.apply([finding()], T0 + 2 * MIN)).alert
    assert second.id != first.id
    assert second.incident == "site-01/bed-0001/vital_signs/#2"
    assert second.occurrences == 1


def test_started_at_of_a_finding_is_kept_in_the_evidence() -> None:
    e = engine()
    f = Finding(type=AlertType.INACTIVITY, site="s", bed="b", at=T0, severity=Severity.HIGH,
                started_at=T0 - 3 * 3600 * S)
    assert one(e.apply([f], T0)).alert.evidence == {"started_at": T0 - 3 * 3600 * S}


def test_an_evidence_value_of_none_removes_the_key() -> None:
    e = engine(update_interval_ms=0)
    e.apply([finding(a=1, b=2)], T0)
    assert one(e.apply([finding(a=None, c=3)], T0 + 1)).alert.evidence == {"b": 2, "c": 3}


# --- severity --------------------------------------------------------------------------------

def test_severity_is_raised_at_once_and_never_lowered_by_a_finding() -> None:
    e = engine(update_interval_ms=10 * MIN)
    a = one(e.apply([finding(severity=Severity.MEDIUM)], T0)).alert
    assert a.next_escalation_at == T0 + 30 * MIN
    raised = one(e.apply([finding(severity=Severity.CRITICAL)], T0 + S))
    assert raised.action == "updated"
    assert raised.note == "severity raised to critical"
    assert raised.alert.severity is Severity.CRITICAL
    assert raised.alert.next_escalation_at == T0 + S + 60 * S, "escalation brought forward"
    assert e.apply([finding(severity=Severity.LOW)], T0 + 2 * S) == []
    assert e.open_alerts()[0].severity is Severity.CRITICAL


def test_button_cancel_in_the_window_downgrades_and_keeps_the_call_open() -> None:
    e = engine(cancel_window_ms=60 * S)
    press = finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, device="btn", seq=1,
                    device_ts=T0, **{PRESSED_AT: T0})
    a = one(e.apply([press], T0)).alert
    cancel = finding(AlertType.EMERGENCY_BUTTON, Severity.HIGH, device="btn", seq=2,
                     device_ts=T0 + 20 * S, **{CANCELLED_AT: T0 + 20 * S})
    change = one(e.apply([cancel], T0 + 20 * S))
    assert (change.action, change.actor) == ("downgraded", "person")
    assert change.alert.severity is Severity.HIGH
    assert change.alert.status is AlertStatus.OPEN
    assert change.alert.evidence[CANCELLED_AT] == T0 + 20 * S
    assert change.alert.next_escalation_at == T0 + 20 * S + 5 * MIN
    assert change.alert.id == a.id


def test_button_cancel_after_the_window_is_recorded_but_the_call_stays_critical() -> None:
    e = engine(cancel_window_ms=60 * S)
    e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, **{PRESSED_AT: T0})], T0)
    change = one(e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.HIGH,
                                  **{CANCELLED_AT: T0 + 61 * S})], T0 + 61 * S))
    assert change.action == "updated"
    assert change.alert.severity is Severity.CRITICAL
    assert change.alert.evidence["cancel_outside_window"] is True


def test_a_cancel_without_an_open_call_opens_nothing() -> None:
    e = engine()
    assert e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.HIGH,
                            **{CANCELLED_AT: T0})], T0) == []
    assert e.open_alerts() == []


def test_only_an_emergency_call_can_be_downgraded_by_a_cancel() -> None:
    e = engine()
    e.apply([finding(AlertType.FALL, Severity.CRITICAL)], T0)
    e.apply([finding(AlertType.FALL, Severity.HIGH, **{CANCELLED_AT: T0 + 1})], T0 + 1)
    assert e.open_alerts()[0].severity is Severity.CRITICAL


# --- clearing --------------------------------------------------------------------------------

def test_a_non_critical_alert_is_auto_resolved_after_the_condition_stays_clear() -> None:
    e = engine(clear_grace_ms=2 * MIN)
    a = one(e.apply([finding(AlertType.DEVICE_OFFLINE, Severity.MEDIUM, episode="ir-1")],
                    T0)).alert
    cleared = one(e.apply([finding(AlertType.DEVICE_OFFLINE, Severity.MEDIUM, episode="ir-1",
                                   active=False, state="online")], T0 + MIN))
    assert (cleared.action, cleared.actor, cleared.alert.cleared_at) == (
        "cleared", "system", T0 + MIN)
    assert e.apply([finding(AlertType.DEVICE_OFFLINE, Severity.MEDIUM, episode="ir-1",
                            active=False)], T0 + MIN + 1) == [], "repeated clears are no-ops"
    assert e.tick(T0 + 2 * MIN) == []
    resolved = one(e.tick(T0 + 3 * MIN))
    assert (resolved.action, resolved.actor) == ("auto_resolved", "system")
    assert resolved.alert.status is AlertStatus.RESOLVED
    assert resolved.alert.resolved_by == "system"
    assert e.open_alerts() == []
    assert e.get(a.id) == resolved.alert


def test_a_relapse_within_the_grace_keeps_the_alert_open() -> None:
    e = engine(clear_grace_ms=2 * MIN)
    e.apply([finding(AlertType.LOW_BATTERY, Severity.LOW)], T0)
    e.apply([finding(AlertType.LOW_BATTERY, Severity.LOW, active=False)], T0 + MIN)
    again = one(e.apply([finding(AlertType.LOW_BATTERY, Severity.LOW)], T0 + MIN + S))
    assert again.action == "updated"
    assert again.alert.cleared_at is None
    assert e.tick(T0 + 10 * MIN) == []
    assert len(e.open_alerts()) == 1


def test_without_grace_a_cleared_condition_resolves_at_once() -> None:
    e = engine(clear_grace_ms=0)
    e.apply([finding(AlertType.VITAL_SIGNS, Severity.HIGH)], T0)
    change = one(e.apply([finding(AlertType.VITAL_SIGNS, Severity.HIGH, active=False)], T0 + 1))
    assert change.action == "auto_resolved"
    assert change.alert.cleared_at == T0 + 1


@pytest.mark.parametrize(("type_", "severity"), [
    (AlertType.VITAL_SIGNS, Severity.CRITICAL),
    (AlertType.FALL, Severity.CRITICAL),
    (AlertType.FALL, Severity.HIGH),
    (AlertType.EMERGENCY_BUTTON, Severity.HIGH),
])
def test_critical_alerts_falls_and_calls_are_never_auto_resolved(
        type_: AlertType, severity: Severity) -> None:
    e = engine(clear_grace_ms=0)
    e.apply([finding(type_, severity)], T0)
    change = one(e.apply([finding(type_, severity, active=False)], T0 + S))
    assert change.action == "cleared"
    assert change.alert.cleared_at == T0 + S
    e.tick(T0 + 24 * 3600 * S)
    assert [a.status for a in e.open_alerts()] == [AlertStatus.OPEN]


def test_a_clear_for_a_condition_without_alert_does_nothing() -> None:
    e = engine()
    assert e.apply([finding(active=False)], T0) == []


# --- escalation ------------------------------------------------------------------------------

def test_an_unacknowledged_critical_alert_escalates_on_its_schedule() -> None:
    e = engine()
    e.apply([finding(severity=Severity.CRITICAL)], T0)
    assert e.tick(T0 + 59 * S) == []
    first = one(e.tick(T0 + 60 * S))
    assert (first.action, first.actor, first.alert.escalation_level) == (
        "escalated", "system", 1)
    assert first.alert.next_escalation_at == T0 + 240 * S
    assert e.tick(T0 + 239 * S) == []
    assert one(e.tick(T0 + 240 * S)).alert.next_escalation_at == T0 + 540 * S
    assert one(e.tick(T0 + 540 * S)).alert.escalation_level == 3
    assert e.open_alerts()[0].next_escalation_at == T0 + 840 * S


def test_overdue_steps_are_taken_at_once_on_the_original_timeline() -> None:
    e = engine()
    e.apply([finding(severity=Severity.CRITICAL)], T0)
    # Steps due at 60, 240, 540, 840 s: step 2, then step 3 once for its first time and the
    # two repeats missed (the same people).
    second, third = e.tick(T0 + 1000 * S)
    assert [c.alert.escalation_level for c in (second, third)] == [1, 4]
    assert second.note == "4 escalation steps were due: step 2, 1 of 2 at once"
    assert third.note == ("4 escalation steps were due: step 3 (repeat 2), 2 of 2 at once,"
                          " once for 3 due")
    assert third.alert.next_escalation_at == T0 + 1140 * S
    # Later, only repeats of the last step were missed: one change, the same people.
    repeated = one(e.tick(T0 + 1800 * S))  # repeats due at 1140, 1440, 1740 s
    assert repeated.alert.escalation_level == 7
    assert repeated.note == "3 escalation steps were due: step 3 (repeat 5), once for 3 due"


def test_every_step_due_after_a_restore_is_its_own_change_in_order(tmp_path: Path) -> None:
    """Issue #13: a restart during an escalation must not merge the steps missed (step 2's
    recipients were never told)."""
    from alerts.escalation import Chain, Step
    chain = Chain(name="press", steps=(
        Step(recipients=("dispatchers_on_duty",), wait_s=10),
        Step(recipients=("duty_nurse",), wait_s=10),
        Step(recipients=("station_manager",))))
    policy = EscalationPolicy(chains=(chain,))
    path = tmp_path / "alerts.sqlite3"
    first = engine(AlertStore(path), policy=policy)
    first.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL)], T0)
    first.commit()
    first.store.close()
    restarted = engine(AlertStore(path), policy=policy)
    changes = restarted.tick(T0 + 30 * S)  # steps 2 and 3 were due at 10 s and 20 s
    assert [(c.action, c.alert.escalation_level, chain.step(c.alert.escalation_level)[0])
            for c in changes] == [("escalated", 1, 2), ("escalated", 2, 3)]
    assert [c.note for c in changes] == ["2 escalation steps were due: step 2, 1 of 2 at once",
                                         "2 escalation steps were due: step 3, 2 of 2 at once"]
    assert changes[0].seq < changes[1].seq
    assert changes[-1].alert.next_escalation_at is None  # the last step has no wait
    restarted.commit()
    history = restarted.store.history(changes[0].alert.id)
    assert [(c.action, c.alert.escalation_level) for c in history] == [
        ("opened", 0), ("escalated", 1), ("escalated", 2)]
    assert restarted.tick(T0 + 60 * S) == []


def test_acknowledging_stops_escalation() -> None:
    e = engine()
    a = one(e.apply([finding(severity=Severity.CRITICAL)], T0)).alert
    e.tick(T0 + 60 * S)
    acked = e.acknowledge(a.id, actor="d1", note=None, now_ms=T0 + 70 * S)
    assert acked.next_escalation_at is None
    assert acked.escalation_level == 1
    assert e.tick(T0 + 3600 * S) == []


def test_severities_without_repeat_or_steps_stop_escalating() -> None:
    policy = EscalationPolicy(medium=Schedule(steps_ms=(10 * S,)), low=Schedule())
    e = engine(policy=policy)
    e.apply([finding(severity=Severity.MEDIUM), finding(AlertType.LOW_BATTERY, Severity.LOW)],
            T0)
    change = one(e.tick(T0 + 10 * S))
    assert change.alert.severity is Severity.MEDIUM
    assert change.alert.next_escalation_at is None
    assert e.tick(T0 + 10**9) == []


def test_an_urgent_finding_takes_one_escalation_step_at_once_and_only_once() -> None:
    e = engine(update_interval_ms=10 * MIN)
    e.apply([finding(AlertType.FALL, Severity.CRITICAL)], T0)
    change = one(e.apply([finding(AlertType.FALL, Severity.CRITICAL, **{URGENT: True})],
                         T0 + 5 * MIN))
    assert (change.action, change.alert.escalation_level) == ("escalated", 1)
    assert change.alert.next_escalation_at == T0 + 5 * MIN + 180 * S
    assert e.apply([finding(AlertType.FALL, Severity.CRITICAL, **{URGENT: True})],
                   T0 + 6 * MIN) == []


def test_update_only_findings_never_open_an_alert() -> None:
    e = engine(update_interval_ms=0)
    assert e.apply([finding(AlertType.FALL, Severity.CRITICAL, **{UPDATE_ONLY: True})],
                   T0) == []
    e.apply([finding(AlertType.FALL, Severity.CRITICAL)], T0)
    change = one(e.apply([finding(AlertType.FALL, Severity.CRITICAL, moved=True,
                                  **{UPDATE_ONLY: True})], T0 + 1))
    assert change.alert.evidence == {"moved": True}


def test_a_redelivered_device_message_is_not_folded_in_twice() -> None:
    e = engine(update_interval_ms=0)
    msg = {"device": "btn", "seq": 5, "device_ts": T0}
    e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, **msg)], T0)
    assert e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, **msg)],
                   T0 + S) == []
    # A device whose counter restarted still has a newer clock: a real new press.
    newer = {"device": "btn", "seq": 0, "device_ts": T0 + 5 * S}
    assert one(e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, **newer)],
                       T0 + 5 * S)).alert.occurrences == 2


# --- people ----------------------------------------------------------------------------------

# --- handled events ----------------------------------------------------------------------------

def ref(seq: int, ts: int, *, device: str = "btn-1", digest: str = "d", call: bool = True
        ) -> EventRef:
    return EventRef(device=device, seq=seq, device_ts=ts, digest=digest, call=call)


def call(event: EventRef, at: int, *, bed: str = "bed-0001") -> Finding:
    return Finding(type=AlertType.EMERGENCY_BUTTON, site="site-01", bed=bed, at=at,
                   severity=Severity.CRITICAL, event=event)


def test_an_event_is_newer_by_its_seq_or_by_its_device_time() -> None:
    last = ref(7, T0)
    assert ref(8, T0 - MIN).newer_than(last)  # a clock set back, the counter went on
    assert ref(1, T0 + S).newer_than(last)  # a counter reset, the clock went on
    assert not ref(7, T0).newer_than(last)
    assert ref(7, T0).same_as(last)
    assert not ref(7, T0, digest="other").newer_than(last)
    assert not ref(7, T0, digest="other").same_as(last)
    assert not ref(6, T0 - S).newer_than(last)


def test_an_event_not_newer_than_the_last_handled_opens_nothing_whatever_its_alert() -> None:
    e = engine()
    a = one(e.apply([call(ref(7, T0), T0)], T0)).alert
    e.resolve(a.id, actor="d", note="done", now_ms=T0 + MIN)
    assert e.apply([call(ref(7, T0), T0 + 3_600_000)], T0 + 3_600_000) == []  # hours later
    assert e.replays_ignored == 1
    # A call that differs (another content, or older but never handled: a rebooted device)
    # is a new call, never taken for a replay.
    assert not e.is_replay("site-01", "bed-0001", ref(7, T0, digest="x"), T0 + 3_600_000)
    assert not e.is_replay("site-01", "bed-0001", ref(5, T0 - MIN), T0 + 3_600_000)
    # Another device, the other lane of the same device, and a newer event all count.
    assert one(e.apply([call(ref(7, T0, device="btn-2"), T0)], T0)).action == "opened"
    assert one(e.apply([call(ref(8, T0 + S), T0 + 2 * MIN, bed="bed-0003")],
                       T0 + 2 * MIN)).action == "opened"
    assert e.is_replay("site-01", "bed-0001", ref(7, T0), T0 + 2 * MIN)
    # A cancel is held against the calls as well: not one older than the call it would cancel.
    assert e.is_replay("site-01", "bed-0001", ref(7, T0, call=False), T0 + 2 * MIN)
    assert not e.is_replay("site-01", "bed-0001", ref(8, T0 + S, call=False),
                          T0 + 2 * MIN)
    # A call is held against calls only: a cancel that overtook its press never hides it.
    cancel = Finding(type=AlertType.EMERGENCY_BUTTON, site="site-01", bed="bed-0001",
                     at=T0 + 9 * S, severity=Severity.HIGH, evidence={CANCELLED_AT: T0 + 9 * S},
                     event=ref(20, T0 + 9 * S, call=False))
    e.apply([cancel], T0 + 9 * S)
    assert not e.is_replay("site-01", "bed-0001", ref(19, T0 + 8 * S), T0 + 10 * S)


def test_handled_events_are_restored_by_a_restarted_engine(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    e = engine(AlertStore(path))
    e.apply([call(ref(7, T0), T0)], T0)
    e.commit()
    e.store.close()
    restarted = engine(AlertStore(path))
    assert restarted.is_replay("site-01", "bed-0001", ref(7, T0), T0 + 5 * S)
    assert not restarted.is_replay("site-01", "bed-0001", ref(8, T0 + S), T0 + 5 * S)
    assert restarted.apply([call(ref(7, T0), T0 + 5 * S)], T0 + 5 * S) == []
    assert restarted.replays_ignored == 1


def test_an_older_cancel_is_stale_only_while_both_clocks_are_within_the_window(
        tmp_path: Path) -> None:
    """Cancels and recoveries are held against the last call by seq and device time while
    both clocks can be trusted; calls only against the calls handled, message for message."""
    hour = 60 * MIN
    path = tmp_path / "alerts.sqlite3"
    first = engine(AlertStore(path), clock_window_ms=hour, clock_ahead_ms=MIN)
    first.apply([call(ref(5, T0), T0)], T0)
    first.apply([call(ref(9, T0 + 10 * MIN, device="btn-2"), T0)], T0)  # its clock 10 min ahead
    first.commit()
    first.store.close()
    for e in (first, engine(AlertStore(path), clock_window_ms=hour, clock_ahead_ms=MIN)):
        # Both clocks within the window: an older cancel is an old message delivered late.
        assert e.is_replay("site-01", "bed-0001", ref(4, T0 - 30 * MIN, call=False),
                           T0 + 10 * MIN)
        # Its own clock out of the window (behind, or ahead): order means nothing.
        assert not e.is_replay("site-01", "bed-0001", ref(4, T0 - 2 * hour, call=False), T0)
        assert not e.is_replay("site-01", "bed-0001", ref(4, T0 - 2 * MIN, call=False),
                               T0 - 4 * MIN)
        # The remembered call's clock was out of the window when it was received.
        assert not e.is_replay("site-01", "bed-0001", ref(4, T0, device="btn-2", call=False),
                               T0)
        # An older call that was never handled is a call (a rebooted device), clocks or not.
        assert not e.is_replay("site-01", "bed-0001", ref(4, T0 - 30 * MIN), T0 + 10 * MIN)
        # The very same message is a replay whatever the clocks say.
        assert e.is_replay("site-01", "bed-0001", ref(9, T0 + 10 * MIN, device="btn-2"),
                           T0 + 3 * hour)


def test_a_negative_clock_window_is_refused() -> None:
    with pytest.raises(ValueError, match="clock_window_ms"):
        engine(clock_window_ms=-1)
    with pytest.raises(ValueError, match="clock_ahead_ms"):
        engine(clock_ahead_ms=-1)


def test_acknowledge_and_resolve_are_durable_and_audited_with_actor_and_note(
        tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "a.sqlite3")
    e = engine(store)
    a = one(e.apply([finding(severity=Severity.CRITICAL)], T0)).alert
    acked = e.acknowledge(a.id, actor="dispatcher-7", note="calling", now_ms=T0 + 30 * S)
    assert store.get(a.id) == acked
    assert (acked.status, acked.acknowledged_by, acked.acknowledged_at, acked.note) == (
        AlertStatus.ACKNOWLEDGED, "dispatcher-7", T0 + 30 * S, "calling")
    done = e.resolve(a.id, actor="dispatcher-7", note="daughter is there", now_ms=T0 + MIN)
    assert store.get(a.id) == done
    assert (done.status, done.resolved_by, done.resolved_at, done.note) == (
        AlertStatus.RESOLVED, "dispatcher-7", T0 + MIN, "daughter is there")
    history = store.history(a.id)
    assert [(c.action, c.actor, c.note) for c in history] == [
        ("opened", None, None), ("acknowledged", "dispatcher-7", "calling"),
        ("resolved", "dispatcher-7", "daughter is there")]
    assert e.open_alerts() == []


def test_invalid_transitions_and_unknown_alerts_are_refused() -> None:
    e = engine()
    a = one(e.apply([finding()], T0)).alert
    with pytest.raises(AlertNotFound):
        e.acknowledge("nope", actor="d", note=None, now_ms=T0)
    with pytest.raises(AlertNotFound):
        e.resolve("nope", actor="d", note="x", now_ms=T0)
    e.acknowledge(a.id, actor="d", note=None, now_ms=T0)
    with pytest.raises(InvalidTransition, match="acknowledged"):
        e.acknowledge(a.id, actor="d", note=None, now_ms=T0)
    with pytest.raises(ValueError, match="note"):
        e.resolve(a.id, actor="d", note=" ", now_ms=T0)
    with pytest.raises(ValueError, match="actor"):
        e.acknowledge(a.id, actor="", note=None, now_ms=T0)
    e.resolve(a.id, actor="d", note="ok", now_ms=T0)
    with pytest.raises(InvalidTransition, match="resolved"):
        e.resolve(a.id, actor="d", note="again", now_ms=T0)
    with pytest.raises(InvalidTransition):
        e.acknowledge(a.id, actor="d", note=None, now_ms=T0)
    assert e.store.last_seq() == 3


def test_an_open_alert_can_be_resolved_without_acknowledgement() -> None:
    e = engine()
    a = one(e.apply([finding()], T0)).alert
    done = e.resolve(a.id, actor="d", note="false alarm, spoke to her", now_ms=T0 + S)
    assert done.status is AlertStatus.RESOLVED
    assert done.acknowledged_by is None


def test_an_alert_auto_resolved_but_not_yet_committed_is_known_as_resolved() -> None:
    e = engine(clear_grace_ms=0)
    a = one(e.apply([finding()], T0)).alert
    e.apply([finding(active=False)], T0 + 1)
    with pytest.raises(InvalidTransition):
        e.acknowledge(a.id, actor="d", note=None, now_ms=T0 + 2)
    got = e.get(a.id)
    assert got is not None
    assert got.status is AlertStatus.RESOLVED


# --- commit and listeners --------------------------------------------------------------------

def test_commit_writes_everything_staged_and_listeners_get_each_change_once_in_order() -> None:
    e = engine(update_interval_ms=0)
    got: list[AlertChange] = []
    e.add_listener(got.extend)
    e.apply([finding(bed=f"b{i}") for i in range(5)], T0)
    assert got == []
    assert e.staged == 5
    e.commit()
    assert [c.seq for c in got] == [1, 2, 3, 4, 5]
    e.commit()
    assert len(got) == 5, "nothing is delivered twice"
    e.apply([finding(bed="b0", x=1)], T0 + 1)
    e.tick(T0 + 10 * MIN)
    e.commit()
    assert [c.seq for c in got] == list(range(1, e.last_seq + 1))
    assert [c.seq for c in e.store.changes_since(0)] == [c.seq for c in got]


def test_unsubscribed_and_failing_listeners() -> None:
    e = engine()
    kept: list[int] = []
    dropped: list[int] = []

    def failing(changes: list[AlertChange]) -> None:
        raise RuntimeError("listener bug")

    e.add_listener(failing)
    unsubscribe = e.add_listener(lambda cs: dropped.extend(c.seq for c in cs))
    e.add_listener(lambda cs: kept.extend(c.seq for c in cs))
    e.apply([finding(bed="a")], T0)
    e.commit()
    unsubscribe()
    e.apply([finding(bed="b")], T0)
    e.commit()
    assert kept == [1, 2]
    assert dropped == [1]


def test_a_listener_that_commits_does_not_break_the_order() -> None:
    e = engine()
    got: list[int] = []
    opened: list[str] = []

    def acknowledging(changes: list[AlertChange]) -> None:
        for c in changes:
            if c.action == "opened":
                opened.append(c.alert.id)
        while opened:
            e.acknowledge(opened.pop(), actor="bot", note=None, now_ms=T0)

    e.add_listener(acknowledging)
    e.add_listener(lambda cs: got.extend(c.seq for c in cs))
    e.apply([finding(bed="a"), finding(bed="b")], T0)
    e.commit()
    assert got == [1, 2, 3, 4]


def test_a_failed_commit_keeps_the_changes_staged_in_order_for_the_next_one() -> None:
    store = AlertStore(":memory:")
    e = engine(store)
    got: list[int] = []
    e.add_listener(lambda cs: got.extend(c.seq for c in cs))
    e.apply([finding(bed="a")], T0)
    with mock.patch.object(store, "write", side_effect=StoreUnavailable("disk full")), \
            pytest.raises(StoreUnavailable):
        e.commit()
    assert got == []
    assert e.staged == 1
    assert e.urgent_pending is False
    e.apply([finding(bed="b", severity=Severity.CRITICAL)], T0)
    assert e.urgent_pending
    e.commit()
    assert got == [1, 2]
    assert [c.seq for c in store.changes_since(0)] == [1, 2]
    assert not e.urgent_pending


def test_changes_a_commit_cannot_write_are_shown_unstored_once_then_delivered_stored() -> None:
    """A full disk must not silence a call: the unstored listener (the dispatchers' stream)
    gets each change the first time a commit fails to write it, never twice; the regular
    listeners only once it is written; the staged alerts are listed meanwhile."""
    store = AlertStore(":memory:")
    e = engine(store)
    stored: list[int] = []
    shown: list[int] = []
    unsubscribe = e.add_listener(lambda cs: stored.extend(c.seq for c in cs),
                                 unstored=lambda cs: shown.extend(c.seq for c in cs))
    e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, bed="a")], T0)
    with mock.patch.object(store, "write", side_effect=StoreUnavailable("disk full")):
        with pytest.raises(StoreUnavailable):
            e.commit()
        assert (shown, stored) == ([1], [])
        assert [a.bed for a in e.unstored_alerts()] == ["a"]
        e.apply([finding(bed="b")], T0 + S)
        with pytest.raises(StoreUnavailable):
            e.commit()  # the retry shows only what is new
        assert (shown, stored) == ([1, 2], [])
        assert sorted(a.bed for a in e.unstored_alerts()) == ["a", "b"]
    e.commit()
    assert (shown, stored) == ([1, 2], [1, 2])
    assert e.unstored_alerts() == []
    unsubscribe()
    e.apply([finding(bed="c")], T0 + 2 * S)
    with mock.patch.object(store, "write", side_effect=StoreUnavailable("disk full")), \
            pytest.raises(StoreUnavailable):
        e.commit()
    assert shown == [1, 2], "unsubscribed from both"


def test_critical_changes_are_shown_before_their_commit_once_and_again_when_stored() -> None:
    """The emergency path does not wait for the disk: show_critical hands the staged critical
    changes (not the others) to the unstored listener before the commit; the commit then
    delivers them stored; a commit that fails afterwards does not show them again."""
    store = AlertStore(":memory:")
    e = engine(store)
    events: list[tuple[str, int]] = []
    e.add_listener(lambda cs: events.extend(("stored", c.seq) for c in cs),
                   unstored=lambda cs: events.extend(("shown", c.seq) for c in cs))
    e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, bed="a"),
             finding(bed="b", severity=Severity.MEDIUM)], T0)
    assert e.show_critical() == 1
    assert e.show_critical() == 0, "shown once"
    assert events == [("shown", 1)]
    e.commit()
    assert events == [("shown", 1), ("stored", 1), ("stored", 2)]
    e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, bed="c"),
             finding(bed="d", severity=Severity.MEDIUM)], T0 + S)
    e.show_critical()
    with mock.patch.object(store, "write", side_effect=StoreUnavailable("disk full")), \
            pytest.raises(StoreUnavailable):
        e.commit()
    assert events[3:] == [("shown", 3), ("shown", 4)], "the call once, the rest on failure"
    e.commit()
    assert events[5:] == [("stored", 3), ("stored", 4)]


def test_a_change_shown_before_its_commit_is_never_shown_after_it_was_delivered_stored(
        tmp_path: Path) -> None:
    """show_critical on the event loop races the commits on the emergency thread: whatever the
    interleaving, each change shown unstored is shown before it is delivered stored (a
    console would otherwise take the late unstored copy for a new call), and each stored
    change is delivered once."""
    e = engine(AlertStore(tmp_path / "a.sqlite3"), update_interval_ms=0)
    events: list[tuple[str, int]] = []
    lock = threading.Lock()

    def record(kind: str) -> Callable[[list[AlertChange]], None]:
        def listener(changes: list[AlertChange]) -> None:
            with lock:
                events.extend((kind, c.seq) for c in changes)
        return listener

    e.add_listener(record("stored"), unstored=record("shown"))
    stop = threading.Event()

    def committer() -> None:
        while not stop.is_set():
            e.commit()

    thread = threading.Thread(target=committer)
    thread.start()
    try:
        for n in range(400):
            e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, bed=f"b{n}")],
                    T0 + n)
            e.show_critical()
    finally:
        stop.set()
        thread.join()
    e.commit()
    stored = [seq for kind, seq in events if kind == "stored"]
    assert stored == list(range(1, 401)), "each stored change delivered once, in order"
    position = {(kind, seq): i for i, (kind, seq) in enumerate(events)}
    shown = [seq for kind, seq in events if kind == "shown"]
    assert len(shown) == len(set(shown))
    assert all(position[("shown", seq)] < position[("stored", seq)] for seq in shown)


def test_a_failed_acknowledgement_is_written_by_the_next_commit() -> None:
    store = AlertStore(":memory:")
    e = engine(store)
    a = one(e.apply([finding()], T0)).alert
    e.commit()
    with mock.patch.object(store, "write", side_effect=StoreUnavailable("disk full")), \
            pytest.raises(StoreUnavailable):
        e.acknowledge(a.id, actor="d", note=None, now_ms=T0)
    e.commit()
    stored = store.get(a.id)
    assert stored is not None
    assert stored.status is AlertStatus.ACKNOWLEDGED


def test_commits_from_threads_while_findings_arrive_keep_the_log_gap_free(
        tmp_path: Path) -> None:
    e = engine(AlertStore(tmp_path / "a.sqlite3"), update_interval_ms=0)
    got: list[int] = []
    e.add_listener(lambda cs: got.extend(c.seq for c in cs))
    stop = threading.Event()
    errors: list[BaseException] = []

    def committer() -> None:
        try:
            while not stop.is_set():
                e.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=committer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(300):
            e.apply([finding(bed=f"b{i % 40}", n=i)], T0 + i)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    e.commit()
    assert not errors
    assert got == list(range(1, e.last_seq + 1))
    assert [c.seq for c in e.store.changes_since(0, limit=1000)] == got


def test_an_open_critical_change_asks_for_an_immediate_commit() -> None:
    e = engine()
    e.apply([finding(severity=Severity.HIGH)], T0)
    assert not e.urgent_pending
    e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL)], T0)
    assert e.urgent_pending
    e.commit()
    assert not e.urgent_pending


# --- restart ---------------------------------------------------------------------------------

def test_a_restarted_engine_continues_folding_and_timers(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    store = AlertStore(path)
    e = engine(store, update_interval_ms=0)
    call = one(e.apply([finding(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL)], T0)).alert
    offline = one(e.apply([finding(AlertType.DEVICE_OFFLINE, Severity.MEDIUM,
                                   episode="ir-1")], T0)).alert
    old = one(e.apply([finding(AlertType.LOW_BATTERY, Severity.LOW)], T0)).alert
    e.resolve(old.id, actor="d", note="replaced", now_ms=T0 + S)
    e.tick(T0 + 60 * S)
    e.commit()
    before = {a.id: a for a in e.open_alerts()}
    store.close()

    store = AlertStore(path)
    restarted = engine(store, update_interval_ms=0)
    assert {a.id: a for a in restarted.open_alerts()} == before
    assert restarted.last_seq == store.last_seq()
    # Overdue: critical steps at 240 and 540 s are taken at once, on the original timeline.
    change = next(c for c in restarted.tick(T0 + 600 * S) if c.alert.id == call.id)
    assert change.alert.escalation_level == 3
    assert change.alert.next_escalation_at == T0 + 840 * S
    # Folding continues into the restored alert, and the episode counter after a resolve.
    again = one(restarted.apply([finding(AlertType.DEVICE_OFFLINE, Severity.MEDIUM,
                                         episode="ir-1")], T0 + 601 * S))
    assert again.alert.id == offline.id
    assert again.alert.occurrences == 2
    battery = one(restarted.apply([finding(AlertType.LOW_BATTERY, Severity.LOW)], T0 + 602 * S))
    assert battery.alert.incident.endswith("#2")
    restarted.commit()
    assert [c.seq for c in store.changes_since(0)] == list(range(1, store.last_seq() + 1))


def test_a_pending_auto_resolution_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    e = engine(AlertStore(path), clear_grace_ms=2 * MIN)
    e.apply([finding(AlertType.DEVICE_OFFLINE, Severity.MEDIUM)], T0)
    e.apply([finding(AlertType.DEVICE_OFFLINE, Severity.MEDIUM, active=False)], T0 + MIN)
    e.commit()
    e.store.close()
    restarted = engine(AlertStore(path), clear_grace_ms=2 * MIN)
    assert one(restarted.tick(T0 + 3 * MIN)).action == "auto_resolved"


def test_alerts_fixture_types_are_frozen_values() -> None:
    a = one(engine().apply([finding()], T0)).alert
    assert isinstance(a, Alert)
    with pytest.raises(AttributeError):
        a.status = AlertStatus.RESOLVED  # type: ignore[misc]
