"""Offline replay (``homecare.replay``) and scoring against labels (``homecare.evaluate``)."""

from __future__ import annotations

import base64
import io
import json

import msgspec
import pytest

from alerts.model import Alert, AlertStatus, AlertType, Severity
from devices import Registry
from devices.labels import Label, read_labels
from homecare.evaluate import AlertRecord, evaluate, read_alerts
from homecare.replay import DISPATCHER, ReplaySummary, replay_file

T0 = 1_793_548_800_000
MINUTE = 60_000


def line(t: int, topic: str, payload: dict[str, object] | bytes) -> bytes:
    if isinstance(payload, bytes):
        return json.dumps({"t": t, "topic": topic,
                           "payload_b64": base64.b64encode(payload).decode()}).encode() + b"\n"
    return json.dumps({"t": t, "topic": topic, "payload": json.dumps(payload)}).encode() + b"\n"


def topic(bed: str, kind: str, device: str, channel: str) -> str:
    return f"homecare/v1/s1/{bed}/{kind}/{device}/{channel}"


def press(t: int, seq: int, bed: str = "b1") -> bytes:
    return line(t, topic(bed, "button", f"btn-{bed}", "event"),
                {"ts": t - 30, "seq": seq, "event": "press"})


def heartbeat(t: int, seq: int, bed: str = "b1") -> bytes:
    return line(t, topic(bed, "infrared", f"ir-{bed}", "status"),
                {"ts": t, "seq": seq, "state": "online", "heartbeat_s": 300})


def replay(lines: list[bytes], *, dispatcher_after_ms: int = 3_600_000
           ) -> tuple[list[Alert], ReplaySummary, bytes]:
    out = io.BytesIO()
    alerts, summary = replay_file(io.BytesIO(b"".join(lines)), out, registry=Registry(),
                                  timezone="UTC", dispatcher_after_ms=dispatcher_after_ms)
    return alerts, summary, out.getvalue()


# --- replay -------------------------------------------------------------------------------------


def test_emergency_call_opens_at_its_receipt_time_whatever_else_is_in_the_batch() -> None:
    lines = [heartbeat(T0 + k * 1000, k + 1) for k in range(5)]
    lines.append(press(T0 + 5_400, 1))
    lines += [heartbeat(T0 + 6_000 + k * 1000, k + 10) for k in range(3)]
    alerts, _, written = replay(lines)
    [call] = [a for a in alerts if a.type == "emergency_button"]
    assert call.opened_at == T0 + 5_400
    assert msgspec.json.decode(written.splitlines()[0], type=Alert) == alerts[0]


def test_bad_lines_are_counted_and_bad_payloads_dead_lettered() -> None:
    lines = [b"not json\n", b"\n", b'{"t": 1, "topic": "x"}\n',
             line(T0, topic("b1", "infrared", "ir-b1", "status"), b"\xff\xfe{"),
             line(T0 + 1, "homecare/v1/s1/b1/thermostat/t-1/telemetry", {"ts": T0, "seq": 1}),
             heartbeat(T0 + 2, 1), heartbeat(T0 + 2, 1)]
    _, summary, _ = replay(lines)
    assert summary.lines == 6
    assert summary.unreadable_lines == 2
    assert summary.dead_letters == {"invalid_utf8": 1, "unknown_kind": 1}
    assert summary.duplicates == 1
    assert summary.accepted == 1


def test_ticks_continue_across_gaps_in_the_traffic() -> None:
    # A device heard once, then nothing from anyone for two hours, then one message.
    lines = [heartbeat(T0, 1), heartbeat(T0 + 2 * 3_600_000, 2, bed="b2")]
    alerts, summary, _ = replay(lines)
    [offline] = [a for a in alerts if a.type == "device_offline"]
    assert T0 + 15 * MINUTE <= offline.opened_at <= T0 + 17 * MINUTE
    assert summary.ticks >= 2 * 360


def test_the_simulated_dispatcher_lets_a_later_call_open_a_new_alert() -> None:
    lines = [press(T0, 1), *[heartbeat(T0 + k * MINUTE, k + 1) for k in range(1, 120)],
             press(T0 + 2 * 3_600_000, 2)]
    handled, _, _ = replay(lines)
    calls = [a for a in handled if a.type == "emergency_button"]
    assert [a.opened_at for a in calls] == [T0, T0 + 2 * 3_600_000]
    assert calls[0].resolved_by == DISPATCHER
    alone, _, _ = replay(lines, dispatcher_after_ms=0)
    assert len([a for a in alone if a.type == "emergency_button"]) == 1


