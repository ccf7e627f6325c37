"""After a ``kill -9``, conditions raised since the detectors' last snapshot still clear.

A fresh tester (2026-12-03): the detectors restore a snapshot up to five minutes old and the
journal's messages since, but did not know they had raised what they raised after that
snapshot; a device heard again then cleared nothing, and a summary of more than 50 members
took the ones beyond the 50 named back as a count, to which the detectors' raising them again
added them a second time (120 devices became "190", then "70 ... offline" for good).

In process, as the gateway restarts: a new engine on the same alert store, the alerting stage
(its storms taking back the open summaries), the detectors restored from the older snapshot,
told the open conditions (:meth:`AlertingStage.resume_detectors`), then handed the journal's
messages, and the intake coming up. Bounded in count; no timing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alerts.engine import AlertEngine
from alerts.model import Alert, AlertChange, AlertType
from alerts.store import AlertStore
from devices import Message, Registry
from gateway.detect import build_detectors
from gateway.detect.alerting import AlertingStage
from tests.unit.test_detect_support import MINUTE, at, status

T0 = at("2026-11-02", "08:00", "UTC")
SITE = "site-01"
OFFLINE = AlertType.DEVICE_OFFLINE


def _registry() -> Registry:
    """Three listed beds, an infrared sensor each (silent for 2 minutes: offline)."""
    return Registry.from_mapping({
        "defaults": {"heartbeat_s": 60, "offline_factor": 2},
        "sites": {SITE: {"beds": {f"bed-{n}": {"devices": {
            f"ir-bed-{n}": {"kind": "infrared", "heartbeat_s": 60}}} for n in range(3)}}}})


class Gateway:
    """The alerting side of one gateway process on ``tmp_path``'s alert store."""

    def __init__(self, tmp_path: Path, snapshot: Sequence[bytes] | None = None,
                 journal: Sequence[tuple[list[Message], int]] = (), *, now: int = T0,
                 snapshot_ms: int | None = None) -> None:
        self.registry = _registry()
        self.engine = AlertEngine(AlertStore(tmp_path / "alerts.sqlite3"))
        self.stage = AlertingStage(self.engine,
                                   detectors=build_detectors(self.registry, timezone="UTC",
                                                             evaluate_interval_ms=1_000))
        self.changes: list[AlertChange] = []
        self.engine.add_listener(self.changes.extend)
        self.journal: list[tuple[list[Message], int]] = []
        """Every batch fed since :meth:`snapshot` (what the detector journal holds)."""
        if snapshot is not None:  # as the gateway starts: restore, resume, hand back
            for detector, blob in zip(self.stage.detectors, snapshot, strict=True):
                detector.restore(blob)
            self.stage.resume_detectors(snapshot_ms)
            for messages, received in journal:
                self._register(messages)
                for detector in self.stage.detectors:
                    detector.update(messages, [received] * len(messages))
            self.stage.intake_changed(up=False, now_ms=now)
            self.stage.intake_changed(up=True, now_ms=now + 1_000)
            self.stage.commit()

    def _register(self, messages: Sequence[Message]) -> None:
        for m in messages:
            self.registry.ensure(m.address)  # the pipeline registers new devices first

    def snapshot(self) -> list[bytes]:
        self.journal = []
        return [detector.state() for detector in self.stage.detectors]

    def feed(self, messages: list[Message], received: int) -> None:
        self._register(messages)
        self.stage.accept(messages, [received] * len(messages))
        self.journal.append((messages, received))
        self.stage.commit()

    def minutes(self, minutes: range, beds: Sequence[str]) -> None:
        """``beds``' sensors speak each minute (``bed-<n>`` listed, others made up), the
        stage ticked after."""
        for minute in minutes:
            t = T0 + minute * MINUTE
            if beds:
                self.feed([status(bed, "infrared", t, site=SITE) for bed in beds], t + 100)
            self.stage.tick(t + 200)
            self.stage.commit()

    def offline(self) -> list[Alert]:
        return [a for a in self.engine.open_alerts() if a.type is OFFLINE]


LISTED = [f"bed-{n}" for n in range(3)]


def test_a_device_heard_again_while_the_gateway_was_down_clears_its_alert(
        tmp_path: Path) -> None:
    before = Gateway(tmp_path)
    before.minutes(range(5), LISTED)
    snapshot = before.snapshot()
    before.minutes(range(5, 12), LISTED[1:])  # bed-0's sensor silent: reported
    [alert] = before.offline()
    assert (alert.bed, alert.cleared_at) == ("bed-0", None)
    # kill -9 at minute 12 (no snapshot since minute 5); the sensor is back by minute 15.
    after = Gateway(tmp_path, snapshot, before.journal, now=T0 + 15 * MINUTE)
    after.minutes(range(15, 19), LISTED)
    [cleared] = [c for c in after.changes if c.alert.id == alert.id and c.action == "cleared"]
    assert cleared.alert.evidence["heard_ms"] >= T0 + 15 * MINUTE


def test_a_device_still_silent_after_a_restart_keeps_its_one_alert(tmp_path: Path) -> None:
    before = Gateway(tmp_path)
    before.minutes(range(5), LISTED)
    snapshot = before.snapshot()
    before.minutes(range(5, 12), LISTED[1:])
    [alert] = before.offline()
    after = Gateway(tmp_path, snapshot, before.journal, now=T0 + 15 * MINUTE)
    after.minutes(range(15, 25), LISTED[1:])
    assert [a.id for a in after.offline()] == [alert.id]
    assert after.offline()[0].cleared_at is None
    assert not [c for c in after.changes if c.alert.type is OFFLINE and c.action in
                ("opened", "cleared")]


