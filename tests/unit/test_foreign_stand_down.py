"""Only a device whose call stands can cancel it or clear its fall (a fresh tester, 2026-12-02:
behind a permissive broker a device the registry does not list sent ``cancel`` and
``fall_cleared`` on a bed's topics; the bed's real call went from critical to high, its next
escalation from 60 s to 301 s, and the real fall was marked cleared)."""

from __future__ import annotations

from typing import Any

from alerts.engine import CALLING
from alerts.model import AlertChange, AlertType, Severity
from alerts.store import AlertStore
from devices import Message
from tests.unit.test_alerts_rules import MIN, T0, Bed, S, msg


def press(device: str, event: str, seq: int, ts: int) -> Message:
    return msg("button", "event", device, {"ts": ts, "seq": seq, "event": event})


def fall(device: str, event: str, seq: int, ts: int) -> Message:
    return msg("fall", "event", device, {"ts": ts, "seq": seq, "event": event,
                                         "confidence": 0.9, "posture": "lying"})


def one(bed: Bed, type_: AlertType) -> Any:
    [alert] = [a for a in bed.alerts() if a.type is type_]
    return alert


def urgent(changes: list[AlertChange]) -> list[AlertChange]:
    return [c for c in changes if (c.note or "").startswith("urgent")]


def test_a_cancel_from_a_device_that_did_not_call_changes_nothing() -> None:
    bed = Bed(cancel_window_ms=MIN)
    bed.receive(press("btn-0007", "press", 1, T0), T0)
    before = one(bed, AlertType.EMERGENCY_BUTTON)
    assert bed.receive(press("evil-btn", "cancel", 99, T0 + S), T0 + S) == []
    after = one(bed, AlertType.EMERGENCY_BUTTON)
    assert after.severity is Severity.CRITICAL
    assert after.next_escalation_at == before.next_escalation_at
    assert after.evidence["device"] == "btn-0007"
    assert bed.engine.foreign_stand_downs == 1
    # The caller's own cancel still works, within the window.
    [change] = bed.receive(press("btn-0007", "cancel", 2, T0 + 2 * S), T0 + 2 * S)
    assert (change.action, change.alert.severity) == ("downgraded", Severity.HIGH)
    assert change.alert.evidence[CALLING] == []


def test_a_call_pressed_on_two_buttons_is_cancelled_only_once_both_have_cancelled() -> None:
    bed = Bed(cancel_window_ms=MIN)
    bed.receive(press("btn-0007", "press", 1, T0), T0)
    bed.receive(press("pendant-0007", "press", 1, T0 + S), T0 + S)
    assert one(bed, AlertType.EMERGENCY_BUTTON).evidence[CALLING] == ["btn-0007",
                                                                      "pendant-0007"]
    [change] = bed.receive(press("btn-0007", "cancel", 2, T0 + 2 * S), T0 + 2 * S)
    assert (change.action, change.alert.severity) == ("updated", Severity.CRITICAL)
    assert change.note == "cancelled on btn-0007; still calling: pendant-0007"
    # A fake press followed by its own cancel does not soften the real call either.
    bed.receive(press("evil-btn", "press", 1, T0 + 3 * S), T0 + 3 * S)
    bed.receive(press("evil-btn", "cancel", 2, T0 + 4 * S), T0 + 4 * S)
    assert one(bed, AlertType.EMERGENCY_BUTTON).severity is Severity.CRITICAL
    [change] = bed.receive(press("pendant-0007", "cancel", 2, T0 + 5 * S), T0 + 5 * S)
    assert (change.action, change.alert.severity) == ("downgraded", Severity.HIGH)


def test_a_fall_cleared_by_another_device_is_neither_cleared_nor_spared_its_urgency() -> None:
    bed = Bed()
    bed.receive(fall("fs-0007", "fall_detected", 1, T0), T0)
    assert bed.receive(fall("evil-fs", "fall_cleared", 99, T0 + S), T0 + S) == []
    assert one(bed, AlertType.FALL).cleared_at is None
    [change] = urgent(bed.tick(T0 + 5 * MIN))
    assert change.alert.evidence["urgent"] is True, "no movement: urgency still raised"
    # Its own sensor's recovery clears it.
    [change] = bed.receive(fall("fs-0007", "fall_cleared", 2, T0 + 6 * MIN), T0 + 6 * MIN)
    assert change.alert.cleared_at == T0 + 6 * MIN


def test_who_called_survives_a_restart(tmp_path: Any) -> None:
    path = tmp_path / "alerts.sqlite3"
    bed = Bed(AlertStore(path))
    bed.receive(fall("fs-0007", "fall_detected", 1, T0), T0)
    bed.engine.commit()
    restarted = Bed(AlertStore(path))
    restarted.receive(fall("evil-fs", "fall_cleared", 99, T0 + S), T0 + S)
    assert one(restarted, AlertType.FALL).cleared_at is None
    assert urgent(restarted.tick(T0 + 5 * MIN)), "the resumed watch was not ended by it"
    restarted.receive(fall("fs-0007", "fall_cleared", 2, T0 + 6 * MIN), T0 + 6 * MIN)
    assert one(restarted, AlertType.FALL).cleared_at == T0 + 6 * MIN
