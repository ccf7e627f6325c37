"""The alert engine: findings in, alerts with a lifecycle out, every transition durable.

(A module over 400 lines: it is one state machine, the lifecycle of every alert type and the
rules for replays, cancels and repeats, and each transition's rule is easier to check beside
the others than in separate files.)

Folding. A finding belongs to the incident ``site/bed/type/episode``; while an alert of that
incident is unresolved, every further finding updates it (occurrences, evidence merged with
the newest values winning, severity raised if the finding is more severe, never lowered). Once
it is resolved, the next finding opens a new alert, numbered ``#n+1`` in its ``incident``.

Clearing. A finding with ``active=False`` says the condition is gone. A non-critical alert is
then resolved by the system (``auto_resolved``) once the condition has stayed clear for
``clear_grace_ms`` (``cleared`` meanwhile; a relapse within the grace re-arms it). Critical
alerts, falls and emergency calls are never resolved by the system: they get ``cleared_at``
and stay for a person to acknowledge and resolve.

Evidence conventions that change what the engine does (set by :mod:`alerts.rules`):

* ``cancelled_at`` (:data:`CANCELLED_AT`) on an ``emergency_button`` finding: the person
  cancelled the call. Within ``cancel_window_ms`` of the last press (evidence ``pressed_at``,
  else the opening) a critical call is downgraded to high (``downgraded``, never lower) and
  stays open for acknowledgement; later, the cancel is only recorded. A cancel never opens an
  alert. This is the only way a severity goes down.
* ``update_only`` (:data:`UPDATE_ONLY`) true: the finding only adds to an unresolved alert
  (more evidence, urgency) and never opens one: after a dispatcher resolved a fall, movement
  seen later must not bring it back. The key itself is not kept in the evidence.
* ``urgent`` (:data:`URGENT`) true: the condition got worse (a fall with no movement since);
  an open alert takes one escalation step at once, the first time only.
* A finding without an event (below) whose evidence (``device``, ``seq``, ``device_ts``) shows
  a message of the same device not newer than the one the alert last folded in is a
  redelivery, and is ignored. A finding with an event is judged by the handled events only.
* An evidence value of ``None`` removes that key from the alert's evidence.

Handled events. A finding from a device event carries it as a typed field,
:attr:`Finding.event <alerts.model.Finding.event>` (an :class:`~alerts.model.EventRef`: device,
``seq``, device time, digest of the content), not in its evidence: the engine acts on it.
Replays (counted in :attr:`AlertEngine.replays_ignored`, logged at most once a minute) open,
update, cancel and clear nothing, whether or not the alert of the first one is still open:

* A *call* (press, long_press, fall_detected) is a replay only when it is the very same
  message as a call already handled from that device (``seq``, device time and digest: a
  retained, re-sent or redelivered copy), whatever its clock says. The engine remembers every
  call it handled for :data:`~alerts.store.CALLS_KEPT_MS` (longer than the broker keeps a
  session), so an old press sent again is recognised even when it was not the last one. Any
  other call is a new call, newer or not: a device that rebooted may restart its counter and
  bring its clock back behind (restored from flash, set to 2000 or 0, corrected by NTP), and
  a call taken for a replay is lost, while a call taken for a new one rings once too often.
* A *cancel* or *recovery* (cancel, fall_cleared) is stale when it is the same message as the
  last one of its lane, or not newer than the last call or the last of its lane
  (:meth:`EventRef.newer_than <alerts.model.EventRef.newer_than>`: neither a higher ``seq`` nor
  a later device time) while both device times are trusted, each within ``clock_window_ms``
  before to ``clock_ahead_ms`` after its own receipt (the gateway's ``clock_window_s``, 7
  days, and 15 minutes): a cancel sent before a press and delivered after it never hides it.

The memory is staged with the changes the event caused and written in the same transaction
(:meth:`AlertStore.write`), and restored at start, so a handled call never comes back as a new
one after a restart, a retained or re-sent message, or a redelivery beyond the pipeline's
duplicate window. Limit: a device that sends the very same bytes for two presses (a counter
and clock that both restart at the same values) cannot be told from a re-send.

Repeats. A new call on an unresolved alert (another press or long_press, another
fall_detected, the first ``urgent`` finding: no movement after the fall) is a repeat:
``repeats`` goes up and the change is ``repeated``. On an acknowledged alert it puts the alert
back to ``open`` (the earlier acknowledgement stays in the history; ``acknowledged_by``/``_at``
are cleared) with escalation restarted from the repeat: level 0 and the first step of the
severity's schedule after ``now``. On an alert still open, the status and the escalation
timeline stay (a repeat never delays an escalation), except that ``urgent`` takes its
escalation step at once (``escalated``).

Escalation. An open (unacknowledged) alert carries ``next_escalation_at`` from the timeline of
its chain (:meth:`~alerts.escalation.EscalationPolicy.chain`: by severity and type);
:meth:`AlertEngine.tick` takes every step that is due (``escalated``). After a downtime, the
steps missed are taken at once, in order, on the original timeline: one ``escalated`` change
per step, each with its own level, so that each step's recipients are told (a note says how
many were due); only the last step's repeats missed are one change (the same people).
Acknowledging stops escalation.
Timers live in the alert rows, so a restarted engine continues them. :meth:`record` keeps a
fact about an alert that changes nothing in it (a notification sent for a step, its delivery)
in its history and on the stream.

Handling. :meth:`handle` records what a dispatcher does with an unresolved alert (assignment,
comments, checklist items, calls; the rules are in :mod:`alerts.handling`) as a change of its
own, in its history and on the stream, without touching its status or escalation;
:meth:`resolve` keeps the outcome code in the alert.

Threads. :meth:`apply`, :meth:`tick`, :meth:`acknowledge`, :meth:`handle` and :meth:`resolve`
change memory under a lock and *stage* the changes, numbered with the store's increasing
``seq`` (gap-free except after a restore of the store from a backup, see :mod:`alerts.store`);
:meth:`commit` (a worker thread, before the ingest batch is acknowledged to the broker) writes
everything staged in one transaction and then hands the changes to every listener, each change
exactly once and in ``seq`` order. ``acknowledge``, ``handle`` and ``resolve`` commit before
returning. A commit that fails (the alert store cannot write: a full disk) keeps the changes
staged for the next one and hands them at once to the listeners that show them unstored (the
dispatchers' stream, :meth:`add_listener`): a call must reach a dispatcher even while it cannot
be written. The emergency path does not wait for the disk either: :meth:`show_critical` hands
the staged critical changes to those listeners just before their commit, and the commit hands
them on again once stored (each change is shown unstored at most once).

Non-material repeats (same severity, condition still present) are staged at most once per
``update_interval_ms`` per alert (a storm's summary: :data:`SUMMARY_UPDATE_MS`), so a detector
that reports a condition every second does not flood the audit log; the alert in memory
(:meth:`get`, :meth:`open_alerts`) is always current.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec

from alerts.errors import AlertNotFound, InvalidTransition, NewerCall
from alerts.escalation import Chain, EscalationPolicy
from alerts.model import (
    Alert,
    AlertChange,
    AlertStatus,
    AlertType,
    EventRef,
    Finding,
    HandledEvent,
    Severity,
)
from alerts.store import AlertStore, MemberChange, split_incident
from alerts.storms import SUMMARY

log = logging.getLogger("homecare.alerts")

CANCELLED_AT: Final = "cancelled_at"
PRESSED_AT: Final = "pressed_at"
URGENT: Final = "urgent"
UPDATE_ONLY: Final = "update_only"
CALLING: Final = "calling_devices"
"""Evidence of an emergency call or a fall: the devices whose call (press, long_press,
fall_detected) stands, none of them cancelled or cleared since. Only one of them may cancel or
clear it, and the call is cancelled (downgraded) or the fall cleared only once each of them
has: a device that did not make the call (one the registry does not list, behind a permissive
broker, or another button of the bed) can neither silence nor soften it."""
CALLING_MAX: Final = 16
"""Devices kept in :data:`CALLING` (the earliest ones go first)."""
SYSTEM: Final = "system"
"""The actor of transitions made by the engine itself."""
PERSON: Final = "person"
"""The actor of a cancel pressed by the person at home."""

SUMMARY_UPDATE_MS: Final = 5_000
"""A summary alert (:mod:`alerts.storms`) is staged at most this often as its members change,
not every ``update_interval_ms``: the alert list and the streams show what was staged, so a
storm's count there lagged the alert itself (its page) by up to a minute ("200 unregistered
devices" on the list beside 500 on the page). One summary per site and type: a write every
few seconds at most."""
NEVER_AUTO_RESOLVED: Final = frozenset({AlertType.EMERGENCY_BUTTON, AlertType.FALL})

CLOCK_WINDOW_MS: Final = 7 * 86_400_000
"""Default ``clock_window_ms``: a device time up to this before its receipt orders events (the
gateway passes its ``clock_window_s`` setting)."""
CLOCK_AHEAD_MS: Final = 15 * 60_000
"""Default ``clock_ahead_ms``: a device time up to this after its receipt orders events (clock
drift without time synchronisation; as ``devices.devicetime.AHEAD_MS``)."""

REPLAY_LOG_INTERVAL_S: Final = 60.0
"""Ignored replays are logged at most this often (with how many there were meanwhile)."""

Listener = Callable[[list[AlertChange]], None]
IdFactory = Callable[[int], str]
_DeviceLane = tuple[str, str, str, bool]
"""(site, bed, device, call): the key of a remembered event."""

_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid(ms: int, random_bits: int) -> str:
    value = ((ms & ((1 << 48) - 1)) << 80) | (random_bits & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def random_ids(now_ms: int) -> str:
    """A ULID-style id: 48 bits of opening time and 80 random bits (26 characters).

    Unique and not guessable from the bed or the person; sorts by opening time.
    """
    return _ulid(now_ms, secrets.randbits(80))


def seeded_ids(seed: int) -> IdFactory:
    """Reproducible ids for offline replay: the same traffic gives the same alert ids."""
    rng = random.Random(seed)
    return lambda now_ms: _ulid(now_ms, rng.getrandbits(80))


def _summarises(alert: Alert) -> bool:
    """A summary of an alert storm or of unregistered devices (:mod:`alerts.storms`)."""
    return alert.evidence.get(SUMMARY) is True


def _merge(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**old, **new}
    return {k: v for k, v in merged.items() if v is not None}


_CALLS: Final = frozenset({AlertType.EMERGENCY_BUTTON, AlertType.FALL})


def _calling(alert: Alert) -> list[str] | None:
    """The devices whose call on ``alert`` stands (:data:`CALLING`; an alert opened before
    that was kept: the device of its latest call), or ``None`` when not known."""
    calling = alert.evidence.get(CALLING)
    if isinstance(calling, list):
        return [d for d in calling if isinstance(d, str)]
    device = alert.evidence.get("device")
    return [device] if isinstance(device, str) else None


def _stale(current: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True for a device message not newer than the one the alert last folded in: same
    device, ``seq`` and ``device_ts`` both not above the alert's (a redelivery after a restart,
    when the pipeline's duplicate window is empty). Only for findings without an event: device
    events are judged by the handled events, which know whether the clocks can be trusted."""
    try:
        return bool(new["device"] == current["device"] and new["seq"] <= current["seq"]
                    and new["device_ts"] <= current["device_ts"])
    except (KeyError, TypeError):
        return False


