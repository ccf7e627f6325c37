"""The city platform goes down, the gateway is killed while it is down, and nothing is lost.

A real ``homecare gateway`` process with real mosquitto delivers alert changes and service-log
records to a real HTTP server on loopback (tests/upstream_receiver.py). The platform is down
(connection refused), then up, then answering 503 while the gateway is SIGKILLed; after the
restart every change of the alert store and every record of the service log arrives, signed,
each key once, alert changes in their order. A family webhook of one bed, up throughout, gets
that bed's changes only, signed with the bed's own secret, while the platform is down. A slow
family webhook holds up no press for the platform, and a slow platform no stop.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.upstream import family_secret
from tests.ingest import publish, start_gateway
from tests.servers import GatewayProcess, Mosquitto, sqlite_rows, wait_for
from tests.upstream_receiver import Delivery, Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "upstream-fault-test-secret"
SITE = "site-07"




def _event(bed: str, kind: str, device: str, seq: int, **fields: object) -> tuple[str, bytes]:
    payload = {"ts": int(time.time() * 1000), "seq": seq, **fields}
    return (f"homecare/v1/{SITE}/{bed}/{kind}/{device}/event", json.dumps(payload).encode())


def _expected(data: Path, source: str = "gw-fault") -> list[str]:
    """Every key the platform must get: the alert store's changes, the service log's records."""
    alert_seqs = [r[0] for r in sqlite_rows(data / "alerts.sqlite3", "SELECT seq FROM changes")]
    record_seqs = [r[0] for r in sqlite_rows(data / "servicelog.sqlite3",
                                       "SELECT seq FROM service_log")]
    return ([f"{source}/alert/{s}" for s in sorted(alert_seqs)]
            + [f"{source}/service/{s}" for s in sorted(record_seqs)])


def test_platform_outage_and_a_gateway_sigkill_lose_and_duplicate_nothing(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    receiver = Receiver(SECRET.encode())  # not started: connection refused
    family = Receiver(family_secret(SECRET.encode(), SITE, "bed-0001"))  # up throughout
    family.start()
    registry = tmp_path / "registry.toml"
    registry.write_text(f'[sites.{SITE}.beds.bed-0001]\nfamily_webhook = "{family.url}"\n')
    env = {"HOMECARE_UPSTREAM_URL": receiver.url, "HOMECARE_UPSTREAM_SECRET": SECRET,
           "HOMECARE_REGISTRY_FILE": str(registry),
           "HOMECARE_UPSTREAM_SOURCE": "gw-fault", "HOMECARE_UPSTREAM_TIMEOUT_S": "2",
           # no escalation during the test: the set of changes is what the events made
           "HOMECARE_ALERT_ESCALATION_CRITICAL_S": "3600"}
    gateway = start_gateway(tmp_path, mosquitto.url, None, **env)
    data = gateway.data_dir
    try:
        publish(mosquitto.url, [
            _event("bed-0001", "button", "btn-1", 1, event="press"),
            _event("bed-0002", "button", "btn-2", 1, event="press"),
            _event("bed-0003", "badge", "bdg-3", 1, event="check_in", caregiver="c-9",
                   visit="v-31", method="nfc"),
            _event("bed-0003", "badge", "bdg-3", 2, event="check_out", caregiver="c-9",
                   visit="v-31", method="nfc", services=["medication"]),
        ])
        wait_for(lambda: len(_expected(data)) >= 4, "two alerts and two service records")
        wait_for(lambda: sqlite_rows(data / "outbox.sqlite3",
                                "SELECT COUNT(*) FROM outbox WHERE state = 'pending'")[0][0]
                  >= 4, "queued in the outbox while the platform is down")
        assert receiver.keys() == []

        receiver.start()
        wait_for(lambda: set(receiver.keys()) == set(_expected(data)) or None,
                  "everything delivered once the platform is back", timeout=60)

        receiver.mode = "unavailable"
        publish(mosquitto.url, [_event("bed-0004", "button", "btn-4", 1, event="press"),
                                _event("bed-0005", "fall", "fs-5", 1, event="fall_detected",
                                       confidence=0.9, posture="lying")])
        wait_for(lambda: len([k for k in _expected(data) if "/alert/" in k]) >= 4,
                  "two more alerts")
        before_kill = _expected(data)
        wait_for(lambda: len(receiver.attempts) > len(receiver.keys()) or None,
                  "the platform answering 503 was tried")
    finally:
        gateway.kill()

    receiver.mode = "ok"
    restarted = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=gateway.env,
                               port=gateway.port)
    restarted.start()
    try:
        restarted.wait_connected()
        wait_for(lambda: set(before_kill) <= set(receiver.keys()) or None,
                  "what was pending at the kill delivered after the restart", timeout=120)
        wait_for(lambda: set(receiver.keys()) == set(_expected(data)) or None,
                  "everything in the stores delivered", timeout=30)
    finally:
        restarted.stop()
        receiver.stop()
        family.stop()

    keys = receiver.keys()
    assert len(keys) == len(set(keys)), "each key accepted once"
    assert receiver.duplicates == 0
    assert all(d.signed for d in receiver.accepted)
    alert_keys = [k for k in keys if "/alert/" in k]
    assert alert_keys == sorted(alert_keys, key=lambda k: int(k.rsplit("/", 1)[1])), \
        "alert changes in their order"
    beds = {d.body["change"]["alert"]["bed"] for d in receiver.accepted
            if d.body["kind"] == "alert_change"}
    assert {"bed-0001", "bed-0002", "bed-0004", "bed-0005"} <= beds
    visits = [d.body["record"]["event"] for d in receiver.accepted
              if d.body["kind"] == "service_record"]
    assert visits == ["check_in", "check_out"]
    # The family of bed-0001 got that bed's alert changes, and only them, signed for it.
    assert family.keys(), "the family's webhook was served while the platform was down"
    assert all(d.signed for d in family.accepted)
    assert {d.body["change"]["alert"]["bed"] for d in family.accepted} == {"bed-0001"}
    assert family.duplicates == 0
    assert {d.body["change"]["alert"]["id"] for d in family.accepted} <= {
        d.body["change"]["alert"]["id"] for d in receiver.accepted
        if d.body["kind"] == "alert_change"}, "the platform's changes, under keys of its own"


def test_a_slow_family_webhook_delays_no_press_and_a_slow_platform_no_stop(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A family webhook answering in 4 s with 30 visit records queued, then a press on another
    bed: the platform gets the press while the family's backlog is still pending. Then the
    platform answers in 4 s with a backlog and the gateway is stopped (SIGTERM): it exits
    cleanly with entries still queued (before, it waited for every backlog), and after the
    restart every change and record reaches the platform. The times are printed for the
    README, not asserted."""
    platform = Receiver(SECRET.encode())
    family = Receiver(family_secret(SECRET.encode(), SITE, "bed-0001"), delay_s=4.0)
    platform.start()
    family.start()
    registry = tmp_path / "registry.toml"
    registry.write_text(f'[sites.{SITE}.beds.bed-0001]\nfamily_webhook = "{family.url}"\n')
    env = {"HOMECARE_UPSTREAM_URL": platform.url, "HOMECARE_UPSTREAM_SECRET": SECRET,
           "HOMECARE_REGISTRY_FILE": str(registry), "HOMECARE_UPSTREAM_SOURCE": "gw-slow",
           "HOMECARE_ALERT_ESCALATION_CRITICAL_S": "3600"}
    gateway = start_gateway(tmp_path, mosquitto.url, None, **env)
    data = gateway.data_dir
    try:
        visits = []
        for n in range(15):
            for seq, event in ((2 * n + 1, "check_in"), (2 * n + 2, "check_out")):
                visits.append(_event("bed-0001", "badge", "bdg-1", seq, event=event,
                                     caregiver="c-1", visit=f"v-{n}", method="nfc"))
        publish(mosquitto.url, visits)
        wait_for(lambda: len(_records(platform)) >= 30, "the 30 visit records at the platform")
        assert len(family.keys()) < 30

        pressed = time.monotonic()
        publish(mosquitto.url, [_event("bed-0002", "button", "btn-2", 1, event="press")])
        wait_for(lambda: _opened(platform, "bed-0002"), "the press at the platform")
        reached_s = _opened(platform, "bed-0002")[0].at - pressed
        family_done = len(family.keys())
        assert family_done < 30, "the platform got the press while the family's backlog " \
            "was still pending"

        platform.delay_s = 4.0
        arrived = platform.arrivals
        publish(mosquitto.url, [_event(f"bed-{n:04d}", "button", f"btn-{n}", 1, event="press")
                                for n in range(3, 13)])
        wait_for(lambda: platform.arrivals > arrived or None, "a slow request in flight")
    finally:
        stopping = time.monotonic()
        gateway.stop(timeout=60.0)  # generous: the old gateway took every backlog first
        stopped_s = time.monotonic() - stopping
    assert gateway.returncode == 0, gateway.log_tail()
    left = sqlite_rows(data / "outbox.sqlite3",
                       "SELECT COUNT(*) FROM outbox WHERE state = 'pending'")[0][0]
    assert left > 0, "it stopped with entries still queued"
    print(f"\npress to the platform: {reached_s:.3f} s with the family's webhook (4 s per "
          f"answer) at {family_done} of 30; stop with the platform answering in 4 s: "
          f"{stopped_s:.2f} s, {left} entries left queued")

    platform.delay_s = family.delay_s = 0.0
    restarted = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=gateway.env,
                               port=gateway.port)
    restarted.start()
    try:
        restarted.wait_connected()
        wait_for(lambda: set(platform.keys()) == set(_expected(data, "gw-slow")) or None,
                 "everything in the stores delivered after the restart", timeout=60)
        wait_for(lambda: sqlite_rows(data / "outbox.sqlite3", "SELECT COUNT(*) FROM outbox"
                                     " WHERE state = 'pending'")[0][0] == 0 or None,
                 "the family's backlog delivered too", timeout=60)
    finally:
        restarted.stop()
        platform.stop()
        family.stop()
    assert len(_records(family)) == 30
    assert all(d.signed for d in platform.accepted + family.accepted)


def _records(receiver: Receiver) -> list[str]:
    keys = receiver.keys()
    return [key for key in keys if "/service/" in key]


def _opened(receiver: Receiver, bed: str) -> list[Delivery]:
    return [d for d in receiver.accepted if d.body["kind"] == "alert_change"
            and d.body["change"]["action"] == "opened" and d.body["change"]["alert"]["bed"] == bed]
