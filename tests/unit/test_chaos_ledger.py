"""The chaos run's ledger (bench/chaos_ledger.py) and fault schedule (bench/chaos.py): each
kind of discrepancy is found, and a store holding exactly what was sent shows none."""

from __future__ import annotations

from collections import Counter

from bench.chaos import fault_schedule
from bench.chaos_ledger import (
    Accepted,
    Call,
    PointLedger,
    call_ledger,
    dead_letter_ledger,
    subscribed,
    upstream_ledger,
)
from devices import Label
from simulators import SimConfig, live
from simulators.traffic import Action
from tests.oracle import PointKey, expected_points

TOPIC = "homecare/v1/site-01/bed-0001/fall/fs-0001/telemetry"
TAGS = frozenset({("site", "site-01"), ("bed", "bed-0001"), ("device", "fs-0001")})


def _traffic(n: int = 3_000) -> list[tuple[str, bytes]]:
    sim = live(SimConfig(beds=5, seed=3, faults=True, fault_rate=0.02,
                         incidents_per_bed_day=6.0), start_ms=1_790_000_000_000)
    out = []
    for e in sim.messages():
        if e.action != Action.WILL:
            out.append((e.topic, e.payload))
        if len(out) >= n:
            return out
    return out


def _store(points: Counter[PointKey]) -> dict[tuple[str, frozenset[tuple[str, str]]], list[int]]:
    series: dict[tuple[str, frozenset[tuple[str, str]]], list[int]] = {}
    for (metric, tags, ts), n in points.items():
        series.setdefault((metric, tags), []).extend([ts] * n)
    return series


def _compare(ledger: PointLedger, store: dict[tuple[str, frozenset[tuple[str, str]]],
                                               list[int]]) -> dict[str, object]:
    for (metric, tags), stamps in store.items():
        ledger.compare(metric, tags, stamps)
    return ledger.finish()


def test_a_store_holding_what_the_oracle_expects_balances() -> None:
    traffic = _traffic()
    ledger = PointLedger()
    for i in range(0, len(traffic), 700):  # chunked as the run reads its file
        ledger.add(traffic[i:i + 700])
    got = _compare(ledger, _store(expected_points(traffic)))
    assert got["expected"] == len(set(expected_points(traffic))) > 10_000
    assert (got["lost"], got["duplicated"], got["unexpected"]) == (0, 0, 0)
    assert ledger.dead_sent, "the faults made dead letters"
    assert sum(ledger.dead_sent.values()) >= len(ledger.dead_expected) > 0


def test_lost_duplicated_and_unexpected_points_are_counted() -> None:
    traffic = _traffic()
    ledger = PointLedger()
    ledger.add(traffic)
    store = _store(expected_points(traffic))
    key = next(iter(store))
    series = sorted(set(store[key]))
    store[key] = [*series[1:], series[-1], series[-1] + 7]  # one lost, one twice, one extra
    other = list(store)[1]
    absent = len(set(store.pop(other)))  # a whole series absent
    got = _compare(ledger, store)
    assert got["lost"] == 1 + absent
    assert got["duplicated"] == 1
    assert got["unexpected"] == 1


def test_a_point_stored_at_receipt_time_with_its_device_time_is_retimed_not_lost() -> None:
    ledger = PointLedger()
    ledger.add([(TOPIC, b'{"ts":5000,"seq":1,"samples":[{"t":4000,"heart_rate":70},'
                        b'{"t":5000,"heart_rate":71}]}')])
    # Stored at the receipt time (9000, 9001) with the device times in vitals_device_ts;
    # the second sample's point was written twice by a redelivery (9001 and 9500).
    ledger.retimed("vitals", TAGS, [9000, 9001, 9500], [4000, 5000, 5000])
    ledger.compare("vitals_heart_rate", TAGS, [9000, 9001, 9500])
    got = ledger.finish()
    assert (got["lost"], got["unexpected"], got["retimed"]) == (0, 0, 2)
    assert got["retimed_stored_twice"] == 1
    ledger = PointLedger()
    ledger.add([(TOPIC, b'{"ts":5000,"seq":1,"samples":[{"t":4000,"heart_rate":70}]}')])
    ledger.retimed("vitals", TAGS, [9000], [3999])  # another device time: not this point
    ledger.compare("vitals_heart_rate", TAGS, [9000])
    got = ledger.finish()
    assert (got["lost"], got["unexpected"], got["retimed"]) == (1, 1, 0)


def test_messages_outside_the_subscription_are_neither_points_nor_dead_letters() -> None:
    assert subscribed("homecare/v1/site-01/bed-0001")
    assert not subscribed("homecare/v9/site-01/bed-0001/fall/fs-0001/telemetry")
    assert not subscribed("domotica/v1/site-01/bed-0001/fall/fs-0001/telemetry")
    ledger = PointLedger()
    ledger.add([("homecare/v9/site-01/bed-0001/fall/fs-0001/telemetry", b"{}"),
                ("homecare/v1/site-01/bed-0001/toaster/t-1/event", b'{"ts":1,"seq":1}')])
    assert ledger.finish()["not_subscribed"] == 1
    assert list(ledger.dead_sent) == ["unknown_kind"]