MADE_UP = [f"x-{n:03d}" for n in range(120)]
"""Beds the registry does not list on the listed site, a made-up sensor each."""


def _summary_after_a_kill(tmp_path: Path) -> tuple[Gateway, Alert]:
    """120 made-up sensors fall silent after the snapshot (one summary of 120, 50 named);
    the gateway is killed and restarts at minute 15."""
    before = Gateway(tmp_path)
    before.minutes(range(5), LISTED + MADE_UP)
    snapshot = before.snapshot()
    before.minutes(range(5, 12), LISTED)
    [summary] = before.offline()
    assert summary.evidence["count"] == 120
    assert len(summary.evidence["members"]) == 50
    return Gateway(tmp_path, snapshot, before.journal, now=T0 + 15 * MINUTE), summary


def test_a_large_summary_clears_when_its_members_came_back_while_down(tmp_path: Path) -> None:
    after, summary = _summary_after_a_kill(tmp_path)
    after.minutes(range(15, 19), LISTED + MADE_UP)
    [alert] = [a for a in after.engine.open_alerts() if a.id == summary.id] or [
        after.engine.store.get(summary.id)]
    assert alert is not None
    assert alert.evidence["count"] == 0, alert.summary
    assert alert.cleared_at is not None
    assert "every member cleared" in alert.summary


def test_a_large_summary_still_silent_after_a_restart_counts_each_member_once(
        tmp_path: Path) -> None:
    after, summary = _summary_after_a_kill(tmp_path)
    after.minutes(range(15, 25), LISTED)  # well past every sensor's limit from the return
    [alert] = after.offline()
    assert alert.id == summary.id
    assert alert.evidence["count"] == 120, alert.summary
    # Half of them back: 60 left, and none at all once every one is back.
    after.minutes(range(25, 28), LISTED + MADE_UP[::2])
    assert after.offline()[0].evidence["count"] == 60
    after.minutes(range(28, 31), LISTED + MADE_UP)
    assert [a.evidence["count"] for a in after.offline()] in ([], [0])


def test_conditions_a_person_resolved_are_not_raised_anew_after_a_kill(tmp_path: Path) -> None:
    """A fresh tester (2026-12-03): a dispatcher resolved a storm's summary whose devices were
    still silent, the gateway was killed, and the restarted detectors (their snapshot older
    than the silence) raised the members again as new alerts; with SIGTERM, nothing."""
    before = Gateway(tmp_path)
    before.minutes(range(5), LISTED + MADE_UP)
    snapshot = before.snapshot()
    before.minutes(range(5, 12), LISTED[1:])  # bed-0's own sensor and the 120 made-up
    assert len(before.offline()) == 2
    for alert in before.offline():
        before.engine.resolve(alert.id, actor="dispatcher-1", note="known: power work",
                              now_ms=T0 + 12 * MINUTE, outcome="other")
    after = Gateway(tmp_path, snapshot, before.journal, now=T0 + 15 * MINUTE,
                    snapshot_ms=T0 + 5 * MINUTE)
    after.minutes(range(15, 25), LISTED[1:] + MADE_UP[:60])  # half back, the rest silent
    assert after.offline() == []
    assert [c.action for c in after.changes if c.alert.type is OFFLINE] == []
    # The resolved summary's members still silent stay in the store (those back are gone), so
    # that a second kill before any snapshot finds them too (a fresh tester: "summary#2").
    [(key, rows)] = after.engine.store.summary_members().items()
    assert key == "site-01//device_offline/summary"
    assert [r.member.split("/")[0] for r in rows] == MADE_UP[60:]
    again = Gateway(tmp_path, snapshot, before.journal + after.journal,
                    now=T0 + 27 * MINUTE, snapshot_ms=T0 + 5 * MINUTE)
    again.minutes(range(27, 35), LISTED[1:] + MADE_UP[:60])
    assert again.offline() == []
    assert [c.action for c in again.changes if c.alert.type is OFFLINE] == []
    again.minutes(range(35, 38), LISTED + MADE_UP)  # all back: nothing left
    assert again.engine.store.summary_members() == {}


def test_a_summarys_members_are_its_stored_rows_not_its_older_count(tmp_path: Path) -> None:
    """A fresh tester (2026-12-03): a summary's count and names are staged every 5 s while its
    members are written at once; killed in between, the restarted summary took the older count
    and names (members gone counted again) and never cleared: "device offline on 10 devices"
    with every device back."""
    before = Gateway(tmp_path)
    before.minutes(range(5), LISTED + MADE_UP)
    snapshot = before.snapshot()
    before.minutes(range(5, 12), LISTED)
    t = T0 + 12 * MINUTE
    before.feed([status(bed, "infrared", t, site=SITE) for bed in LISTED + MADE_UP[:20]], t)
    before.stage.tick(t + 100)
    before.stage.commit()
    # 10 more back a second later: their rows go at once, the summary's count waits 5 s.
    before.feed([status(bed, "infrared", t + 1_000, site=SITE) for bed in MADE_UP[20:30]],
                t + 1_000)
    before.stage.tick(t + 1_100)
    before.stage.commit()
    [summary] = before.offline()
    stored = before.engine.store.get(summary.id)  # the engine holds the newer one in memory
    assert stored is not None
    assert stored.evidence["count"] == 100
    assert len(next(iter(before.engine.store.summary_members().values()))) == 90
    after = Gateway(tmp_path, snapshot, before.journal, now=T0 + 15 * MINUTE)
    [restarted] = after.offline()
    assert restarted.evidence["count"] == 90  # corrected at the start
    after.minutes(range(15, 19), LISTED + MADE_UP)
    assert [a.evidence["count"] for a in after.offline()] in ([], [0])