def _earliest(*times: int | None) -> int | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def _late_note(chain: Chain, start: int, levels: Sequence[int], i: int) -> str | None:
    """The note of the ``i``-th (from 1) of the escalation ``levels`` taken at once from
    level ``start``; None for a single step on time."""
    before = levels[i - 2] if i > 1 else start
    times = levels[i - 1] - before  # > 1: the last step's repeats missed, taken once
    if len(levels) == 1 and times == 1:
        return None
    number, repeat = chain.step(levels[i - 1])
    return (f"{levels[-1] - start} escalation steps were due: step {number}"
            + (f" (repeat {repeat})" if repeat else "")
            + (f", {i} of {len(levels)} at once" if len(levels) > 1 else "")
            + (f", once for {times} due" if times > 1 else ""))



def _hand_over(listeners: Sequence[Listener], changes: list[AlertChange], kind: str) -> None:
    """Call each listener with its own copy of ``changes``; one that raises is logged (the
    first change's seq, ``kind`` naming the unstored ones) and skipped for this batch."""
    for listener in listeners:
        try:
            listener(list(changes))
        except Exception:
            log.exception("alerts.listener_failed listener=%r first_seq=%d%s", listener,
                          changes[0].seq, kind)

class AlertEngine:
    """Alerts from findings; see the module docstring for the guarantees."""

    def __init__(self, store: AlertStore, *, policy: EscalationPolicy | None = None,
                 cancel_window_ms: int = 60_000, clear_grace_ms: int = 120_000,
                 update_interval_ms: int = 60_000, clock_window_ms: int = CLOCK_WINDOW_MS,
                 clock_ahead_ms: int = CLOCK_AHEAD_MS, id_factory: IdFactory | None = None
                 ) -> None:
        if min(cancel_window_ms, clear_grace_ms, update_interval_ms, clock_window_ms,
               clock_ahead_ms) < 0:
            raise ValueError("cancel_window_ms, clear_grace_ms, update_interval_ms, "
                             "clock_window_ms and clock_ahead_ms must not be negative")
        self.store = store
        self.policy = policy or EscalationPolicy()
        self.cancel_window_ms = cancel_window_ms
        self.clear_grace_ms = clear_grace_ms
        self.update_interval_ms = update_interval_ms
        self.clock_window_ms = clock_window_ms
        """How far behind the receipt time a device time is trusted to order events."""
        self.clock_ahead_ms = clock_ahead_ms
        """How far ahead of the receipt time a device time is trusted."""
        self._new_id = id_factory or random_ids
        self._lock = threading.Lock()
        self._commit_lock = threading.RLock()
        self._listeners: tuple[Listener, ...] = ()
        self._unstored_listeners: tuple[Listener, ...] = ()
        self._shown_unstored: set[int] = set()
        """The ``seq`` of each change handed to the unstored listeners (:meth:`add_listener`)
        and not stored yet: shown once each, however many commits fail or previews come."""
        self._show_lock = threading.RLock()
        self._staged: list[AlertChange] = []
        self._undelivered: list[AlertChange] = []
        self._delivering = False
        self._urgent_staged = False
        self._open: dict[str, Alert] = {}
        self._by_key: dict[str, str] = {}
        self._last_staged: dict[str, int] = {}
        self._quiet: set[str] = set()
        self.foreign_stand_downs = 0
        """Cancels and fall recoveries ignored: from a device whose call was not standing on
        the alert (:meth:`_stood_down`)."""
        self._reopened: dict[str, int] = {}
        """Per alert, the seq of the last new call that reopened it (while this engine ran)."""
        # Restore: incident folding and escalation timers continue where they were.
        for alert in store.open_alerts():
            key, _ = split_incident(alert.incident)
            self._open[alert.id] = alert
            self._by_key[key] = alert.id
            self._last_staged[alert.id] = alert.updated_at
        self._episodes = store.episode_counters()
        self._seq = store.last_seq()
        self._handled: dict[_DeviceLane, HandledEvent] = {
            (h.site, h.bed, h.event.device, h.event.call): h for h in store.handled_events()}
        self._members_staged: list[MemberChange] = []
        """Summary members joined and gone (:mod:`alerts.storms`), written with the next
        commit (:meth:`stage_members`)."""
        self._handled_staged: dict[tuple[object, ...], HandledEvent] = {}
        """Handled events to write with the next commit: the last of each lane, and every
        call (keyed by the message too, so two calls of one device in one commit are both
        remembered)."""
        self._calls: dict[tuple[str, str, str], dict[tuple[int, int, str], int]] = {}
        """Per device, every call handled lately: (seq, device time, digest) -> receipt time."""
        for h in [*store.handled_calls(),
                  *(h for h in store.handled_events() if h.event.call)]:  # a v3 store's last
            self._calls.setdefault((h.site, h.bed, h.event.device), {})[
                (h.event.seq, h.event.device_ts, h.event.digest)] = h.at
        self.replays_ignored = 0
        """Device events ignored because they were not newer than the last one handled."""
        self._replays_unlogged = 0
        self._replay_logged_at = -REPLAY_LOG_INTERVAL_S
        if self._open:
            log.info("alerts.restored open=%d last_seq=%d handled_devices=%d", len(self._open),
                     self._seq, len(self._handled))

    # --- findings (event loop, in memory) -----------------------------------------------------

    def apply(self, findings: Sequence[Finding], now_ms: int) -> list[AlertChange]:
        """Fold ``findings`` into alerts at ``now_ms``; returns the changes staged for commit."""
        if not findings:
            return []
        with self._lock:
            start = len(self._staged)
            for finding in findings:
                self._fold(finding, now_ms)
            return self._staged[start:]

    def tick(self, now_ms: int) -> list[AlertChange]:
        """Escalate what is due, auto-resolve what stayed clear, stage held-back updates."""
        with self._lock:
            start = len(self._staged)
            for alert in list(self._open.values()):
                self._tick_one(alert, now_ms)
            return self._staged[start:]

    def is_replay(self, site: str, bed: str, event: EventRef, received_ms: int) -> bool:
        """True if the engine would ignore ``event`` of a device on ``site``/``bed``, received
        at ``received_ms``, as a replay of one already handled (the rules use it not to arm or
        end a fall watch on a replay)."""
        with self._lock:
            return self._replayed(site, bed, event, received_ms) is not None

    # --- people (event loop or a worker thread; durable before returning) ---------------------

    def acknowledge(self, alert_id: str, *, actor: str, note: str | None, now_ms: int,
                    sent_for: int | None = None) -> Alert:
        """``open`` -> ``acknowledged`` by ``actor``; stops escalation. Durable on return.

        ``sent_for``: the seq of the change an acknowledge link was sent for (0: the first
        call); refused when a new call reopened the alert after it, while this engine ran
        (the caller checks the history written before, :func:`alerts.acklinks.call_started`).

        Raises :class:`AlertNotFound`, :class:`InvalidTransition` (already acknowledged or
        resolved), :class:`~alerts.errors.NewerCall`,
        :class:`~alerts.errors.StoreUnavailable` (then the transition stays staged and is
        written by the next successful commit).
        """
        if not actor:
            raise ValueError("actor is required")
        with self._lock:
            alert = self._open.get(alert_id)
            if alert is not None:
                reopened = self._reopened.get(alert_id)
                if sent_for is not None and reopened is not None and sent_for < reopened:
                    raise NewerCall(alert_id, reopened)
                if alert.status is not AlertStatus.OPEN:
                    raise InvalidTransition(alert_id, alert.status, "acknowledge")
                alert = self._put(msgspec.structs.replace(
                    alert, status=AlertStatus.ACKNOWLEDGED, acknowledged_by=actor,
                    acknowledged_at=now_ms, note=note or None, next_escalation_at=None,
                    updated_at=now_ms))
                self._stage("acknowledged", alert, now_ms, actor=actor, note=note or None)
        if alert is None:
            self._refuse(alert_id, "acknowledge")
        self.commit()
        assert alert is not None
        return alert

    def resolve(self, alert_id: str, *, actor: str, note: str, now_ms: int,
                outcome: str | None = None) -> Alert:
        """``open``/``acknowledged`` -> ``resolved`` by ``actor`` with a note and the
        ``outcome`` code (the API requires one; offline replay resolves without). Durable on
        return.

        Raises :class:`AlertNotFound`, :class:`InvalidTransition` (already resolved),
        :class:`~alerts.errors.StoreUnavailable` (as for :meth:`acknowledge`).
        """
        if not actor:
            raise ValueError("actor is required")
        if not note or not note.strip():
            raise ValueError("a note is required to resolve an alert")
        if outcome is not None and not outcome:
            raise ValueError("an outcome, if given, must not be empty")
        with self._lock:
            alert = self._open.get(alert_id)
            if alert is not None:
                alert = self._close(alert, now_ms, by=actor, note=note)
                alert = msgspec.structs.replace(alert, outcome=outcome)
                self._stage("resolved", alert, now_ms, actor=actor, note=note)
        if alert is None:
            self._refuse(alert_id, "resolve")
        self.commit()
        assert alert is not None
        return alert

    def handle(self, alert_id: str, *, action: str, actor: str, now_ms: int,
               note: str | None = None, change: Callable[[Alert], Alert] | None = None
               ) -> Alert:
        """Record what a dispatcher did while handling an unresolved alert (``action``:
        ``assigned``, ``commented``, ``checklist_checked``, ``contact_called``, ...; see
        :mod:`alerts.handling`), with ``change`` applied to the alert; a ``change`` that
        returns the alert itself (nothing to do) records nothing. The status and the
        escalation timeline stay as they are. Durable on return.

        Raises :class:`AlertNotFound`, :class:`InvalidTransition` (the alert is resolved),
        :class:`~alerts.errors.StoreUnavailable` (as for :meth:`acknowledge`).
        """
        if not actor:
            raise ValueError("actor is required")
        with self._lock:
            alert = self._open.get(alert_id)
            if alert is not None:
                changed = change(alert) if change is not None else None
                if changed is alert:
                    return alert  # already so: nothing to record
                if changed is not None and (changed.id, changed.status, changed.incident) != (
                        alert.id, alert.status, alert.incident):
                    raise ValueError("handling never changes an alert's id, status or incident")
                alert = self._put(msgspec.structs.replace(changed or alert, updated_at=now_ms))
                self._stage(action, alert, now_ms, actor=actor, note=note)
        if alert is None:
            self._refuse(alert_id, "change")
        self.commit()
        assert alert is not None
        return alert

    def record(self, alert_id: str, *, action: str, note: str, now_ms: int,
               actor: str = SYSTEM) -> AlertChange:
        """Record a fact about an alert that changes nothing in it (a notification of its
        escalation chain queued, delivered or failed: :mod:`gateway.notify`): a change of its
        own carrying the alert as it is, in its history and on the stream, whatever its status.
        Durable on return.

        Raises :class:`AlertNotFound`, :class:`~alerts.errors.StoreUnavailable` (as for
        :meth:`acknowledge`).
        """
        with self._lock:
            alert = self._open.get(alert_id) or next(
                (c.alert for c in reversed(self._staged) if c.alert.id == alert_id), None)
        if alert is None:
            alert = self.store.get(alert_id)  # resolved: it changes no more
            if alert is None:
                raise AlertNotFound(alert_id)
        with self._lock:
            alert = self._open.get(alert_id, alert)
            self._stage(action, alert, now_ms, actor=actor, note=note)
            change = self._staged[-1]
        self.commit()
        return change

    def _refuse(self, alert_id: str, action: str) -> None:
        with self._lock:
            staged = next((c.alert for c in reversed(self._staged) if c.alert.id == alert_id),
                          None)
        alert = staged or self.store.get(alert_id)
        if alert is None:
            raise AlertNotFound(alert_id)
        raise InvalidTransition(alert_id, AlertStatus.RESOLVED, action)

    # --- durability and subscribers (worker thread) -------------------------------------------

    def stage_members(self, members: Sequence[MemberChange]) -> None:
        """Write ``members`` (summary members joined and gone, in order) with the next
        :meth:`commit`, in its transaction. Any thread."""
        if members:
            with self._lock:
                self._members_staged.extend(members)

    def commit(self) -> None:
        """Write every staged change in one transaction, then notify the listeners.

        On failure (:class:`~alerts.errors.StoreUnavailable`) nothing is lost: the changes stay
        staged, ahead of newer ones, for the next call.
        """
        with self._commit_lock:
            with self._lock:
                batch, self._staged = self._staged, []
                handled, self._handled_staged = self._handled_staged, {}
                members, self._members_staged = self._members_staged, []
                self._urgent_staged = False
            if batch or handled or members:
                try:
                    self.store.write(batch, list(handled.values()), members)
                except BaseException:
                    with self._lock:
                        self._staged[:0] = batch
                        self._handled_staged = {**handled, **self._handled_staged}
                        self._members_staged[:0] = members
                        self._urgent_staged = any(
                            c.alert.severity is Severity.CRITICAL for c in self._staged)
                    self._show_unstored(batch)
                    raise
                with self._show_lock:  # after any preview of these changes has been handed on
                    self._shown_unstored.difference_update(c.seq for c in batch)
                self._undelivered.extend(batch)
            if self._delivering:
                return  # a listener committed: the outer loop delivers, keeping the order
            self._delivering = True
            try:
                while self._undelivered:
                    changes, self._undelivered = self._undelivered, []
                    _hand_over(self._listeners, changes, "")
            finally:
                self._delivering = False

    def _show_unstored(self, batch: list[AlertChange]) -> int:
        """Hand the changes of ``batch`` not shown yet to the unstored listeners, once each,
        in ``seq`` order (a commit failed, or :meth:`show_critical` before one), so a call
        reaches the dispatchers before it is written; the regular listeners get them once
        stored. Returns how many were handed over."""
        with self._show_lock:  # re-entrant: show_critical holds it
            fresh = [c for c in batch if c.seq not in self._shown_unstored]
            if not fresh or not self._unstored_listeners:
                return 0
            self._shown_unstored.update(c.seq for c in fresh)
            _hand_over(self._unstored_listeners, fresh, " (unstored)")
        return len(fresh)

    def show_critical(self) -> int:
        """Show the staged critical changes (an emergency call opened or repeated, a fall) to
        the unstored listeners now, before their commit, so that the dispatchers' screen does
        not wait for the alert store's disk (its fsync is the largest and noisiest part of a
        call's way on a busy hub); they come again, stored, after the commit. Any thread;
        returns how many were shown. The caller commits next."""
        with self._show_lock:
            # Taken under the show lock, which a commit takes after writing and before it
            # hands on what it wrote: a change copied here is shown before it is stored.
            with self._lock:
                critical = [c for c in self._staged if c.alert.severity is Severity.CRITICAL
                            and c.seq not in self._shown_unstored]
            return self._show_unstored(critical) if critical else 0

    def add_listener(self, fn: Listener, *, unstored: Listener | None = None
                     ) -> Callable[[], None]:
        """Call ``fn`` with every committed change from now on, once, in ``seq`` order, in the
        committing thread right after the commit. Keep it quick (hand over to a queue or
        ``loop.call_soon_threadsafe``); a listener that raises is logged and skipped for that
        batch. ``unstored`` (the dispatchers' stream) is also called, at most once per change,
        with changes before they are stored: critical ones just before their commit
        (:meth:`show_critical`) and those a commit failed to write (they may never be stored,
        if the process dies first). Returns the function that unsubscribes both."""
        with self._lock:
            self._listeners = (*self._listeners, fn)
            if unstored is not None:
                self._unstored_listeners = (*self._unstored_listeners, unstored)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(f for f in self._listeners if f is not fn)
                self._unstored_listeners = tuple(
                    f for f in self._unstored_listeners if f is not unstored)

        return unsubscribe

    def unstored_alerts(self) -> list[Alert]:
        """The alerts as the staged changes leave them, latest first: changed but not written
        yet (empty unless commits fail)."""
        with self._lock:
            latest: dict[str, Alert] = {}
            for change in reversed(self._staged):
                latest.setdefault(change.alert.id, change.alert)
        return list(latest.values())

    # --- queries ------------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert | None:
        """The alert as the engine knows it now (staged changes included)."""
        with self._lock:
            alert = self._open.get(alert_id)
            if alert is None:
                alert = next((c.alert for c in reversed(self._staged)
                              if c.alert.id == alert_id), None)
        return alert if alert is not None else self.store.get(alert_id)

    def open_alerts(self) -> list[Alert]:
        """Unresolved alerts, most severe first, then oldest first."""
        with self._lock:
            alerts = list(self._open.values())
        alerts.sort(key=lambda a: (a.severity.rank, a.opened_at, a.id))
        return alerts

    @property
    def open_count(self) -> int:
        """How many alerts are unresolved."""
        return len(self._open)

    @property
    def urgent_pending(self) -> bool:
        """True while a change to a critical alert is staged: commit it now, do not batch."""
        return self._urgent_staged

    @property
    def staged(self) -> int:
        """How many changes (and handled events and summary members to remember) wait for
        :meth:`commit`."""
        return len(self._staged) + len(self._handled_staged) + len(self._members_staged)

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the latest staged or committed change."""
        return self._seq

    # --- the state machine (callers hold the lock) --------------------------------------------

    def _fold(self, finding: Finding, now: int) -> None:
        if finding.event is not None and not self._remember(finding, finding.event):
            return
        key = f"{finding.site}/{finding.bed}/{finding.type.value}/{finding.episode}"
        alert_id = self._by_key.get(key)
        alert = self._open.get(alert_id) if alert_id is not None else None
        if not finding.active:
            if alert is not None and (ended := self._stood_down(alert, finding, now)):
                self._clear(alert, ended, now)
            return
        if (finding.type is AlertType.EMERGENCY_BUTTON
                and finding.evidence.get(CANCELLED_AT) is not None):
            if alert is not None and (ended := self._stood_down(alert, finding, now)):
                self._cancel(alert, ended, now)
            return
        if finding.evidence.get(UPDATE_ONLY):
            if alert is None:
                return
            finding = msgspec.structs.replace(finding, evidence={
                k: v for k, v in finding.evidence.items() if k != UPDATE_ONLY})
        elif finding.type in _CALLS and isinstance(device := finding.evidence.get("device"), str):
            calling = [d for d in (_calling(alert) or []) if d != device] if alert else []
            finding = msgspec.structs.replace(finding, evidence={
                **finding.evidence, CALLING: [*calling, device][-CALLING_MAX:]})
        if alert is None:
            self._open_new(key, finding, now)
        else:
            self._update(alert, finding, now)

    def _trusted(self, device_ts: int, received_ms: int) -> bool:
        return (received_ms - self.clock_window_ms <= device_ts
                <= received_ms + self.clock_ahead_ms)

    def _replayed(self, site: str, bed: str, event: EventRef, received_ms: int
                  ) -> EventRef | None:
        """The remembered event that ``event`` (received at ``received_ms``) replays, if any:
        the last of its own lane, and for a cancel or a recovery also the last call (one older
        than the call it would cancel or clear is stale; a call is never held back by a
        cancel). A replay is the very same message, or one not newer while both device
        clocks are trusted (each within the clock window around its receipt); with a clock
        out of the window, seq and device time order nothing and a different event is new."""
        if event.call:
            # A call is a replay only when it is one already handled, the very same message:
            # a device that rebooted may restart its counter and bring its clock back behind
            # (restored from flash, corrected by NTP), so "not newer" is no proof of a replay,
            # and losing a call is worse than ringing twice.
            calls = self._calls.get((site, bed, event.device))
            if calls is not None and (event.seq, event.device_ts, event.digest) in calls:
                return event
            return None
        for call in (False, True):
            handled = self._handled.get((site, bed, event.device, call))
            if handled is None:
                continue
            last = handled.event
            if event.same_as(last) or (
                    not event.newer_than(last)
                    and self._trusted(event.device_ts, received_ms)
                    and self._trusted(last.device_ts, handled.at)):
                return last
        return None

    def _remember(self, finding: Finding, event: EventRef) -> bool:
        """Remember ``event`` as handled; False (counted, logged now and then) for a replay."""
        lane = (finding.site, finding.bed, event.device, event.call)
        last = self._replayed(finding.site, finding.bed, event, finding.at)
        if last is None:
            self._handled[lane] = HandledEvent(site=finding.site, bed=finding.bed,
                                               event=event, at=finding.at)
            if event.call:
                self._handled_staged[(*lane, event.seq, event.device_ts, event.digest)] = \
                    self._handled[lane]
            else:
                self._handled_staged[lane] = self._handled[lane]
            if event.call:
                calls = self._calls.setdefault((finding.site, finding.bed, event.device), {})
                calls[(event.seq, event.device_ts, event.digest)] = finding.at
                horizon = finding.at - self.store.calls_kept_ms
                for key in [k for k, at in calls.items() if at < horizon]:
                    del calls[key]
            return True
        self.replays_ignored += 1
        self._replays_unlogged += 1
        clock = time.monotonic()
        if clock - self._replay_logged_at >= REPLAY_LOG_INTERVAL_S:
            self._replay_logged_at = clock
            log.warning("alerts.replay_ignored site=%s bed=%s device=%s seq=%d device_ts=%d "
                        "identical=%s handled_seq=%d handled_device_ts=%d count=%d; a replay "
                        "of an event already handled opens nothing",
                        finding.site, finding.bed, event.device, event.seq, event.device_ts,
                        event.same_as(last), last.seq, last.device_ts, self._replays_unlogged)
            self._replays_unlogged = 0
        return False

    def _open_new(self, key: str, finding: Finding, now: int) -> None:
        episode = self._episodes.get(key, 0) + 1
        self._episodes[key] = episode
        evidence = _merge({}, finding.evidence)
        if finding.started_at is not None:
            evidence.setdefault("started_at", finding.started_at)
        alert = self._put(Alert(
            id=self._new_id(now), incident=f"{key}#{episode}", type=finding.type,
            severity=finding.severity, site=finding.site, bed=finding.bed, opened_at=now,
            updated_at=now, status=AlertStatus.OPEN, summary=finding.summary,
            evidence=evidence,
            next_escalation_at=self.policy.first_at(finding.severity, opened_at=now,
                                                   type=finding.type)))
        self._by_key[key] = alert.id
        self._stage("opened", alert, now)
        if evidence.get(URGENT):
            self._escalate_now(alert, now, "urgent")

    def _update(self, alert: Alert, finding: Finding, now: int) -> None:
        ev = finding.evidence
        if finding.event is None and _stale(alert.evidence, ev):
            return
        notes = []
        severity = alert.severity
        next_at = alert.next_escalation_at
        if finding.severity.rank < severity.rank:
            severity = finding.severity
            notes.append(f"severity raised to {severity}")
            if alert.status is AlertStatus.OPEN:
                next_at = _earliest(next_at, self.policy.next_at(
                    severity, level=alert.escalation_level, since=now, type=alert.type))
        if alert.cleared_at is not None:
            notes.append("condition present again")
        urgent = bool(ev.get(URGENT)) and not alert.evidence.get(URGENT)
        repeat = urgent or (finding.event is not None and finding.event.call)
        reopened = repeat and alert.status is AlertStatus.ACKNOWLEDGED
        alert = self._put(msgspec.structs.replace(
            alert, severity=severity, evidence=_merge(alert.evidence, ev),
            summary=finding.summary or alert.summary, occurrences=alert.occurrences + 1,
            updated_at=now, cleared_at=None, next_escalation_at=next_at,
            repeats=alert.repeats + int(repeat)))
        if reopened:
            alert = self._put(msgspec.structs.replace(
                alert, status=AlertStatus.OPEN, acknowledged_by=None, acknowledged_at=None,
                escalation_level=0, next_escalation_at=self.policy.first_at(
                    severity, opened_at=now, type=alert.type)))
            notes.insert(0, "a new call after acknowledgement: needs acknowledgement again")
        if urgent and alert.status is AlertStatus.OPEN and not reopened:
            self._escalate_now(alert, now, "; ".join(["urgent", *notes]))
        elif repeat:
            self._stage("repeated", alert, now, note="; ".join(
                [finding.summary or "a new call", *notes]))
            if reopened:
                self._reopened[alert.id] = self._seq
        elif notes or now - self._last_staged.get(alert.id, 0) >= self._interval(alert):
            self._stage("updated", alert, now, note="; ".join(notes) or None)
        else:
            self._quiet.add(alert.id)

    def _stood_down(self, alert: Alert, finding: Finding, now: int) -> Finding | None:
        """``finding`` (a cancel or a fall's recovery) if it ends the call of ``alert``, else
        ``None``: only one from a device whose call stands does (:data:`CALLING`), and only
        once each such device has; one from any other device changes nothing. Findings of no
        device (the detectors') and alerts of no known caller are not judged here."""
        device = finding.evidence.get("device")
        calling = _calling(alert) if alert.type in _CALLS else None
        if calling is None or not isinstance(device, str):
            return finding
        if device not in calling:
            self.foreign_stand_downs += 1
            return None
        left = [d for d in calling if d != device]
        if not left:
            return msgspec.structs.replace(finding, evidence={**finding.evidence, CALLING: []})
        alert = self._put(msgspec.structs.replace(
            alert, updated_at=now, evidence={**alert.evidence, CALLING: left}))
        self._stage("updated", alert, now, actor=PERSON, note=(
            f"{'cancelled' if alert.type is AlertType.EMERGENCY_BUTTON else 'cleared'} on "
            f"{device}; still calling: {', '.join(left)}"))
        return None

    def _cancel(self, alert: Alert, finding: Finding, now: int) -> None:
        if finding.event is None and _stale(alert.evidence, finding.evidence):
            return
        cancelled_at = finding.evidence[CANCELLED_AT]
        pressed_at = alert.evidence.get(PRESSED_AT, alert.opened_at)
        in_window = (isinstance(cancelled_at, int) and isinstance(pressed_at, int)
                     and cancelled_at - pressed_at <= self.cancel_window_ms)
        evidence = _merge(alert.evidence, finding.evidence)
        if in_window and alert.severity is Severity.CRITICAL:
            severity = Severity.HIGH
            next_at = (self.policy.next_at(severity, level=alert.escalation_level, since=now,
                                           type=alert.type)
                       if alert.status is AlertStatus.OPEN else None)
            alert = self._put(msgspec.structs.replace(
                alert, severity=severity, evidence=evidence, updated_at=now,
                next_escalation_at=next_at))
            self._stage("downgraded", alert, now, actor=PERSON,
                        note="cancelled by the person within the cancel window")
            return
        if not in_window:
            evidence["cancel_outside_window"] = True
        alert = self._put(msgspec.structs.replace(alert, evidence=evidence, updated_at=now))
        self._stage("updated", alert, now, actor=PERSON,
                    note="cancelled by the person" + ("" if in_window
                                                      else " after the cancel window"))

    def _clear(self, alert: Alert, finding: Finding, now: int) -> None:
        if alert.cleared_at is not None:
            return
        alert = self._put(msgspec.structs.replace(
            alert, cleared_at=now, updated_at=now,
            evidence=_merge(alert.evidence, finding.evidence),
            # An alert's text says what happened, kept when it clears ("Fall" stays "Fall"),
            # but a summary's text counts its members: "... every member cleared", not the
            # last count beside evidence that lists none.
            summary=(finding.summary or alert.summary) if _summarises(alert)
            else alert.summary))
        if self._auto_resolvable(alert) and self.clear_grace_ms == 0:
            self._auto_resolve(alert, now)
        else:
            self._stage("cleared", alert, now, actor=SYSTEM)

    def _tick_one(self, alert: Alert, now: int) -> None:
        auto = self._auto_resolvable(alert)
        if auto and alert.cleared_at is not None:
            if now - alert.cleared_at >= self.clear_grace_ms:
                self._auto_resolve(alert, now)
            return  # condition gone, resolution pending: no escalation meanwhile
        due = alert.next_escalation_at
        if alert.status is AlertStatus.OPEN and due is not None and due <= now:
            # One change per step due (after a downtime: several, in order, at once), each
            # with its own level: each step's recipients are told (alerts.notify); only the
            # repeats of the last step missed are one change (the same people).
            levels, next_at = self.policy.schedule(alert.severity, alert.type).due_levels(
                level=alert.escalation_level, due=due, now=now)
            chain, start = self.policy.chain(alert.severity, alert.type), alert.escalation_level
            for i, level in enumerate(levels, 1):
                alert = self._put(msgspec.structs.replace(
                    alert, escalation_level=level, updated_at=now,
                    next_escalation_at=next_at if i == len(levels) else now))
                self._stage("escalated", alert, now, actor=SYSTEM,
                            note=_late_note(chain, start, levels, i))
        elif (alert.id in self._quiet
              and now - self._last_staged.get(alert.id, 0) >= self._interval(alert)):
            self._stage("updated", alert, now)

    def _interval(self, alert: Alert) -> int:
        """How long after its last staged change a quiet update of ``alert`` is staged:
        :data:`SUMMARY_UPDATE_MS` for a summary, whose every update changes its members."""
        if _summarises(alert):
            return min(self.update_interval_ms, SUMMARY_UPDATE_MS)
        return self.update_interval_ms

    def _escalate_now(self, alert: Alert, now: int, note: str) -> None:
        level = alert.escalation_level + 1
        alert = self._put(msgspec.structs.replace(
            alert, escalation_level=level, updated_at=now,
            next_escalation_at=self.policy.next_at(alert.severity, level=level, since=now,
                                                   type=alert.type)))
        self._stage("escalated", alert, now, actor=SYSTEM, note=note)

    def _auto_resolvable(self, alert: Alert) -> bool:
        return (alert.severity is not Severity.CRITICAL
                and alert.type not in NEVER_AUTO_RESOLVED)

    def _auto_resolve(self, alert: Alert, now: int) -> None:
        alert = self._close(alert, now, by=SYSTEM, note=None)
        self._stage("auto_resolved", alert, now, actor=SYSTEM, note="condition cleared")

    def _close(self, alert: Alert, now: int, *, by: str, note: str | None) -> Alert:
        resolved = msgspec.structs.replace(
            alert, status=AlertStatus.RESOLVED, resolved_by=by, resolved_at=now,
            note=note if note is not None else alert.note, next_escalation_at=None,
            updated_at=now)
        del self._open[alert.id]
        key, _ = split_incident(alert.incident)
        if self._by_key.get(key) == alert.id:
            del self._by_key[key]
        self._last_staged.pop(alert.id, None)
        self._quiet.discard(alert.id)
        self._reopened.pop(alert.id, None)
        return resolved

    def _put(self, alert: Alert) -> Alert:
        self._open[alert.id] = alert
        return alert

    def _stage(self, action: str, alert: Alert, now: int, *, actor: str | None = None,
               note: str | None = None) -> None:
        self._seq += 1
        self._staged.append(AlertChange(seq=self._seq, at=now, action=action, actor=actor,
                                        note=note, alert=alert))
        if alert.id in self._open:
            self._last_staged[alert.id] = now
            self._quiet.discard(alert.id)
        if alert.severity is Severity.CRITICAL:
            self._urgent_staged = True