def test_dead_letters_missing_repeated_and_unexpected() -> None:
    expected = {("a", "1"): "malformed_json", ("b", "2"): "oversize"}
    got = dead_letter_ledger(expected, Counter(malformed_json=1, oversize=2),
                             [("a", "1", "malformed_json"), ("a", "1", "malformed_json"),
                              ("c", "3", "internal_error")])
    assert (got["missing"], got["stored_more_than_once"], got["unexpected"]) == (1, 1, 1)
    assert got["by_reason"]["oversize"] == {"sent": 2, "distinct": 1, "stored": 0,
                                            "missing": 1}
    assert got["unexpected_by_reason"] == {"internal_error": 1}


def _alert(type_: str, bed: str, device: str, seq: int, ts: int) -> dict[str, object]:
    return {"type": type_, "site": "s", "bed": bed,
            "evidence": {"device": device, "seq": seq, "device_ts": ts}}


def test_calls_and_critical_labels_missed_late_and_without_a_call() -> None:
    calls = [Call("s", "b1", "button", "btn-1", 1, 10_000, 10_000, 1_000),
             Call("s", "b1", "button", "btn-1", 2, 90_000, 90_000, 2_000),
             Call("s", "b2", "fall", "fs-2", 5, 50_000, 50_100, 3_000)]
    changes = [(1_050, "opened", _alert("emergency_button", "b1", "btn-1", 1, 10_000)),
               (9_000, "escalated", _alert("emergency_button", "b1", "btn-1", 1, 10_000)),
               (99_000, "opened", _alert("fall", "b2", "fs-2", 5, 50_000)),
               (2_100, "opened", _alert("inactivity", "b1", "btn-1", 2, 90_000))]
    labels = [Label("s", "b1", "emergency_button", 10_000, 10_000),  # detected in 50 ms
              Label("s", "b1", "emergency_button", 90_000, 90_000),  # its call had no effect
              Label("s", "b2", "fall", 50_000, 50_000),               # 96 s: late
              Label("s", "b3", "fall", 50_000, 50_000),               # no call was sent
              Label("s", "b1", "inactivity", 0, 100_000)]             # not critical
    got = call_ledger(calls, changes, labels, late_ms=60_000)
    assert (got["calls"], got["calls_took_effect"], got["calls_missed"]) == (3, 2, 1)
    assert got["calls_late"] == 1
    assert (got["labels"], got["labels_missed"], got["labels_late"],
            got["labels_without_call"]) == (4, 1, 1, 1)
    assert got["call_to_alert_ms"]["max"] == 96_000
    assert got["by_type"]["fall"] == {"labels": 2, "detected": 1, "missed": 0, "late": 1,
                                      "no_call_sent": 1}


def _change(key: str, alert: str, action: str, at: int) -> Accepted:
    seq = int(key.rsplit("/", 1)[1])
    return Accepted(key, {"kind": "alert_change", "change": {
        "seq": seq, "at": at, "action": action, "alert": {"id": alert}}}, True)


def test_upstream_missing_duplicated_out_of_order_and_unsigned() -> None:
    accepted = [_change("g/alert/1", "a", "opened", 10), _change("g/alert/3", "b", "opened", 11),
                _change("g/alert/2", "a", "acknowledged", 12),
                _change("g/alert/5", "a", "acknowledged", 12),  # the same change again
                Accepted("g/service/1", {"kind": "service_record",
                                         "record": {"origin": "o-1"}}, True),
                Accepted("g/service/2", {"kind": "service_record",
                                         "record": {"origin": "o-1"}}, False)]
    expected = ["g/alert/1", "g/alert/2", "g/alert/3", "g/alert/4", "g/alert/5", "g/alert/6",
                "g/service/1", "g/service/2"]
    got = upstream_ledger(expected, accepted, pending=["g/alert/6"], redelivered=3)
    assert (got["missing"], got["pending_at_stop"]) == (1, 1)
    assert got["examples"]["missing"] == ["g/alert/4"]
    assert got["duplicated"] == 2
    assert got["out_of_order"] == 1
    assert got["unsigned"] == 1
    assert got["redelivered_requests"] == 3
    clean = upstream_ledger(["g/alert/1"], accepted[:1])
    assert (clean["missing"], clean["duplicated"], clean["out_of_order"]) == (0, 0, 0)


def test_the_fault_schedule_fits_the_run() -> None:
    faults = fault_schedule(900, kills=12, broker_restarts=2, db_outage_s=180,
                            upstream_down_s=120, upstream_503_s=60)
    actions = Counter(f.action for f in faults)
    assert actions["kill"] == 12
    assert actions["broker_restart"] == 2
    assert all(actions[a] == 1 for a in ("db_stop", "db_start", "upstream_down",
                                         "upstream_up", "upstream_503", "upstream_ok"))
    at = {f.action: f.at_s for f in faults if f.action != "kill"}
    assert at["db_start"] - at["db_stop"] == 180
    assert at["upstream_up"] - at["upstream_down"] == 120
    assert all(0 < f.at_s < 900 for f in faults)
    assert [f.at_s for f in faults] == sorted(f.at_s for f in faults)
    restarts = [f.at_s for f in faults if f.action == "broker_restart"]
    assert all(abs(f.at_s - r) >= 4 for f in faults if f.action == "kill" for r in restarts)
    assert sum(at["db_stop"] < f.at_s < at["db_start"] for f in faults
               if f.action == "kill") >= 2, "kills while the database is down"
    short = fault_schedule(20, kills=2, broker_restarts=1, db_outage_s=180,
                           upstream_down_s=120, upstream_503_s=60)
    at = {f.action: f.at_s for f in short}
    assert at["db_start"] - at["db_stop"] == 4, "an outage is at most a fifth of the run"
