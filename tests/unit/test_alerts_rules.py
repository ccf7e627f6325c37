"""Immediate rules: emergency button and fall, through the engine as the gateway runs them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from alerts.engine import AlertEngine
from alerts.errors import StoreUnavailable
from alerts.model import AlertChange, AlertStatus, AlertType, Finding, Severity
from alerts.rules import ImmediateRules
from alerts.store import AlertStore
from devices import Codec, Message

T0 = 1_763_884_800_000
S = 1000
MIN = 60 * S
codec = Codec()


def msg(kind: str, channel: str, device: str, payload: dict[str, Any], *,
        bed: str = "bed-0007") -> Message:
    m = codec.decode(f"homecare/v1/site-01/{bed}/{kind}/{device}/{channel}",
                     json.dumps(payload).encode())
    assert isinstance(m, Message), m
    return m


def button(event: str, seq: int, ts: int, bed: str = "bed-0007") -> Message:
    return msg("button", "event", "btn-0007", {"ts": ts, "seq": seq, "event": event}, bed=bed)


def fall(event: str, seq: int, ts: int, posture: str = "lying") -> Message:
    return msg("fall", "event", "fs-0007", {"ts": ts, "seq": seq, "event": event,
                                            "confidence": 0.93, "posture": posture})


def infrared(seq: int, ts: int, *samples: tuple[int, int]) -> Message:
    return msg("infrared", "telemetry", "ir-0007", {
        "ts": ts, "seq": seq,
        "samples": [{"t": t, "presence": True, "motion": m, "zone": "room"} for t, m in samples]})


class Bed:
    """Rules + engine, fed like the alerting stage feeds them."""

    def __init__(self, store: AlertStore | None = None, **engine_kwargs: Any) -> None:
        self.rules = ImmediateRules(no_motion_ms=5 * MIN)
        self.engine = AlertEngine(store or AlertStore(":memory:"), update_interval_ms=0,
                                  **engine_kwargs)
        self.rules.is_replay = self.engine.is_replay  # as the alerting stage wires them
        self.rules.resume(self.engine.open_alerts())

    def receive(self, message: Message, at: int) -> list[AlertChange]:
        found = self.rules.update([message], [at])
        return self.engine.apply(found, at)

    def tick(self, now: int) -> list[AlertChange]:
        return self.engine.apply(self.rules.evaluate(now), now) + self.engine.tick(now)

    def alerts(self) -> list[Any]:
        return self.engine.open_alerts()


@pytest.mark.parametrize("event", ["press", "long_press"])
def test_a_button_press_is_a_critical_emergency_call_at_once(event: str) -> None:
    bed = Bed()
    [change] = bed.receive(button(event, 41, T0), T0 + 30)
    a = change.alert
    assert (change.action, a.type, a.severity) == ("opened", AlertType.EMERGENCY_BUTTON,
                                                    Severity.CRITICAL)
    assert (a.site, a.bed, a.opened_at) == ("site-01", "bed-0007", T0 + 30)
    assert a.evidence["event"] == event
    assert a.evidence["device"] == "btn-0007"
    assert a.evidence["seq"] == 41
    assert a.evidence["device_ts"] == T0
    assert "cancelled_at" not in a.evidence
    assert bed.engine.urgent_pending


def test_a_second_press_while_the_call_is_open_is_a_repeat_of_it() -> None:
    bed = Bed()
    first = bed.receive(button("press", 1, T0), T0)[0].alert
    [again] = bed.receive(button("press", 2, T0 + 20 * S), T0 + 20 * S)
    assert (again.action, again.alert.id, again.alert.occurrences) == ("repeated", first.id, 2)
    assert again.alert.repeats == 1
    # Still open: the status and the escalation timeline stay (a repeat never delays one).
    assert again.alert.status is AlertStatus.OPEN
    assert again.alert.next_escalation_at == first.next_escalation_at
    assert len(bed.alerts()) == 1


def test_the_same_press_delivered_again_after_a_restart_changes_nothing() -> None:
    bed = Bed()
    bed.receive(button("press", 1, T0), T0)
    bed.rules = ImmediateRules()  # restarted: the pipeline's duplicate window is empty too
    assert bed.receive(button("press", 1, T0), T0 + 5 * S) == []


# --- handled calls never come back (durable memory per device) ------------------------------

def restarted(bed: Bed, path: Path) -> Bed:
    """The gateway restarted: everything staged committed, a fresh engine and fresh rules on
    the same store (the pipeline's duplicate window is empty too)."""
    bed.engine.commit()
    bed.engine.store.close()
    return Bed(AlertStore(path))


def resolve_all(bed: Bed, now: int) -> None:
    for alert in bed.alerts():
        bed.engine.resolve(alert.id, actor="dispatcher", note="handled", now_ms=now)


def test_the_same_press_after_a_restart_opens_nothing_although_its_call_was_resolved(
        tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    bed = Bed(AlertStore(path))
    bed.receive(button("press", 7, T0), T0)
    resolve_all(bed, T0 + 2 * MIN)
    bed = restarted(bed, path)
    # The broker delivers the retained press again, or the device re-sends it.
    assert bed.receive(button("press", 7, T0), T0 + 3 * MIN) == []
    assert bed.engine.replays_ignored == 1
    assert bed.alerts() == []
    assert bed.engine.store.count() == 1


def test_the_same_press_re_sent_hours_later_opens_nothing_after_its_call_was_resolved() -> None:
    bed = Bed()
    bed.receive(button("press", 7, T0), T0)
    resolve_all(bed, T0 + 5 * MIN)
    for hours in (1, 6, 30):
        assert bed.receive(button("press", 7, T0), T0 + hours * 3_600_000) == []
    assert bed.engine.replays_ignored == 3
    assert bed.engine.store.count() == 1


def test_the_same_press_again_while_its_call_is_open_changes_nothing() -> None:
    bed = Bed()
    [opened] = bed.receive(button("press", 7, T0), T0)
    assert bed.receive(button("press", 7, T0), T0 + 3 * 3_600_000) == []
    assert bed.alerts()[0] == opened.alert


def test_a_press_delayed_five_minutes_in_the_network_still_calls() -> None:
    bed = Bed()
    bed.receive(button("press", 7, T0), T0)
    resolve_all(bed, T0 + MIN)
    # Pressed at T0 + 2 min (seq 8), received 5 minutes later.
    [change] = bed.receive(button("press", 8, T0 + 2 * MIN), T0 + 7 * MIN)
    assert change.action == "opened"
    assert change.alert.incident.endswith("#2")
    assert bed.engine.replays_ignored == 0


def test_a_button_that_reset_its_counter_still_calls_with_its_newer_clock(
        tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    bed = Bed(AlertStore(path))
    bed.receive(button("press", 500, T0), T0)
    resolve_all(bed, T0 + MIN)
    bed = restarted(bed, path)
    [change] = bed.receive(button("press", 1, T0 + 2 * 3_600_000), T0 + 2 * 3_600_000)
    assert change.action == "opened"


Y2000 = 946_684_800_000
"""2000-01-01: where a button's clock stands after a battery change without time sync."""
HOUR = 60 * MIN


def handled_press(tmp_path: Path, seq: int, ts: int, *, restart: bool) -> Bed:
    """A button whose press ``seq`` (device time ``ts``, received at T0) was handled and
    resolved, then, with ``restart``, a gateway restart."""
    path = tmp_path / "alerts.sqlite3"
    bed = Bed(AlertStore(path))
    [opened] = bed.receive(button("press", seq, ts), T0)
    assert opened.action == "opened"
    resolve_all(bed, T0 + 2 * MIN)
    return restarted(bed, path) if restart else bed


@pytest.mark.parametrize("restart", [False, True])
def test_a_button_whose_battery_change_reset_counter_and_clock_to_2000_still_calls(
        tmp_path: Path, restart: bool) -> None:
    bed = handled_press(tmp_path, 8, T0, restart=restart)
    [first] = bed.receive(button("press", 1, Y2000 + 5 * S), T0 + HOUR)
    assert (first.action, first.alert.incident[-2:]) == ("opened", "#2")
    assert first.alert.severity is Severity.CRITICAL
    # The next press is a repeat of that new call, not dropped.
    [second] = bed.receive(button("press", 2, Y2000 + 65 * S), T0 + HOUR + MIN)
    assert (second.action, second.alert.id, second.alert.repeats) == (
        "repeated", first.alert.id, 1)
    assert bed.engine.replays_ignored == 0


@pytest.mark.parametrize("restart", [False, True])
def test_a_button_whose_clock_reset_to_zero_still_calls(tmp_path: Path, restart: bool
                                                        ) -> None:
    bed = handled_press(tmp_path, 8, T0, restart=restart)
    [first] = bed.receive(button("press", 1, 0), T0 + HOUR)
    assert first.action == "opened"
    [second] = bed.receive(button("press", 2, 60 * S), T0 + HOUR + MIN)
    assert (second.action, second.alert.id) == ("repeated", first.alert.id)
    assert bed.engine.replays_ignored == 0


@pytest.mark.parametrize("restart", [False, True])
def test_a_press_after_a_press_with_a_microseconds_clock_still_calls(
        tmp_path: Path, restart: bool) -> None:
    # The handled press's time glitched to microseconds: far in the future.
    bed = handled_press(tmp_path, 8, T0 * 1000, restart=restart)
    [change] = bed.receive(button("press", 1, T0 + HOUR), T0 + HOUR)
    assert change.action == "opened"
    assert bed.engine.replays_ignored == 0


def test_a_press_while_the_call_is_open_still_calls_after_a_clock_reset() -> None:
    bed = Bed()
    [opened] = bed.receive(button("press", 8, T0), T0)
    bed.engine.acknowledge(opened.alert.id, actor="dispatcher", note=None, now_ms=T0 + MIN)
    [again] = bed.receive(button("press", 1, Y2000), T0 + 2 * MIN)
    assert (again.action, again.alert.status) == ("repeated", AlertStatus.OPEN)


@pytest.mark.parametrize("restart", [False, True])
def test_the_same_press_re_sent_opens_nothing_even_with_a_wrong_clock(
        tmp_path: Path, restart: bool) -> None:
    bed = handled_press(tmp_path, 1, Y2000 + 5 * S, restart=restart)
    for hours in (1, 30):
        assert bed.receive(button("press", 1, Y2000 + 5 * S), T0 + hours * HOUR) == []
    assert bed.engine.replays_ignored == 2
    assert bed.engine.store.count() == 1


@pytest.mark.parametrize("restart", [False, True])
def test_an_older_press_re_sent_hours_later_opens_nothing_when_both_clocks_are_right(
        tmp_path: Path, restart: bool) -> None:
    """Press 7 and press 8 were handled; press 7 comes again (not the last one handled)."""
    path = tmp_path / "alerts.sqlite3"
    bed = Bed(AlertStore(path))
    bed.receive(button("press", 7, T0 - 10 * MIN), T0 - 10 * MIN)
    bed.receive(button("press", 8, T0), T0)
    resolve_all(bed, T0 + MIN)
    if restart:
        bed = restarted(bed, path)
    assert bed.receive(button("press", 7, T0 - 10 * MIN), T0 + 3 * HOUR) == []
    assert bed.engine.replays_ignored == 1


@pytest.mark.parametrize("restart", [False, True])
def test_a_press_after_a_reboot_that_set_the_clock_back_inside_the_window_still_calls(
        tmp_path: Path, restart: bool) -> None:
    """A reboot restarts the counter and brings the clock back a little behind (restored from
    flash, or an NTP correction of a clock that ran fast): not newer by seq nor by time, yet a
    call that was never handled."""
    bed = handled_press(tmp_path, 50, T0, restart=restart)
    [change] = bed.receive(button("press", 2, T0 - HOUR), T0 + 2 * MIN)
    assert change.action == "opened"
    assert bed.engine.replays_ignored == 0


@pytest.mark.parametrize("restart", [False, True])
def test_an_old_press_re_sent_by_a_device_with_a_wrong_clock_opens_nothing(
        tmp_path: Path, restart: bool) -> None:
    """Not the last one handled, and its clock in seconds: still the same message again."""
    seconds = T0 // 1000
    path = tmp_path / "alerts.sqlite3"
    bed = Bed(AlertStore(path))
    bed.receive(button("press", 50, seconds), T0)
    bed.receive(button("press", 51, seconds + 1), T0 + S)
    resolve_all(bed, T0 + MIN)
    if restart:
        bed = restarted(bed, path)
    assert bed.receive(button("press", 50, seconds), T0 + 3 * HOUR) == []
    assert bed.engine.replays_ignored == 1


def test_a_press_overtaken_by_its_cancel_still_calls() -> None:
    bed = Bed()
    assert bed.receive(button("cancel", 8, T0 + 10 * S), T0 + 10 * S) == []
    [change] = bed.receive(button("press", 7, T0), T0 + 12 * S)
    assert change.action == "opened"
    # The cancel that was handled is not handled twice.
    assert bed.receive(button("cancel", 8, T0 + 10 * S), T0 + 20 * S) == []


def test_a_cancel_or_recovery_older_than_the_call_cancels_or_clears_nothing() -> None:
    bed = Bed(cancel_window_ms=60 * S)
    bed.receive(button("press", 7, T0), T0)
    resolve_all(bed, T0 + MIN)
    [call] = bed.receive(button("press", 9, T0 + 2 * MIN), T0 + 2 * MIN)
    # A cancel sent before that press, delivered after it.
    assert bed.receive(button("cancel", 8, T0 + MIN), T0 + 2 * MIN + 5 * S) == []
    assert bed.alerts()[0].severity is Severity.CRITICAL
    [fell] = bed.receive(fall("fall_detected", 5, T0), T0)
    assert bed.receive(fall("fall_cleared", 4, T0 - MIN, posture="standing"), T0 + S) == []
    assert bed.rules.watched_falls == 1, "the fall is still watched for movement"
    assert {a.id: a.cleared_at for a in bed.alerts()} == {call.alert.id: None,
                                                          fell.alert.id: None}


def test_a_cancel_that_changed_nothing_is_remembered_all_the_same(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    bed = Bed(AlertStore(path))
    bed.receive(button("press", 1, T0), T0)
    bed.engine.commit()
    assert bed.receive(button("cancel", 2, T0 + 5 * MIN), T0 + 5 * MIN)  # recorded on the call
    resolve_all(bed, T0 + 6 * MIN)
    assert bed.receive(button("cancel", 3, T0 + 7 * MIN), T0 + 7 * MIN) == []
    assert bed.engine.staged == 1  # no change, but the event to remember
    bed = restarted(bed, path)
    [again] = bed.rules.update([button("cancel", 3, T0 + 7 * MIN)], [T0 + 8 * MIN])
    assert again.event is not None
    assert bed.engine.is_replay("site-01", "bed-0007", again.event, T0 + 8 * MIN)


def test_a_replayed_fall_arms_no_watch_and_raises_no_urgency(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    bed = Bed(AlertStore(path))
    [opened] = bed.receive(fall("fall_detected", 1, T0), T0)
    bed.receive(infrared(1, T0 + MIN, (T0 + MIN, 2)), T0 + MIN)  # moving: watch ended
    bed.engine.acknowledge(opened.alert.id, actor="d", note=None, now_ms=T0 + 2 * MIN)
    bed = restarted(bed, path)
    assert bed.receive(fall("fall_detected", 1, T0), T0 + 3 * MIN) == []
    assert bed.rules.watched_falls == 0
    assert bed.tick(T0 + 20 * MIN) == []
    assert bed.alerts()[0].status is AlertStatus.ACKNOWLEDGED


class _FailsOn:
    """The store's connection, failing (as a full disk would) on a statement naming ``table``,
    after the statements before it in the transaction succeeded."""

    def __init__(self, db: sqlite3.Connection, table: str) -> None:
        self.db = db
        self.table = table

    def executemany(self, sql: str, rows: Any) -> Any:
        if self.table in sql:
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_the_memory_of_a_press_is_durable_only_with_its_alert(tmp_path: Path) -> None:
    """One transaction: a commit that fails keeps neither, so the redelivered press (never
    acknowledged to the broker) still opens its call after a restart."""
    path = tmp_path / "alerts.sqlite3"
    bed = Bed(AlertStore(path))
    bed.receive(button("press", 7, T0), T0)
    store = bed.engine.store
    connection = store._db
    store._db = _FailsOn(connection, "handled_events")  # type: ignore[assignment]
    with pytest.raises(StoreUnavailable):
        bed.engine.commit()
    store._db = connection
    store.close()
    fresh = Bed(AlertStore(path))
    assert fresh.engine.store.count() == 0
    assert fresh.engine.store.handled_events() == []
    [change] = fresh.receive(button("press", 7, T0), T0 + 5 * S)
    assert change.action == "opened"
    fresh.engine.commit()
    assert [h.event.seq for h in fresh.engine.store.handled_events()] == [7]
    assert fresh.engine.store.count() == 1


def test_a_failed_commit_keeps_the_memory_staged_for_the_next_one() -> None:
    bed = Bed()
    bed.receive(button("press", 7, T0), T0)
    with mock.patch.object(bed.engine.store, "write", side_effect=StoreUnavailable("full")), \
            pytest.raises(StoreUnavailable):
        bed.engine.commit()
    assert bed.engine.staged == 2  # the change and the event to remember
    bed.engine.commit()
    assert bed.engine.staged == 0
    assert [h.event.seq for h in bed.engine.store.handled_events()] == [7]


# --- repeat calls are never silent -------------------------------------------------------------

@pytest.mark.parametrize("event", ["press", "long_press"])
def test_a_new_press_on_an_acknowledged_call_needs_acknowledgement_again(
        event: str, tmp_path: Path) -> None:
    bed = Bed(AlertStore(tmp_path / "alerts.sqlite3"))
    [opened] = bed.receive(button("press", 1, T0), T0)
    bed.engine.acknowledge(opened.alert.id, actor="anna", note="calling back",
                           now_ms=T0 + 30 * S)
    assert bed.tick(T0 + 10 * MIN) == []  # acknowledged: no escalation
    [change] = bed.receive(button(event, 2, T0 + 10 * MIN), T0 + 10 * MIN)
    a = change.alert
    assert (change.action, a.id) == ("repeated", opened.alert.id)
    assert a.status is AlertStatus.OPEN
    assert a.repeats == 1
    assert (a.acknowledged_by, a.acknowledged_at) == (None, None)
    # Escalation restarted from the repeat, at the start of the critical schedule.
    assert (a.escalation_level, a.next_escalation_at) == (0, T0 + 11 * MIN)
    assert "needs acknowledgement again" in (change.note or "")
    assert bed.engine.urgent_pending
    [escalated] = bed.tick(T0 + 11 * MIN)
    assert (escalated.action, escalated.alert.escalation_level) == ("escalated", 1)
    bed.engine.commit()
    assert [c.action for c in bed.engine.store.history(a.id)] == [
        "opened", "acknowledged", "repeated", "escalated"]
    # A dispatcher acknowledges again; resolving ends it.
    again = bed.engine.acknowledge(a.id, actor="ben", note=None, now_ms=T0 + 12 * MIN)
    assert (again.status, again.repeats, again.next_escalation_at) == (
        AlertStatus.ACKNOWLEDGED, 1, None)


def test_a_second_fall_on_an_acknowledged_fall_needs_acknowledgement_again() -> None:
    bed = Bed()
    [opened] = bed.receive(fall("fall_detected", 1, T0), T0)
    bed.engine.acknowledge(opened.alert.id, actor="d", note=None, now_ms=T0 + 30 * S)
    bed.receive(fall("fall_cleared", 2, T0 + MIN, posture="standing"), T0 + MIN)
    [change] = bed.receive(fall("fall_detected", 3, T0 + 4 * MIN), T0 + 4 * MIN)
    assert (change.action, change.alert.status, change.alert.repeats) == (
        "repeated", AlertStatus.OPEN, 1)
    assert change.alert.next_escalation_at == T0 + 5 * MIN


def test_a_press_on_a_call_downgraded_by_a_cancel_is_critical_and_a_repeat() -> None:
    bed = Bed(cancel_window_ms=60 * S)
    bed.receive(button("press", 1, T0), T0)
    bed.receive(button("cancel", 2, T0 + 10 * S), T0 + 10 * S)
    [change] = bed.receive(button("press", 3, T0 + 30 * S), T0 + 30 * S)
    assert (change.action, change.alert.severity, change.alert.repeats) == (
        "repeated", Severity.CRITICAL, 1)


def test_a_cancel_in_the_window_downgrades_the_call_to_high_and_keeps_it_open() -> None:
    bed = Bed(cancel_window_ms=60 * S)
    bed.receive(button("press", 1, T0), T0)
    [change] = bed.receive(button("cancel", 2, T0 + 45 * S), T0 + 45 * S)
    assert change.action == "downgraded"
    assert change.alert.severity is Severity.HIGH
    assert change.alert.status is AlertStatus.OPEN
    assert change.alert.evidence["cancelled_at"] == T0 + 45 * S
    # Pressed again after cancelling: critical again, the cancel forgotten.
    [again] = bed.receive(button("press", 3, T0 + 90 * S), T0 + 90 * S)
    assert again.alert.severity is Severity.CRITICAL
    assert "cancelled_at" not in again.alert.evidence


def test_the_cancel_window_counts_from_the_last_press() -> None:
    bed = Bed(cancel_window_ms=60 * S)
    bed.receive(button("press", 1, T0), T0)
    bed.receive(button("press", 2, T0 + 50 * S), T0 + 50 * S)
    [change] = bed.receive(button("cancel", 3, T0 + 100 * S), T0 + 100 * S)
    assert change.action == "downgraded"


def test_a_cancel_after_the_window_does_not_downgrade() -> None:
    bed = Bed(cancel_window_ms=60 * S)
    bed.receive(button("press", 1, T0), T0)
    [change] = bed.receive(button("cancel", 2, T0 + 61 * S), T0 + 61 * S)
    assert change.action == "updated"
    assert change.alert.severity is Severity.CRITICAL
    assert change.alert.evidence["cancel_outside_window"] is True


def test_a_cancel_alone_raises_nothing() -> None:
    bed = Bed()
    assert bed.receive(button("cancel", 1, T0), T0) == []


def test_a_fall_is_critical_at_once_and_recovery_keeps_it_open_for_acknowledgement() -> None:
    bed = Bed(clear_grace_ms=0)
    [opened] = bed.receive(fall("fall_detected", 1, T0), T0)
    assert (opened.alert.type, opened.alert.severity) == (AlertType.FALL, Severity.CRITICAL)
    assert opened.alert.evidence["confidence"] == 0.93
    [cleared] = bed.receive(fall("fall_cleared", 2, T0 + 3 * MIN, posture="standing"),
                            T0 + 3 * MIN)
    assert cleared.action == "cleared"
    assert cleared.alert.cleared_at == T0 + 3 * MIN
    assert cleared.alert.status is AlertStatus.OPEN
    assert cleared.alert.evidence["posture"] == "standing"
    bed.tick(T0 + 60 * MIN)
    assert [a.status for a in bed.alerts()] == [AlertStatus.OPEN], "never auto-resolved"
    assert bed.rules.watched_falls == 0


def _urgent(changes: list[AlertChange]) -> list[AlertChange]:
    return [c for c in changes if (c.note or "").startswith("urgent")]


def test_a_fall_without_movement_raises_urgency_once_with_an_escalation_step() -> None:
    bed = Bed()
    bed.receive(fall("fall_detected", 1, T0), T0)
    bed.receive(infrared(1, T0 + 2 * MIN, (T0 + MIN, 0), (T0 + 2 * MIN, 0)), T0 + 2 * MIN)
    assert _urgent(bed.tick(T0 + 5 * MIN - 1)) == [], "not before N minutes"
    level = bed.alerts()[0].escalation_level
    [change] = _urgent(bed.tick(T0 + 5 * MIN))
    a = change.alert
    assert change.action == "escalated"
    assert a.escalation_level == level + 1
    assert a.evidence["urgent"] is True
    assert a.evidence["no_motion_since"] == T0
    assert a.evidence["infrared_samples_since_fall"] == 2
    assert _urgent(bed.tick(T0 + 6 * MIN)) == [], "once per fall"


def test_urgency_on_an_acknowledged_fall_needs_acknowledgement_again() -> None:
    bed = Bed()
    a = bed.receive(fall("fall_detected", 1, T0), T0)[0].alert
    bed.engine.acknowledge(a.id, actor="d", note="calling", now_ms=T0 + 30 * S)
    [change] = bed.tick(T0 + 5 * MIN)
    assert change.action == "repeated"
    assert change.alert.evidence["urgent"] is True
    assert change.alert.status is AlertStatus.OPEN
    assert change.alert.repeats == 1
    assert change.alert.escalation_level == 0
    assert change.alert.next_escalation_at == T0 + 5 * MIN + 60 * S


def test_movement_after_the_fall_prevents_urgency_and_is_recorded() -> None:
    bed = Bed()
    bed.receive(fall("fall_detected", 1, T0), T0)
    [change] = bed.receive(infrared(1, T0 + 2 * MIN, (T0 + 90 * S, 3)), T0 + 2 * MIN)
    assert change.alert.evidence["motion_after_fall_at"] == T0 + 90 * S
    assert bed.rules.evaluate(T0 + 30 * MIN) == []
    assert bed.rules.watched_falls == 0


def test_movement_before_the_fall_in_a_late_batch_does_not_count() -> None:
    bed = Bed()
    bed.receive(fall("fall_detected", 1, T0), T0)
    # A batch received after the fall whose moving sample was taken before it.
    assert bed.receive(infrared(1, T0 + 30 * S, (T0 - 30 * S, 5), (T0 + 30 * S, 0)),
                       T0 + 30 * S) == []
    assert len(bed.rules.evaluate(T0 + 5 * MIN)) == 1


def test_device_clock_skew_does_not_fool_the_movement_check() -> None:
    bed = Bed()
    bed.receive(fall("fall_detected", 1, T0), T0)
    skew = -3600 * S  # the infrared sensor's clock is an hour behind
    found = bed.rules.update([infrared(1, T0 + 2 * MIN + skew,
                                       (T0 + 2 * MIN + skew, 4))], [T0 + 2 * MIN])
    assert [f.evidence.get("motion_after_fall_at") for f in found] == [T0 + 2 * MIN]


def test_movement_after_a_resolved_fall_does_not_bring_the_alert_back() -> None:
    bed = Bed()
    a = bed.receive(fall("fall_detected", 1, T0), T0)[0].alert
    bed.engine.resolve(a.id, actor="d", note="spoke to her", now_ms=T0 + MIN)
    assert bed.receive(infrared(1, T0 + 2 * MIN, (T0 + 2 * MIN, 4)), T0 + 2 * MIN) == []
    assert bed.tick(T0 + 10 * MIN) == []
    assert bed.alerts() == []


def test_a_restarted_gateway_still_raises_urgency_for_an_earlier_fall() -> None:
    bed = Bed()
    bed.receive(fall("fall_detected", 1, T0), T0)
    fresh = ImmediateRules(no_motion_ms=5 * MIN)
    fresh.resume(bed.alerts())
    [urgent] = fresh.evaluate(T0 + 5 * MIN)
    assert isinstance(urgent, Finding)
    assert urgent.evidence["urgent"] is True
    moved = ImmediateRules()
    bed.receive(infrared(1, T0 + MIN, (T0 + MIN, 2)), T0 + MIN)
    moved.resume(bed.alerts())
    assert moved.watched_falls == 0


def test_other_messages_raise_nothing_and_keep_no_state() -> None:
    rules = ImmediateRules()
    messages = [
        msg("infrared", "telemetry", "ir-1", {"ts": T0, "seq": 1, "presence": True,
                                              "motion": 0}),
        msg("audio", "telemetry", "au-1", {"ts": T0, "seq": 1, "level_db": 80.0}),
        msg("fall", "telemetry", "fs-1", {"ts": T0, "seq": 1, "in_bed": False}),
        msg("button", "status", "btn-1", {"ts": T0, "seq": 1, "state": "offline"}),
        msg("badge", "event", "bg-1", {"ts": T0, "seq": 1, "event": "check_in",
                                       "caregiver": "c1", "visit": "v1"}),
    ]
    assert rules.update(messages, [T0] * len(messages)) == []
    assert rules.evaluate(T0 + 10**9) == []
    assert rules.watched_falls == 0


def test_a_fall_watch_is_dropped_after_a_day() -> None:
    rules = ImmediateRules()
    rules.update([fall("fall_detected", 1, T0)], [T0])
    rules.evaluate(T0 + 5 * MIN)
    rules.evaluate(T0 + 25 * 3600 * S)
    assert rules.watched_falls == 0
