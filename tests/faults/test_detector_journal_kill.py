"""A SIGKILL loses no detector input (issue #14, D-B of a fresh tester): the detector journal.

The tester's case: a caregiver's check-in and the infrared's samples of the resident alone
were taken in (stored, acknowledged: the broker never sends them again) after the detectors'
last snapshot, then the gateway was killed. Restarted, the detectors had only the snapshot:
the check-in came back from the service log, the samples did not, and the visit nobody came to
settled ``unverifiable``/``not_sensed``, no alert. With the journal they are handed to the
detectors again at start, and the check-out after the restart is judged ``nobody_sensed``.

And nothing is raised twice: a button press taken in before the kill is not handed to the
rules again (only the detectors are given the journal), so its alert stays one, not repeated.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ingest import publish, start_gateway
from tests.servers import GatewayProcess, Mosquitto, sqlite_rows, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE, BED = "site-41", "bed-0001"
BADGE = f"homecare/v1/{SITE}/{BED}/badge/bd-0001/event"
INFRARED = f"homecare/v1/{SITE}/{BED}/infrared/ir-0001/telemetry"
BUTTON = f"homecare/v1/{SITE}/{BED}/button/btn-0001/event"
VISIT = {"caregiver": "cg-7", "visit": "v-never-came", "method": "nfc"}


def message(topic: str, **payload: Any) -> tuple[str, bytes]:
    return topic, json.dumps(payload).encode()


def alerts(gateway: GatewayProcess) -> list[dict[str, Any]]:
    rows = sqlite_rows(gateway.data_dir / "alerts.sqlite3", "SELECT alert FROM alerts")
    return [a for a in (json.loads(r[0]) for r in rows) if a["site"] == SITE]


def judgement(gateway: GatewayProcess) -> dict[str, Any] | None:
    """What the detector measured of the visit and its verdict, once judged."""
    rows = sqlite_rows(gateway.data_dir / "servicelog.sqlite3",
                       "SELECT measured FROM judged_visit WHERE visit = ?", (VISIT["visit"],))
    return json.loads(rows[0][0]) if rows else None


def changes(gateway: GatewayProcess) -> list[str]:
    return [r[0] for r in sqlite_rows(gateway.data_dir / "alerts.sqlite3",
                                      "SELECT action FROM changes ORDER BY seq")]


def test_a_visit_nobody_came_to_is_flagged_after_a_sigkill_that_followed_its_samples(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    env = {"HOMECARE_DETECTOR_EVALUATE_INTERVAL_S": "1",
           # No snapshot between the samples and the kill (one is written at the clean stop).
           "HOMECARE_DETECTOR_SNAPSHOT_INTERVAL_S": "3600",
           "HOMECARE_MQTT_CLIENT_ID": f"gw-journal-{tmp_path.name}"[:60],
           "HOMECARE_TIMEZONE": "UTC"}
    # A first run stopped cleanly: the detectors' snapshot is older than what follows.
    first = start_gateway(tmp_path, mosquitto.url, None, **env)
    first.stop()
    assert first.returncode == 0
    assert (first.data_dir / "detectors.snapshot").exists()

    gateway = start_gateway(tmp_path, mosquitto.url, None, **env)
    now = int(time.time() * 1000)
    checked_in = now - 150_000
    before_kill = [
        message(BADGE, ts=checked_in, seq=1, event="check_in", **VISIT),
        # The resident alone, counted every 10 s through the visit (14 samples).
        message(INFRARED, ts=now - 5_000, seq=1,
                samples=[{"t": checked_in + 10_000 * i, "presence": True, "people": 1,
                          "motion": 1, "zone": "room"} for i in range(14)]),
        message(BUTTON, ts=now - 4_000, seq=1, event="press"),
    ]
    try:
        publish(mosquitto.url, before_kill)
        # Stored and acknowledged: the acknowledgement goes out in the same step as the count.
        wait_for(lambda: gateway.metric("homecare_points_spooled_total") >= 16,
                 "the messages committed", timeout=60)
        wait_for(lambda: [a for a in alerts(gateway) if a["type"] == "emergency_button"],
                 "the press raised its alert")
    finally:
        gateway.kill()

    restarted = start_gateway(tmp_path, mosquitto.url, None, **env)
    try:
        checked_out = int(time.time() * 1000)
        # Nothing came again from the broker: the messages were acknowledged before the kill.
        assert restarted.metric("homecare_messages_received_total") == 0
        publish(mosquitto.url, [
            message(BADGE, ts=checked_out, seq=2, event="check_out", services=[],
                    **VISIT),
            # The infrared caught up with the check-out: the visit can be judged.
            message(INFRARED, ts=checked_out + 1_000, seq=2, presence=True, people=1,
                    motion=1, zone="room"),
        ])
        judged = wait_for(lambda: judgement(restarted), "the visit judged a minute after "
                          "its check-out", timeout=240)
        # Before the journal: ('unverifiable', []), infrared_samples 0, and no alert.
        assert (judged["verdict"], judged["reasons"][:1]) == ("flagged", ["nobody_sensed"])
        assert judged["infrared_samples"] >= 14
        # The verdict and the alert are written by two commits (service log, alert store).
        [anomaly] = wait_for(lambda: [a for a in alerts(restarted)
                                      if a["type"] == "service_anomaly"],
                             "the visit's alert stored", timeout=30)
        assert anomaly["evidence"]["reasons"][:1] == ["nobody_sensed"]
        assert anomaly["evidence"]["visit"] == "v-never-came"
        assert "detect.journal_replayed" in restarted.log_tail(400)
        # The press raised one alert, never again (not repeated, not a second one).
        [press] = [a for a in alerts(restarted) if a["type"] == "emergency_button"]
        assert press["repeats"] == 0
        assert changes(restarted).count("repeated") == 0
        assert changes(restarted).count("opened") == len(alerts(restarted))
    finally:
        restarted.stop()
    assert restarted.returncode == 0
    # A clean stop leaves the journal empty: the snapshot holds everything.
    assert not list((restarted.data_dir / "detectors.journal").glob("*.seg"))


def test_snapshots_taken_during_intake_hold_exact_journal_positions(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Snapshots are taken while messages and calls keep coming (the journal's size asks for
    one every 16 KiB here), and the kill comes after the last: the restarted detectors have
    every sample of the visit once, none lost between a snapshot and its journal position and
    none given twice (the visit counts exactly the 40 samples sent)."""
    env = {"HOMECARE_DETECTOR_EVALUATE_INTERVAL_S": "1",
           "HOMECARE_DETECTOR_SNAPSHOT_INTERVAL_S": "3600",
           "HOMECARE_DETECTOR_JOURNAL_MAX_BYTES": str(64 * 1024),
           "HOMECARE_MQTT_CLIENT_ID": f"gw-journal-{tmp_path.name}"[:60],
           "HOMECARE_TIMEZONE": "UTC"}
    gateway = start_gateway(tmp_path, mosquitto.url, None, **env)
    snapshot = gateway.data_dir / "detectors.snapshot"
    now = int(time.time() * 1000)
    checked_in = now - 200_000
    samples = [message(INFRARED, ts=checked_in + 4_000 * (i + 1), seq=i + 1, presence=True,
                       people=1, motion=1, zone="room") for i in range(40)]
    sent = 0
    try:
        publish(mosquitto.url, [message(BADGE, ts=checked_in, seq=1, event="check_in",
                                        **VISIT)])
        sent += 1
        for chunk in range(5):
            filler = [message(f"homecare/v1/site-42/bed-{b:04d}/audio/au-{b:04d}/telemetry",
                              ts=now - 1_000, seq=chunk * 100 + n + 1, level_db=40.0,
                              voice=False) for n in range(100) for b in range(4)]
            press = message(f"homecare/v1/{SITE}/bed-{chunk + 2:04d}/button/btn-{chunk}/event",
                            ts=now - 1_000, seq=1, event="press")
            batch = [*filler[:200], *samples[chunk * 8:chunk * 8 + 8], press, *filler[200:]]
            before = snapshot.stat().st_mtime_ns if snapshot.exists() else 0
            publish(mosquitto.url, batch)
            sent += len(batch)
            wait_for(lambda s=sent: gateway.metric("homecare_messages_accepted_total") >= s,
                     "the chunk taken in", timeout=60)
            if chunk < 4:  # a snapshot (by the journal's size) after this chunk came in
                wait_for(lambda b=before: snapshot.exists() and snapshot.stat().st_mtime_ns
                         > b, "a snapshot during intake", timeout=60)
        wait_for(lambda: gateway.metric("homecare_points_spooled_total") >= sent,
                 "everything committed", timeout=60)
        wait_for(lambda: len([a for a in alerts(gateway)
                              if a["type"] == "emergency_button"]) == 5 or None,
                 "the presses raised their alerts")
    finally:
        gateway.kill()

    restarted = start_gateway(tmp_path, mosquitto.url, None, **env)
    try:
        assert restarted.metric("homecare_messages_received_total") == 0
        checked_out = int(time.time() * 1000)
        publish(mosquitto.url, [
            message(BADGE, ts=checked_out, seq=2, event="check_out", services=[], **VISIT),
            message(INFRARED, ts=checked_out + 1_000, seq=41, presence=True, people=1,
                    motion=1, zone="room"),
        ])
        judged = wait_for(lambda: judgement(restarted), "the visit judged", timeout=240)
        assert judged["infrared_samples"] == 40
        assert (judged["verdict"], judged["reasons"][:1]) == ("flagged", ["nobody_sensed"])
        presses = [a for a in alerts(restarted) if a["type"] == "emergency_button"]
        assert len(presses) == 5
        assert all(a["repeats"] == 0 for a in presses)
        assert "gaps=0" in restarted.log_tail(400) or \
            "detect.journal_replayed" not in restarted.log_tail(400)
    finally:
        restarted.stop()
    assert restarted.returncode == 0
