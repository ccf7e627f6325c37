"""What dispatchers do while handling an alert (assignment, comments, the response checklist,
calls to the resident and their contacts) and the outcome code it is resolved with: each is a
change in the alert's history (who, when), durable across restarts, leaving the status and
the escalation timeline alone."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from alerts.engine import AlertEngine
from alerts.errors import AlertNotFound, HandlingRefused, InvalidTransition
from alerts.handling import DEFAULT_CHECKLISTS, ResponsePlan, assign, call, check, comment
from alerts.model import Alert, AlertStatus, AlertType, ContactCall, Finding, Severity
from alerts.store import AlertStore

T0 = 1_763_884_800_000
S = 1000
PLAN = ResponsePlan()


def press(engine: AlertEngine, bed: str = "bed-0001") -> Alert:
    [change] = engine.apply([Finding(type=AlertType.EMERGENCY_BUTTON, site="site-01", bed=bed,
                                     at=T0, severity=Severity.CRITICAL)], T0)
    engine.commit()
    return change.alert


def do(engine: AlertEngine, alert: Alert, step: object, *, actor: str = "anna",
       at: int = T0 + 10 * S) -> Alert:
    from alerts.handling import Handling

    assert isinstance(step, Handling)
    return engine.handle(alert.id, action=step.action, actor=actor, note=step.note,
                         change=step.change, now_ms=at)


def test_every_handling_step_is_a_change_with_who_and_when_and_leaves_the_lifecycle_alone(
        ) -> None:
    engine = AlertEngine(AlertStore(":memory:"))
    seen: list[str] = []
    engine.add_listener(lambda changes: seen.extend(c.action for c in changes))
    alert = press(engine)
    do(engine, alert, assign("anna", now_ms=T0 + S), at=T0 + S)
    do(engine, alert, comment("  Resident does not answer; trying her son.  "), at=T0 + 2 * S)
    do(engine, alert, check(PLAN, "call_resident"), at=T0 + 3 * S)
    do(engine, alert, call(0, "no_answer", contacts=2, has_phone=True, by="anna",
                           now_ms=T0 + 4 * S), at=T0 + 4 * S)
    done = do(engine, alert, call(1, "answered", contacts=2, has_phone=True, by="anna",
                                  now_ms=T0 + 5 * S), at=T0 + 5 * S)
    assert done.status is AlertStatus.OPEN
    assert done.next_escalation_at == alert.next_escalation_at
    assert done.escalation_level == 0
    assert (done.assigned_to, done.assigned_at) == ("anna", T0 + S)
    assert done.checklist == ("call_resident",)
    assert done.contact_calls == (
        ContactCall(contact=0, result="no_answer", at=T0 + 4 * S, by="anna"),
        ContactCall(contact=1, result="answered", at=T0 + 5 * S, by="anna"))
    assert done.updated_at == T0 + 5 * S
    history = [(c.action, c.actor, c.note, c.at) for c in engine.store.history(alert.id)]
    assert history[1:] == [
        ("assigned", "anna", "anna", T0 + S),
        ("commented", "anna", "Resident does not answer; trying her son.", T0 + 2 * S),
        ("checklist_checked", "anna", "call_resident", T0 + 3 * S),
        ("contact_called", "anna", "resident: no answer", T0 + 4 * S),
        ("contact_called", "anna", "contact 1: answered", T0 + 5 * S)]
    assert seen == ["opened", "assigned", "commented", "checklist_checked", "contact_called",
                    "contact_called"]


def test_doing_what_is_already_done_records_nothing() -> None:
    engine = AlertEngine(AlertStore(":memory:"))
    alert = press(engine)
    do(engine, alert, assign("anna", now_ms=T0))
    do(engine, alert, check(PLAN, "send_caregiver"))
    before = engine.store.last_seq()
    do(engine, alert, assign("anna", now_ms=T0 + S))
    do(engine, alert, check(PLAN, "send_caregiver"))
    do(engine, alert, check(PLAN, "call_resident", done=False))
    assert engine.store.last_seq() == before
    unchecked = do(engine, alert, check(PLAN, "send_caregiver", done=False))
    assert unchecked.checklist == ()
    unassigned = do(engine, alert, assign(None, now_ms=T0))
    assert (unassigned.assigned_to, unassigned.assigned_at) == (None, None)
    assert [c.action for c in engine.store.history(alert.id)][-2:] == [
        "checklist_unchecked", "unassigned"]


def test_an_item_off_the_types_checklist_or_a_contact_the_profile_lacks_is_refused() -> None:
    engine = AlertEngine(AlertStore(":memory:"))
    alert = press(engine)
    before = engine.store.last_seq()
    with pytest.raises(HandlingRefused) as refused:
        do(engine, alert, check(PLAN, "arrange_battery_change"))
    assert refused.value.reason == "not_on_checklist"
    with pytest.raises(HandlingRefused):
        call(3, "answered", contacts=2, has_phone=True, by="anna", now_ms=T0)
    with pytest.raises(HandlingRefused):
        call(0, "answered", contacts=2, has_phone=False, by="anna", now_ms=T0)
    assert engine.store.last_seq() == before
    assert engine.staged == 0


def test_a_resolved_or_unknown_alert_takes_no_handling() -> None:
    engine = AlertEngine(AlertStore(":memory:"))
    alert = press(engine)
    engine.resolve(alert.id, actor="anna", note="false alarm", outcome="false_alarm",
                   now_ms=T0 + S)
    with pytest.raises(InvalidTransition):
        do(engine, alert, comment("too late"))
    with pytest.raises(AlertNotFound):
        engine.handle("NOPE", action="commented", actor="anna", note="x", now_ms=T0)


def test_the_outcome_is_kept_in_the_alert_and_its_history_and_handling_survives_a_restart(
        tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    engine = AlertEngine(AlertStore(path))
    alert = press(engine)
    do(engine, alert, assign("anna", now_ms=T0))
    do(engine, alert, check(PLAN, "call_resident"))
    do(engine, alert, call(1, "answered", contacts=1, has_phone=False, by="anna", now_ms=T0))
    engine.store.close()

    restarted = AlertEngine(AlertStore(path))
    [kept] = restarted.open_alerts()
    assert (kept.assigned_to, kept.checklist, len(kept.contact_calls)) == (
        "anna", ("call_resident",), 1)
    resolved = restarted.resolve(alert.id, actor="anna", note="son went over",
                                 outcome="family_came", now_ms=T0 + 60 * S)
    assert resolved.outcome == "family_came"
    assert restarted.store.get(alert.id).outcome == "family_came"  # type: ignore[union-attr]
    last = restarted.store.history(alert.id)[-1]
    assert (last.action, last.alert.outcome, last.alert.checklist) == (
        "resolved", "family_came", ("call_resident",))
    restarted.store.close()


def test_an_alert_from_an_older_store_reads_with_nothing_handled() -> None:
    old = {"id": "A", "incident": "s/b/fall/#1", "type": "fall", "severity": "critical",
           "site": "s", "bed": "b", "opened_at": T0, "updated_at": T0, "status": "open"}
    alert = msgspec.json.decode(msgspec.json.encode(old), type=Alert)
    assert (alert.assigned_to, alert.checklist, alert.contact_calls, alert.outcome) == (
        None, (), (), None)


def test_the_response_plan_refuses_bad_codes_and_items() -> None:
    assert PLAN.checklist("fall") == DEFAULT_CHECKLISTS[AlertType.FALL]
    assert PLAN.checklist("site_offline") == ()
    assert "call_resident" in PLAN.items
    with pytest.raises(ValueError, match="outcome code"):
        ResponsePlan(outcomes=("False Alarm",))
    with pytest.raises(ValueError, match="twice"):
        ResponsePlan(outcomes=("other", "other"))
    with pytest.raises(ValueError, match="at least one"):
        ResponsePlan(outcomes=())
    with pytest.raises(ValueError, match="checklist item"):
        ResponsePlan(checklists={"fall": (" leading blank",)})
    assert ResponsePlan(checklists={"fall": ("检查门锁",)}).checklist("fall") == ("检查门锁",)
    with pytest.raises(ValueError):
        comment("   ")
