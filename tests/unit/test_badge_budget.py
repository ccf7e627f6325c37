"""A badge's budget of service-log rows: one flooding badge (or a crowd of made-up ones) adds at
most its budget to the append-only log; the rest is dead-lettered, counted and reported, and a
caregiver's real day, a day's backlog included, is recorded whole.

The tester's case: badge-07, listed and allowed by the broker to publish on its site's beds,
sent 5,000 check-ins/outs in 0.6 s on two beds, and every one became a row of the log for good
(6.1 MB)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from alerts import AlertStatus, AlertType, Finding
from alerts.servicelog import ServiceLog, ServiceLogRecorder
from devices import Registry
from gateway.config import Settings
from gateway.ingest.badgebudget import CLEAR_AFTER_MS, REASON, BadgeBudget
from gateway.ingest.checkpoint import commit
from gateway.ingest.message import RawMessage
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.visitrecords import BudgetedServiceLog, badge_budget
from gateway.monitoring import Metrics
from gateway.storage.deadletters import DeadLetter, DeadLetterStore

T0 = 1_795_510_800_000
MINUTE = 60_000
SITE = "site-01"
REGISTRY = {"sites": {SITE: {"beds": {
    "bed-0001": {"devices": {"badge-07": {"kind": "badge"}, "badge-08": {"kind": "badge"}}},
    "bed-0002": {"devices": {"ir-0002": {"kind": "infrared"}}}}}}}
BURST, PER_DAY = 200, 200.0
UNLISTED_BURST, UNLISTED_PER_DAY = 300, 600.0


class Spool:
    def append(self, body: bytes, points: int) -> None:
        pass


class Station:
    """The pipeline with the service log's stage, as the gateway builds it, on files."""

    def __init__(self, tmp_path: Path, *, burst: int = BURST, per_day: float = PER_DAY,
                 registry: bool = True) -> None:
        """``registry`` False: a station run without a registry file, its budget as the
        gateway builds it (:func:`badge_budget`)."""
        self.registry = Registry.from_mapping(REGISTRY) if registry else Registry()
        self.metrics = Metrics()
        self.log = ServiceLog(tmp_path / "servicelog.sqlite3")
        self.deadletters = DeadLetterStore(tmp_path / "deadletters.sqlite3",
                                           metrics=self.metrics)
        self.findings: list[Finding] = []

        def place(device: str) -> tuple[str, str] | None:
            found = self.registry.place(device)
            return None if found is None else (found.site, found.bed)

        self.budget = BadgeBudget(events_per_day=per_day, burst_events=burst,
                                  unlisted_events_per_day=UNLISTED_PER_DAY,
                                  unlisted_burst_events=UNLISTED_BURST, place=place)
        if not registry:
            self.budget = badge_budget(Settings(
                service_badge_burst_events=burst, service_badge_events_per_day=per_day,
                service_unlisted_badge_burst_events=UNLISTED_BURST,
                service_unlisted_badge_events_per_day=UNLISTED_PER_DAY), self.registry)
        self.stage = BudgetedServiceLog(
            ServiceLogRecorder(self.log, metrics=self.metrics.registry), self.budget,
            deadletters=self.deadletters, metrics=self.metrics,
            on_findings=lambda found, now: self.findings.extend(found))

        self.pipeline = Pipeline(metrics=self.metrics, registry=self.registry,
                                 stages=(self.stage,), dedup_window=4)
        self.seq: dict[str, int] = {}

    def take(self, raws: list[RawMessage], *, batch: int = 500) -> None:
        """Through the pipeline and the checkpoint's commit, ``batch`` messages at a time."""
        for start in range(0, len(raws), batch):
            self.pipeline.process(raws[start:start + batch])
            commit(self.pipeline.take(), spool=Spool(), deadletters=self.deadletters,
                   stages=self.pipeline.stages)

    def badge(self, device: str, bed: str, event: str, visit: str, *, ts: int,
              received: int, caregiver: str = "c-07", site: str = SITE) -> RawMessage:
        seq = self.seq[device] = self.seq.get(device, 0) + 1
        payload: dict[str, Any] = {"ts": ts, "seq": seq, "event": event,
                                   "caregiver": caregiver, "visit": visit, "method": "nfc"}
        if event == "check_out":
            payload["services"] = ["bathing"]
        return RawMessage(topic=f"homecare/v1/{site}/{bed}/badge/{device}/event",
                          payload=json.dumps(payload).encode(), mid=seq, qos=1,
                          received_ms=received)

    def visits(self, device: str, n: int, *, first_ts: int, every_ms: int,
               received: int | None = None, prefix: str = "v", caregiver: str = "c-07"
               ) -> list[RawMessage]:
        """``n`` visits of 20 minutes, ``every_ms`` apart, on the site's two beds; received
        as they happen, or all at ``received`` (a backlog)."""
        out = []
        for i in range(n):
            t = first_ts + i * every_ms
            bed = f"bed-000{1 + i % 2}"
            for event, at in (("check_in", t), ("check_out", t + 20 * MINUTE)):
                out.append(self.badge(device, bed, event, f"{prefix}-{i}", ts=at,
                                      caregiver=caregiver,
                                      received=at if received is None else received))
        return out

    def rows(self, device: str | None = None) -> int:
        """Rows the badge's events added: chained, or set aside (refused) in the same file."""
        devices = [r.device for r in self.log.query(limit=100_000)]
        devices += [r.event.device for r in self.log.refused(limit=100_000)]
        return sum(1 for d in devices if device is None or d == device)

    def over_budget(self, registry: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "homecare_service_badge_events_over_budget_total", {"registry": registry})
        return value or 0.0

    def dead_lettered(self) -> int:
        """Dead letters of the reason, stored or shed by the store's per-source budget."""
        return self.deadletters.count(REASON) + self.deadletters.shed[REASON]


