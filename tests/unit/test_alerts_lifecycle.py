"""The alert lifecycle as a state machine, driven by hypothesis.

Whatever order findings, ticks, acknowledgements, resolutions, commits and restarts come in:
open -> acknowledged -> resolved is the only path (open -> resolved allowed), invalid
transitions are refused without changing anything, every transition is in the audit log with a
gap-free sequence, and an alert's history is its transitions in order, ending in its state.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from alerts.engine import AlertEngine
from alerts.errors import InvalidTransition
from alerts.escalation import EscalationPolicy, Schedule
from alerts.model import AlertChange, AlertStatus, AlertType, Finding, Severity
from alerts.store import AlertStore, split_incident

T0 = 1_763_884_800_000
BEDS = ("b1", "b2")
TYPES = (AlertType.EMERGENCY_BUTTON, AlertType.VITAL_SIGNS, AlertType.LOW_BATTERY)
ALLOWED = {
    # (status before, action) -> status after
    (AlertStatus.OPEN, "updated"): AlertStatus.OPEN,
    (AlertStatus.OPEN, "escalated"): AlertStatus.OPEN,
    (AlertStatus.OPEN, "downgraded"): AlertStatus.OPEN,
    (AlertStatus.OPEN, "cleared"): AlertStatus.OPEN,
    (AlertStatus.OPEN, "acknowledged"): AlertStatus.ACKNOWLEDGED,
    (AlertStatus.OPEN, "resolved"): AlertStatus.RESOLVED,
    (AlertStatus.OPEN, "auto_resolved"): AlertStatus.RESOLVED,
    (AlertStatus.ACKNOWLEDGED, "updated"): AlertStatus.ACKNOWLEDGED,
    (AlertStatus.ACKNOWLEDGED, "downgraded"): AlertStatus.ACKNOWLEDGED,
    (AlertStatus.ACKNOWLEDGED, "cleared"): AlertStatus.ACKNOWLEDGED,
    (AlertStatus.ACKNOWLEDGED, "resolved"): AlertStatus.RESOLVED,
    (AlertStatus.ACKNOWLEDGED, "auto_resolved"): AlertStatus.RESOLVED,
}
POLICY = EscalationPolicy(critical=Schedule(steps_ms=(1000,), repeat_ms=2000),
                          high=Schedule(steps_ms=(3000,)), medium=Schedule(), low=Schedule())


class Lifecycle(RuleBasedStateMachine):
    alert_ids = Bundle("alert_ids")

    @initialize()
    def start(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "alerts.sqlite3"
        self.now = T0
        self.delivered: list[AlertChange] = []
        self.engine = self._engine()
        self.expected_status: dict[str, AlertStatus] = {}

    def _engine(self) -> AlertEngine:
        engine = AlertEngine(AlertStore(self.path), policy=POLICY, cancel_window_ms=5000,
                             clear_grace_ms=2000, update_interval_ms=1500)
        engine.add_listener(self.delivered.extend)
        return engine

    def teardown(self) -> None:
        if hasattr(self, "engine"):
            self.engine.store.close()
            self.dir.cleanup()

    def _track(self, changes: list[AlertChange]) -> list[str]:
        for change in changes:
            self.expected_status[change.alert.id] = change.alert.status
        return [c.alert.id for c in changes if c.action == "opened"]

    @rule(target=alert_ids, bed=st.sampled_from(BEDS), type_=st.sampled_from(TYPES),
          severity=st.sampled_from(list(Severity)), active=st.booleans(),
          cancel=st.booleans(), advance=st.integers(0, 3000))
    def finding(self, bed: str, type_: AlertType, severity: Severity, active: bool,
                cancel: bool, advance: int) -> object:
        self.now += advance
        evidence: dict[str, object] = {"v": self.now}
        if cancel and type_ is AlertType.EMERGENCY_BUTTON:
            evidence["cancelled_at"] = self.now
        f = Finding(type=type_, site="s", bed=bed, at=self.now, severity=severity,
                    active=active, evidence=evidence)
        opened = self._track(self.engine.apply([f], self.now))
        return opened[0] if opened else "unknown-id"

    @rule(advance=st.integers(0, 5000))
    def tick(self, advance: int) -> None:
        self.now += advance
        self._track(self.engine.tick(self.now))

    @rule(alert_id=alert_ids)
    def acknowledge(self, alert_id: str) -> None:
        before = self.expected_status.get(alert_id)
        try:
            alert = self.engine.acknowledge(alert_id, actor="d1", note="n", now_ms=self.now)
        except InvalidTransition:
            assert before in (AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED)
            return
        except LookupError:
            assert before is None
            return
        assert before is AlertStatus.OPEN
        assert alert.status is AlertStatus.ACKNOWLEDGED
        assert alert.next_escalation_at is None
        self.expected_status[alert_id] = alert.status
        assert self.engine.store.get(alert_id) == alert, "durable before returning"

    @rule(alert_id=consumes(alert_ids))
    def resolve(self, alert_id: str) -> None:
        before = self.expected_status.get(alert_id)
        try:
            alert = self.engine.resolve(alert_id, actor="d2", note="done", now_ms=self.now)
        except InvalidTransition:
            assert before is AlertStatus.RESOLVED
            return
        except LookupError:
            assert before is None
            return
        assert before in (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
        self.expected_status[alert_id] = alert.status
        assert self.engine.store.get(alert_id) == alert

    @rule()
    def commit(self) -> None:
        self.engine.commit()

    @precondition(lambda self: hasattr(self, "engine"))
    @rule()
    def restart(self) -> None:
        self.engine.commit()
        before = {a.id: a for a in self.engine.open_alerts()}
        self.engine.store.close()
        self.engine = self._engine()
        after = {a.id: a for a in self.engine.open_alerts()}
        assert after.keys() == before.keys()
        for alert_id, alert in after.items():
            # Held-back repeats (occurrences, evidence) may be older; the lifecycle is not.
            old = before[alert_id]
            assert (alert.status, alert.severity, alert.escalation_level,
                    alert.next_escalation_at, alert.cleared_at) == (
                old.status, old.severity, old.escalation_level, old.next_escalation_at,
                old.cleared_at)

    @invariant()
    def one_unresolved_alert_per_incident(self) -> None:
        keys = [split_incident(a.incident)[0] for a in self.engine.open_alerts()]
        assert len(keys) == len(set(keys))
        assert all(a.status is not AlertStatus.RESOLVED for a in self.engine.open_alerts())

    @invariant()
    def committed_log_is_gap_free_delivered_once_and_each_history_is_a_valid_path(
            self) -> None:
        store = self.engine.store
        log = store.changes_since(0, limit=100_000)
        assert [c.seq for c in log] == list(range(1, len(log) + 1))
        assert self.delivered == log
        histories: dict[str, list[AlertChange]] = {}
        for change in log:
            histories.setdefault(change.alert.id, []).append(change)
        for alert_id, history in histories.items():
            assert history[0].action == "opened"
            assert history[0].alert.status is AlertStatus.OPEN
            status = AlertStatus.OPEN
            for change in history[1:]:
                status = ALLOWED[(status, change.action)]
                assert change.alert.status is status
                if change.action == "auto_resolved":
                    assert change.alert.severity is not Severity.CRITICAL
                    assert change.alert.type is not AlertType.EMERGENCY_BUTTON
                if change.action in ("acknowledged", "resolved"):
                    assert change.actor in ("d1", "d2")
            assert store.history(alert_id) == history
            assert store.get(alert_id) == history[-1].alert

    @invariant()
    def severity_only_goes_down_by_a_cancel(self) -> None:
        log = self.engine.store.changes_since(0, limit=100_000)
        last: dict[str, Severity] = {}
        for change in log:
            before = last.get(change.alert.id)
            if before is not None and change.alert.severity.rank > before.rank:
                assert change.action == "downgraded"
                assert change.alert.type is AlertType.EMERGENCY_BUTTON
                assert (before, change.alert.severity) == (Severity.CRITICAL, Severity.HIGH)
            last[change.alert.id] = change.alert.severity


Lifecycle.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestAlertLifecycle = Lifecycle.TestCase