def test_the_same_traffic_gives_byte_identical_alerts() -> None:
    lines = [press(T0 + k * 7 * MINUTE, k + 1, bed=f"b{k % 3}") for k in range(20)]
    assert replay(lines)[2] == replay(lines)[2]


# --- evaluate -----------------------------------------------------------------------------------


def label(bed: str, type_: str, start: int, end: int) -> Label:
    return Label(site="s1", bed=bed, type=type_, start=start, end=end)


def alert(id_: str, bed: str, type_: str, opened: int) -> AlertRecord:
    return AlertRecord(id=id_, type=type_, site="s1", bed=bed, opened_at=opened)


def test_matching_by_bed_type_and_window_with_tolerance() -> None:
    labels = [label("b1", "fall", T0, T0 + 10 * MINUTE),
              label("b2", "fall", T0, T0 + 10 * MINUTE),
              label("b3", "inactivity", T0, T0 + 60 * MINUTE)]
    alerts = [alert("a", "b1", "fall", T0 + 500),
              alert("b", "b1", "fall", T0 + 2 * MINUTE),          # a repeat, not false
              alert("c", "b2", "fall", T0 + 19 * MINUTE),         # within the tolerance
              alert("d", "b3", "inactivity", T0 - MINUTE),        # before the start: false
              alert("e", "b3", "fall", T0 + MINUTE)]              # wrong type: false
    scored = evaluate(labels, alerts, tolerance_s=600, bed_days=10)
    fall = scored.scores["fall"]
    assert (fall.labels, fall.detected, fall.alerts, fall.repeats) == (2, 2, 4, 1)
    assert fall.precision == 0.75
    assert fall.delay_s(50) == pytest.approx((0.5 + 19 * 60) / 2)
    inactivity = scored.scores["inactivity"]
    assert inactivity.recall == 0.0
    assert [a.id for a in inactivity.false_alerts] == ["d"]
    assert scored.false_per_bed_day(scored.total) == 0.2
    rows = {r["type"]: r for r in scored.rows()}
    assert rows["fall"]["delay_max_s"] == 1140.0
    assert rows["emergency_button"]["recall"] is None
    assert "fall" in scored.table()
    assert json.dumps(scored.to_json())


def test_bed_days_are_inferred_from_what_was_seen() -> None:
    labels = [label("b1", "fall", T0, T0 + MINUTE), label("b2", "fall", T0 + 86_400_000 * 3,
                                                         T0 + 86_400_000 * 3 + MINUTE)]
    scored = evaluate(labels, [])
    assert scored.bed_days == pytest.approx(2 * 3.0, rel=0.01)


def test_reading_labels_and_alerts_jsonl() -> None:
    labels = read_labels(b'{"site":"s1","bed":"b1","type":"fall","start":1,"end":2}\n\n')
    alerts = read_alerts(msgspec.json.encode(Alert(
        id="x", incident="s1/b1/fall/#1", type=AlertType.FALL, severity=Severity.CRITICAL,
        site="s1", bed="b1", opened_at=1, updated_at=1, status=AlertStatus.OPEN)) + b"\n")
    assert evaluate(labels, alerts).scores["fall"].recall == 1.0


def test_inactivity_delay_is_also_reported_from_the_moment_it_became_unusual() -> None:
    """Issue #12: still from 10:00, usually still for 20 minutes at that hour, flagged at 10:50:
    50 minutes after the start, 30 after it became longer than usual."""
    minute = 60_000
    labels = [label("b1", "inactivity", 0, 90 * minute)]
    alerts = [AlertRecord(id="a", type="inactivity", site="s1", bed="b1",
                          opened_at=50 * minute, evidence={"usual_minutes": 20.0})]
    scored = evaluate(labels, alerts, bed_days=1)
    row = next(r for r in scored.rows() if r["type"] == "inactivity")
    assert row["delay_median_s"] == 3000
    assert row["delay_past_usual_median_s"] == 1800
    assert "became longer than usual for the person at that hour: 30.0m" in scored.table()