def flood(station: Station, n: int = 5_000, *, device: str = "badge-07") -> list[RawMessage]:
    """``n`` check-ins and check-outs of distinct visits on two beds, received in 0.6 s."""
    raws = []
    for i in range(n // 2):
        received = T0 + i * 600 // (n // 2)
        bed = f"bed-000{1 + i % 2}"
        raws += [station.badge(device, bed, "check_in", f"f-{i}", ts=received,
                               received=received),
                 station.badge(device, bed, "check_out", f"f-{i}", ts=received + 1,
                               received=received)]
    return raws


def test_a_burst_of_5000_events_from_one_badge_adds_at_most_its_budget_to_the_service_log(
        tmp_path: Path) -> None:
    station = Station(tmp_path)
    station.take(flood(station))
    assert station.rows() == BURST  # 200 rows, not 5,000
    assert station.log.refused() == []
    assert station.over_budget("listed") == 5_000 - BURST
    assert station.dead_lettered() == 5_000 - BURST
    letter = station.deadletters.recent(1, reason=REASON)[0]
    assert letter.topic.endswith("/badge/badge-07/event")
    assert "badge badge-07 at site-01 over its service-log budget" in letter.detail
    assert json.loads(letter.payload)["visit"].startswith("f-")
    assert station.metrics.registry.get_sample_value(
        "homecare_messages_rejected_total", {"reason": REASON}) == 5_000 - BURST
    assert station.log.verify().ok


def test_a_days_backlog_of_30_visits_is_recorded_whole_and_so_is_the_next_day(
        tmp_path: Path) -> None:
    # The caregiver's app was offline all day: 30 visits (device times over 10 hours) sent at
    # once when it reconnects, then a second day of 30 visits live, 20 minutes apart.
    station = Station(tmp_path)
    backlog = station.visits("badge-07", 30, first_ts=T0, every_ms=20 * MINUTE,
                             received=T0 + 11 * 3_600_000)
    station.take(backlog, batch=len(backlog))
    station.take(station.visits("badge-07", 30, first_ts=T0 + 86_400_000,
                                every_ms=20 * MINUTE, prefix="w"), batch=1)
    assert station.rows("badge-07") == 120
    assert station.dead_lettered() == 0
    assert station.over_budget("listed") == 0
    assert station.findings == []


def test_other_badges_keep_recording_while_one_floods(tmp_path: Path) -> None:
    station = Station(tmp_path)
    flooding = flood(station)
    honest = station.visits("badge-08", 30, first_ts=T0 - 12 * 3_600_000,
                            every_ms=20 * MINUTE, received=T0 + 300, caregiver="c-08")
    mixed = flooding[:2_500] + honest + flooding[2_500:]
    station.take(mixed)
    assert station.rows("badge-08") == 60
    assert station.rows("badge-07") == BURST
    assert station.dead_lettered() == 5_000 - BURST


def test_made_up_badges_together_add_at_most_the_unlisted_budget(tmp_path: Path) -> None:
    # 5,000 badge ids the registry does not list, one check-in each: each has a full bucket
    # of its own, and all of them share one.
    station = Station(tmp_path)
    made_up = [station.badge(f"bg-x{i}", "bed-0003", "check_in", f"v-{i}", ts=T0 + i,
                             received=T0 + i // 10) for i in range(5_000)]
    honest = station.visits("badge-07", 3, first_ts=T0 - 3_600_000, every_ms=20 * MINUTE,
                            received=T0 + 250)
    station.take(made_up[:2_500] + honest + made_up[2_500:])
    assert station.rows("badge-07") == 6
    assert station.rows() - 6 == UNLISTED_BURST
    assert station.over_budget("unlisted") == 5_000 - UNLISTED_BURST
    assert station.over_budget("listed") == 0


def test_a_redelivered_event_costs_nothing_and_is_not_dead_lettered(tmp_path: Path) -> None:
    station = Station(tmp_path, burst=2)
    visit = station.visits("badge-07", 1, first_ts=T0, every_ms=MINUTE, received=T0)
    station.take(visit)
    # Redelivered past the pipeline's duplicate memory (here a fresh one, as when it forgot
    # the device): the log holds both events already.
    station.pipeline = Pipeline(metrics=station.metrics, registry=station.registry,
                                stages=(station.stage,))
    station.take(visit)
    assert station.rows("badge-07") == 2
    assert station.dead_lettered() == 0
    # The bucket is empty now: a new event of the badge is over budget.
    station.take(station.visits("badge-07", 1, first_ts=T0 + MINUTE, every_ms=MINUTE,
                                received=T0 + 1_000, prefix="n")[:1])
    assert station.dead_lettered() == 1


def test_a_badge_over_budget_raises_one_sensor_fault_alert_that_clears_an_hour_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="homecare.servicelog")
    station = Station(tmp_path)
    station.take(flood(station))  # ten batches in 0.6 s: the first over budget is reported
    [opened] = station.findings
    assert (opened.type, opened.site, opened.bed, opened.episode, opened.active) == (
        AlertType.SENSOR_FAULT, SITE, "bed-0001", "badge-07", True)
    assert opened.evidence["reasons"] == [REASON]
    lines = [r.getMessage() for r in caplog.records if "badge_over_budget" in r.getMessage()]
    assert len(lines) == 1  # once a minute at most
    assert "device=badge-07" in lines[0]
    assert "c-07" not in lines[0]  # no caregiver, no visit: the badge and its site only

    def infrared(seq: int, at: int) -> RawMessage:
        return RawMessage(topic=f"homecare/v1/{SITE}/bed-0002/infrared/ir-0002/telemetry",
                          payload=json.dumps({"ts": at, "seq": seq, "presence": True}).encode(),
                          mid=seq, qos=1, received_ms=at)

    station.take([infrared(1, T0 + MINUTE + 1_000)])  # a minute on: the count updated
    assert [(f.active, f.evidence["events_over_budget"]) for f in station.findings[1:]] == [
        (True, 5_000 - BURST)]
    station.take([infrared(2, T0 + CLEAR_AFTER_MS + 1_000)])
    assert [(f.episode, f.active) for f in station.findings[2:]] == [("badge-07", False)]


def test_a_failed_dead_letter_write_is_retried_and_charged_once(tmp_path: Path) -> None:
    station = Station(tmp_path, burst=1)
    station.pipeline.process(station.visits("badge-07", 2, first_ts=T0, every_ms=MINUTE,
                                            received=T0))
    batch = station.pipeline.take()
    real_add = station.deadletters.add
    calls = []

    def failing_add(letters: list[DeadLetter]) -> int:
        calls.append(len(letters))
        if len(calls) == 1:
            raise OSError("disk full")
        return real_add(letters)

    station.stage.deadletters = type("Sink", (), {"add": staticmethod(failing_add)})()
    with pytest.raises(OSError, match="disk full"):
        commit(batch, spool=Spool(), deadletters=station.deadletters,
               stages=station.pipeline.stages)
    commit(batch, spool=Spool(), deadletters=station.deadletters,
           stages=station.pipeline.stages)
    assert calls == [3, 3]
    assert station.rows() == 1
    assert station.dead_lettered() == 3
    assert station.over_budget("listed") == 3


def test_an_open_budget_alert_is_taken_back_after_a_restart_and_clears(
        tmp_path: Path) -> None:
    from alerts import Alert, Severity

    station = Station(tmp_path)
    alert = Alert(id="a-1", incident=f"{SITE}/bed-0001/sensor_fault/badge-07#1",
                  type=AlertType.SENSOR_FAULT, severity=Severity.MEDIUM, site=SITE,
                  bed="bed-0001", opened_at=T0, updated_at=T0, status=AlertStatus.OPEN,
                  evidence={"reasons": [REASON], "device": "badge-07"})
    station.budget.resume([alert])
    station.take(station.visits("badge-08", 1, first_ts=T0, every_ms=MINUTE, received=T0,
                                caregiver="c-08"))
    assert station.findings == []
    station.take(station.visits("badge-08", 1, first_ts=T0 + CLEAR_AFTER_MS, every_ms=MINUTE,
                                received=T0 + CLEAR_AFTER_MS, prefix="w", caregiver="c-08"))
    assert [(f.site, f.bed, f.episode, f.active) for f in station.findings] == [
        (SITE, "bed-0001", "badge-07", False)]


def test_a_rate_of_zero_lifts_the_limit(tmp_path: Path) -> None:
    station = Station(tmp_path, per_day=0)
    station.take(flood(station, 1_000))
    assert station.rows() == 1_000
    assert station.dead_lettered() == 0


def test_without_a_registry_every_badge_has_its_own_budget(tmp_path: Path) -> None:
    """A station run without a registry file lists no badge; its caregivers' badges are not
    made-up ids sharing one pool (40 badges' days, 2,400 events, are over that pool's 300):
    each has its own budget, as emergency calls are all listed without a registry."""
    station = Station(tmp_path, registry=False)
    raws = []
    for k in range(40):
        raws += station.visits(f"bg-{k:02d}", 30, first_ts=T0 - 12 * 60 * MINUTE,
                               every_ms=20 * MINUTE, received=T0 + k, prefix=f"v{k}",
                               caregiver=f"c-{k:02d}")
    station.take(raws)
    assert station.rows() == 40 * 60
    assert station.dead_lettered() == 0
    station.take(flood(station, 1_000, device="bg-00"))  # one of them floods: its own budget
    assert station.over_budget("listed") == 1_000 - (BURST - 60)
