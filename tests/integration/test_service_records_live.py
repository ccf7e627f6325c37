"""Service records and the supervision report in the real gateway process (issue #14, 3-4): a
visit checked in and out through the app, judged by the detectors, is settled into its service
record in the chain (flagged, with the detector's reasons) and counted in the month's report
served by the gateway; the chain verifies against the head it reached. An honest badge visit
beside it (the caregiver sensed throughout, a recording within it) is settled verified with
what the sensors saw: its sensed minutes and the recording."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api_alerts import ADMIN_KEY, now_ms, publish
from tests.integration.test_service_supervision_live import INFRARED, api, samples
from tests.servers import GatewayProcess, Mosquitto, running_gateway, wait_for
from tests.unit.test_detect_support import MINUTE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HONEST = "homecare/v1/site-v/bed-0002"
CLIP_SHA = "5e" * 32


def honest_visit(now: int) -> list[tuple[str, dict[str, Any]]]:
    """A badge visit from 12 to 1 minutes ago at bed-0002 (device times, trusted within 15
    minutes of receipt: the badge and the sensors send what they held): two people counted the
    whole time (the resident and the caregiver; the household of a new bed is one), the
    recorder on from 11 to 2 minutes ago."""
    check_in, check_out = now - 12 * MINUTE, now - MINUTE
    visit = {"caregiver": "c-3", "visit": "v-rec-2", "method": "nfc"}
    clip = {"clip": "k-honest"}
    return [
        (f"{HONEST}/badge/bg-0002/event", {"ts": check_in, "seq": 1, "event": "check_in",
                                           **visit}),
        (f"{HONEST}/infrared/ir-0002/telemetry", {"ts": check_out, "seq": 1, "samples": [
            {"t": t, "presence": True, "people": 2, "motion": 2, "zone": "room"}
            for t in range(check_in + 30_000, check_out, MINUTE)]}),
        (f"{HONEST}/audio/au-0002/event", {"ts": check_in + MINUTE, "seq": 1,
                                           "event": "recording_started", **clip}),
        (f"{HONEST}/audio/au-0002/event", {"ts": check_out - MINUTE, "seq": 2,
                                           "event": "recording_stopped", **clip,
                                           "duration_s": 9 * 60.0, "sha256": CLIP_SHA}),
        (f"{HONEST}/badge/bg-0002/event", {"ts": check_out, "seq": 2, "event": "check_out",
                                           "services": ["medication"], **visit}),
    ]


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    env = {"HOMECARE_API_KEY": ADMIN_KEY, "HOMECARE_DETECTOR_EVALUATE_INTERVAL_S": "1",
           "HOMECARE_TIMEZONE": "UTC", "HOMECARE_SERVICE_RECORD_SETTLE_S": "90",
           "HOMECARE_SERVICE_INSTITUTIONS": "site-v=care-north"}
    with running_gateway(tmp_path / "gateway", mosquitto.url, env) as process:
        yield process


def test_a_finished_app_visit_becomes_its_service_record_and_is_in_the_months_report(
        mosquitto: Mosquitto, gateway: GatewayProcess) -> None:
    honest_at = now_ms()
    publish(mosquitto, [(INFRARED, samples(now_ms(), 1, 1)), *honest_visit(honest_at)])
    wait_for(lambda: api(gateway, "GET", "/beds/site-v/bed-0001").status_code == 200,
             "the bed is heard", timeout=20)
    visit = {"site": "site-v", "bed": "bed-0001", "caregiver": "c-2", "visit": "v-rec-1"}
    checked_in = api(gateway, "POST", "/visits/check-in", visit)
    assert checked_in.status_code == 201
    t_in = checked_in.json()["at"]
    publish(mosquitto, [(INFRARED, samples(t_in + 10, 1, 6))])  # the resident alone
    # By the samples' own time: ``last_seen`` is the receipt time, which can be within 10 ms of
    # the check-in (a failure in CI).
    wait_for(lambda: api(gateway, "GET", "/beds/site-v/bed-0001").json()["latest"]
             .get("presence", {}).get("t", 0) >= t_in + 10, "the samples are in", timeout=20)
    out = api(gateway, "POST", "/visits/check-out", {**visit, "services": ["cleaning"]})
    assert out.status_code == 201

    def settled() -> dict[str, dict[str, Any]] | None:
        items = api(gateway, "GET", "/service-logs", event="service").json()["items"]
        return {item["visit"]: item for item in items} if len(items) == 2 else None

    records = wait_for(settled, "both visits settled (90 s after their check-outs)",
                       timeout=240)
    record = records["v-rec-1"]
    assert (record["visit"], record["event"], record["source"]) == ("v-rec-1", "service",
                                                                    "gateway")
    detail = record["detail"]
    assert detail["verdict"] == "flagged"
    assert detail["reasons"][:1] == ["nobody_sensed"]
    assert detail["evidence"]["check_out"] == {"seq": out.json()["seq"],
                                               "hash": out.json()["hash"]}
    [alert] = api(gateway, "GET", "/alerts", type="service_anomaly").json()["items"]
    assert detail["evidence"]["alerts"] == [alert["id"]]
    check = api(gateway, "GET", "/service-logs/verify",
                head=f"{record['seq']}:{record['hash']}").json()
    assert (check["ok"], check["head_seq"]) == (True, record["seq"])

    # The honest visit: verified, and what the sensors saw is in its record (it was left out
    # of a verified visit's record: the detector reported its measurements only with a finding).
    honest = records["v-rec-2"]["detail"]
    assert (honest["verdict"], honest["reasons"], honest["household_people"]) == (
        "verified", [], 1)
    assert (honest["stayed_minutes"], honest["sensed_minutes"]) == (11.0, 11.0)
    assert honest["infrared_samples"] == honest["samples_with_caregiver"] == 11
    assert (honest["recording_required"], honest["recording_coverage"]) == (["medication"],
                                                                            0.82)
    assert honest["recordings"] == [{
        "clip": "k-honest", "device": "au-0002", "started_ms": honest_at - 11 * MINUTE,
        "stopped_ms": honest_at - 2 * MINUTE, "duration_s": 540.0, "sha256": CLIP_SHA}]
    assert "judged_at" in honest["evidence"]
    month = dt.datetime.fromtimestamp(honest["check_in_at"] / 1000, dt.UTC).strftime("%Y-%m")
    verified = {c["caregiver"]: c for c in api(gateway, "GET", "/reports/supervision",
                                                month=month).json()["caregivers"]}["c-3"]
    assert (verified["verified"], verified["sensed_minutes"]) == (1, honest["sensed_minutes"])

    month = dt.datetime.fromtimestamp(t_in / 1000, dt.UTC).strftime("%Y-%m")
    report = api(gateway, "GET", "/reports/supervision", month=month).json()
    [caregiver] = [c for c in report["caregivers"] if c["caregiver"] == "c-2"]
    assert (caregiver["institution"], caregiver["caregiver"], caregiver["performed"],
            caregiver["flagged"], caregiver["billable_minutes"]) == ("care-north", "c-2", 1, 1,
                                                                      0.0)
    assert caregiver["held_minutes"] == 25.0
    page = api(gateway, "GET", "/reports/supervision", month=month, format="html")
    assert page.headers["content-type"].startswith("text/html")
    assert "v-rec-1" in page.text
